"""The ``bridge`` network driver: Docker's bridge driver, with nftables.

* a network is a Linux bridge (``dy-<id[:12]>`` unless the
  ``com.docker.network.bridge.name`` option names one) holding the gateway
  address (IPv4 only: IPv6 is disabled on it), plus its rules in Dockyard's own nft table (see :mod:`.nft`):
  masquerade out, forwarding, isolation from the other bridges;
* an endpoint is a veth pair: ``veth<10 hex>`` on the bridge, its peer made
  directly in the container's namespace and renamed ``eth0`` (``eth1``... when
  the container is on several networks), routing by default via the gateway;
* an ``internal`` network gives no default route (as dockerd since v25,
  moby#46603: only its own subnet is reachable, and a container that is also
  on a normal network routes out through that one), and its rules drop what
  leaves the bridge and what it sends to the host's addresses but its gateway;
* a published port is DNAT in prerouting and output, its host port held by a
  bound socket (see :mod:`.ports`).

The core's IPAM hands over the subnet, gateway and endpoint addresses; nothing is
allocated here.  Names are derived from the network's and endpoint's ids, so
delete and detach find what create and attach made without any saved state.
"""

import hashlib
import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
import threading

from dockyard.errors import NetworkError
from dockyard.hookspecs import hookimpl

OPT_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_VETH = re.compile(r"^veth[0-9a-f]{10}$")


class _Net:
    """A network dict, checked: what the hooks need of it (delete needs no IPAM)."""

    def __init__(self, network, ipam=True):
        self.id = str(network.get("id") or "")
        self.label = f"network {network.get('name') or self.id[:12] or '?'}"
        opts = network.get("options") or {}
        self.bridge = opts.get(OPT_NAME) or f"dy-{self.id[:12]}"
        if not self.id:
            raise NetworkError(f"{self.label}: it has no id")
        if not _IFNAME.match(self.bridge):
            raise NetworkError(f"{self.label}: bridge name {self.bridge!r} is not a valid interface name "
                               "(at most 15 letters, digits, '_', '.', '-')")
        try:
            self.mtu = int(opts.get(OPT_MTU) or 1500)
            if not 68 <= self.mtu <= 65535:
                raise ValueError
        except ValueError:
            raise NetworkError(f"{self.label}: {OPT_MTU} {opts.get(OPT_MTU)!r} is not an MTU (68-65535)") from None
        masq = str(opts.get(OPT_MASQ, "true")).strip().lower()
        if masq not in ("true", "false", "1", "0", "yes", "no"):
            raise NetworkError(f"{self.label}: {OPT_MASQ} must be true or false, not {opts.get(OPT_MASQ)!r}")
        self.masquerade = masq in ("true", "1", "yes")
        self.internal = bool(network.get("internal"))
        if not ipam:
            return
        ipam = network.get("ipam") or {}
        try:
            self.subnet = ipaddress.IPv4Network(ipam["subnet"])
            gw = ipaddress.IPv4Address(ipam["gateway"])
        except (KeyError, TypeError, ValueError) as e:
            raise NetworkError(f"{self.label}: ipam needs an IPv4 subnet and gateway ({e})") from None
        if gw not in self.subnet:
            raise NetworkError(f"{self.label}: gateway {gw} is outside the subnet {self.subnet}")
        self.gateway = ipaddress.IPv4Interface(f"{gw}/{self.subnet.prefixlen}")


