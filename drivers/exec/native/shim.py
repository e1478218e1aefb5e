"""The native exec driver's shim: the long-lived supervisor of one container.

Started as ``python -E -S -c "...import shim; shim.main(sys.argv)" STATE_DIR REPORT_FD``
(or ``python -E -S shim.py STATE_DIR REPORT_FD``); stdlib only, never dockyard, so it
starts fast and survives the daemon.  It

1. reads ``STATE_DIR/state.json`` (bundle, log path) and ``<bundle>/config.json``;
2. enters a new pid namespace and forks the container init (pid 1 there), which
   sets up namespaces and root filesystem (:func:`run_init`) and execs the user's
   program; setup errors come back on a CLOEXEC status pipe;
3. writes ``running.json`` and reports ``{"pid": N}`` (or ``{"error", "exit_code"}``)
   as JSON on ``REPORT_FD``, then closes it;
4. copies the container's stdout/stderr into the json-file log, reaps the init
   and writes ``exit.json`` atomically before it exits.
"""

import os
import select
import sys
import time

import _json  # the C half of json: ``import json`` drags in re and enum (~12 ms)
import _signal as signal  # ``import signal`` drags in enum (~10 ms)

import linux  # this file's directory is sys.path[0]

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
MAX_LINE = 16 * 1024  # like Docker, longer lines are split into several entries


class StartError(Exception):
    def __init__(self, message, exit_code=None):
        super().__init__(message)
        self.exit_code = exit_code


def iso_now():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%06dZ" % (ns % 10**9 // 1000)


class _Ctx:  # what _json's scanner wants of a json.JSONDecoder
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


_scan = _json.make_scanner(_Ctx())


def loads(text):
    if isinstance(text, bytes):
        text = text.decode()
    text = text.strip()
    try:
        obj, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        raise ValueError("invalid JSON")
    return obj


def dumps(obj):
    """JSON for the few shapes the shim writes (dict, list, str, int, bool, None)."""
    if isinstance(obj, str):
        return _json.encode_basestring(obj)
    if obj is None or isinstance(obj, bool):
        return {None: "null", True: "true", False: "false"}[obj]
    if isinstance(obj, (int, float)):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{dumps(str(k))}:{dumps(v)}" for k, v in obj.items()) + "}"
    return "[" + ",".join(dumps(v) for v in obj) + "]"


def load_file(path):
    with open(path, "rb") as fh:
        return loads(fh.read())


def write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(dumps(data))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- init
def run_init(cfg, bundle, status_w, out_w, err_w, others):
    """The container init (child of the shim): set up, exec; never returns."""
    try:
        linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with its shim
        for fd in others:
            os.close(fd)
        poller = select.poll()  # the shim died before PDEATHSIG was set: the status pipe is widowed
        poller.register(status_w, select.POLLERR)
        if poller.poll(0):
            os._exit(1)
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        for fd in (null, out_w, err_w):
            os.close(fd)
        private = enter_namespaces(cfg)
        setup_container(cfg, bundle, private)
        exec_process(cfg["process"])
    except StartError as exc:
        err = {"error": str(exc), "exit_code": exc.exit_code}
    except OSError as exc:
        err = {"error": exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"}
    except BaseException as exc:  # noqa: BLE001 - report anything, never return into the shim
        err = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(status_w, dumps(err).encode())
    finally:
        os._exit(1)


def enter_namespaces(cfg):
    """Join (``path``) or unshare every non-pid namespace; return the set of types
    that are private to the container (new or joined)."""
    flags, joins, types = 0, [], set()
    for ns in (cfg.get("linux") or {}).get("namespaces") or ():
        kind = ns.get("type")
        if kind == "pid":
            continue
        if kind not in linux.NAMESPACES or kind == "user":
            raise StartError(f"namespace type {kind!r} is not supported by the native exec driver")
        if ns.get("path"):
            if kind == "mount":
                raise StartError("joining an existing mount namespace is not supported")
            joins.append((os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC), linux.NAMESPACES[kind], kind))
        else:
            flags |= linux.NAMESPACES[kind]
        types.add(kind)
    if "mount" not in types:
        raise StartError("the native exec driver needs a mount namespace (linux.namespaces)")
    for fd, flag, kind in joins:
        try:
            linux.setns(fd, flag)
        except OSError as exc:
            raise StartError(f"joining the {kind} namespace failed: {exc.strerror}") from None
        os.close(fd)
    linux.unshare(flags)
    return types


