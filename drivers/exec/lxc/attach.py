"""An extra process in a running container, through liblxc's attach (shim side).

The ``lxc-attach`` tool cannot set a working directory (it uses its caller's),
supplementary groups or an exact environment (it adds ``container=lxc`` and a
default PATH), so the shim calls liblxc's ``attach`` itself through ``ctypes``,
as LXD's forkexec does in C: ``initial_cwd``, ``uid``/``gid``, ``groups``, a
cleared environment, the stdio fds, and the container's namespaces, cgroup,
capabilities (its ``lxc.cap.keep``, unless the exec is privileged),
no_new_privs and seccomp profile, all from the container's LXC config.

liblxc forks an intermediate that joins the namespaces and clones the attached
process with CLONE_PARENT, so that process is the shim's own child (the shim
waits for it: the exit code is exact).  In it liblxc calls back into Python
(``run`` in :func:`spawn`): it closes every fd it does not need (liblxc
passes all of the shim's on: the exec log, the report pipe), waits until the
shim has applied the rlimits,
opens the terminal inside the container if one was asked for, checks the
working directory (liblxc only warns), then ``execve``s the program with
exactly the OCI environment, reporting a failure on a close-on-exec status
pipe (end of file there means the program runs), as the native driver does.

The attached process runs liblxc and then Python inside the container, with
the container's capabilities and uid, before it execs: it must be
non-dumpable all that time, or container root could trace it and reach the
shim's fds through it.  liblxc does not do that, so it inherits the flag
from the shim (``supervisor.run`` sets it) and says so again first thing.

State: ``exec`` = ``{"lxc": {"path", "name"}, "process": OCI process,
"drop_caps": bool, "pid": the container's init}``.
"""

import ctypes
import fcntl
import os
import resource
import socket
import struct
import termios

from supervisor import Child, StartError, dumps, loads

import sanitize
from lxcspawn import die_with_parent
from runtime import DEFAULT_PATH, INFINITY, RLIMITS, environment, exec_failure, find_executable


# attach_options.h
LXC_ATTACH_MOVE_TO_CGROUP = 0x00000001
LXC_ATTACH_DROP_CAPABILITIES = 0x00000002
LXC_ATTACH_SET_PERSONALITY = 0x00000004
LXC_ATTACH_LSM_EXEC = 0x00000008
LXC_ATTACH_NO_NEW_PRIVS = 0x00040000
LXC_ATTACH_SETGROUPS = 0x00200000
LXC_ATTACH_CLEAR_ENV = 1
LXC_ATTACH_DETECT_PERSONALITY = -1
EBADF = 9

P = ctypes.c_void_p


class Groups(ctypes.Structure):
    _fields_ = [("size", ctypes.c_size_t), ("list", ctypes.POINTER(ctypes.c_uint32))]


class Options(ctypes.Structure):
    """lxc_attach_options_t (LXC >= 4.0.9)."""
    _fields_ = [("attach_flags", ctypes.c_int), ("namespaces", ctypes.c_int), ("personality", ctypes.c_long),
                ("initial_cwd", ctypes.c_char_p), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                ("env_policy", ctypes.c_int), ("extra_env_vars", ctypes.POINTER(ctypes.c_char_p)),
                ("extra_keep_env", ctypes.POINTER(ctypes.c_char_p)), ("stdin_fd", ctypes.c_int),
                ("stdout_fd", ctypes.c_int), ("stderr_fd", ctypes.c_int), ("log_fd", ctypes.c_int),
                ("lsm_label", ctypes.c_char_p), ("groups", Groups)]


# struct lxc_container up to ``attach`` (lxccontainer.h; members are only ever appended)
_FUNCS_BEFORE_ATTACH = (
    "is_defined", "state", "is_running", "freeze", "unfreeze", "init_pid", "load_config", "start", "startl",
    "stop", "want_daemonize", "want_close_all_fds", "config_file_name", "wait", "set_config_item", "destroy",
    "save_config", "create", "createl", "rename", "reboot", "shutdown", "clear_config", "clear_config_item",
    "get_config_item", "get_running_config_item", "get_keys", "get_interfaces", "get_ips", "get_cgroup_item",
    "set_cgroup_item", "get_config_path", "set_config_path", "clone", "console_getfd", "console",
)


