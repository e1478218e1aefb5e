"""The shim's event loop (stdlib only, importable standalone from the shim kit's
directory, like :mod:`supervisor`): while the container's process runs, one
``poll`` copies its output into the json-file log, serves the control socket,
writes stdin, and reaps the process when it ends.

Control socket protocol (``STATE_DIR/control.sock``, bound by :func:`listen`): a
client sends one line, the shim answers ``ok\\n`` or ``error MESSAGE\\n``.
``stdin\\n`` makes the rest of the connection the process's stdin (with
``stdin: "once"``, the process reads EOF when that first writer goes);
``resize ROWS COLS\\n`` sets the terminal size.  Stdin is paced: while more than
:data:`STDIN_HIGH` bytes wait for the process to read them, writers are not read.
"""

import os
import select
import socket

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from ._spawning import set_winsize
else:  # in a shim: the kit's directory is on sys.path
    from _spawning import set_winsize
if TYPE_CHECKING:
    from typing import Any

    from ._jsonlog import LogWriter
    from ._spawning import Child, Stdio

PARTIAL_FLUSH = 0.05  # seconds of quiet before a line without newline is logged
READ_SIZE = 65536
STDIN_HIGH = 1 << 20  # stdin bytes the process has not read yet, past which writers wait


class Loop:
    """Output to the log, control connections, stdin, and the child's exit."""

    def __init__(self, child: "Child", stdio: "Stdio", logw: "LogWriter", control: socket.socket,
                 poller: "Any" = None, watch_pid: bool = True) -> None:
        """``poller``: a ``select.poll``-like object to register with (the hub
        shares one between containers; default: a poll of our own);
        ``watch_pid``: reap the child when its pidfd says it ended (else the
        owner calls :meth:`set_status`: the hub's keeper reaped it)."""
        self.child, self.stdio, self.logw, self.control = child, stdio, logw, control
        self.pidfd = os.pidfd_open(child.pid) if watch_pid else None
        self.status: int | None = None
        self.outputs = dict(stdio.outputs)
        self.clients: dict[int, list[Any]] = {}  # fd -> [socket, header buffer, role]
        self.pending = b""  # stdin bytes not yet written
        self.on_stdin_closed: "Any" = None  # called before we close the process's stdin (the hub's keeper)
        self.stdin_paused = False  # stdin writers unregistered: the process reads slower than they write
        self.writers = 0
        self.stdin_closed = False
        self.poller = select.poll() if poller is None else poller
        for fd in self.outputs:
            self.poller.register(fd, select.POLLIN)
        if self.pidfd is not None:
            self.poller.register(self.pidfd, select.POLLIN)
        self.poller.register(control.fileno(), select.POLLIN)
        if stdio.stdin_w is not None:
            os.set_blocking(stdio.stdin_w, False)

    def run(self) -> int:
        while not self.ended():
            timeout: float | None = None
            if self.logw.pending():
                timeout = PARTIAL_FLUSH * 1000
            if self.status is not None and not self.child.own_pidns:
                timeout = 0  # init gone: stray holders of the pipes are not waited for
            events = self.poller.poll(timeout)
            if not events:
                if self.status is not None and not self.child.own_pidns:
                    break
                self.logw.flush()
                continue
            for fd, ev in events:
                self.handle(fd, ev)
        return self.wrap_up()

    def ended(self) -> bool:
        """The process was reaped and its output read to its end."""
        return self.status is not None and not self.outputs

    def handle(self, fd: int, ev: int) -> None:
        """One event of the poller on one of our fds."""
        if fd == self.stdio.stdin_w and ev & select.POLLOUT:
            self._write_stdin(b"")
            if not ev & ~select.POLLOUT:
                return
        if fd == self.pidfd:
            self._reap()
        elif fd in self.outputs:
            self._output(fd)
        elif fd == self.control.fileno():
            self._accept()
        elif fd in self.clients:
            self._client(fd)

    def set_status(self, status: int) -> None:
        """The wait status of the process, reaped by someone else."""
        self.status = status

    def wrap_up(self) -> int:
        """The end: the last partial lines logged, the clients dropped; the exit code."""
        for fd in list(self.outputs):  # (a process without a pid namespace of its own left holders)
            self.outputs.pop(fd)
            self.poller.unregister(fd)
            if fd not in (self.stdio.stdin_w, self.child.master):
                os.close(fd)
        self.logw.feed("stdout", b"", final=True)
        self.logw.feed("stderr", b"", final=True)
        for fd in [fd for fd, (_, _, role) in self.clients.items() if role != "wait"]:
            self._drop(fd)
        assert self.status is not None  # the loop ends once the process was reaped
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else code

    def release(self) -> None:
        """After the exit was recorded: the waiters' connections close, every fd goes."""
        for fd in list(self.clients):
            self._drop(fd)
        for fd in {fd for fd in (self.stdio.stdin_w, self.child.master) if fd is not None}:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
            if fd != self.stdio.stdin_w or not self.stdin_closed:
                os.close(fd)
        try:
            self.poller.unregister(self.control.fileno())
        except KeyError:
            pass
        self.control.close()

    def _reap(self) -> None:
        assert self.pidfd is not None  # (only registered when watched)
        self.poller.unregister(self.pidfd)
        self.status = os.waitpid(self.child.pid, 0)[1]
        os.close(self.pidfd)

    def _output(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_SIZE)
        except OSError:  # EIO: the terminal's last slave closed
            data = b""
        stream = self.outputs[fd]
        if data:
            self.logw.feed(stream, data)
            return
        self.logw.feed(stream, b"", final=True)
        self.poller.unregister(fd)
        del self.outputs[fd]
        if fd not in (self.stdio.stdin_w, self.child.master):
            os.close(fd)

    def _accept(self) -> None:
        try:
            conn, _ = self.control.accept()
        except OSError:
            return
        self.clients[conn.fileno()] = [conn, b"", None]
        self.poller.register(conn.fileno(), select.POLLIN)

    def _reply(self, conn: socket.socket, text: str) -> None:
        try:
            conn.sendall(text.encode() + b"\n")
        except OSError:
            pass

    def _client(self, fd: int) -> None:
        conn, header, role = self.clients[fd]
        try:
            data = conn.recv(READ_SIZE)
        except OSError:
            data = b""
        if role == "stdin":
            if data:
                self._write_stdin(data)
            else:
                self._drop(fd)
            return
        if role == "wait":
            if not data:
                self._drop(fd)
            return
        header += data
        if b"\n" not in header:
            if not data or len(header) > 1024:
                self._drop(fd)
            else:
                self.clients[fd][1] = header
            return
        line, _, rest = header.partition(b"\n")
        words = line.decode(errors="replace").split()
        if words == ["stdin"]:
            if self.stdio.stdin_w is None or self.stdin_closed:
                self._reply(conn, "error the process has no open stdin")
                return self._drop(fd)
            self._reply(conn, "ok")
            self.clients[fd][2] = "stdin"
            self.writers += 1
            if self.stdin_paused:
                self.poller.unregister(fd)
            if rest:
                self._write_stdin(rest)
        elif words == ["wait"]:  # the connection closes once the exit is recorded (the hub's exit fd)
            self._reply(conn, "ok")
            self.clients[fd][2] = "wait"
        elif len(words) == 3 and words[0] == "resize" and all(w.isdigit() and int(w) < 65536 for w in words[1:]):
            if self.child.master is None:
                self._reply(conn, "error the process has no terminal")
            else:
                try:
                    set_winsize(self.child.master, words[1], words[2])
                    self._reply(conn, "ok")
                except OSError as exc:
                    self._reply(conn, f"error resize: {exc.strerror}")
            self._drop(fd)
        else:
            self._reply(conn, f"error unknown request {line[:80]!r}")
            self._drop(fd)

    def _drop(self, fd: int) -> None:
        conn, _, role = self.clients.pop(fd)
        try:
            self.poller.unregister(fd)
        except KeyError:
            pass  # a stdin writer waiting for the process to read
        conn.close()
        if role == "stdin":
            self.writers -= 1
            if self.stdio.stdin_mode == "once":
                self._close_stdin()

    def _write_stdin(self, data: bytes) -> None:
        if self.stdin_closed or self.stdio.stdin_w is None:
            return
        self.pending += data
        fd = self.stdio.stdin_w
        while self.pending:
            try:
                n = os.write(fd, self.pending)
            except BlockingIOError:
                break
            except OSError:  # the process closed its stdin
                self.pending = b""
                break
            self.pending = self.pending[n:]
        mask = (select.POLLOUT if self.pending else 0) | (select.POLLIN if fd in self.outputs else 0)
        if mask:
            self.poller.register(fd, mask)  # (re-registering changes the mask)
        else:
            try:
                self.poller.unregister(fd)
            except KeyError:
                pass
        self._pace_writers()

    def _pace_writers(self) -> None:
        """Back-pressure: while more than :data:`STDIN_HIGH` bytes wait for the
        process to read them, the stdin writers' sockets are not polled, so a
        client cannot grow the shim's memory faster than the process reads."""
        paused = len(self.pending) >= STDIN_HIGH and not self.stdin_closed
        if paused == self.stdin_paused:
            return
        self.stdin_paused = paused
        for fd, (_, _, role) in self.clients.items():
            if role == "stdin":
                if paused:
                    self.poller.unregister(fd)
                else:
                    self.poller.register(fd, select.POLLIN)

    def _close_stdin(self) -> None:
        if self.stdin_closed or self.stdio.stdin_w is None or self.stdio.terminal:
            return  # a terminal stays: it is also the output
        if self.pending:
            os.set_blocking(self.stdio.stdin_w, True)
            try:
                os.write(self.stdio.stdin_w, self.pending)
            except OSError:
                pass
            self.pending = b""
        try:
            self.poller.unregister(self.stdio.stdin_w)
        except KeyError:
            pass
        if self.on_stdin_closed is not None:
            self.on_stdin_closed()
        os.close(self.stdio.stdin_w)
        self.stdin_closed = True
        self._pace_writers()  # writers left read on, into nothing


def listen(state_dir: str) -> socket.socket:
    """Bind ``STATE_DIR/control.sock`` (relative: the path may be longer than a
    unix socket address allows)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    here = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(state_dir)
        try:
            os.unlink("control.sock")
        except FileNotFoundError:
            pass
        sock.bind("control.sock")
        os.chmod("control.sock", 0o600)
    finally:
        os.fchdir(here)
        os.close(here)
    sock.listen(16)
    sock.setblocking(False)
    return sock
