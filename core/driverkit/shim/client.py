"""The daemon's half of the shim kit: start a shim, read what it recorded, wait
for it, signal its process, talk to its control socket.

A driver builds the command line of its fork server (``python -E -S -c ...``
running :func:`dockyard.driverkit.shim.zygote.main` with its own ``spawn``), writes
``STATE_DIR/state.json`` and calls :func:`start`; afterwards
every question about the process is answered from ``STATE_DIR`` alone, so a
restarted daemon knows what the old one knew.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.errors import ExecError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from dockyard.hookspecs.exec import State, Status

START_TIMEOUT = 30.0  # seconds; a healthy start takes milliseconds
HUB_RESTART_WAIT = 5.0  # seconds a hub's exit fd waits for the keeper to start a new hub


def read_json(path: str) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):  # missing, or half-written by a crash
        return None


def write_json(path: str, data: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data))  # dumps: the C encoder (dump() encodes in Python)
    os.replace(tmp, path)


def now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%06dZ" % (ns % 10**9 // 1000)


def state(status: Status, pid: int | None = None, exit_code: int | None = None, started_at: str | None = None,
          finished_at: str | None = None, error: str = "", oom: bool = False) -> State:
    """The exec hook specs' state dict."""
    return {"status": status, "pid": pid, "exit_code": exit_code, "oom_killed": oom,
            "started_at": started_at, "finished_at": finished_at, "error": error}


