"""The ``none`` network driver: a private network namespace with loopback only.

The exec driver brings ``lo`` up in every private namespace, so there is nothing
to attach: no interface, no address, no route.
"""

from dockyard.hookspecs import hookimpl


class NoneDriver:
    @hookimpl
    def network_supported(self, home, options):
        return None

    @hookimpl
    def network_init(self, home, options):
        return None

    @hookimpl
    def network_namespace(self, network):
        return "private"

    @hookimpl
    def network_create(self, network):
        return {}

    @hookimpl
    def network_delete(self, network):
        return None

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        return {"interface": None, "ipv4": None, "gateway": None, "mac": None, "dns": [], "mtu": None}

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        return None
