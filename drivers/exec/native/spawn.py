"""The native driver's half of the shim: start a container's init, or an extra
process inside a running container, and clean up after the init (stdlib only).

The shim (:mod:`supervisor`) calls :func:`spawn` with the state the driver wrote:
``bundle`` (its config.json is read here), ``cgroup`` (``procs``: the
``cgroup.procs`` files to join, ``mounts`` for ``/sys/fs/cgroup``, ``dirs`` to
remove at the end, ``oom_file``), ``seccomp`` (a compiled BPF file or ``None``),
and for an extra process ``exec`` = ``{"pid": container init pid, "process": OCI
process}``.  The child reports a setup failure as JSON on a CLOEXEC status pipe;
end of file on that pipe means ``execve`` succeeded.

The child is non-dumpable from its fork to its ``execve`` (the shim is, and
:func:`_child` says so again), and holds only its stdio, the status pipe and
what its setup still needs (the terminal and sync sockets, the namespace fds
to join) before it joins any cgroup or namespace: container root, which sees
it from the moment it is in the container's pid namespace, can neither trace
it nor reach a host file through it (see ``sanitize``).
"""

import fcntl
import os
import select
import socket
import termios

import _signal as signal

import linux
import process
import rootfs
import runtime
import sanitize
from supervisor import Child, StartError, dumps, load_file, loads, read_file, set_winsize

# the order setns(2) joins an existing container's namespaces in (mnt last: it
# changes our root; user first: it grants the rights for the others)
JOIN_ORDER = ("user", "ipc", "uts", "net", "cgroup", "mnt")
NS_FLAG = {"user": linux.CLONE_NEWUSER, "ipc": linux.CLONE_NEWIPC, "uts": linux.CLONE_NEWUTS,
           "net": linux.CLONE_NEWNET, "cgroup": linux.CLONE_NEWCGROUP, "mnt": linux.CLONE_NEWNS,
           "pid": linux.CLONE_NEWPID}


def spawn(state, stdio):
    if state.get("exec"):
        return spawn_exec(state, stdio)
    bundle = state["bundle"]
    cfg = load_file(os.path.join(bundle, "config.json"))
    pidns = next((ns for ns in (cfg.get("linux") or {}).get("namespaces") or ()
                  if ns.get("type") == "pid"), None)
    filt = read_filter(state)
    userns = _namespace(cfg, "user")
    if userns is not None:
        return spawn_userns(cfg, bundle, state, stdio, filt, userns, pidns)
    if pidns and pidns.get("path"):
        _setns_path(pidns["path"], "pid")
    elif pidns:
        linux.unshare(linux.CLONE_NEWPID)
    pid, master, _ = _fork(stdio, lambda tty, sync, status: init_container(cfg, bundle, state, tty, filt))
    return Child(pid, master, own_pidns=bool(pidns) and not pidns.get("path"))


def _namespace(cfg, kind):
    return next((ns for ns in (cfg.get("linux") or {}).get("namespaces") or () if ns.get("type") == kind), None)


