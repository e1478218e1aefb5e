"""The lxc driver's half of the shim: start a container with ``lxc-start -F``,
read its init's exit status, clean up after it (stdlib only).

The shim (:mod:`supervisor`) calls :func:`spawn` with the state the driver wrote:
``lxc`` = ``{"path": lxcpath, "name": container name, "log": LXC log file,
"argv": the init's command, "env": lxc-start's environment, "umask",
"mkdirs": directories to make first, "own_pidns"}`` and ``cgroup`` =
``{"dirs": the container's cgroup directories, "lxc_dirs": its LXC monitor's,
"oom": the file the stop hook copies memory.oom_control to}``; an extra process
(``exec`` in the state) is :mod:`attach`'s.

lxc-start stays the shim's child: it is LXC's monitor, and the container's init
is its child.  Two facts come from LXC's log (level INFO), which is truncated
at each start: ``post_start: Started "prog" with pid "N"`` is written once the
init has exec'd the program (liblxc waits for the close-on-exec sync socket),
which gives the init's host pid; ``Child <N> ended on error (E)`` or ``...
ended on signal NAME(S)`` is the init's wait status (absent for exit 0), which
becomes the exit code (E, or 128+S).

lxc-start gets no fd but its stdio and every signal at its default with an
empty mask: LXC passes its own mask and dispositions on to the container's
init (it restores the mask it started with and resets no disposition), so a
daemon started under ``nohup`` would otherwise give every container SIGHUP
and SIGQUIT ignored.
"""

import fcntl
import os
import select
import struct
import termios
import time

import _ctypes
import _signal as signal

import runtime
import sanitize
from supervisor import Child, StartError

LXC_START = "/usr/bin/lxc-start"
LOCK_ROOT = "/run/lxc/lock"  # the driver's too: it takes this directory's flock to remove lock dirs
START_TIMEOUT = 25.0  # seconds; the daemon gives up after 30
PR_SET_PDEATHSIG = 1
# generic lines of a failed start that say nothing about why
NOISE = ("Failed to spawn container", "The container failed to start", "An error occurred in another process",
         "Additional information can be obtained", "Failed to run lxc.hook.stop", "Failed to run \"lxc.hook.stop\"")


class _CInt(_ctypes._SimpleCData):
    _type_ = "i"


class _CULong(_ctypes._SimpleCData):
    _type_ = "L"


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _CInt


class _Libc:
    _handle = _ctypes.dlopen("libc.so.6", os.RTLD_NOW)


_prctl = _Func(("prctl", _Libc()))  # type: ignore[arg-type]  # _Libc stands in for a CDLL


def die_with_parent(parent):
    """PR_SET_PDEATHSIG SIGKILL; exit now if ``parent`` is already gone.  (In a
    pid namespace below its parent's, a process sees its parent as pid 0.)"""
    _prctl(PR_SET_PDEATHSIG, _CULong(signal.SIGKILL), _CULong(0), _CULong(0), _CULong(0))
    if os.getppid() not in (parent, 0):
        os._exit(1)


# -------------------------------------------------------------------- start
def spawn(state, stdio):
    if state.get("exec"):
        import attach  # liblxc through ctypes: only extra processes pay for it

        return attach.spawn(state, stdio)
    lx = state["lxc"]
    remove_cgroups(state)  # a crashed earlier run must not make LXC refuse the cgroup
    with open(lx["log"], "w"):
        pass
    for stale in ((state.get("cgroup") or {}).get("oom"), _hook_error(lx)):
        try:
            os.unlink(stale or "")
        except OSError:
            pass
    for d in lx.get("mkdirs") or ():
        try:
            os.makedirs(d, 0o755, exist_ok=True)
        except OSError:
            pass  # LXC reports the chdir
    master = slave = None
    if stdio.terminal:
        master, slave = os.openpty()
        _raw(slave)  # the container's own terminal does the line discipline, once
        if state.get("console_size"):  # LXC copies it to the container's console at start
            rows, cols = state["console_size"]
            fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    shim = os.getpid()
    guard = _hold_lock_root()
    pid = os.fork()
    if pid == 0:
        _child(shim, stdio, slave, lx)
    if slave is not None:
        os.close(slave)
    try:
        init = _wait_started(pid, lx, master, guard)
    except BaseException:
        if master is not None:
            os.close(master)
        remove_cgroups(state)
        raise
    return Child(pid, master, own_pidns=bool(lx.get("own_pidns")), init_pid=init)