class _Endpoint:
    def __init__(self, net, endpoint):
        self.id = str(endpoint.get("id") or "")
        self.label = f"{net.label}, endpoint {endpoint.get('name') or self.id[:12] or '?'}"
        if not self.id:
            raise NetworkError(f"{self.label}: it has no id")
        digest = hashlib.sha256(f"{net.id}/{self.id}".encode()).hexdigest()
        self.veth = f"veth{digest[:10]}"
        self.owner = f"{net.bridge} {self.veth}"
        self.ipv4 = None
        if endpoint.get("ipv4"):
            try:
                self.ipv4 = ipaddress.IPv4Interface(endpoint["ipv4"])
            except ValueError:
                raise NetworkError(f"{self.label}: {endpoint['ipv4']!r} is not an IPv4 address") from None
            if self.ipv4.ip not in net.subnet:
                raise NetworkError(f"{self.label}: {self.ipv4.ip} is outside the subnet {net.subnet}")
            self.ipv4 = ipaddress.IPv4Interface(f"{self.ipv4.ip}/{net.subnet.prefixlen}")
        # Docker's MAC: 02:42 and the four bytes of the address
        self.mac = endpoint.get("mac") or (
            "02:42:" + ":".join(f"{b:02x}" for b in self.ipv4.ip.packed) if self.ipv4 else None)


