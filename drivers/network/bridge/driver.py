"""The ``bridge`` network driver: Docker's bridge driver, with nftables.

* a network is a Linux bridge (``dy-<id[:12]>`` unless the
  ``com.docker.network.bridge.name`` option names one) holding the gateway
  address (IPv6 is disabled on it unless the network has IPv6: ``EnableIPv6``, its
  IPv6 gateway on it and its IPv6 rules in the ``ip6`` twin of the table), plus its
  rules in the daemon's own nft table (see :mod:`.nft`):
  masquerade out, forwarding, isolation from the other bridges;
* an endpoint is a veth pair: ``veth<10 hex>`` on the bridge, its peer made
  directly in the container's namespace and renamed ``eth0`` (``eth1``... when
  the container is on several networks), routing by default via the gateway;
* a bridge a network names (the default network's, or a user network's
  ``com.docker.network.bridge.name``) and the nft table are claimed before they
  are touched (see :mod:`.claims`): a second daemon is refused, told which
  daemon has them; the default bridge outlives its network, as docker0 does;
* each data root has a table of its own by default (``dockyard_<hash of the
  data root>``, recorded in the driver's home); rules a network left in the
  table of an earlier daemon of this data root are removed when it is set up;
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

import atexit
import hashlib
import importlib.util
import ipaddress
import os
import re
import shutil
import subprocess
import threading

from dockyard.errors import Conflict, InvalidParameter, NetworkError
from dockyard.hookspecs import hookimpl

from .claims import Claims, describe

OPT_NAME = "com.docker.network.bridge.name"
OPT_DEFAULT = "com.docker.network.bridge.default_bridge"
OPT_MTU = "com.docker.network.driver.mtu"
OPT_MASQ = "com.docker.network.bridge.enable_ip_masquerade"
_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_TABLE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_VETH = re.compile(r"^veth[0-9a-f]{10}$")
TABLE_RECORD = "nft_table"  # in the driver's home: this data root's default table name


class BadOption(NetworkError, InvalidParameter):
    """A network's options are wrong: bad input (400), as dockerd answers."""


class Claimed(NetworkError, Conflict):
    """A bridge or table another live daemon owns (409)."""


class _Net:
    """A network dict, checked: what the hooks need of it (delete needs no IPAM)."""

    def __init__(self, network, ipam=True):
        self.id = str(network.get("id") or "")
        self.label = f"network {network.get('name') or self.id[:12] or '?'}"
        opts = network.get("options") or {}
        self.bridge = opts.get(OPT_NAME) or f"dy-{self.id[:12]}"
        #: a name given (claimed: unlike dy-<id>, another daemon may name it too)
        self.named = bool(opts.get(OPT_NAME))
        self.default = str(opts.get(OPT_DEFAULT, "")).lower() == "true"
        data = network.get("driver_data") or {}
        #: the table this network's rules were put in last (by an earlier daemon)
        self.last_table = data.get("nft_table") if _TABLE.match(str(data.get("nft_table") or "")) else None
        if not self.id:
            raise NetworkError(f"{self.label}: it has no id")
        if not _IFNAME.match(self.bridge):
            raise BadOption(f"{self.label}: bridge name {self.bridge!r} is not a valid interface name "
                            "(at most 15 letters, digits, '_', '.', '-')")
        try:
            self.mtu = int(opts.get(OPT_MTU) or 1500)
            if not 68 <= self.mtu <= 65535:
                raise ValueError
        except ValueError:
            raise BadOption(f"{self.label}: {OPT_MTU} {opts.get(OPT_MTU)!r} is not an MTU (68-65535)") from None
        masq = str(opts.get(OPT_MASQ) or "true").strip().lower()
        if masq not in ("true", "false", "1", "0", "yes", "no"):
            raise BadOption(f"{self.label}: {OPT_MASQ} must be true or false, not {opts.get(OPT_MASQ)!r}")
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
        self.subnet6 = self.gateway6 = None  # an EnableIPv6 network's
        ipam6 = network.get("ipam6")
        if ipam6:
            try:
                self.subnet6 = ipaddress.IPv6Network(ipam6["subnet"])
                gw6 = ipaddress.IPv6Address(ipam6["gateway"])
            except (KeyError, TypeError, ValueError) as e:
                raise NetworkError(f"{self.label}: ipam6 needs an IPv6 subnet and gateway ({e})") from None
            if gw6 not in self.subnet6:
                raise NetworkError(f"{self.label}: gateway {gw6} is outside the subnet {self.subnet6}")
            self.gateway6 = ipaddress.IPv6Interface(f"{gw6}/{self.subnet6.prefixlen}")


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
        self.ipv6 = None
        if endpoint.get("ipv6") and net.subnet6 is not None:
            try:
                self.ipv6 = ipaddress.IPv6Interface(endpoint["ipv6"])
            except ValueError:
                raise NetworkError(f"{self.label}: {endpoint['ipv6']!r} is not an IPv6 address") from None
            if self.ipv6.ip not in net.subnet6:
                raise NetworkError(f"{self.label}: {self.ipv6.ip} is outside the subnet {net.subnet6}")
        try:  # --link-local-ip: more addresses on the interface (169.254.0.0/16)
            self.link_local = [ipaddress.IPv4Interface(a) for a in endpoint.get("link_local") or ()]
        except ValueError as e:
            raise NetworkError(f"{self.label}: bad link-local address ({e})") from None
        # Docker's MAC: 02:42 and the four bytes of the address
        self.mac = endpoint.get("mac") or (
            "02:42:" + ":".join(f"{b:02x}" for b in self.ipv4.ip.packed) if self.ipv4 else None)


