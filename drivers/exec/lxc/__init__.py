"""The ``lxc`` exec driver: runs the same OCI bundles as ``native``, through LXC.

:mod:`.driver` has the hooks (daemon side).  :mod:`.translate` turns a bundle's
``config.json`` into an LXC container configuration (with :mod:`.mounts` for the
file system, :mod:`.resources` for ``linux.resources`` and :mod:`.seccomp` for
``linux.seccomp``), refusing what LXC cannot do.  The shim (the
``dockyard.driverkit.shim`` supervisor) runs :mod:`.lxcspawn`, which starts the container
with ``lxc-start -F``, and an extra process with liblxc's attach
(:mod:`.attach`).
"""