def _hold_lock_root():
    """A shared flock on LXC's lock root, for :func:`_wait_started` to drop once
    lxc-start has made its lock directory ``LOCK_ROOT/<lxcpath>/``.  The driver
    removes a deleted container's lock directory, and the parents that became
    empty, under the exclusive flock: without it, it could remove a parent
    between two of lxc-start's mkdirs, and lxc-start would exit 1 with an
    empty log, having loaded no config."""
    os.makedirs(LOCK_ROOT, 0o755, exist_ok=True)
    fd = os.open(LOCK_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _raw(fd):
    """cfmakeraw(3): lxc-start passes bytes between this terminal and the console."""
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = termios.tcgetattr(fd)
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP | termios.INLCR | termios.IGNCR
               | termios.ICRNL | termios.IXON)
    oflag &= ~(termios.OPOST | termios.ONLCR)  # (lxc-start sets OPOST|ONLCR again: see _wait_started)
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])


def _child(shim, stdio, slave, lx):
    """In the forked child: become lxc-start; never returns."""
    try:
        die_with_parent(shim)  # the container dies with its shim, as LXC's init dies with lxc-start
        os.setsid()
        if slave is not None:
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)  # lxc-start forwards SIGWINCH from its terminal
            for fd in (0, 1, 2):
                os.dup2(slave, fd)
        else:
            stdio.dup_into_child()
        sanitize.close_fds()
        sanitize.default_signals()
        os.umask(lx.get("umask", 0o022))
        os.chdir("/")
        os.execve(LXC_START, ["lxc-start", "-F", "-q", "-n", lx["name"], "-P", lx["path"], "--", *lx["argv"]],
                  lx["env"])
    except BaseException:  # noqa: BLE001 - never return into the shim
        pass
    os._exit(127)


def _wait_started(pid, lx, master=None, guard=None):
    """Wait for LXC's ``Started ... with pid`` line; return the init's pid, or
    raise StartError with LXC's reason once lxc-start has exited.

    The log is read every millisecond.  (Watching it with inotify wakes the
    shim for each of LXC's ~30 log lines; measured, that makes starts twice as
    slow on two CPUs, the wake-ups preempting lxc-start.)  With a terminal
    (``master``) it is watched all the same: lxc-start sets its terminal to
    ONLCR before the container's init runs, and the console it forwards has
    ONLCR too, so every newline would become "\\r\\r\\n"; ONLCR must go off
    again after that and before lxc-start forwards anything, which it starts
    doing once the init has exec'd (LXC logs lines in between).  ``guard``
    (:func:`_hold_lock_root`) is closed once LXC has logged a line: it logs
    only after taking the container's lock."""
    pidfd = os.pidfd_open(pid)
    fd = os.open(lx["log"], os.O_RDONLY | os.O_CLOEXEC)
    watch = _inotify(lx["log"]) if master is not None else None
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch, select.POLLIN)
    text = b""
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            text += _read_all(fd)
            if text and guard is not None:
                os.close(guard)
                guard = None
            if master is not None:
                _no_onlcr(master)
            init = _started(text)
            if init is not None:
                return init
            events = dict(poller.poll(1))
            if watch in events:
                _drain(watch)
            if pidfd in events:
                text += _read_all(fd)
                init = _started(text)
                if init is not None:  # started, and already over (`true`): lxc-start logged it last;
                    return init  # the supervisor reaps lxc-start and reads the exit as for any end
                status = os.waitpid(pid, 0)[1]
                raise _failure(text, lx["argv"], status, lx)
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                raise StartError(f"lxc-start did not start the container within {START_TIMEOUT:.0f}s")
    finally:
        for f in (fd, pidfd, watch, guard):
            if f is not None:
                os.close(f)


IN_MODIFY, IN_NONBLOCK, IN_CLOEXEC = 0x2, 0o4000, 0o2000000
_inotify_init1 = _Func(("inotify_init1", _Libc()))  # type: ignore[arg-type]
_inotify_add_watch = _Func(("inotify_add_watch", _Libc()))  # type: ignore[arg-type]


def _inotify(path):
    """An inotify fd that is readable when ``path`` was written, or None."""
    fd = _inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        return None
    if _inotify_add_watch(fd, os.fsencode(path), IN_MODIFY) < 0:
        os.close(fd)
        return None
    return fd