class BridgeDriver:
    """Linux bridges, veth pairs and nftables rules."""

    def __init__(self):
        self._lock = threading.Lock()
        self._host = self._table = self._table6 = self._ports = None
        self._claims = None
        self._named = {}  # bridge name given -> the id of the network that has it
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
        """Choose the nft table (the ``nft_table`` option, else this data root's
        own) and claim it: a table another live daemon owns is refused here,
        before the daemon touches anything."""
        options = dict(options or {})
        data_root = os.path.dirname(os.path.dirname(os.path.abspath(home)))  # home: <data-root>/network/bridge
        given = options.get("nft_table")
        table = str(given) if given else default_table(home, data_root)
        if not _TABLE.match(table):
            raise NetworkError(f"bridge driver: nft_table {table!r} must be letters, digits and '_' (at most 64)")
        with self._lock:  # started again (tests): what the last start claimed goes first
            if self._claims is not None:
                self._claims.release_all()
                self._named.clear()
            else:  # what the daemon holds goes with it (the kernel drops the locks anyway)
                atexit.register(lambda: self._claims and self._claims.release_all())
            self._claims = claims = Claims(data_root)
            self._table = None
        holder = claims.claim("nft-table", table)
        if holder is not None:
            how = ("give this daemon a table of its own with --network-opt nft_table=NAME, or leave the "
                   "option out (each data root has a table of its own)") if given else \
                f"give this daemon a table of its own with --network-opt nft_table=NAME (its default is recorded " \
                f"in {os.path.join(home, TABLE_RECORD)}: was the data root copied?)"
            raise Claimed(f"nft table ip {table} belongs to another Dockyard daemon ({describe(holder)}): {how}")
        with self._lock:
            self.options = dict(options, nft_table=table)
        return None

    def _ready(self):
        with self._lock:
            if self._host is None:
                from . import links, nft, ports  # pyroute2 is needed from here on
                self._links, self._nft, self._portsmod = links, nft, ports
                self._host, self._ports = links.Host(), ports.Reservations()
            if self._table is None:
                self._table = self._nft.Table(self.options["nft_table"])
                self._table6 = self._nft.Table(self.options["nft_table"], family="ip6")
        return self._links

    def close(self):
        """Close the host netlink socket and release every held port and claim (tests)."""
        with self._lock:
            if self._ports is not None:
                for owner in self._ports.owners():
                    self._ports.release(owner)
            if self._host is not None:
                self._host.close()
                self._host = None
            if self._claims is not None:
                self._claims.release_all()

    def _claim_bridge(self, net):
        """Claim ``net``'s bridge if a name was given; raise :class:`Claimed`
        naming the daemon that has it, or the network of ours (dockerd's
        "conflicts with network ... by bridge name")."""
        if not net.named:
            return
        other = self._named.setdefault(net.bridge, net.id)
        if other != net.id:
            raise Claimed(f"{net.label}: bridge {net.bridge} is the bridge of network {other[:12]} already")
        holder = self._claims.claim("bridge", net.bridge)
        if holder is None:
            return
        del self._named[net.bridge]
        how = ("stop that daemon, or give this one a bridge of its own with --bridge NAME" if net.default
               else f"name another bridge in the option {OPT_NAME}")
        raise Claimed(f"{net.label}: bridge {net.bridge} belongs to another Dockyard daemon "
                      f"({describe(holder)}): {how}")

    def _tables(self, net):
        """The table of ``net``'s rules, and the one an earlier daemon of this
        data root put them in when that was another (``nft_table`` changed, or
        the shared ``dockyard`` table of older releases)."""
        tables = [self._table]
        if net.last_table and net.last_table != self._table.name:
            tables.append(self._nft.Table(net.last_table))
        return tables

    @hookimpl
    def network_namespace(self, network):
        return "private"

    # -- networks ------------------------------------------------------------------

    @hookimpl
    def network_create(self, network):
        """Make the bridge and its rules.  The subnet may overlap a host route:
        as dockerd, only the pools the core picks itself avoid them, and the
        core refuses overlaps between its own networks."""
        net = _Net(network)
        links = self._ready()
        fresh = net.named and net.bridge not in self._named
        self._claim_bridge(net)
        made = False
        try:
            for old in self._tables(net)[1:]:
                old.remove_network(f"{net.label}: removing its rules from the earlier table {old.name}", net.bridge)
            made = self._host.call(f"{net.label}: bridge {net.bridge}", links.ensure_bridge,
                                   net.bridge, net.gateway, net.mtu, net.gateway6)
            self._table.add_network(net.label, net.bridge, net.subnet, net.gateway.ip, net.internal, net.masquerade)
            if net.gateway6 is not None:  # its IPv6 rules, in the ip6 table of the same name
                self._table6.add_network(net.label, net.bridge, net.subnet6, net.gateway6.ip, net.internal,
                                         net.masquerade)
            else:
                self._table6.remove_network(net.label, net.bridge)
        except BaseException:
            if made:
                self._host.call(f"{net.label}: removing bridge {net.bridge}", links.delete_link, net.bridge)
            if fresh:  # no name held for a network that is not there
                self._named.pop(net.bridge, None)
                self._claims.release("bridge", net.bridge)
            raise
        return {"bridge": net.bridge, "nft_family": "ip6" if net.gateway6 else self._nft.FAMILY,
                "nft_table": self._table.name,
                "nft_comment": f"net {net.bridge}"}

    @hookimpl
    def network_delete(self, network):
        """Remove the network's rules, and its bridge and the veths left on it;
        but the default bridge outlives its network (as docker0 does) and only
        loses the network's gateway address, and a named bridge another live
        daemon owns is left as it is."""
        net = _Net(network, ipam=False)
        links = self._ready()
        shared = self._named.get(net.bridge, net.id) != net.id  # the bridge of another network of ours
        ours = not shared and (not net.named or self._claims.claim("bridge", net.bridge) is None)
        for owner in self._ports.owners():
            if owner.startswith(net.bridge + " "):
                self._ports.release(owner)
        for table in self._tables(net):
            table.remove_network(net.label, net.bridge)
        self._table6.remove_network(net.label, net.bridge)
        if ours and net.default:  # the bridge stays, without the network's gateway (as docker0 with a new --bip)
            gateway = _gateway_of(network)
            if gateway is not None:
                self._host.call(f"{net.label}: removing {gateway} from {net.bridge}", links.delete_address,
                                net.bridge, gateway)
        elif ours:
            ports = self._host.call(net.label, links.ports_of, net.bridge)
            for name in ports:
                if _VETH.match(name):  # endpoints never detached: their veths go too
                    self._host.call(f"{net.label}: removing {name}", links.delete_link, name)
            self._host.call(f"{net.label}: removing bridge {net.bridge}", links.delete_link, net.bridge)
        if ours and net.named:
            self._claims.release("bridge", net.bridge)
            if self._named.get(net.bridge) == net.id:
                del self._named[net.bridge]
        return None

    # -- endpoints -----------------------------------------------------------------

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        net = _Net(network)
        ep = _Endpoint(net, endpoint)
        links = self._ready()
        self._claim_bridge(net)  # its create may have been refused: never onto another daemon's bridge
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
                                        links.configure_peer, peer, ep.ipv4, self._default_via(net),
                                        ep.link_local, ep.ipv6, self._default_via6(net))
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

    @staticmethod
    def _default_via6(net):
        return None if net.internal or net.gateway6 is None else net.gateway6.ip

    @classmethod
    def _result(cls, net, ep, ifname, mac):
        via, via6 = cls._default_via(net), cls._default_via6(net)
        out = {"interface": ifname, "ipv4": str(ep.ipv4), "gateway": str(via) if via else None,
               "mac": mac, "dns": [], "mtu": net.mtu}
        if ep.ipv6 is not None:  # an EnableIPv6 network's
            out.update(ipv6=str(ep.ipv6), gateway6=str(via6) if via6 else None)
        return out

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        net = _Net(network)
        ep = _Endpoint(net, endpoint)
        links = self._ready()
        self._host.call(f"{ep.label}: removing {ep.veth}", links.delete_link, ep.veth)
        self._table.remove_ports(ep.label, net.bridge, ep.veth)
        if net.gateway6 is not None:
            self._table6.remove_ports(ep.label, net.bridge, ep.veth)
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
                self._table6.remove_ports(ep.label, net.bridge, ep.veth)
                self._ports.release(ep.owner)
            return []
        if ep.ipv4 is None:
            raise NetworkError(f"{ep.label}: no IPv4 address to publish ports to")
        bound, new = self._ports.reserve(ep.label, ep.owner, ports)
        try:
            self._table.set_ports(ep.label, net.bridge, ep.veth, bound, ep.ipv4.ip)
            if ep.ipv6 is not None:  # the host's IPv6 addresses too, for ports published on every address
                self._table6.set_ports(ep.label, net.bridge, ep.veth,
                                       [p for p in bound if p["host_ip"] == "0.0.0.0"], ep.ipv6.ip)
        except BaseException:
            self._ports.abort(ep.owner, new)
            raise
        self._ports.keep_only(ep.owner, bound)
        return bound


def _gateway_of(network):
    """The gateway of ``network``'s IPAM as an ``IPv4Interface``, or None."""
    ipam = network.get("ipam") or {}
    try:
        return ipaddress.IPv4Interface(f"{ipam['gateway']}/{ipaddress.IPv4Network(ipam['subnet']).prefixlen}")
    except (KeyError, TypeError, ValueError):
        return None


def default_table(home, data_root):
    """This data root's own table name: the one recorded in ``home``, else
    ``dockyard_<10 hex of its path's hash>``, recorded then, so that it stays
    the same when the data root is moved."""
    record = os.path.join(home, TABLE_RECORD)
    try:
        with open(record) as fh:
            name = fh.read().strip()
        if _TABLE.match(name):
            return name
    except FileNotFoundError:
        pass
    except OSError as e:
        raise NetworkError(f"bridge driver: reading {record}: {e.strerror}") from None
    name = "dockyard_" + hashlib.sha256(os.path.realpath(data_root).encode()).hexdigest()[:10]
    tmp = f"{record}.{os.getpid()}.tmp"
    try:
        with open(tmp, "w") as fh:
            fh.write(name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, record)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise NetworkError(f"bridge driver: recording the nft table's name in {record}: {e.strerror}") from None
    return name