def setup_container(cfg, bundle, private):
    L = linux
    root = cfg["root"]["path"]
    root = os.path.realpath(os.path.join(bundle, root))
    L.mount(None, "/", None, L.MS_REC | L.MS_PRIVATE)
    L.mount(root, root, None, L.MS_BIND | L.MS_REC)

    nse = L.MS_NOSUID | L.MS_NODEV | L.MS_NOEXEC
    L.mount_at(root, "/proc", "proc", "proc", nse)
    dev = L.mount_at(root, "/dev", "tmpfs", "tmpfs", L.MS_NOSUID | L.MS_STRICTATIME, "mode=755,size=65536k")
    for name in DEVICES:
        L.mkfile(os.path.join(dev, name), 0o666)
        L.mount("/dev/" + name, os.path.join(dev, name), None, L.MS_BIND)
    L.mount_at(root, "/dev/pts", "devpts", "devpts", L.MS_NOSUID | L.MS_NOEXEC,
             "newinstance,ptmxmode=0666,mode=0620,gid=5")
    L.mount_at(root, "/dev/shm", "shm", "tmpfs", nse, "mode=1777,size=65536k")
    if "ipc" in private:
        L.mount_at(root, "/dev/mqueue", "mqueue", "mqueue", nse)
    for name, target in (("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, name))
    if "network" in private:
        L.mount_at(root, "/sys", "sysfs", "sysfs", nse | L.MS_RDONLY)
    else:  # sysfs shows the net namespace of its mounter: show the host's, read-only
        L.mount_at(root, "/sys", "/sys", None, L.MS_BIND | L.MS_REC | L.MS_RDONLY)
    # cgroups: a later issue will mount /sys/fs/cgroup here and join the container's
    # cgroup (write 0 to its cgroup.procs) before the exec below.

    for m in cfg.get("mounts") or ():
        dest = m.get("destination") or ""
        if not dest.startswith("/"):
            raise StartError(f"mounts: destination {dest!r} must be an absolute path")
        flags, prop, data = L.parse_mount_options(m.get("options"))
        fstype, source = m.get("type"), m.get("source")
        if fstype == "bind" or flags & L.MS_BIND:
            source = os.path.join(bundle, source or "")
            if not os.path.exists(source):
                raise StartError(f"mounts: bind source {source} of {dest} does not exist")
            L.mount_at(root, dest, source, None, flags | L.MS_BIND, None, prop, dir_=os.path.isdir(source))
        else:
            L.mount_at(root, dest, source or fstype, fstype, flags, data, prop)

    cwd = cfg["process"].get("cwd") or "/"
    try:
        os.makedirs(L.secure_join(root, cwd), 0o755, exist_ok=True)
    except OSError:
        pass  # reported by chdir below

    os.chdir(root)
    L.pivot_root(".", ".")
    L.umount2(".", L.MNT_DETACH)
    os.chdir("/")

    lx = cfg.get("linux") or {}
    for path in lx.get("maskedPaths") or ():
        if os.path.isdir(path) and not os.path.islink(path):
            L.mount("tmpfs", path, "tmpfs", L.MS_RDONLY)
        elif os.path.lexists(path) and not os.path.islink(path):
            L.mount("/dev/null", path, None, L.MS_BIND)
    for path in lx.get("readonlyPaths") or ():
        if os.path.lexists(path) and not os.path.islink(path):
            L.mount(path, path, None, L.MS_BIND | L.MS_REC)
            L.mount(None, path, None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY | nse)
    if cfg["root"].get("readonly"):
        L.mount(None, "/", None, L.MS_BIND | L.MS_REMOUNT | L.MS_RDONLY)
    if "uts" in private and cfg.get("hostname"):
        L.sethostname(cfg["hostname"])
    if "network" in private:
        L.loopback_up()


def find_executable(name, path):
    if "/" in name:
        return name
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o100000 and st.st_mode & 0o111:
            return cand
    raise StartError(f'exec: "{name}": executable file not found in $PATH', 127)


def exec_process(proc):
    caps = proc.get("capabilities")
    if caps is not None:
        linux.drop_bounding(linux.cap_numbers(caps.get("bounding")))
    user = proc.get("user") or {}
    try:
        os.setgroups([int(g) for g in user.get("additionalGids") or ()])
        os.setgid(int(user.get("gid", 0)))
        os.setuid(int(user.get("uid", 0)))
    except OSError as exc:
        raise StartError(f"setting user {user}: {exc.strerror}") from None
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise StartError(f'chdir to cwd ("{cwd}") set in config.json failed: {exc.strerror.lower()}') from None
    os.umask(0o022)
    env = {}
    for item in proc.get("env") or ():
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    args = proc["args"]
    exe = find_executable(args[0], env.get("PATH", DEFAULT_PATH))
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, ())
    try:
        os.execve(exe, args, env)
    except OSError as exc:
        code = 127 if exc.errno == 2 else 126 if exc.errno in (1, 8, 13, 21) else None
        what = f"stat {exe}: " if exc.errno == 2 and not os.path.lexists(exe) else ""
        raise StartError(f'exec: "{args[0]}": {what}{exc.strerror.lower()}', code) from None


# --------------------------------------------------------------------------- shim
class LogWriter:
    """Docker json-file writer: one JSON object per line of output."""

    def __init__(self, fd):
        self.fd = fd
        self.bufs = {}

    def feed(self, stream, data, final=False):
        buf = self.bufs.get(stream, b"") + data
        entries = []
        while True:
            nl = buf.find(b"\n", 0, MAX_LINE)
            if nl < 0 and len(buf) < MAX_LINE and not (final and buf):
                break
            cut = nl + 1 if nl >= 0 else min(len(buf), MAX_LINE)
            entries.append(self.entry(stream, buf[:cut]))
            buf = buf[cut:]
        self.bufs[stream] = buf
        if entries:
            try:
                os.write(self.fd, b"".join(entries))
            except OSError:
                pass  # a full disk must not block the container: drop the output

    @staticmethod
    def entry(stream, raw):
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)
        log = _json.encode_basestring(raw.decode("utf-8", "replace"))
        return f'{{"log":{log},"stream":"{stream}","time":"{stamp}"}}\n'.encode()