def _drain(fd):
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _read_all(fd):
    out = b""
    while True:
        data = os.read(fd, 65536)
        if not data:
            return out
        out += data


def _no_onlcr(fd):
    attrs = termios.tcgetattr(fd)
    if attrs[1] & termios.ONLCR:
        attrs[1] &= ~termios.ONLCR
        termios.tcsetattr(fd, termios.TCSANOW, attrs)


def _started(text):
    at = text.find(b"post_start:")
    if at < 0:
        return None
    line = text[at:text.find(b"\n", at)] if text.find(b"\n", at) >= 0 else text[at:]
    cut = line.rfind(b'" with pid "')
    if cut < 0 or not line.endswith(b'"'):
        return None  # not all of the line is written yet
    digits = line[cut + len(b'" with pid "'):-1]
    return int(digits) if digits.isdigit() else None


def _messages(text, level=b" ERROR "):
    out = []
    for raw in text.splitlines():
        if level not in raw:
            continue
        line = raw.decode(errors="replace")
        parts = line.split(" - ", 2)  # "... ERROR    start - file.c:func:N - message"
        msg = parts[2] if len(parts) == 3 else line
        if not any(n in msg for n in NOISE):
            out.append(msg.strip())
    return out


EXEC_ERRORS = {"No such file or directory": 127, "Permission denied": 126, "Exec format error": 126,
               "Operation not permitted": 126, "Is a directory": 126}


def _hook_error(lx):
    return os.path.join(os.path.dirname(lx["log"]), "hook-error")


def _failure(text, argv, status, lx=None):
    """The StartError for a failed lxc-start (Docker's words for exec failures)."""
    if lx is not None:
        try:
            with open(_hook_error(lx)) as fh:
                said = fh.read().strip()
        except OSError:
            said = ""
        if said:
            return StartError(said)
    msgs = _messages(text)
    for msg in msgs:
        if ' - Failed to exec "' in msg:
            why = msg.split(" - Failed to exec ", 1)[0]
            prog = argv[0]
            if why == "No such file or directory":
                if "/" in prog:
                    return StartError(f'exec: "{prog}": stat {prog}: no such file or directory', 127)
                return StartError(f'exec: "{prog}": executable file not found in $PATH', 127)
            return StartError(f'exec: "{prog}": {why.lower()}', EXEC_ERRORS.get(why))
    if msgs:
        return StartError("lxc-start: " + "; ".join(dict.fromkeys(msgs)))
    tail = _messages(text, b" WARN ") or [line.decode(errors="replace").strip()
                                          for line in text.splitlines()[-3:] if line.strip()]
    return StartError(f"lxc-start exited ({os.waitstatus_to_exitcode(status)}) without starting the container"
                      + (f" (its log ends: {'; '.join(tail[-3:])})" if tail else " (its log is empty)"))


# ------------------------------------------------------------------- finish
def exit_code(text):
    """The init's exit code from LXC's log, or None if LXC logged none (exit 0)."""
    at = text.rfind(b"> ended on ")
    if at < 0:
        return None
    line = text[at:].split(b"\n", 1)[0]
    kind = line[len(b"> ended on "):].split(b" ", 1)[0].split(b"(", 1)[0]
    num = line[line.rfind(b"(") + 1:line.rfind(b")")]
    if not num.isdigit():
        return None
    return int(num) if kind == b"error" else 128 + int(num)


def finish(state, code):
    """After lxc-start exited: the init's exit code and OOM kills; remove the cgroups."""
    if state.get("exec"):
        return {}
    lx, cg = state["lxc"], state.get("cgroup") or {}
    try:
        with open(lx["log"], "rb") as fh:
            real = exit_code(fh.read())
    except OSError:
        real = None
    if real is None:
        real = 0 if code == 0 else code
    oom = False
    try:
        with open(cg["oom"]) as fh:
            oom = any(line.split()[0] == "oom_kill" and int(line.split()[1]) > 0
                      for line in fh if len(line.split()) == 2)
    except (OSError, KeyError, ValueError, TypeError):
        pass
    remove_cgroups(state)
    return {"exit_code": real, "oom_killed": oom}


def remove_cgroups(state, timeout=2.0):
    """Remove the container's cgroups (LXC does when the container stops cleanly)
    and its monitor's, killing what is still in them; children first."""
    cg = state.get("cgroup") or {}
    runtime.remove_cgroup_dirs(list(cg.get("dirs") or ()) + list(cg.get("lxc_dirs") or ()), timeout)
