"""The ``native`` exec driver: Dockyard's own OCI runtime (namespaces, mounts,
pivot_root) with a per-container shim.  See :mod:`.driver` (the hooks),
:mod:`.shim` (the supervisor and the container init) and :mod:`.linux` (syscalls).
"""
