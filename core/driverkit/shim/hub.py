"""The hub: one supervisor for every process of an exec driver (stdlib only).

With the exec option ``supervisor = "hub"``, the processes a per-container
shim would supervise (a container's init, an exec) are all supervised by this
one process, started by its :mod:`keeper`: a forked interpreter per container
costs ~1.2 MB of private memory, the hub a few kilobytes per container.  The
files and the control socket of each state directory are the shim's, so the
daemon's side (``client``) is the same but for how a start is asked for and how
the end is waited for (the control socket's ``wait``, not the shim's pidfd).

- **Starts.**  The daemon connects to ``HOME/hub.sock`` (``SOCK_SEQPACKET``) and
  sends, as to the zygote, a state directory with the report pipe as
  ``SCM_RIGHTS``.  The hub opens the logs, then forks a *stager*: a throwaway
  process that runs the driver's ``spawn`` (which may join namespaces: never in
  the hub), sends back the child's pid and the parent ends of its stdio, and
  exits.  The child, orphaned, is adopted by the hub (a child subreaper).  The
  hub gives the keeper copies of the stdio, binds ``control.sock``, writes
  ``running.json`` (``hub``, ``child_pid``, the keeper's pid) and reports.
- **Running.**  One ``poll`` serves every container's :class:`Loop` (its
  output, control connections, stdin); SIGCHLD wakes the hub to reap
  (``waitid`` peeks first: a pid that is no container's is reaped and dropped).
- **Ends.**  The last output logged, ``finish`` called and ``exit.json``
  written, the waiters' connections close and the keeper drops its copies.
- **A new hub** (the old one was killed) gets the held containers from the
  keeper and adopts them: their exit statuses come from the keeper, which is
  their parent now (``HOME/reaped`` and its ``exited`` messages).

The hub exits when it supervises nothing and no daemon is connected.  Only
log drivers that write files or datagrams run in it (a writer that can block,
such as syslog over TCP, would stall every container): others are refused.
"""

import os
import select
import socket
import sys
import time

import _signal as signal

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from ._minijson import dumps, load_file, loads, read_file, write_json
    from ._shimloop import PARTIAL_FLUSH, Loop, listen
    from ._spawning import Child, StartError, Stdio, set_winsize
    from .sanitize import close_fds, subreaper
    from .supervisor import iso_now, open_logs, proc_start, report
else:  # in a hub: the kit's directory is on sys.path
    from _minijson import dumps, load_file, loads, read_file, write_json
    from _shimloop import PARTIAL_FLUSH, Loop, listen
    from _spawning import Child, StartError, Stdio, set_winsize
    from sanitize import close_fds, subreaper
    from supervisor import iso_now, open_logs, proc_start, report
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._spawning import Finish, Spawn

SOCK = "hub.sock"
IDLE_EXIT = 5.0  # seconds a new hub with nothing to supervise waits for a daemon to connect
#: log writers the hub runs (the others may block on a network)
WRITERS = {"dockyard_log_local", "dockyard_log_cri", "dockyard_log_journald"}


def serve(home: str, keeper: socket.socket, spawn: "Spawn", finish: "Finish | None") -> "NoReturn":
    """The hub's life, in the keeper's fork; never returns."""
    code = 1
    try:
        subreaper()
        code = Hub(home, keeper, spawn, finish).run()
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
    finally:
        os._exit(code)


class _Share:
    """One container's view of the hub's poll: what it registers is its own."""

    def __init__(self, hub: "Hub", sup: "Supervised") -> None:
        self.hub, self.sup = hub, sup

    def register(self, fd: int, mask: int = select.POLLIN) -> None:
        self.hub.poller.register(fd, mask)
        self.hub.owner[fd] = self.sup

    def unregister(self, fd: int) -> None:
        if self.hub.owner.get(fd) is self.sup:
            del self.hub.owner[fd]
        self.hub.poller.unregister(fd)