def spawn_userns(cfg, bundle, state, stdio, filt, userns, pidns):
    """A container in a user namespace of its own (or a joined one).

    Its pid namespace must belong to that user namespace (or its root could not
    mount /proc), so a first child joins the cgroup, enters the user namespace,
    waits for us to write its uid and gid maps, makes the pid namespace and forks
    the init; it stays the init's parent and exits with its exit code::

        shim -- stage one (user namespace) -- init (pid 1 of the new pid namespace)
    """
    def sync(pid, sock):
        if not userns.get("path"):
            if sock.recv(1) != b"U":
                return None  # stage one failed: the status pipe says why
            try:
                for name, key in (("uid_map", "uidMappings"), ("gid_map", "gidMappings")):
                    with open(f"/proc/{pid}/{name}", "w") as fh:
                        fh.write("".join(f"{m['containerID']} {m['hostID']} {m['size']}\n"
                                         for m in cfg["linux"][key]))
            except OSError as exc:
                os.kill(pid, 9)
                raise StartError(f"writing the user namespace's {name}: {exc.strerror}") from None
            sock.sendall(b"M")
        line = b""
        while not line.endswith(b"\n"):
            data = sock.recv(32)
            if not data:
                return None
            line += data
        return int(line[1:])

    def stage_one(tty, sock, status_w):
        # (we stay, unlike an init that execs: :func:`_child` closed what was the
        # shim's, its report pipe above all, which the daemon waits for to close)
        _join_cgroup(state)  # while we are still root of the host
        if userns.get("path"):
            _setns_path(userns["path"], "user")
        else:
            linux.unshare(linux.CLONE_NEWUSER)
            sock.sendall(b"U")
            if sock.recv(1) != b"M":
                raise StartError("the user namespace's uid and gid maps were not written")
        try:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        except OSError as exc:
            raise StartError(f"becoming root of the user namespace (is uid 0 mapped?): {exc.strerror}") from None
        if pidns and pidns.get("path"):
            _setns_path(pidns["path"], "pid")
        elif pidns:
            linux.unshare(linux.CLONE_NEWPID)
        init = os.fork()
        if init == 0:
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)
            sock.close()
            init_container(cfg, bundle, state, tty, filt, staged=True)
        sock.sendall(f"P{init}\n".encode())
        for fd in (sock.fileno(), status_w, *([tty.fileno()] if tty is not None else [])):
            os.close(fd)
        null = os.open("/dev/null", os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
        os._exit(code if code >= 0 else 128 - code)

    pid, master, init = _fork(stdio, stage_one, sync)
    if init is None:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        raise StartError("the container's init was not started in its user namespace")
    return Child(pid, master, own_pidns=bool(pidns) and not pidns.get("path"), init_pid=init)


def spawn_exec(state, stdio):
    target = state["exec"]["pid"]
    joins = []
    for kind in ("pid",) + JOIN_ORDER:
        path = f"/proc/{target}/ns/{kind}"
        try:
            if os.stat(path).st_ino == os.stat(f"/proc/self/ns/{kind}").st_ino:
                continue  # shared with the host: nothing to join
        except OSError as exc:
            raise StartError(f"the container's init ({target}) is gone: {exc.strerror}") from None
        joins.append((kind, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
    for kind, fd in joins:
        if kind == "pid":  # applies to our children: fork below
            linux.setns(fd, linux.CLONE_NEWPID)
    filt = read_filter(state)
    pid, master, _ = _fork(stdio, lambda tty, sync, status: init_exec(state, joins, tty, filt),
                           keep=[fd for _, fd in joins])
    for _, fd in joins:
        os.close(fd)
    return Child(pid, master, own_pidns=False)


def read_filter(state):
    """The compiled seccomp filter, read now: after pivot_root the file is out of sight."""
    spec = state.get("seccomp")
    if not spec:
        return None
    return read_file(spec["path"]), spec.get("flags") or 0


def _setns_path(path, kind):
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        linux.setns(fd, NS_FLAG[kind])
    except OSError as exc:
        raise StartError(f"joining the {kind} namespace {path} failed: {exc.strerror}") from None
    finally:
        os.close(fd)


def _fork(stdio, setup, sync=None, keep=()):
    """Fork the child that runs ``setup(tty_socket, sync_socket, status_fd)`` then
    execs; wait for its verdict.  ``sync(pid, socket)``, if given, talks to the
    child before that and gives the third value returned.  The child keeps only
    its stdio, those three and the fds in ``keep``.  Returns ``(pid, terminal
    master fd or None, what sync gave)``."""
    status_r, status_w = os.pipe()
    parent_sock = child_sock = sync_parent = sync_child = None
    if stdio.terminal:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    if sync is not None:
        sync_parent, sync_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        for sock in (parent_sock, sync_parent):
            if sock is not None:
                sock.close()
        own = {status_w, *keep, *(s.fileno() for s in (child_sock, sync_child) if s is not None)}
        _child(status_w, stdio, own, lambda: setup(child_sock, sync_child, status_w))
    os.close(status_w)
    for sock in (child_sock, sync_child):
        if sock is not None:
            sock.close()
    synced = None
    if sync is not None:
        try:
            synced = sync(pid, sync_parent)
        finally:
            sync_parent.close()
    chunks = []
    while True:
        data = os.read(status_r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(status_r)
    if chunks:  # the child failed before or at execve; it has exited
        os.waitpid(pid, 0)
        try:
            err = loads(b"".join(chunks))
        except ValueError:
            err = {"error": b"".join(chunks).decode(errors="replace")}
        raise StartError(err.get("error") or "start failed", err.get("exit_code"))
    master = None
    if parent_sock is not None:
        try:
            _, fds, _, _ = socket.recv_fds(parent_sock, 16, 1)
        except OSError:
            fds = []
        parent_sock.close()
        if not fds:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise StartError("the container's terminal was not handed over")
        master = fds[0]
    return pid, master, synced


def _child(status_w, stdio, own, setup):
    """In the forked child: set up and exec, or report why not; never returns.
    ``own``: the fds besides stdio that the child keeps."""
    try:
        sanitize.undumpable()  # inherited from the shim already: never rely on one line elsewhere
        if not stdio.orphan:  # (a hub's stager exits once it started us: we live on, the hub's)
            linux.prctl(linux.PR_SET_PDEATHSIG, signal.SIGKILL)  # dies with its shim
            poller = select.poll()  # the shim died before PDEATHSIG was set: the pipe is widowed
            poller.register(status_w, select.POLLERR)
            if poller.poll(0):
                os._exit(1)
        os.setsid()
        _own_stdio(stdio)
        sanitize.close_fds({0, 1, 2, *own})
        setup()
        err = {"error": "setup returned without exec"}
    except StartError as exc:
        err = {"error": str(exc), "exit_code": exc.exit_code}
    except OSError as exc:
        err = {"error": exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"}
        if exc.args and isinstance(exc.args[-1], str) and exc.strerror is None:
            err["error"] = exc.args[-1]
    except BaseException as exc:  # noqa: BLE001 - report anything, never return into the shim
        err = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        os.write(status_w, dumps(err).encode())
    finally:
        os._exit(1)


def _own_stdio(stdio):
    """Fds 0, 1 and 2 become the process's (/dev/null until a terminal is made
    in the container): not one of the shim's, whose stderr is its log."""
    if not stdio.terminal:
        stdio.dup_into_child()
        return
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)


def _join_cgroup(state):
    """Move this process (one thread: a child just forked) into its cgroups.  In
    a cgroup v1 hierarchy it writes "0" to ``tasks``, not ``cgroup.procs``: the
    kernel moves the calling thread alone without the global thread-group lock,
    whose first writer waits for an RCU grace period (6-19 ms a start, measured
    here; a single thread that moves itself cannot race a fork or an exec).
    A v2 hierarchy has no ``tasks``: ``cgroup.procs`` it is."""
    for path in (state.get("cgroup") or {}).get("procs") or ():
        tasks = os.path.join(os.path.dirname(path), "tasks")
        try:
            try:
                fd = os.open(tasks, os.O_WRONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, b"0")
            finally:
                os.close(fd)
        except OSError as exc:
            raise StartError(f"joining cgroup {os.path.dirname(path)}: {exc.strerror}") from None


def _terminal(tty_sock, size=None):
    """Open a terminal in the container's devpts, hand the master to the shim and
    make the slave our stdin, stdout, stderr and controlling terminal; ``size``
    ([rows, cols]) is set before the program runs, so its first look sees it."""
    try:
        master, slave = os.openpty()
    except OSError as exc:
        raise StartError(f"allocating a terminal in the container: {exc.strerror}") from None
    if size:
        set_winsize(slave, *size)
    socket.send_fds(tty_sock, [b"m"], [master])
    tty_sock.close()
    os.close(master)
    name = os.ttyname(slave)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    return name


def init_container(cfg, bundle, state, tty_sock, filt, staged=False):
    """The container's init: namespaces, cgroup, file system, process.
    ``staged``: forked by :func:`spawn_userns`'s stage one, which did the stdio,
    the cgroup and the user and pid namespaces."""
    if not staged:
        _join_cgroup(state)
    private = enter_namespaces(cfg)
    rootfs.setup(cfg, bundle, private, (state.get("cgroup") or {}).get("mounts") or [])
    if tty_sock is not None:
        rootfs.terminal_console(_terminal(tty_sock, state.get("console_size")))
    if "uts" in private:
        if cfg.get("hostname"):
            linux.sethostname(cfg["hostname"])
        if cfg.get("domainname"):
            linux.setdomainname(cfg["domainname"])
    if "network" in private and not _joined(cfg, "network"):
        linux.loopback_up()
    process.exec_process(cfg["process"], filt)


def init_exec(state, joins, tty_sock, filt):
    """An extra process: into the container's cgroup and namespaces, then exec."""
    _join_cgroup(state)
    for kind, fd in joins:
        if kind != "pid":
            try:
                linux.setns(fd, NS_FLAG[kind])
            except OSError as exc:
                raise StartError(f"joining the container's {kind} namespace: {exc.strerror}") from None
    for _, fd in joins:
        os.close(fd)
    if tty_sock is not None:
        _terminal(tty_sock, state.get("console_size"))
    process.exec_process(state["exec"]["process"], filt)


def _joined(cfg, kind):
    return any(ns.get("type") == kind and ns.get("path") for ns in (cfg.get("linux") or {}).get("namespaces") or ())


def enter_namespaces(cfg):
    """Join (``path``) or unshare every namespace but pid (the shim did that);
    return the set of types private to the container (new or joined)."""
    flags, joins, types = 0, [], set()
    for ns in (cfg.get("linux") or {}).get("namespaces") or ():
        kind = ns.get("type")
        if kind in ("pid", "user"):
            types.add(kind)
            continue  # made before the fork
        if kind not in linux.NAMESPACES:
            raise StartError(f"namespace type {kind!r} is not supported by the native exec driver")
        if ns.get("path"):
            if kind == "mount":
                raise StartError("joining an existing mount namespace is not supported")
            joins.append((ns["path"], kind))
        else:
            flags |= linux.NAMESPACES[kind]
        types.add(kind)
    if "mount" not in types:
        raise StartError("the native exec driver needs a mount namespace (linux.namespaces)")
    for path, kind in joins:
        _setns_path(path, {"network": "net"}.get(kind, kind))
    linux.unshare(flags)
    return types


def finish(state, code):
    """After the init exited: was it OOM-killed; remove its cgroup."""
    cg = state.get("cgroup") or {}
    if state.get("exec"):
        return {}
    oom = False
    if cg.get("oom_file"):
        try:
            with open(cg["oom_file"]) as fh:
                oom = any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0
                          for line in fh if len(line.split()) == 2)
        except (OSError, ValueError):
            pass
    runtime.remove_cgroup_dirs(cg.get("dirs") or ())
    return {"oom_killed": oom}
