"""The shim kit: what every exec driver needs to keep a container supervised by
something other than the daemon.

* :mod:`.supervisor` is the shim process itself (stdlib only, importable as a
  top-level module by a ``python -E -S`` interpreter): it spawns the container's
  process through a driver-supplied ``spawn`` function, reports its pid, copies its
  output into the json-file log and the container's log driver
  (``dockyard.hookspecs.logging``), serves stdin and terminal resizes on a control
  socket, and records the exit.
* :mod:`.client` is the daemon's half: starting a shim and reading its report,
  reading the state files it writes, waiting for it, talking to its control socket.
* :mod:`.sanitize` is what a process does before it enters a container and
  execs there (stdlib only): non-dumpable, no fd but what it needs, every signal
  at its default.  The shim itself is non-dumpable, so its children are from birth.
* :mod:`.zygote` is the fork server that forks a shim per process; :mod:`.driver`
  (``ShimDriver``) the hooks every exec driver built on the kit shares;
  :mod:`.oci` and :mod:`.runtime` the OCI config checks, capability and rlimit
  tables and ``execve`` rules every runtime shares; :mod:`.rootpath` resolves
  paths inside a container's root.
* :mod:`.hub` and :mod:`.keeper` (the exec option ``supervisor = "hub"``) are
  one supervisor for every process of a driver instead of a shim each, and the
  subreaper that keeps their exit codes and streams while the hub is restarted;
  :mod:`.hubclient` is the daemon's end.  The state directory's files and
  control socket are the same; ``running.json`` says ``hub``.

Standalone: ``supervisor`` (with its private parts ``_spawning``, ``_shimloop``,
``_jsonlog`` and ``_minijson``), ``logfile`` (rotating log files, which log
drivers' writers import), ``zygote``, ``hub``, ``keeper``, ``sanitize``, ``runtime`` and
``rootpath`` are stdlib only and never import dockyard.  A driver's zygote runs ``python -E
-S`` with this directory (``os.path.dirname(client.__file__)``) and its own on
``sys.path`` and imports them by bare name (``import supervisor``).  The daemon's
side imports all but ``zygote``, ``hub`` and ``keeper`` as package modules too, so they import each
other both ways (``if __package__: from .sanitize import ...``).  Keep them so:
no dockyard import, no third-party import, nothing slow at import time.

Per process state lives in one directory (``STATE_DIR``):

``state.json``
    written by the driver before the shim starts (see
    :func:`supervisor.run` for the keys it reads)
``running.json``
    written by the shim once the program runs: pids, start times
``exit.json``
    written by the shim when the process ended and its output is in
    the log: exit code, finished_at, oom_killed
``control.sock``
    the shim's control socket while the process runs
"""