class Supervised:
    """One process of the hub: its state directory, state and :class:`Loop`."""

    def __init__(self, sdir: str, state: "dict[str, Any]", child: Child, loop: Loop) -> None:
        self.sdir, self.state, self.child, self.loop = sdir, state, child, loop
        self.start = proc_start(child.pid)


class Hub:
    def __init__(self, home: str, keeper: socket.socket, spawn: "Spawn", finish: "Finish | None") -> None:
        self.home, self.keeper, self.spawn, self.finish = home, keeper, spawn, finish
        self.poller = select.poll()
        self.owner: "dict[int, Any]" = {}  # fd -> a Supervised (its loop's fds) or a handler
        self.by_pid: "dict[int, Supervised]" = {}  # the hub's children that are containers' processes
        self.stagers: "dict[int, int]" = {}  # stager pid -> its socket's fd
        self.daemons = 0
        self.keeper_pid = os.getppid()  # the keeper forked us
        self.keeper_start = proc_start(self.keeper_pid)
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.set_wakeup_fd(self.wake_w)
        self._own(self.wake_r, self._wake)
        self._own(keeper.fileno(), self._keeper_message)

    def _own(self, fd: int, handler: "Any") -> None:
        self.poller.register(fd, select.POLLIN)
        self.owner[fd] = handler

    def _disown(self, fd: int) -> None:
        self.owner.pop(fd, None)
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass

    # --------------------------------------------------------------- the loop
    def run(self) -> int:
        self.keeper.setblocking(True)  # (read only when poll says so)
        while True:  # what the keeper held for the last hub, then "ready"
            msg, fds, _, _ = socket.recv_fds(self.keeper, 65536, 8)
            data = loads(msg)
            if data.get("op") == "ready":
                break
            self._adopt(data, fds)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        path = os.path.join(self.home, SOCK)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        listener.bind(path)
        os.chmod(path, 0o600)
        listener.listen(64)
        listener.setblocking(False)
        self._own(listener.fileno(), lambda fd, ev: self._accept(listener))
        self._wake(self.wake_r, 0)  # children that ended while no hub ran
        idle_since: "float | None" = time.monotonic()
        served = False  # a daemon connected once: when it leaves us idle, we go at once
        while True:
            if self.by_pid or self.stagers or self.daemons:
                idle_since, served = None, served or bool(self.daemons)
            elif served:
                break
            elif idle_since is None:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= IDLE_EXIT:
                break
            timeout = None if idle_since is None else IDLE_EXIT * 1000
            if any(sup.loop.logw.pending() for sup in self.by_pid.values()):
                timeout = PARTIAL_FLUSH * 1000
            events = self.poller.poll(timeout)
            if not events:
                for sup in self.by_pid.values():
                    sup.loop.logw.flush()
                continue
            events.sort(key=lambda e: e[0] == self.wake_r)  # reaping last: see _wake
            for fd, ev in events:
                handler = self.owner.get(fd)
                if isinstance(handler, Supervised):
                    handler.loop.handle(fd, ev)
                    self._maybe_done(handler)
                elif handler is not None:
                    handler(fd, ev)
        os.unlink(path)
        return 0

    def _accept(self, listener: socket.socket) -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setblocking(False)
        self.daemons += 1
        self._own(conn.fileno(), lambda fd, ev: self._request(conn))

    def _request(self, conn: socket.socket) -> None:
        """A daemon's start: a state directory, the report pipe as SCM_RIGHTS."""
        try:
            msg, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        except BlockingIOError:
            return
        except OSError:
            msg, fds = b"", []
        if not msg:
            self._disown(conn.fileno())
            conn.close()
            self.daemons -= 1
            return
        if fds:
            self._start(os.fsdecode(msg), fds[0])

    # ------------------------------------------------------------------ starts
    def _start(self, sdir: str, report_fd: int) -> None:
        try:
            state = load_file(os.path.join(sdir, "state.json"))
            module = (state.get("log") or {}).get("module")
            if module and module not in WRITERS:
                raise StartError(f"failed to initialize logging driver: {module} is not run by the "
                                 "hub supervisor (it may block); use the exec option supervisor=shim")
            logw = open_logs(state)
        except StartError as exc:
            return report(report_fd, {"error": str(exc), "exit_code": exc.exit_code})
        except Exception as exc:  # noqa: BLE001 - the daemon gets every reason
            return report(report_fd, {"error": f"hub: {type(exc).__name__}: {exc}"})
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _stage(sdir, state, theirs, self.spawn)
        theirs.close()
        self.stagers[pid] = ours.fileno()
        self._own(ours.fileno(), lambda fd, ev: self._staged(ours, pid, sdir, state, logw, report_fd))

    def _staged(self, sock: socket.socket, stager: int, sdir: str, state: "dict[str, Any]", logw: "Any",
                report_fd: int) -> None:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 65536, 8)
        except OSError:
            msg, fds = b"", []
        self._disown(sock.fileno())
        sock.close()
        self.stagers.pop(stager, None)
        try:
            data = loads(msg) if msg else {"error": f"the stager died; see {sdir}/shim.log"}
        except ValueError:
            data = {"error": "the stager's report is not JSON"}
        if "pid" not in data:
            logw.close()
            return report(report_fd, {"error": data.get("error") or "start failed", "exit_code": data.get("exit_code")})
        child = Child(int(data["pid"]), None, bool(data.get("own_pidns")), int(data.get("init_pid") or data["pid"]))
        stdio, child.master = _stdio(state, data, fds)
        try:  # the keeper's copies first: from now on a crash of ours loses no stream
            meta = {"op": "hold", "sdir": sdir, "pid": child.pid, "start": proc_start(child.pid), **_meta(data)}
            socket.send_fds(self.keeper, [dumps(meta).encode()], fds)
        except OSError as exc:
            print(f"hub: the keeper did not take {sdir}'s streams: {exc}", file=sys.stderr)
        try:
            if child.master is not None and state.get("console_size"):
                set_winsize(child.master, *state["console_size"])
            sup = self._supervise(sdir, state, child, stdio, logw)
        except Exception as exc:  # noqa: BLE001
            os.kill(child.pid, 9)
            return report(report_fd, {"error": f"hub: {type(exc).__name__}: {exc}"})
        self._running(sup)
        report(report_fd, {"pid": child.init_pid})

    def _supervise(self, sdir: str, state: "dict[str, Any]", child: Child, stdio: Stdio, logw: "Any") -> Supervised:
        control = listen(sdir)
        sup = Supervised(sdir, state, child, None)  # type: ignore[arg-type]
        sup.loop = Loop(child, stdio, logw, control, poller=_Share(self, sup), watch_pid=False)
        sup.loop.on_stdin_closed = lambda: self._tell_keeper("close-stdin", sdir)  # else its copy holds it open
        self.by_pid[child.pid] = sup
        return sup

    def _running(self, sup: Supervised) -> None:
        child = sup.child
        write_json(os.path.join(sup.sdir, "running.json"), {
            "shim_pid": os.getpid(), "shim_start": proc_start(os.getpid()), "hub": True,
            "keeper_pid": self.keeper_pid, "keeper_start": self.keeper_start,
            "child_pid": child.pid, "child_start": sup.start,
            "pid": child.init_pid, "pid_start": proc_start(child.init_pid),
            "started_at": sup.state.get("_started_at") or iso_now()})

    # ---------------------------------------------------------------- adoption
    def _adopt(self, data: "dict[str, Any]", fds: "list[int]") -> None:
        """A container the last hub supervised, held by the keeper since."""
        sdir = data["sdir"]
        try:
            if os.path.exists(os.path.join(sdir, "exit.json")):
                raise FileExistsError
            state = load_file(os.path.join(sdir, "state.json"))
            run = load_file(os.path.join(sdir, "running.json"))
            logw = open_logs(state)
        except Exception:  # noqa: BLE001 - recorded already, or gone: nothing to adopt
            for fd in fds:
                os.close(fd)
            self._forget_reaped(sdir)  # the last hub died between the record and the unlink
            self._tell_keeper("drop", sdir)
            return
        child = Child(run["child_pid"], None, bool(data.get("own_pidns")), run["pid"])
        stdio, child.master = _stdio(state, data, fds)
        state["_started_at"] = run.get("started_at")
        sup = self._supervise(sdir, state, child, stdio, logw)
        sup.start = run.get("child_start")
        try:
            status = loads(read_file(_reaped(self.home, child.pid, sup.start)))["status"]
        except (OSError, ValueError, KeyError):
            status = None
        if status is not None:
            sup.loop.set_status(status)
        elif proc_start(child.pid) != sup.start:  # gone, and no status kept: never made up as 0
            sup.loop.set_status(255 << 8)
        self._running(sup)

    def _forget_reaped(self, sdir: str) -> None:
        try:
            run = load_file(os.path.join(sdir, "running.json"))
            os.unlink(_reaped(self.home, run["child_pid"], run.get("child_start")))
        except Exception:  # noqa: BLE001 - nothing kept, or no record to name it
            pass

    def _keeper_message(self, fd: int, ev: int) -> None:
        try:
            msg = self.keeper.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            msg = b""
        if not msg:  # our parent died: we supervise on, but our own death would now lose exits
            print("hub: the keeper is gone", file=sys.stderr)
            self._disown(fd)
            return
        data = loads(msg)
        if data.get("op") == "exited":
            sup = self.by_pid.get(data["pid"])
            if sup is not None and sup.start == data.get("start"):
                sup.loop.set_status(data["status"])
                self._maybe_done(sup)

    # ------------------------------------------------------------------- ends
    def _wake(self, fd: int, ev: int) -> None:
        """Reap what ended.  A stager reports before it exits, and its child is
        ours only after that exit: before a child that is no container's is
        reaped and dropped, the reports already sent are read, so that no
        container's exit is taken for a stranger's."""
        while True:
            try:
                os.read(self.wake_r, 4096)
            except BlockingIOError:
                break
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            sup = self.by_pid.get(info.si_pid)
            if sup is None and self.stagers:  # perhaps a child whose stager's report is unread yet
                self._read_stagers()
                sup = self.by_pid.get(info.si_pid)
            _, status = os.waitpid(info.si_pid, 0)
            if sup is not None:  # kept on disk at once: a crash before exit.json loses no status
                write_json(_reaped(self.home, sup.child.pid, sup.start), {"status": status})
                sup.loop.set_status(status)
                self._maybe_done(sup)

    def _read_stagers(self) -> None:
        """The reports the stagers sent already (an exited stager's is there)."""
        for sfd in list(self.stagers.values()):
            one = select.poll()
            one.register(sfd, select.POLLIN)
            if one.poll(0) and sfd in self.owner:
                self.owner[sfd](sfd, select.POLLIN)

    def _maybe_done(self, sup: Supervised) -> None:
        loop = sup.loop
        if loop.status is None or self.by_pid.get(sup.child.pid) is not sup:
            return
        if loop.outputs and not sup.child.own_pidns:
            _drain(loop)  # init gone: stray holders of the pipes are not waited for
        if loop.outputs:
            return  # the rest of the output comes; the pipes close with the namespace
        del self.by_pid[sup.child.pid]
        code = loop.wrap_up()
        loop.logw.close()
        try:
            os.unlink(os.path.join(sup.sdir, "control.sock"))
        except OSError:
            pass
        extra: "dict[str, Any]" = {}
        if self.finish is not None:
            try:
                extra = self.finish(sup.state, code) or {}
            except Exception as exc:  # noqa: BLE001 - the exit must be recorded anyway
                print(f"hub: finish failed for {sup.sdir}: {exc}", file=sys.stderr)
        write_json(os.path.join(sup.sdir, "exit.json"),
                   {"exit_code": code, "finished_at": iso_now(), "oom_killed": False, **extra})
        loop.release()
        try:
            os.unlink(_reaped(self.home, sup.child.pid, sup.start))
        except OSError:
            pass
        self._tell_keeper("drop", sup.sdir)

    def _tell_keeper(self, op: str, sdir: str) -> None:
        try:
            self.keeper.send(dumps({"op": op, "sdir": sdir}).encode())
        except OSError:
            pass  # the keeper is gone (and said so): nothing holds a copy


