"""Exec and attach of the CRI, run by the engine's container service and carried
by a :class:`~.remotecommand.Session`.

The same engine calls as ``docker exec`` and ``docker attach`` make (the routers
in ``dockyard.daemon``): an exec instance is created and started, its output
followed in its stream file until it ended, the client's stdin fed to the socket
the exec driver gives; an attach follows the container's stream file from now
on and feeds its stdin.  Everything here blocks: it runs on the streaming
server's threads, never on the daemon's event loop.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from typing import Any, Callable, Protocol

from ...errors import DockyardError, ExecError, NotFound
from ...jsonlog import read_entries
from .remotecommand import Readable, Session, exit_status, internal_error, resize_events, success

log = logging.getLogger("dockyard.cri.streaming")

POLL = 0.02  # seconds between reads of a followed stream file
STATE_EVERY = 5  # polls between looks at an attached container's state
FIRST_SIZE_WAIT = 0.1  # seconds a terminal's exec waits for the client's first size


class Containers(Protocol):
    """What exec and attach call (:class:`dockyard.engine.containers.service.ContainerService`)."""

    def get(self, cid: str) -> Any: ...
    def attach_stdin(self, cid: str) -> socket.socket: ...
    def attached(self, cid: str) -> None: ...
    def resize(self, ref: str, height: int, width: int) -> None: ...
    def exec_create(self, ref: str, body: dict) -> str: ...
    def exec_start(self, eid: str, tty: bool | None = None, console_size: list | None = None) -> dict: ...
    def exec_finished(self, inst: dict) -> None: ...
    def exec_resize(self, eid: str, height: int, width: int) -> None: ...
    def exec_attach_stdin(self, cid: str, eid: str) -> socket.socket: ...


def run_exec(containers: Containers, request: Any, session: Session) -> None:
    """``request`` (an ExecRequest) in its container, until the process ends or the client leaves."""
    body = {"Cmd": list(request.cmd), "AttachStdin": session.stdin is not None,
            "AttachStdout": session.stdout is not None, "AttachStderr": session.stderr is not None,
            "Tty": bool(request.tty)}
    sizes: queue.Queue = queue.Queue()
    if session.resize is not None:
        _thread(_read_resizes, session.resize, sizes)
    try:
        eid = containers.exec_create(request.container_id, body)
        inst = containers.exec_start(eid, bool(request.tty), _first_size(sizes) if request.tty else None)
    except ExecError as exc:
        if exc.exit_code is None:
            session.finish(internal_error(f"error executing command in container: {exc}"))
            return
        _say(session, f"{exc}\n".encode())  # as docker exec does: the reason, then 126 or 127
        session.finish(exit_status(exc.exit_code))
        return
    except DockyardError as exc:
        session.finish(internal_error(f"error executing command in container: {exc}"))
        return
    cid, done = inst["ContainerID"], inst["_done"]
    if session.stdin is not None:
        _thread(_pump_stdin, session.stdin, lambda: containers.exec_attach_stdin(cid, eid), done.is_set)
    if session.resize is not None:
        _thread(_pump_resizes, sizes, lambda h, w: containers.exec_resize(eid, h, w))
    try:
        _follow(inst["_log"], 0, session, bool(request.tty), done.is_set)
    finally:
        if done.is_set():
            containers.exec_finished(inst)
        else:  # the client left: the process runs on (its stdin ended); its log goes when it ends
            _thread(_finish_later, containers, inst)
    if session.gone() and not done.is_set():
        session.conn.close(grace=0)
        return
    code = inst.get("ExitCode") or 0
    session.finish(success() if code == 0 else exit_status(code))


def run_attach(containers: Containers, request: Any, session: Session) -> None:
    """Attach to the container of ``request`` (an AttachRequest): its output from
    now on, the client's stdin to it.  It ends when the container does, when the
    client leaves, or when the client's stdin ends, unless the container closes its
    stdin with it (``StdinOnce`` without a terminal: then output goes on to its end)."""
    cid = request.container_id
    try:
        rec = containers.get(cid)
        if not rec.state.running:
            raise DockyardError(f"container {cid} is not running")
        containers.attached(cid)
    except DockyardError as exc:
        session.finish(internal_error(f"error attaching to container: {exc}"))
        return
    tty, started = bool(rec.config.get("Tty")), rec.state.started_at
    offset = _size(rec.log_path)  # before stdin flows: the answer to it is ours to send
    stdin_once = bool(rec.config.get("StdinOnce")) and not tty
    stop = threading.Event()

    def ended() -> bool:
        try:
            state = containers.get(cid).state
        except NotFound:
            return True
        return not state.running or state.started_at != started

    if session.stdin is not None:
        if rec.config.get("OpenStdin"):
            _thread(_pump_stdin, session.stdin, lambda: containers.attach_stdin(cid), ended,
                    None if stdin_once else stop.set)
        else:
            _thread(_drain, session.stdin)
    if session.resize is not None:
        sizes: queue.Queue = queue.Queue()
        _thread(_read_resizes, session.resize, sizes)
        _thread(_pump_resizes, sizes, lambda h, w: containers.resize(cid, h, w))
    polls = [0]

    def finished() -> bool:
        if stop.is_set():
            return True
        polls[0] += 1
        return polls[0] % STATE_EVERY == 0 and ended()

    _follow(rec.log_path, offset, session, tty, finished)
    if session.gone():
        session.conn.close(grace=0)
        return
    session.finish(success())


def _follow(path: str, offset: int, session: Session, tty: bool, finished: Callable[[], bool]) -> None:
    """Write the entries of the stream file ``path`` after ``offset`` to the
    client until ``finished()`` (then read once more) or the client left."""
    while True:
        last = finished()
        entries, offset = read_entries(path, offset)
        for entry in entries:
            out = session.stdout if tty or entry.get("stream") != "stderr" else session.stderr
            if out is None:
                continue
            try:
                out.write(entry.get("log", "").encode())
            except OSError:
                return  # the client is gone
        if last or session.gone():
            return
        time.sleep(POLL)


def _pump_stdin(src: Readable, connect: Callable[[], socket.socket], ended: Callable[[], bool],
                at_end: Callable[[], None] | None = None) -> None:
    """The client's stdin into the process, once ``connect()`` gives its socket;
    closing the socket at the client's end of stdin ends the process's stdin."""
    sock = None
    try:
        while sock is None:
            try:
                sock = connect()
            except (ExecError, NotFound):
                if ended():
                    return
                time.sleep(POLL)
        while data := src.read():
            sock.sendall(data)
    except OSError:
        pass  # the process closed its stdin or ended
    except Exception:
        log.exception("stdin of a CRI stream failed")
    finally:
        if sock is not None:
            sock.close()
        if at_end is not None:
            at_end()


def _read_resizes(src: Readable, sizes: queue.Queue) -> None:
    for size in resize_events(src):
        sizes.put(size)
    sizes.put(None)


def _first_size(sizes: queue.Queue) -> list[int] | None:
    """The terminal's size if the client tells it at once (kubectl does, right after
    opening its streams), so that the process starts with it; else None."""
    try:
        first = sizes.get(timeout=FIRST_SIZE_WAIT)
    except queue.Empty:
        return None
    if first is None:
        sizes.put(None)
        return None
    return [first[0], first[1]] if first[0] and first[1] else None


def _pump_resizes(sizes: queue.Queue, resize: Callable[[int, int], None]) -> None:
    while (size := sizes.get()) is not None:
        height, width = size
        if height and width:
            try:
                resize(height, width)
            except DockyardError as exc:  # not running any more, no terminal
                log.debug("resize: %s", exc)


def _drain(src: Readable) -> None:
    while src.read():
        pass


def _finish_later(containers: Containers, inst: dict) -> None:
    inst["_done"].wait()
    containers.exec_finished(inst)


def _say(session: Session, data: bytes) -> None:
    out = session.stderr or session.stdout
    if out is not None:
        try:
            out.write(data)
        except OSError:
            pass


def _size(path: str) -> int:
    try:
        with open(path, "rb") as fh:
            return fh.seek(0, 2)
    except OSError:
        return 0


def _thread(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, name="cri-stream", daemon=True)
    thread.start()
    return thread
