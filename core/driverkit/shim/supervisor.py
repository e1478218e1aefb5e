"""The shim: the long-lived supervisor of one container process (stdlib only).

A driver runs it as ``python -E -S -c "...; supervisor.main(sys.argv, spawn, finish)"
STATE_DIR REPORT_FD`` with this directory and its own on ``sys.path``; it never
imports dockyard, so it starts fast and outlives the daemon.  It

1. reads ``STATE_DIR/state.json``: ``log_path`` (json-file log to append to),
   ``stdin`` (``None``, ``"open"`` or ``"once"``), ``terminal`` (bool),
   ``console_size`` (``[rows, cols]`` or ``None``), plus whatever the driver's
   ``spawn`` needs;
2. calls ``spawn(state, stdio)``, which starts the process with the child ends of
   ``stdio`` and returns a :class:`Child` (or raises :class:`StartError`);
3. binds ``STATE_DIR/control.sock``, writes ``running.json`` and reports
   ``{"pid": N}`` (or ``{"error", "exit_code"}``) as JSON on ``REPORT_FD``;
4. copies output into the log, serves the control socket, reaps the process,
   calls ``finish(state, exit_code)`` (extra fields for the exit record, which
   may correct ``exit_code``) and writes
   ``exit.json`` atomically before it exits.

Control socket protocol: a client sends one line, the shim answers ``ok\\n`` or
``error MESSAGE\\n``.  ``stdin\\n`` makes the rest of the connection the process's
stdin (with ``stdin: "once"``, the process reads EOF when that first writer goes);
``resize ROWS COLS\\n`` sets the terminal size.
"""

import fcntl
import os
import select
import socket
import struct
import sys
import termios
import time

import _json  # the C half of json: ``import json`` drags in re and enum (~12 ms)

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from .sanitize import undumpable
else:  # in a shim: the kit's directory is on sys.path
    from sanitize import undumpable
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    #: ``spawn(state, stdio)``: start the process; ``finish(state, exit code)``: extra exit record
    Spawn = Callable[[dict[str, Any], "Stdio"], "Child"]
    Finish = Callable[[dict[str, Any], int], "dict[str, Any] | None"]

MAX_LINE = 16 * 1024  # like Docker, longer lines are split into several entries
PARTIAL_FLUSH = 0.05  # seconds of quiet before a line without newline is logged
READ_SIZE = 65536
STDIN_HIGH = 1 << 20  # stdin bytes the process has not read yet, past which writers wait


class StartError(Exception):
    """The process could not be started; ``exit_code`` 127/126 as in Docker."""

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Child:
    """What ``spawn`` returns: the started process as the shim sees it.

    ``pid``: the shim's child, which it waits for.  ``init_pid``: the container
    process that the daemon is told about and signals, when it is not ``pid``
    itself (a launcher such as ``lxc-start -F`` stays the shim's child while the
    container's init runs elsewhere).  ``own_pidns``: the process is pid 1 of a
    pid namespace of its own, so every holder of its output pipes dies with it.
    ``master``: the pseudo-terminal master when ``terminal`` was asked for.
    """

    def __init__(self, pid: int, master: int | None = None, own_pidns: bool = False,
                 init_pid: int | None = None) -> None:
        self.pid, self.master, self.own_pidns = pid, master, own_pidns
        self.init_pid = pid if init_pid is None else init_pid


# --------------------------------------------------------------------- json
class _Ctx:  # what _json's scanner wants of a json.JSONDecoder
    strict, object_hook, object_pairs_hook = True, None, None
    parse_float, parse_int, parse_constant = float, int, float


_scan = _json.make_scanner(_Ctx())  # type: ignore[arg-type]  # duck-typed, as _Ctx says


def loads(text: str | bytes) -> "Any":
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


def dumps(obj: "Any") -> str:
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


def load_file(path: str) -> "Any":
    with open(path, "rb") as fh:
        return loads(fh.read())


