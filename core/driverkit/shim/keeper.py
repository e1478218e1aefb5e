"""The hub's keeper: what a crash of the hub must not lose (stdlib only).

With the exec option ``supervisor = "hub"`` one process, the hub
(:mod:`hub`), supervises every container of a driver instead of a shim each.
The keeper is its parent, and holds what a SIGKILL of the hub would otherwise
take with it:

- **the exit statuses.**  The keeper is a child subreaper.  Containers are the
  hub's children (it is a subreaper too, of its stagers' orphans); when the hub
  dies they become the keeper's, which reaps them and writes each status to
  ``HOME/reaped/PID-START`` (START: the process's start time, against pid
  reuse) before telling the hub, so that none is lost while no hub runs;
- **the streams.**  The hub hands the keeper a copy of every container's
  output pipes, stdin and terminal (``hold``) and takes them back (``drop``)
  once the exit is recorded: a container writing while no hub runs blocks on
  a full pipe, it is never killed by SIGPIPE or a hung-up terminal;
- **the hub itself**: the keeper starts it, and again when it dies, giving the
  new hub every held container (``held`` messages, then ``ready``), which it
  adopts: it rebinds their control sockets and reads on where the old one stopped.

Run as ``python -E -S -c "...; keeper.main(sys.argv, spawn, finish)" HOME``; it
detaches (its own session, reparented away from the daemon) and exits when its
hub exits on purpose: no container held and no daemon connected.  The keeper
does no parsing of container data and no I/O on the containers' behalf: it is
small enough to be trusted not to crash.  Messages on the hub's socket (a
``SOCK_SEQPACKET`` pair) are JSON objects, with fds as ``SCM_RIGHTS``.
"""

import os
import select
import socket
import sys
import time

import _signal as signal

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from . import hub
    from ._minijson import dumps, loads, write_json
    from .sanitize import subreaper, undumpable
    from .supervisor import proc_start
else:  # in a keeper: the kit's directory is on sys.path
    import hub
    from _minijson import dumps, loads, write_json
    from sanitize import subreaper, undumpable
    from supervisor import proc_start
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._spawning import Finish, Spawn

RESTART_PAUSE = 1.0  # seconds between restarts of a hub that died within one
MAX_FDS = 8  # fds one message may carry


def reaped_path(home: str, pid: int, start: "int | None") -> str:
    return os.path.join(home, "reaped", f"{pid}-{start}")


def main(argv: "list[str]", spawn: "Spawn", finish: "Finish | None" = None) -> "NoReturn":
    home = os.path.abspath(argv[1])
    if os.fork():
        os._exit(0)  # the daemon waits for this; the keeper lives on, reparented to init
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    log = os.open(os.path.join(home, "hub.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for target, fd in ((0, null), (1, log), (2, log)):
        os.dup2(fd, target)
    os.close(null)
    os.close(log)
    os.chdir("/")
    code = 1
    try:
        undumpable()
        subreaper()
        os.makedirs(os.path.join(home, "reaped"), 0o700, exist_ok=True)
        code = Keeper(home, spawn, finish).run()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


class Keeper:
    def __init__(self, home: str, spawn: "Spawn", finish: "Finish | None") -> None:
        self.home, self.spawn, self.finish = home, spawn, finish
        self.held: "dict[str, tuple[dict[str, Any], list[int]]]" = {}  # state dir -> (meta, fds)
        self.hub_pid = 0
        self.sock: "socket.socket | None" = None
        self.started = 0.0
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so that set_wakeup_fd hears it
        signal.set_wakeup_fd(self.wake_w)

    def run(self) -> int:
        with open(os.path.join(self.home, "keeper.pid"), "w") as fh:
            fh.write(f"{os.getpid()} {proc_start(os.getpid())}\n")
        self.start_hub()
        while True:
            poller = select.poll()  # two fds, and the hub's changes with each hub
            poller.register(self.wake_r, select.POLLIN)
            if self.sock is not None:
                poller.register(self.sock.fileno(), select.POLLIN)
            for fd, _ in poller.poll():
                if fd == self.wake_r:
                    while True:
                        try:
                            os.read(self.wake_r, 4096)
                        except BlockingIOError:
                            break
                    if self.reap():
                        return 0
                elif self.sock is not None and fd == self.sock.fileno():
                    if not self.message():
                        self.sock.close()
                        self.sock = None

    # ----------------------------------------------------------------- the hub
    def start_hub(self) -> None:
        if time.monotonic() - self.started < RESTART_PAUSE:
            time.sleep(RESTART_PAUSE)  # a hub that cannot live: not a busy loop
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            ours.close()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(self.wake_r)
            os.close(self.wake_w)
            for _, fds in self.held.values():
                for fd in fds:
                    os.close(fd)  # the hub gets its own copies below
            hub.serve(self.home, theirs, self.spawn, self.finish)
        theirs.close()
        self.hub_pid, self.sock = pid, ours
        for sdir, (meta, fds) in self.held.items():
            socket.send_fds(ours, [dumps({**meta, "op": "held", "sdir": sdir}).encode()], fds)
        ours.send(dumps({"op": "ready", "keeper_pid": os.getpid(),
                         "keeper_start": proc_start(os.getpid())}).encode())

    def message(self) -> bool:
        """One message of the hub; False when it closed its end."""
        try:
            msg, fds, _, _ = socket.recv_fds(self.sock, 65536, MAX_FDS)  # type: ignore[arg-type]
        except OSError:
            return False
        if not msg:
            return False
        try:
            data = loads(msg)
        except ValueError:
            data = {}
        op, sdir = data.get("op"), data.get("sdir", "")
        if op == "hold":
            self._drop(sdir)
            self.held[sdir] = ({k: v for k, v in data.items() if k not in ("op", "sdir")}, list(fds))
            return True
        for fd in fds:
            os.close(fd)
        if op == "drop":
            self._drop(sdir)
        elif op == "close-stdin" and sdir in self.held:  # ("once": its writer went)
            meta, held = self.held[sdir]
            streams = list(meta.get("streams") or [])
            if "stdin" in streams:
                i = streams.index("stdin")
                os.close(held.pop(i))
                del streams[i]
                meta["streams"] = streams
        return True

    def _drop(self, sdir: str) -> None:
        _, fds = self.held.pop(sdir, (None, []))
        for fd in fds:
            os.close(fd)

    # ---------------------------------------------------------------- children
    def reap(self) -> bool:
        """Reap every child that ended; True when the keeper's work is done."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return False
            if info is None:
                return False
            pid = info.si_pid
            start = proc_start(pid)  # a zombie's stat is still there
            _, status = os.waitpid(pid, 0)
            if pid == self.hub_pid:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                if os.waitstatus_to_exitcode(status) == 0 and not self.held:
                    return True  # it left on purpose: nothing to supervise, no daemon
                print(f"keeper: the hub ({pid}) ended with status {status}; starting another", file=sys.stderr)
                sys.stderr.flush()
                self.start_hub()
                continue
            self.record(pid, start, status)

    def record(self, pid: int, start: "int | None", status: int) -> None:
        """An orphan of the hub ended: a held container's status, where no hub
        can miss it (any other orphan, such as a stager the hub had not reaped
        yet, is no one's concern)."""
        if not any(meta.get("pid") == pid and meta.get("start") == start for meta, _ in self.held.values()):
            return
        write_json(reaped_path(self.home, pid, start), {"status": status})
        if self.sock is not None:
            try:
                self.sock.send(dumps({"op": "exited", "pid": pid, "start": start, "status": status}).encode())
            except OSError:
                pass  # the hub is going: the next one reads the file
