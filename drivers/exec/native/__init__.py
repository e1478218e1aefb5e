"""The ``native`` exec driver: Dockyard's own OCI runtime, libcontainer-style.

:mod:`.driver` has the hooks (daemon side) and :mod:`.checks` the create-time
validation; the shim process (the ``dockyard.driverkit.shim`` supervisor) runs
:mod:`.spawn`, which builds the container with :mod:`.rootfs` and :mod:`.process`
on the syscalls of :mod:`.linux` and the filter of :mod:`.seccomp`.
"""