class Container(ctypes.Structure):
    # (typeshed's _fields_ type does not take this list of mixed field types)
    _fields_ = [  # type: ignore[assignment]
                ("name", ctypes.c_char_p), ("configfile", ctypes.c_char_p), ("pidfile", ctypes.c_char_p),
                ("slock", P), ("privlock", P), ("numthreads", ctypes.c_int), ("lxc_conf", P),
                ("error_string", ctypes.c_char_p), ("error_num", ctypes.c_int), ("daemonize", ctypes.c_bool),
                ("config_path", ctypes.c_char_p)] + [(f, P) for f in _FUNCS_BEFORE_ATTACH] + [("attach", P)]


EXEC_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, P)
ATTACH_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Container), EXEC_FUNC, P, ctypes.POINTER(Options),
                               ctypes.POINTER(ctypes.c_int))


def _liblxc():
    lib = ctypes.CDLL("liblxc.so.1", use_errno=True)
    lib.lxc_get_version.restype = ctypes.c_char_p
    version = lib.lxc_get_version().decode()
    major, minor, patch = (int(x) if x.isdigit() else 0 for x in (version.split(".") + ["0", "0"])[:3])
    if (major, minor, patch) < (4, 0, 9):
        raise StartError(f"liblxc {version} is too old for the lxc exec driver (attach needs 4.0.9 or newer)")
    lib.lxc_container_new.restype = ctypes.POINTER(Container)
    lib.lxc_container_new.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    lib.lxc_container_put.argtypes = [ctypes.POINTER(Container)]
    return lib