def _drain(loop: Loop) -> None:
    """Read what the outputs hold now, without waiting for more."""
    for fd in list(loop.outputs):
        one = select.poll()
        one.register(fd, select.POLLIN)
        while fd in loop.outputs and one.poll(0):
            loop._output(fd)
    for fd in list(loop.outputs):
        loop.outputs.pop(fd)
        loop.poller.unregister(fd)
        if fd not in (loop.stdio.stdin_w, loop.child.master):
            os.close(fd)


def _reaped(home: str, pid: int, start: "int | None") -> str:
    return os.path.join(home, "reaped", f"{pid}-{start}")


def _meta(data: "dict[str, Any]") -> "dict[str, Any]":
    return {"streams": data["streams"], "own_pidns": bool(data.get("own_pidns"))}


def _stdio(state: "dict[str, Any]", data: "dict[str, Any]", fds: "list[int]") -> "tuple[Stdio, int | None]":
    """The parent ends a stager (or the keeper) sent, as the Loop wants them."""
    stdio = Stdio.__new__(Stdio)  # not __init__: no pipes, they are ``fds``
    stdio.stdin_mode, stdio.terminal, stdio.orphan = state.get("stdin"), bool(state.get("terminal")), True
    stdio.outputs, stdio.stdin_w, stdio.child, master = {}, None, (None, None, None), None
    for fd, name in zip(fds, data["streams"]):
        if name == "master":
            master = fd
        elif name == "stdin":
            stdio.stdin_w = fd
        else:
            stdio.outputs[fd] = name
    if master is not None:
        stdio.use_terminal(master)
    return stdio, master