def proc_stat(pid: int) -> tuple[str, int] | None:
    """``(state letter, start time in clock ticks)`` of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return fields[0].decode(), int(fields[19])


def alive(pid: int | None, start: int | None) -> bool:
    """True if ``pid`` runs (not a zombie) and started at ``start`` (guards pid reuse)."""
    st = proc_stat(pid) if pid else None
    return st is not None and st[0] not in "ZX" and (start is None or st[1] == start)


class Zygote:
    """The daemon's end of a :mod:`.zygote` fork server, started on first use and
    again if it died.  ``cmd`` runs ``zygote.main(sys.argv, spawn, finish)``."""

    def __init__(self, cmd: Sequence[str], log_path: str) -> None:
        self.cmd, self.log_path = cmd, log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Start it now (it imports for a few tens of ms), off the first start's path."""
        with self._lock:
            self._ensure()

    def _ensure(self) -> tuple[subprocess.Popen[bytes], socket.socket]:
        """The running fork server and the daemon's end of its socket."""
        if self.proc is not None and self.proc.poll() is None and self.sock is not None:
            return self.proc, self.sock
        if self.sock is not None:
            self.sock.close()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            with open(self.log_path, "ab") as errlog:
                self.proc = subprocess.Popen([*self.cmd, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                             start_new_session=True, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.DEVNULL, stderr=errlog, cwd="/")
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours
        return self.proc, ours

    def launch(self, sdir: str) -> int:
        """Have a shim forked for ``sdir``; return the read end of its report pipe."""
        rfd, wfd = os.pipe()
        try:
            with self._lock:
                for attempt in (1, 2):
                    proc, sock = self._ensure()
                    try:
                        socket.send_fds(sock, [os.fsencode(sdir)], [wfd])
                        break
                    except OSError:
                        if attempt == 2:
                            raise
                        proc.kill()  # wedged or gone: a new one
                        proc.wait()
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        return rfd

    def close(self) -> None:
        with self._lock:
            if self.sock is not None:
                self.sock.close()  # it exits on end of file
                self.sock = None
            if self.proc is not None:
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()


class Direct:
    """A launcher without a fork server: a fresh ``cmd + [STATE_DIR, REPORT_FD]``
    (``supervisor.main``) per shim; slower and bigger than a :class:`Zygote`."""

    def __init__(self, cmd: Sequence[str]) -> None:
        self.cmd = list(cmd)

    def launch(self, sdir: str) -> int:
        rfd, wfd = os.pipe()
        try:
            with open(os.path.join(sdir, "shim.log"), "ab") as errlog:
                subprocess.Popen([*self.cmd, sdir, str(wfd)], pass_fds=(wfd,), start_new_session=True,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errlog, cwd="/")
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        return rfd


class Launcher(Protocol):
    """What starts a shim (:class:`Zygote`, :class:`Direct`, the hub's ``hubclient.Hub``)."""

    def launch(self, sdir: str) -> int: ...


def start(launcher: Launcher | list[str] | tuple[str, ...], sdir: str, what: str) -> int:
    """Start the shim of ``sdir`` through ``launcher`` (a :class:`Zygote`, a
    :class:`Direct`, or a command line for one) and wait for its report; return
    the pid of the process.  Raises ``ExecError`` (with the exit code the process
    could not be started with) and leaves nothing running on failure.  ``what``
    names the process in messages ("container abc")."""
    if isinstance(launcher, (list, tuple)):
        launcher = Direct(launcher)
    try:
        rfd = launcher.launch(sdir)
    except OSError as exc:
        raise ExecError(f"{what}: cannot start the shim: {exc}") from None
    chunks: list[bytes] = []
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not _readable(rfd, left):
                _kill_shim(sdir)  # the process dies with it (PDEATHSIG)
                raise ExecError(f"{what}: the process did not start within {START_TIMEOUT:.0f}s")
            data = os.read(rfd, 65536)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(rfd)
    try:
        msg = json.loads(b"".join(chunks))
    except ValueError:
        msg = {"error": f"the shim exited without reporting; see {sdir}/shim.log"}
    if "pid" in msg:
        return msg["pid"]
    raise ExecError(f"{what}: {msg.get('error') or 'start failed'}", exit_code=msg.get("exit_code"))


def _kill_shim(sdir: str) -> None:
    try:
        with open(os.path.join(sdir, "shim.pid")) as fh:
            pid, start = (int(v) for v in fh.read().split())
    except (OSError, ValueError):
        return
    if alive(pid, start):
        os.kill(pid, 9)


def current(sdir: str, what: str) -> State:
    """The state dict of the process supervised in ``sdir`` (cheap)."""
    ext = read_json(os.path.join(sdir, "exit.json"))
    run = read_json(os.path.join(sdir, "running.json"))
    if ext is None and run is None:
        return state("created")
    started = run.get("started_at") if run else None
    if ext is None and (alive(run["shim_pid"], run.get("shim_start")) or kept(run)):
        return state("running", pid=run["pid"], started_at=started)
    ext = ext or read_json(os.path.join(sdir, "exit.json"))  # it may just have ended
    if ext is None:
        return state("stopped", exit_code=255, started_at=started, finished_at=now(),
                     error=f"{what}: its shim died without recording an exit")
    return state("stopped", exit_code=ext["exit_code"], started_at=started,
                 finished_at=ext.get("finished_at"), oom=bool(ext.get("oom_killed")))


def kept(run: dict[str, Any]) -> bool:
    """Whether the hub's keeper of ``running.json``'s process still runs: the
    process is supervised (or its exit kept) while a new hub is being started."""
    return bool(run.get("hub")) and alive(run.get("keeper_pid"), run.get("keeper_start"))


def _readable(fd: int, timeout: float | None) -> bool:
    """Whether ``fd`` becomes readable within ``timeout`` seconds (``None``: no
    limit).  poll(2), not select(2): a daemon with a thousand containers holds fds
    past 1023, which select() cannot watch ("filedescriptor out of range")."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))


def exit_fd(sdir: str) -> int | None:
    """A pidfd of the shim of ``sdir``: readable once the shim has ended (its
    process ended, the output written, ``exit.json`` recorded); ``None`` if it
    has ended already.  The caller closes it."""
    run = read_json(os.path.join(sdir, "running.json"))
    if run is None or os.path.exists(os.path.join(sdir, "exit.json")):
        return None
    if run.get("hub"):
        return _hub_exit_fd(sdir, run)
    try:
        pidfd = os.pidfd_open(run["shim_pid"])
    except ProcessLookupError:
        return None
    st = proc_stat(run["shim_pid"])  # checked after the pidfd pins the process
    if st is None or st[0] in "ZX" or st[1] != run.get("shim_start"):
        os.close(pidfd)
        return None
    return pidfd


def _hub_exit_fd(sdir: str, run: dict[str, Any]) -> int | None:
    """A connection to the hub's ``wait``: it closes once the exit is recorded
    (or the hub died).  While the keeper starts a new hub, retried."""
    deadline = time.monotonic() + HUB_RESTART_WAIT
    while True:
        try:
            return connect(sdir, "wait", "").detach()
        except ExecError:
            pass
        if os.path.exists(os.path.join(sdir, "exit.json")) or time.monotonic() > deadline:
            return None
        if not (alive(run["shim_pid"], run.get("shim_start")) or kept(run)):
            return None  # no hub and no keeper: current() says how it ended
        time.sleep(0.005)
        run = read_json(os.path.join(sdir, "running.json"))
        if run is None:
            return None  # recorded and deleted meanwhile (docker rm -f)


def wait(sdir: str, timeout: float | None) -> bool:
    """Block until the shim of ``sdir`` ended (True) or ``timeout`` passed."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        fd = exit_fd(sdir)
        if fd is None:
            return True
        try:
            if not _readable(fd, None if deadline is None else max(0.0, deadline - time.monotonic())):
                return False
        finally:
            os.close(fd)
        run = read_json(os.path.join(sdir, "running.json"))
        if not (run and run.get("hub")) or os.path.exists(os.path.join(sdir, "exit.json")):
            return True
        time.sleep(0.005)  # the hub went before the end (or dropped us unanswered): look again


def kill(sdir: str, signal: int, what: str) -> None:
    """Send ``signal`` to the supervised process; nothing if it has ended."""
    run = read_json(os.path.join(sdir, "running.json"))
    if run is None:
        raise ExecError(f"{what} is not running (never started)")
    if os.path.exists(os.path.join(sdir, "exit.json")) or not alive(run["pid"], run.get("pid_start")):
        return
    try:
        os.kill(run["pid"], int(signal))
    except ProcessLookupError:
        pass
    except OSError as exc:
        raise ExecError(f"{what}: kill {signal}: {exc.strerror}") from None


def connect(sdir: str, request: str, what: str) -> socket.socket:
    """Open the shim's control socket and send ``request`` (one line); return the
    connected socket once the shim said ``ok``."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    dirfd = None
    try:
        dirfd = os.open(sdir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        sock.settimeout(10)
        sock.connect(f"/proc/self/fd/{dirfd}/control.sock")  # short, whatever sdir's length
        sock.sendall(request.encode() + b"\n")
        answer = b""
        while not answer.endswith(b"\n"):
            data = sock.recv(1)
            if not data:
                break
            answer += data
    except OSError as exc:
        sock.close()
        raise ExecError(f"{what} is not running ({exc.strerror or exc})") from None
    finally:
        if dirfd is not None:
            os.close(dirfd)
    text = answer.decode(errors="replace").strip()
    if text != "ok":
        sock.close()
        raise ExecError(f"{what}: {text[6:] if text.startswith('error ') else text or 'no answer from the shim'}")
    sock.settimeout(None)
    return sock


def attach_stdin(sdir: str, what: str) -> socket.socket:
    return connect(sdir, "stdin", what)


def resize(sdir: str, height: int, width: int, what: str) -> None:
    connect(sdir, f"resize {int(height)} {int(width)}", what).close()
