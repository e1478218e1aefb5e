"""Exec driver hook specs: run OCI runtime bundles.

The core hands the driver an **OCI runtime bundle**: a directory holding
``config.json`` (OCI runtime spec 1.0, Linux) whose ``root.path`` is an absolute
path to an already mounted root filesystem.  The driver runs ``process`` from that
config inside the namespaces, mounts and limits it describes.

General rules:

* ``home`` is a directory the driver owns (``<exec-root>/exec/<name>``, on tmpfs in
  production); per-container state goes in ``home/<id>``.
* Containers must **outlive the daemon**: a daemon that stops or crashes and starts
  again calls :func:`exec_restore` for each container it knew and carries on.  So
  the driver keeps the container's process supervised by something other than the
  daemon (a small shim process), and its exit code on disk.
* The container's stdout and stderr are appended by the driver to ``log_path`` in
  Docker's ``json-file`` format (and given to the log driver :func:`exec_create`'s
  ``log`` names), one JSON object per line:
  ``{"log": "hi\\n", "stream": "stdout", "time": "2026-01-01T00:00:00.000000000Z"}``.
* Hooks run in worker threads and **may block**, except where a bound is stated.
* Errors: raise :class:`dockyard.errors.ExecError` naming the container and the
  cause (``ContainerNotFound`` for an unknown id).  A process that cannot be started
  raises from :func:`exec_start` with the reason (e.g. ``exec: "foo": executable
  file not found in $PATH``) and with ``exit_code`` set on the exception (127 not
  found, 126 not executable), leaving nothing running.
* A *state* is a ``dict``: ``{"status": "created"|"running"|"paused"|"stopped",
  "pid": int|None, "exit_code": int|None, "oom_killed": bool,
  "started_at": iso8601|None, "finished_at": iso8601|None, "error": str}``.
  A process killed by signal N has exit code 128+N.
* Every hook is ``firstresult``.
* ``exec_id`` names an extra process started by :func:`exec_exec`; where a hook
  takes ``exec_id``, ``None`` means the container's own (init) process.

What the bundle may ask for, and a driver must either do or refuse at
:func:`exec_create` with an ``ExecError`` naming the field (never a silent
difference): every ``linux.namespaces`` entry (with ``path`` = join that
namespace), ``mounts`` in order (types ``bind``, ``tmpfs``, ``proc``, ``sysfs``,
``devpts``, ``mqueue``, ``cgroup``, with propagation options), ``root.readonly``,
``linux.maskedPaths`` / ``readonlyPaths``, ``linux.devices``, ``linux.resources``
(memory, cpu, pids, blockIO weight, devices allow-list), ``linux.cgroupsPath``,
``linux.seccomp``, ``linux.sysctl``, ``process.capabilities``, ``rlimits``,
``oomScoreAdj``, ``noNewPrivileges``, ``user`` (uid, gid, additionalGids, umask),
``terminal`` and ``consoleSize``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict

from . import hookspec

if TYPE_CHECKING:
    import socket
    from pathlib import Path

#: A state's ``status``.
Status = Literal["created", "running", "paused", "stopped"]

#: What a process's stdin is: ``None`` (``/dev/null``), ``"open"`` or ``"once"``
#: (see :func:`exec_create`).
Stdin = Literal["open", "once"] | None


class State(TypedDict):
    """The state of a container's process or of an extra process, as
    :func:`exec_state`, :func:`exec_wait`, :func:`exec_restore` and
    :func:`exec_exec_wait` return it.  Times are ISO 8601 in UTC."""

    status: Status
    pid: int | None
    exit_code: int | None  #: 128+N for a process killed by signal N
    oom_killed: bool
    started_at: str | None
    finished_at: str | None
    error: str  #: why the process could not run or ended abnormally ("" if none)


@hookspec(firstresult=True)
def exec_supported(home: Path, options: dict[str, Any]) -> str | None:
    """Return ``None`` if the driver can run here, else a one-line reason
    (``"lxc-start not found (apt install lxc)"``). Must not change anything."""


@hookspec(firstresult=True)
def exec_init(home: Path, options: dict[str, Any]) -> None:
    """Prepare the driver (called once per daemon start; idempotent)."""


@hookspec(firstresult=True)
def exec_create(id: str, bundle: str, log_path: str, stdin: Stdin, log: dict[str, Any] | None) -> None:
    """Register container ``id`` whose bundle is the directory ``bundle`` (str).

    Validates ``config.json`` (raise ``ExecError`` naming the bad field) and records
    the container as ``created``; the process does not run yet.  Resources the
    container holds while it exists (its cgroup) are made here and released by
    :func:`exec_delete`.  ``log_path`` is the json-file log to append to (its
    directory exists).  ``stdin`` is ``None`` (the process reads ``/dev/null``),
    ``"open"`` (a stdin that stays open while writers come and go, ``docker run -i
    -d``) or ``"once"`` (closed, so the process reads EOF, when the first writer
    from :func:`exec_attach_stdin` closes: ``docker run -i``).  With
    ``process.terminal`` the process gets a pseudo-terminal as stdin/out/err and
    its output goes to the log as ``stdout``.  ``log`` (``None``: a plain
    json-file ``log_path``) is the container's log driver as the shim kit's
    supervisor takes it (``state["log"]``: the stream file's rotation and the
    driver's writer, ``dockyard.hookspecs.logging``): a shim-kit driver writes
    it into the shim's state as is; any other driver must write the output
    where it says, and one that cannot must refuse a ``log`` naming a writer
    module.  Return value ignored.
    """


@hookspec(firstresult=True)
def exec_start(id: str) -> int:
    """Start the created container's process; return its host pid (int).

    Returns once the process runs the user's program (after execve), or raises
    ``ExecError`` if it could not (see the module docstring).  Bounded: a few
    hundred milliseconds at most on an idle machine.
    """


@hookspec(firstresult=True)
def exec_state(id: str) -> State:
    """Return the current state dict of ``id`` (cheap, non-blocking)."""


@hookspec(firstresult=True)
def exec_kill(id: str, signal: int) -> None:
    """Send ``signal`` (int) to the container's init process.

    Not an error if the process has already exited. Return value ignored.
    """


@hookspec(firstresult=True)
def exec_wait(id: str, timeout: float | None) -> State:
    """Block until the container's process has exited and its output is fully
    written to the log, then return the final state dict.

    ``timeout`` in seconds (float) or ``None`` for no limit; on timeout return the
    current state (status still ``running``).
    """


@hookspec(firstresult=True)
def exec_exit_fd(id: str) -> int | None:
    """Return a new file descriptor that becomes readable once the container's
    process has ended and its output is in the log (when :func:`exec_wait` would
    return at once), or ``None`` if it has ended already.  The caller polls it
    among many (one daemon thread watches every running container, instead of a
    thread per container blocked in :func:`exec_wait`) and closes it.  Cheap,
    non-blocking.  Optional hook: without it the daemon waits in
    :func:`exec_wait`, in a thread of its own per container."""


@hookspec(firstresult=True)
def exec_delete(id: str) -> None:
    """Forget container ``id`` and remove the driver's state for it.

    Only called when the container is not running. Idempotent. Return ignored.
    """


@hookspec(firstresult=True)
def exec_restore(id: str) -> State | None:
    """After a daemon restart: re-attach to container ``id`` and return its state
    (``stopped`` with the right exit code if it ended while the daemon was down),
    or ``None`` if the driver knows nothing of it."""


@hookspec(firstresult=True)
def exec_exec(id: str, exec_id: str, process: dict[str, Any], log_path: str, stdin: Stdin) -> int:
    """Start an extra process (OCI ``process`` dict: args, env, cwd, user,
    terminal, consoleSize, capabilities, noNewPrivileges) inside running container
    ``id``: in all of its namespaces and its cgroup, under its seccomp filter.

    ``exec_id`` is the caller's unique name for it; ``log_path`` and ``stdin`` mean
    what they mean for :func:`exec_create`.  Returns the host pid once the program
    runs, or raises ``ExecError`` (with ``exit_code`` 126/127 as for
    :func:`exec_start`).  The process dies with the container.  Optional hook.
    """


@hookspec(firstresult=True)
def exec_exec_wait(id: str, exec_id: str, timeout: float | None) -> State:
    """Like :func:`exec_wait`, for the extra process ``exec_id`` of ``id``: block
    until it exited and its output is in its log (or ``timeout`` passed), then
    return its state dict.  ``timeout=0`` only looks.  Optional hook."""


@hookspec(firstresult=True)
def exec_attach_stdin(id: str, exec_id: str | None) -> socket.socket:
    """Return a new connected, blocking stream socket whose bytes reach the stdin
    of ``id`` (``exec_id`` ``None``) or of its extra process ``exec_id``.

    Closing it (or ``shutdown(SHUT_WR)``) ends that writer; with ``stdin="once"``
    the process then reads EOF.  Raise ``ExecError`` if the process was created
    without a stdin or has ended.  Optional hook.
    """


@hookspec(firstresult=True)
def exec_resize(id: str, exec_id: str | None, height: int, width: int) -> None:
    """Set the terminal size (rows, columns) of ``id``'s process (``exec_id``
    ``None``) or of its extra process; a process without a terminal: ``ExecError``.
    Optional hook."""


@hookspec(firstresult=True)
def exec_pause(id: str) -> None:
    """Freeze every process of ``id`` (cgroup freezer); the state becomes
    ``paused``.  Optional hook."""


@hookspec(firstresult=True)
def exec_resume(id: str) -> None:
    """Thaw a paused container. Optional hook."""


@hookspec(firstresult=True)
def exec_pids(id: str) -> list[int]:
    """Host pids of every process in container ``id`` (its cgroup), init first.
    Optional hook."""


@hookspec(firstresult=True)
def exec_update(id: str, resources: dict[str, Any]) -> None:
    """Apply OCI ``linux.resources`` (only the keys given) to a created or running
    container, as ``docker update`` does; refuse what cannot change with
    ``ExecError``.  Optional hook."""


@hookspec(firstresult=True)
def exec_stats(id: str) -> dict[str, Any]:
    """Return resource usage of ``id`` as a dict shaped like the Docker API's
    ``/containers/{id}/stats`` (``cpu_stats``, ``memory_stats``, ``pids_stats``,
    ``blkio_stats``; the caller adds ``read``, ``precpu_stats`` and networks).
    Optional hook."""
