"""Log drivers (entry-point group ``dockyard.logging``): ``json-file``, ``local``,
``none``, ``journald``, ``syslog``.  Each is its own module or package; the
writing halves that run in a container's shim are the stdlib-only
``dockyard_log_<name>`` modules of their packages."""
