"""Hook specifications: the contract between Dockyard's core and its drivers.

Every driver kind has a module here (``storage``, ``exec``, ``network``,
``volume``, ``logging``), and
extensions have ``extensions``.  A driver is any object (usually a class instance)
whose methods are marked with :data:`hookimpl` and named after the specs it
implements.  The core loads it by name through its entry point, registers it in the
:class:`pluggy.PluginManager` of its slot and calls ``check_pending()``, so a
misspelled hook or an argument the spec does not offer is refused at load time.

Calls are keyword-only.  An implementation may accept *fewer* arguments than the
spec names; specs can therefore grow new arguments without breaking drivers::

    from dockyard.hookspecs import hookimpl

    class MyStorage:
        @hookimpl
        def storage_supported(self, home, options):
            return None            # usable here
        ...
"""

import pluggy

#: The pluggy project name that :data:`hookimpl` and :data:`hookspec` mark for.
PROJECT = "dockyard"

#: Marks a method or function as the implementation of a hook spec.
hookimpl = pluggy.HookimplMarker(PROJECT)
#: Marks a function as a hook spec (core use only).
hookspec = pluggy.HookspecMarker(PROJECT)

#: Entry-point group of each driver kind, and of extensions.
GROUPS = {
    "storage": "dockyard.storage",
    "exec": "dockyard.exec",
    "network": "dockyard.network",
    "volume": "dockyard.volume",
    "logging": "dockyard.logging",
    "plugins": "dockyard.plugins",
}