def _stage(sdir: str, state: "dict[str, Any]", sock: socket.socket, spawn: "Spawn") -> "NoReturn":
    """In the stager: start the process as a shim would, send the hub its pid and
    the parent ends of its stdio, exit (the process is then the hub's)."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        # The hub's other fds are not the stager's: other starts' report pipes (a
        # daemon's start ends when that pipe closes, not when a stager forked
        # meanwhile exits), every container's streams, the hub's sockets.
        close_fds({0, 1, 2, sock.fileno()})
        log = os.open(os.path.join(sdir, "shim.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.dup2(log, 2)
        os.close(log)
        fd = os.open(os.path.join(sdir, "shim.pid"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        os.write(fd, f"{os.getpid()} {proc_start(os.getpid())}\n".encode())
        os.close(fd)
        stdio = Stdio(state.get("stdin"), bool(state.get("terminal")))
        stdio.orphan = True  # the process must outlive us: no parent-death signal
        try:
            child = spawn(state, stdio)
        except StartError as exc:
            sock.send(dumps({"error": str(exc), "exit_code": exc.exit_code}).encode())
            os._exit(1)
        stdio.close_child_ends()
        fds, streams = [], []
        for fd, name in stdio.outputs.items():
            fds.append(fd)
            streams.append(name)
        if stdio.stdin_w is not None:
            fds.append(stdio.stdin_w)
            streams.append("stdin")
        if child.master is not None:
            fds.append(child.master)
            streams.append("master")
        socket.send_fds(sock, [dumps({"pid": child.pid, "init_pid": child.init_pid, "own_pidns": child.own_pidns,
                                      "streams": streams}).encode()], fds)
        code = 0
    except BaseException as exc:  # noqa: BLE001 - the daemon gets every reason
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        try:
            sock.send(dumps({"error": f"hub: {type(exc).__name__}: {exc}"}).encode())
        except OSError:
            pass
    finally:
        os._exit(code)