def spawn(state, stdio):
    ex = state["exec"]
    proc = ex["process"]
    user = proc.get("user") or {}
    lib = _liblxc()
    c = lib.lxc_container_new(ex["lxc"]["name"].encode(), ex["lxc"]["path"].encode())
    if not c:
        raise StartError("liblxc cannot load the container's configuration")
    status_r, status_w = os.pipe()
    go_r, go_w = os.pipe()
    parent_sock = child_sock = None
    if stdio.terminal:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    fds = [null if fd is None else fd for fd in stdio.child]
    shim = os.getpid()

    def run(_payload):
        """In the attached process, inside the container: never returns."""
        try:
            sanitize.undumpable()
            sanitize.close_fds({0, 1, 2, status_w, go_r, *([child_sock.fileno()] if child_sock is not None else [])})
            die_with_parent(shim)
            os.read(go_r, 1)  # the shim has set the rlimits
            os.close(go_r)
            os.setsid()
            if child_sock is not None:
                _terminal(child_sock, state.get("console_size"))
            cwd = proc.get("cwd") or "/"
            try:  # liblxc only warns when it cannot
                os.chdir(cwd)
            except OSError as exc:
                raise StartError(f'chdir to cwd ("{cwd}") set in config.json failed: '
                                 f'{exc.strerror.lower()}') from None
            os.umask(0o022 if user.get("umask") is None else int(user["umask"]))
            sanitize.default_signals()
            env = environment(proc)
            exe = find_executable(proc["args"][0], env.get("PATH", DEFAULT_PATH))
            try:
                os.execve(exe, proc["args"], env)
            except OSError as exc:
                raise exec_failure(exc, proc["args"][0], exe) from None
        except StartError as exc:
            err = {"error": str(exc), "exit_code": exc.exit_code}
        except OSError as exc:
            err = {"error": exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"}
        except BaseException as exc:  # noqa: BLE001 - report anything
            err = {"error": f"{type(exc).__name__}: {exc}"}
        try:
            os.write(status_w, dumps(err).encode())
        finally:
            os._exit(1)

    groups = [int(g) for g in user.get("additionalGids") or ()]
    glist = (ctypes.c_uint32 * max(len(groups), 1))(*groups)
    flags = LXC_ATTACH_MOVE_TO_CGROUP | LXC_ATTACH_SET_PERSONALITY | LXC_ATTACH_LSM_EXEC | LXC_ATTACH_SETGROUPS
    if ex.get("drop_caps", True):
        flags |= LXC_ATTACH_DROP_CAPABILITIES
    if proc.get("noNewPrivileges"):
        flags |= LXC_ATTACH_NO_NEW_PRIVS
    opts = Options(attach_flags=flags, namespaces=-1, personality=LXC_ATTACH_DETECT_PERSONALITY,
                   initial_cwd=(proc.get("cwd") or "/").encode(), uid=int(user.get("uid", 0)),
                   gid=int(user.get("gid", 0)), env_policy=LXC_ATTACH_CLEAR_ENV, stdin_fd=fds[0],
                   stdout_fd=fds[1], stderr_fd=fds[2], log_fd=-EBADF, groups=Groups(len(groups), glist))
    callback = EXEC_FUNC(run)
    pid = ctypes.c_int(0)
    try:
        attach = ATTACH_FUNC(c.contents.attach)
        ret = attach(c, callback, None, ctypes.byref(opts), ctypes.byref(pid))
    finally:
        for fd in (status_w, go_r, null):
            os.close(fd)
        if child_sock is not None:
            child_sock.close()
        lib.lxc_container_put(c)
    if ret < 0 or pid.value <= 0:
        os.close(go_w)
        os.close(status_r)
        raise StartError("liblxc could not attach to the container (is it running?)")
    master = None
    try:
        _limits(pid.value, proc)
        os.write(go_w, b"g")
        os.close(go_w)
        go_w = None
        if parent_sock is not None:
            master = _receive_master(parent_sock)
        chunks = []
        while True:
            data = os.read(status_r, 65536)
            if not data:
                break
            chunks.append(data)
        if chunks:
            try:
                err = loads(b"".join(chunks))
            except ValueError:
                err = {"error": b"".join(chunks).decode(errors="replace")}
            raise StartError(err.get("error") or "exec failed", err.get("exit_code"))
        if parent_sock is not None and master is None:
            raise StartError("the exec's terminal was not handed over")
    except BaseException:
        if go_w is not None:
            os.close(go_w)
        try:
            os.kill(pid.value, 9)
        except OSError:
            pass
        os.waitpid(pid.value, 0)
        if master is not None:
            os.close(master)
        raise
    finally:
        os.close(status_r)
        if parent_sock is not None:
            parent_sock.close()
    return Child(pid.value, master, own_pidns=False)


def _limits(pid, proc):
    """The OCI rlimits and oom_score_adj of the exec, set from outside (the shim
    still has the privileges the attached process has dropped)."""
    for r in proc.get("rlimits") or ():
        soft, hard = (resource.RLIM_INFINITY if v >= INFINITY else v for v in (r["soft"], r["hard"]))
        try:
            resource.prlimit(pid, RLIMITS[r["type"]], (soft, hard))
        except (OSError, ValueError) as exc:
            raise StartError(f"setting {r['type']} to {r['soft']}:{r['hard']} failed: {exc}") from None
    if proc.get("oomScoreAdj") is not None:
        try:
            with open(f"/proc/{pid}/oom_score_adj", "w") as fh:
                fh.write(str(int(proc["oomScoreAdj"])))
        except OSError as exc:
            raise StartError(f"setting oom_score_adj to {proc['oomScoreAdj']}: {exc.strerror}") from None


def _terminal(sock, size):
    """A terminal in the container's devpts: the master to the shim, the slave
    our stdin/stdout/stderr and controlling terminal."""
    try:
        master, slave = os.openpty()
    except OSError as exc:
        raise StartError(f"allocating a terminal in the container: {exc.strerror}") from None
    if size:
        set_winsize(master, *size)
    socket.send_fds(sock, [b"m"], [master])
    sock.close()
    os.close(master)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)
    os.close(slave)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _receive_master(sock):
    try:
        _, fds, _, _ = socket.recv_fds(sock, 16, 1)
    except OSError:
        return None
    return fds[0] if fds else None


def set_winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))
