"""The shim kit: what every exec driver needs to keep a container supervised by
something other than the daemon.

* :mod:`.supervisor` is the shim process itself (stdlib only, importable as a
  top-level module by a ``python -E -S`` interpreter): it spawns the container's
  process through a driver-supplied ``spawn`` function, reports its pid, copies its
  output into the json-file log, serves stdin and terminal resizes on a control
  socket, and records the exit.
* :mod:`.client` is the daemon's half: starting a shim and reading its report,
  reading the state files it writes, waiting for it, talking to its control socket.
* :mod:`.sanitize` is what a process does before it enters a container and
  execs there (stdlib only): non-dumpable, no fd but what it needs, every signal
  at its default.  The shim itself is non-dumpable, so its children are from birth.

Per process state lives in one directory (``STATE_DIR``):

``state.json``    written by the driver before the shim starts (see
                  :func:`supervisor.run` for the keys it reads)
``running.json``  written by the shim once the program runs: pids, start times
``exit.json``     written by the shim when the process ended and its output is in
                  the log: exit code, finished_at, oom_killed
``control.sock``  the shim's control socket while the process runs
"""
