"""The two network drivers that need no kernel objects: ``none`` and ``host``.

* ``none``: a private network namespace with loopback only (the exec driver brings
  ``lo`` up), so there is nothing to attach: no interface, address or route.
* ``host``: the container shares the host's network namespace: no isolation, no
  IPAM; it sees the host's interfaces and resolv.conf.
"""

from dockyard.hookspecs import hookimpl
from dockyard.hookspecs.network import Attached

_NOTHING: Attached = {"interface": None, "ipv4": None, "gateway": None, "mac": None, "dns": [], "mtu": None}


class _Simple:
    namespace = "private"

    @hookimpl
    def network_supported(self, home, options):
        return None

    @hookimpl
    def network_init(self, home, options):
        return None

    @hookimpl
    def network_namespace(self, network):
        return self.namespace

    @hookimpl
    def network_create(self, network):
        return {}

    @hookimpl
    def network_delete(self, network):
        return None

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        return dict(_NOTHING)

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        return None


class NoneDriver(_Simple):
    """Loopback only."""


class HostDriver(_Simple):
    """The host's network namespace."""

    namespace = "host"