def write_json(path: str, data: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(dumps(data))
    os.replace(tmp, path)


def iso_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%06dZ" % (ns % 10**9 // 1000)


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (tells a live pid from a reused one)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


# ---------------------------------------------------------------------- log
class LogWriter:
    """Docker json-file writer: one JSON object per line of output."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.bufs: dict[str, bytes] = {}

    def feed(self, stream: str, data: bytes, final: bool = False) -> None:
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
        self._write(entries)

    def pending(self) -> bool:
        return any(self.bufs.values())

    def flush(self) -> None:
        """Log the partial lines (a prompt, a progress bar) as they are."""
        entries = [self.entry(s, b) for s, b in self.bufs.items() if b]
        self.bufs = {}
        self._write(entries)

    def _write(self, entries: list[bytes]) -> None:
        if entries:
            try:
                os.write(self.fd, b"".join(entries))
            except OSError:
                pass  # a full disk must not block the container: drop the output

    @staticmethod
    def entry(stream: str, raw: bytes) -> bytes:
        ns = time.time_ns()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%09dZ" % (ns % 10**9)
        log = _json.encode_basestring(raw.decode("utf-8", "replace"))
        return f'{{"log":{log},"stream":"{stream}","time":"{stamp}"}}\n'.encode()


# -------------------------------------------------------------------- stdio
class Stdio:
    """The process's standard streams: the child's ends (``child``: fds for 0, 1,
    2, ``None`` meaning /dev/null) and the shim's (``stdin_w``, ``outputs``)."""

    def __init__(self, stdin_mode: str | None, terminal: bool) -> None:
        self.stdin_mode = stdin_mode
        self.terminal = terminal
        self.stdin_w: int | None = None
        self.outputs: dict[int, str] = {}  # fd -> stream name
        self.child: tuple[int | None, int | None, int | None] = (None, None, None)
        if terminal:
            return  # the pty comes from spawn (made inside the container)
        stdin_r = None
        if stdin_mode:
            stdin_r, self.stdin_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.outputs = {out_r: "stdout", err_r: "stderr"}
        self.child = (stdin_r, out_w, err_w)

    def parent_fds(self) -> list[int]:
        return [fd for fd in [self.stdin_w, *self.outputs] if fd is not None]

    def close_child_ends(self) -> None:
        for fd in self.child:
            if fd is not None:
                os.close(fd)
        self.child = (None, None, None)

    def use_terminal(self, master: int) -> None:
        self.outputs = {master: "stdout"}
        if self.stdin_mode:
            self.stdin_w = master

    def dup_into_child(self) -> None:
        """In the child: make the child ends fds 0, 1 and 2."""
        stdin_r, out_w, err_w = self.child
        if stdin_r is None:
            stdin_r = os.open("/dev/null", os.O_RDONLY)
        for target, fd in ((0, stdin_r), (1, out_w), (2, err_w)):
            if fd is not None:
                os.dup2(fd, target)
        for fd in {stdin_r, out_w, err_w, *self.parent_fds()}:
            if fd is not None and fd > 2:
                os.close(fd)


def set_winsize(fd: int, rows: int | str, cols: int | str) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


# ------------------------------------------------------------------- control
class Loop:
    """Output to the log, control connections, stdin, and the child's exit."""

    def __init__(self, child: Child, stdio: Stdio, logw: LogWriter, control: socket.socket) -> None:
        self.child, self.stdio, self.logw, self.control = child, stdio, logw, control
        self.pidfd = os.pidfd_open(child.pid)
        self.status: int | None = None
        self.outputs = dict(stdio.outputs)
        self.clients: dict[int, list[Any]] = {}  # fd -> [socket, header buffer, role]
        self.pending = b""  # stdin bytes not yet written
        self.stdin_paused = False  # stdin writers unregistered: the process reads slower than they write
        self.writers = 0
        self.stdin_closed = False
        self.poller = select.poll()
        for fd in self.outputs:
            self.poller.register(fd, select.POLLIN)
        self.poller.register(self.pidfd, select.POLLIN)
        self.poller.register(control.fileno(), select.POLLIN)
        if stdio.stdin_w is not None:
            os.set_blocking(stdio.stdin_w, False)

    def run(self) -> int:
        while self.outputs or self.status is None:
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
                if fd == self.stdio.stdin_w and ev & select.POLLOUT:
                    self._write_stdin(b"")
                    if not ev & ~select.POLLOUT:
                        continue
                if fd == self.pidfd:
                    self._reap()
                elif fd in self.outputs:
                    self._output(fd)
                elif fd == self.control.fileno():
                    self._accept()
                elif fd in self.clients:
                    self._client(fd)
        for fd in list(self.outputs):
            self.outputs.pop(fd)
        self.logw.feed("stdout", b"", final=True)
        self.logw.feed("stderr", b"", final=True)
        for fd in list(self.clients):
            self._drop(fd)
        assert self.status is not None  # the loop ends once the process was reaped
        code = os.waitstatus_to_exitcode(self.status)
        return 128 - code if code < 0 else code

    def _reap(self) -> None:
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
        if fd != self.stdio.stdin_w:
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
        elif len(words) == 3 and words[0] == "resize" and words[1].isdigit() and words[2].isdigit():
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


# ---------------------------------------------------------------------- main
def report(fd: int, data: object) -> None:
    try:
        os.write(fd, dumps(data).encode())
    except OSError:
        pass  # the daemon went away; carry on
    os.close(fd)


def main(argv: list[str], spawn: "Spawn", finish: "Finish | None" = None) -> "NoReturn":
    """``argv``: [program, STATE_DIR, REPORT_FD]; never returns."""
    os._exit(run(argv[1], int(argv[2]), spawn, finish))  # no interpreter teardown


def run(state_dir: str, report_fd: int, spawn: "Spawn", finish: "Finish | None" = None) -> int:
    # Non-dumpable before anything is forked: every child that spawn makes and
    # sends into the container is so from birth (sanitize.py says why).
    undumpable()
    os.set_inheritable(report_fd, False)
    try:
        state = load_file(os.path.join(state_dir, "state.json"))
        logfd = os.open(state["log_path"], os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        stdio = Stdio(state.get("stdin"), bool(state.get("terminal")))
        child = spawn(state, stdio)
        stdio.close_child_ends()
        if child.master is not None:
            stdio.use_terminal(child.master)
            if state.get("console_size"):
                set_winsize(child.master, *state["console_size"])
        control = listen(state_dir)
    except StartError as exc:
        report(report_fd, {"error": str(exc), "exit_code": exc.exit_code})
        return 1
    except Exception as exc:  # noqa: BLE001 - the daemon gets every reason
        report(report_fd, {"error": f"shim: {type(exc).__name__}: {exc}"})
        return 1
    write_json(os.path.join(state_dir, "running.json"), {
        "shim_pid": os.getpid(), "shim_start": proc_start(os.getpid()),
        "pid": child.init_pid, "pid_start": proc_start(child.init_pid), "started_at": iso_now()})
    report(report_fd, {"pid": child.init_pid})
    code = Loop(child, stdio, LogWriter(logfd), control).run()
    control.close()
    try:
        os.unlink(os.path.join(state_dir, "control.sock"))
    except OSError:
        pass
    extra: dict[str, Any] = {}
    if finish is not None:
        try:
            extra = finish(state, code) or {}
        except Exception as exc:  # noqa: BLE001 - the exit must be recorded anyway
            print(f"shim: finish failed: {exc}", file=sys.stderr)
    write_json(os.path.join(state_dir, "exit.json"),
               {"exit_code": code, "finished_at": iso_now(), "oom_killed": False, **extra})
    return 0