def report(fd, data):
    try:
        os.write(fd, dumps(data).encode())
    except OSError:
        pass  # the daemon went away; carry on
    os.close(fd)


def pump(logw, pipes, pid, pidfd, pidns):
    """Copy output to the log until the init exited and the pipes are drained."""
    status = None
    while pipes or status is None:
        watch = list(pipes) + ([pidfd] if status is None else [])
        ready, _, _ = select.select(watch, [], [], None if (status is None or pidns) else 0)
        if not ready:  # init gone, no pid namespace: stray holders of the pipe are left behind
            break
        for fd in ready:
            if fd == pidfd:
                status = os.waitpid(pid, 0)[1]
                continue
            data = os.read(fd, 65536)
            if data:
                logw.feed(pipes[fd], data)
            else:
                logw.feed(pipes.pop(fd), b"", final=True)
                os.close(fd)
    for fd, stream in pipes.items():
        logw.feed(stream, b"", final=True)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


def main(argv):
    """``argv``: [program, STATE_DIR, REPORT_FD]; never returns."""
    os._exit(run(argv[1], int(argv[2])))  # no interpreter teardown: exec_wait waits for us


def run(state_dir, report_fd):
    os.set_inheritable(report_fd, False)
    try:
        state = load_file(os.path.join(state_dir, "state.json"))
        bundle = state["bundle"]
        cfg = load_file(os.path.join(bundle, "config.json"))
        logfd = os.open(state["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        status_r, status_w = os.pipe()
        pidns = next((ns for ns in (cfg.get("linux") or {}).get("namespaces") or ()
                      if ns.get("type") == "pid"), None)
        if pidns and pidns.get("path"):
            fd = os.open(pidns["path"], os.O_RDONLY | os.O_CLOEXEC)
            linux.setns(fd, linux.CLONE_NEWPID)
            os.close(fd)
        elif pidns:
            linux.unshare(linux.CLONE_NEWPID)
        shim_pid = os.getpid()
        pid = os.fork()
    except Exception as exc:  # noqa: BLE001
        report(report_fd, {"error": f"shim: {exc}"})
        return 1
    if pid == 0:
        run_init(cfg, bundle, status_w, out_w, err_w, (report_fd, out_r, err_r, status_r))
    for fd in (out_w, err_w, status_w):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    chunks = []
    while True:
        data = os.read(status_r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(status_r)
    if chunks:  # the init failed before or at execve; it has exited
        os.waitpid(pid, 0)
        try:
            err = loads(b"".join(chunks))
        except ValueError:
            err = {"error": b"".join(chunks).decode(errors="replace")}
        report(report_fd, err)
        return 1
    stat = linux.proc_stat(pid)
    write_json(os.path.join(state_dir, "running.json"), {
        "shim_pid": shim_pid, "shim_start": linux.proc_stat(shim_pid)[1],
        "pid": pid, "pid_start": stat[1] if stat else None, "started_at": iso_now()})
    report(report_fd, {"pid": pid})
    own_pidns = bool(pidns) and not pidns.get("path")  # its pid 1 dies: every holder of the pipes too
    code = pump(LogWriter(logfd), {out_r: "stdout", err_r: "stderr"}, pid, pidfd, own_pidns)
    write_json(os.path.join(state_dir, "exit.json"),
               {"exit_code": code, "finished_at": iso_now(), "oom_killed": False})
    return 0


if __name__ == "__main__":
    main(sys.argv)
