"""The ``host`` network driver: the container shares the host's network namespace.

No isolation and no IPAM; the container sees the host's interfaces and the host's
``/etc/resolv.conf``.
"""

from dockyard.hookspecs import hookimpl


class HostDriver:
    @hookimpl
    def network_supported(self, home, options):
        return None

    @hookimpl
    def network_init(self, home, options):
        return None

    @hookimpl
    def network_namespace(self, network):
        return "host"

    @hookimpl
    def network_create(self, network):
        return {}

    @hookimpl
    def network_delete(self, network):
        return None

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        return {"interface": None, "ipv4": None, "gateway": None, "mac": None,
                "dns": [], "mtu": None}

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        return None