class BridgeDriver:
    """Linux bridges, veth pairs and nftables rules."""

    def __init__(self):
        self._lock = threading.Lock()
        self._host = self._table = self._ports = None
        self.options = {}

    # -- set-up --------------------------------------------------------------------

    @hookimpl
    def network_supported(self, home, options):
        if os.geteuid() != 0:
            return "needs root (bridges, veth pairs and nftables)"
        if importlib.util.find_spec("pyroute2") is None:
            return "needs the pyroute2 library (pip install 'pyroute2>=0.9.7')"
        if shutil.which("nft") is None:
            return "needs nft (apt-get install nftables)"
        done = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True)
        if done.returncode != 0:
            return f"nftables is not usable here: {done.stderr.strip()}"
        return None

    @hookimpl
    def network_init(self, home, options):
        table = (options or {}).get("nft_table", "dockyard")
        if not _TABLE.match(str(table)):
            raise NetworkError(f"bridge driver: nft_table {table!r} must be letters, digits and '_'")
        with self._lock:
            self.options = dict(options or {}, nft_table=table)
            self._table = None
        return None

    def _ready(self):
        with self._lock:
            if self._host is None:
                from . import links, nft, ports  # pyroute2 is needed from here on
                self._links, self._nft, self._portsmod = links, nft, ports
                self._host, self._ports = links.Host(), ports.Reservations()
            if self._table is None:
                self._table = self._nft.Table(self.options.get("nft_table", "dockyard"))
        return self._links

    def close(self):
        """Close the host netlink socket and release every held port (tests)."""
        with self._lock:
            if self._ports is not None:
                for owner in self._ports.owners():
                    self._ports.release(owner)
            if self._host is not None:
                self._host.close()
                self._host = None

    @hookimpl
    def network_namespace(self, network):
        return "private"

    # -- networks ------------------------------------------------------------------

    @hookimpl
    def network_create(self, network):
        net = _Net(network)
        links = self._ready()
        overlaps = self._host.call(net.label, links.overlapping_routes, net.subnet, net.bridge)
        if overlaps:
            raise NetworkError(f"{net.label}: subnet {net.subnet} overlaps the host route {overlaps[0]}")
        made = self._host.call(f"{net.label}: bridge {net.bridge}", links.ensure_bridge,
                               net.bridge, net.gateway, net.mtu)
        try:
            self._table.add_network(net.label, net.bridge, net.subnet, net.gateway.ip, net.internal, net.masquerade)
        except BaseException:
            if made:
                self._host.call(f"{net.label}: removing bridge {net.bridge}", links.delete_link, net.bridge)
            raise
        return {"bridge": net.bridge, "nft_family": self._nft.FAMILY, "nft_table": self._table.name,
                "nft_comment": f"net {net.bridge}"}

    @hookimpl
    def network_delete(self, network):
        net = _Net(network, ipam=False)
        links = self._ready()
        ports = self._host.call(net.label, links.ports_of, net.bridge)
        for name in ports:
            if _VETH.match(name):  # endpoints never detached: their veths go too
                self._host.call(f"{net.label}: removing {name}", links.delete_link, name)
        for owner in self._ports.owners():
            if owner.startswith(net.bridge + " "):
                self._ports.release(owner)
        self._table.remove_network(net.label, net.bridge)
        self._host.call(f"{net.label}: removing bridge {net.bridge}", links.delete_link, net.bridge)
        return None

    # -- endpoints -----------------------------------------------------------------

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        net = _Net(network)
        ep = _Endpoint(net, endpoint)
        links = self._ready()
        if ep.ipv4 is None:
            raise NetworkError(f"{ep.label}: no IPv4 address was allocated")
        if not netns:
            raise NetworkError(f"{ep.label}: the bridge driver needs a network namespace")
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise NetworkError(f"{ep.label}: network namespace {netns}: {e.strerror}") from None
        try:
            if not links.is_netns(fd):
                raise NetworkError(f"{ep.label}: {netns} is not a network namespace")
            peer = ep.veth + "p"
            for _ in range(3):
                if self._host.call(f"{ep.label}: creating {ep.veth}", links.create_veth,
                                   ep.veth, net.bridge, net.mtu, fd, peer, ep.mac):
                    break
                done = self._reattach(net, ep, fd)  # attached already: a repeated call
                if done is not None:
                    return done
            else:
                raise NetworkError(f"{ep.label}: {ep.veth} keeps reappearing; another attach is running?")
            try:
                ifname = links.in_netns(f"{ep.label}: configuring its interface in {netns}", fd,
                                        links.configure_peer, peer, ep.ipv4, self._default_via(net))
            except BaseException:
                self._host.call(f"{ep.label}: removing {ep.veth}", links.delete_link, ep.veth)
                raise
        finally:
            os.close(fd)
        return self._result(net, ep, ifname, ep.mac)

    def _reattach(self, net, ep, fd):
        """``ep.veth`` exists: the result of the earlier attach if its peer is in
        this namespace with the address asked for, else None after removing it."""
        links = self._links
        idx = self._host.call(ep.label, links.index, ep.veth)
        if idx is None:
            return None
        found = links.in_netns(f"{ep.label}: reading its namespace", fd, links.find_peer, idx)
        if found is not None and str(ep.ipv4) in found[1]:
            return self._result(net, ep, found[0], found[2])
        self._host.call(f"{ep.label}: removing stale {ep.veth}", links.delete_link, ep.veth)
        return None

    @staticmethod
    def _default_via(net):
        """The default route's gateway an endpoint gets: none on an internal network."""
        return None if net.internal else net.gateway.ip

    @classmethod
    def _result(cls, net, ep, ifname, mac):
        via = cls._default_via(net)
        return {"interface": ifname, "ipv4": str(ep.ipv4), "gateway": str(via) if via else None,
                "mac": mac, "dns": [], "mtu": net.mtu}

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        net = _Net(network)
        ep = _Endpoint(net, endpoint)
        links = self._ready()
        self._host.call(f"{ep.label}: removing {ep.veth}", links.delete_link, ep.veth)
        self._table.remove_ports(ep.label, net.bridge, ep.veth)
        self._ports.release(ep.owner)
        return None

    # -- published ports -----------------------------------------------------------

    @hookimpl
    def network_publish(self, network, endpoint, ports):
        """Publish ``ports``, replacing what the endpoint published before; an
        internal network publishes nothing (as in Docker) and returns []."""
        net = _Net(network)
        ep = _Endpoint(net, endpoint)
        self._ready()
        ports = self._portsmod.normalise(ep.label, ports)
        if net.internal or not ports:
            if not ports:
                self._table.remove_ports(ep.label, net.bridge, ep.veth)
                self._ports.release(ep.owner)
            return []
        if ep.ipv4 is None:
            raise NetworkError(f"{ep.label}: no IPv4 address to publish ports to")
        bound, new = self._ports.reserve(ep.label, ep.owner, ports)
        try:
            self._table.set_ports(ep.label, net.bridge, ep.veth, bound, ep.ipv4.ip)
        except BaseException:
            self._ports.abort(ep.owner, new)
            raise
        self._ports.keep_only(ep.owner, bound)
        return bound
