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
  Docker's ``json-file`` format, one JSON object per line:
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
"""

from . import hookspec


@hookspec(firstresult=True)
def exec_supported(home, options):
    """Return ``None`` if the driver can run here, else a one-line reason
    (``"lxc-start not found (apt install lxc)"``). Must not change anything."""


@hookspec(firstresult=True)
def exec_init(home, options):
    """Prepare the driver (called once per daemon start; idempotent)."""


@hookspec(firstresult=True)
def exec_create(id, bundle, log_path):
    """Register container ``id`` whose bundle is the directory ``bundle`` (str).

    Validates ``config.json`` (raise ``ExecError`` naming the bad field) and records
    the container as ``created``; the process does not run yet.  ``log_path`` is
    the json-file log to append to (its directory exists).  Return value ignored.
    """


@hookspec(firstresult=True)
def exec_start(id):
    """Start the created container's process; return its host pid (int).

    Returns once the process runs the user's program (after execve), or raises
    ``ExecError`` if it could not (see the module docstring).  Bounded: a few
    hundred milliseconds at most on an idle machine.
    """


@hookspec(firstresult=True)
def exec_state(id):
    """Return the current state dict of ``id`` (cheap, non-blocking)."""


@hookspec(firstresult=True)
def exec_kill(id, signal):
    """Send ``signal`` (int) to the container's init process.

    Not an error if the process has already exited. Return value ignored.
    """


@hookspec(firstresult=True)
def exec_wait(id, timeout):
    """Block until the container's process has exited and its output is fully
    written to the log, then return the final state dict.

    ``timeout`` in seconds (float) or ``None`` for no limit; on timeout return the
    current state (status still ``running``).
    """


@hookspec(firstresult=True)
def exec_delete(id):
    """Forget container ``id`` and remove the driver's state for it.

    Only called when the container is not running. Idempotent. Return ignored.
    """


@hookspec(firstresult=True)
def exec_restore(id):
    """After a daemon restart: re-attach to container ``id`` and return its state
    (``stopped`` with the right exit code if it ended while the daemon was down),
    or ``None`` if the driver knows nothing of it."""


@hookspec(firstresult=True)
def exec_exec(id, process, log_path):
    """Run an extra process (OCI ``process`` dict) inside running container ``id``;
    its output goes to ``log_path``. Return its host pid. Optional hook."""


@hookspec(firstresult=True)
def exec_pause(id):
    """Freeze every process of ``id`` (cgroup freezer). Optional hook."""


@hookspec(firstresult=True)
def exec_resume(id):
    """Thaw a paused container. Optional hook."""


@hookspec(firstresult=True)
def exec_stats(id):
    """Return resource usage of ``id`` as a dict shaped like Docker's stats
    (``cpu_stats``, ``memory_stats``, ``pids_stats``). Optional hook."""
