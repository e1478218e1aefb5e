"""The shim: the long-lived supervisor of one container process (stdlib only).

A driver runs it as ``python -E -S -c "...; supervisor.main(sys.argv, spawn, finish)"
STATE_DIR REPORT_FD`` with this directory and its own on ``sys.path``; it never
imports dockyard, so it starts fast and outlives the daemon.  It

1. reads ``STATE_DIR/state.json``: ``log_path`` (json-file log to append to),
   ``log`` (optional: its rotation and the log driver's writer, see :func:`open_logs`),
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

Its parts are private modules of this directory, stdlib only and imported by
bare name in a shim like this one: ``_spawning`` (what ``spawn`` gets and
returns: :class:`Stdio`, :class:`Child`, :class:`StartError`), ``_shimloop``
(the event loop and the control socket's protocol), ``_jsonlog`` (Docker's
json-file log and the log driver's writer), ``logfile`` (rotating files, public:
log drivers' writers use it) and ``_minijson`` (JSON without ``import json``, and
files read and written without ``open()``: see :func:`_minijson.read_file`).  This module
is their public face: drivers import what they use from here
(``from supervisor import Child, StartError, dumps``), and ``__all__`` is the
kit's promise.
"""

import os
import sys
import time

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (start-up cost)
if TYPE_CHECKING or __package__:
    from ._jsonlog import MAX_LINE, JsonFile, LogWriter, open_driver
    from ._minijson import dumps, load_file, loads, read_file, write_json
    from ._shimloop import PARTIAL_FLUSH, READ_SIZE, STDIN_HIGH, Loop, listen
    from ._spawning import Child, StartError, Stdio, set_winsize
    from .sanitize import undumpable
else:  # in a shim: the kit's directory is on sys.path
    from _jsonlog import MAX_LINE, JsonFile, LogWriter, open_driver
    from _minijson import dumps, load_file, loads, read_file, write_json
    from _shimloop import PARTIAL_FLUSH, READ_SIZE, STDIN_HIGH, Loop, listen
    from _spawning import Child, StartError, Stdio, set_winsize
    from sanitize import undumpable
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from ._spawning import Finish, Spawn

__all__ = [
    "main", "run", "report", "iso_now", "proc_start",
    # from the parts
    "StartError", "Child", "Stdio", "set_winsize", "Loop", "listen", "LogWriter", "open_logs",
    "loads", "dumps", "load_file", "read_file", "write_json", "MAX_LINE", "PARTIAL_FLUSH", "READ_SIZE", "STDIN_HIGH",
]


def iso_now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%06dZ" % (ns % 10**9 // 1000)


def proc_start(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks (tells a live pid from a reused one)."""
    try:
        data = read_file(f"/proc/{pid}/stat")
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


# ---------------------------------------------------------------------- main
def report(fd: int, data: object) -> None:
    try:
        os.write(fd, dumps(data).encode())
    except OSError:
        pass  # the daemon went away; carry on
    os.close(fd)


def open_logs(state: "dict[str, Any]") -> LogWriter:
    """The process's log: its stream file (``log_path``, rotating as
    ``log.stream`` says) and its log driver's writer (``log``, see
    :mod:`_jsonlog`); a driver that cannot start fails the start as dockerd's
    ``failed to initialize logging driver``."""
    spec = state.get("log") or {}
    stream = spec.get("stream") or {}
    sinks = [JsonFile(state["log_path"], stream.get("rotation"), stream.get("attrs"))]
    try:
        driver = open_driver(spec, spec.get("container") or {})
    except Exception as exc:  # noqa: BLE001 - whatever the writer raises is its reason
        sinks[0].close()
        raise StartError(f"failed to initialize logging driver: {exc}") from None
    if driver is not None:
        sinks.append(driver)
    return LogWriter(sinks=sinks)


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
        logw = open_logs(state)
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
    code = Loop(child, stdio, logw, control).run()
    logw.close()
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
