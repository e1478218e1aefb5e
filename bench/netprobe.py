"""Part 1 of net_latency.py: three ways to put a ready network namespace on a
bridge (Dockyard's bridge driver through pluggy, plain ``ip`` commands, pyroute2
done naively), and the probe that times the first packet to the gateway.

Each attach is timed from the call until the first ICMP echo reply from the
gateway.  The probe's raw socket is opened beforehand, untimed, by a thread that
``setns()``\\ s into the namespace (a socket stays in the namespace it was made
in), so the timed part is the attach and the probe's send/poll loop only.

Seen here (kernel 6.18): when the first packet leaves within a fraction of a
millisecond of the interface coming up, the ARP request for the gateway can be
lost (the kernel finishes bringing a link up asynchronously), and the neighbour
code asks again only after ``retrans_time_ms`` (1000): that run takes ~1 s.  The
probes-sent count per run shows it (1 = answered at once, ~480 = the retry).
"""

import ctypes
import errno
import ipaddress
import itertools
import os
import select
import socket
import struct
import threading
import time
import uuid

from common import NotAvailable, run_cmd

CLONE_NEWNET = 0x40000000
OPT_NAME = "com.docker.network.bridge.name"
_libc = ctypes.CDLL(None, use_errno=True)


# --- the probe ----------------------------------------------------------------------
def in_netns(path, fn):
    """``fn()`` in a thread of its own that joined the network namespace at ``path``."""
    box = {}

    def run():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {path}: {os.strerror(err)}")
            finally:
                os.close(fd)
            box["result"] = fn()
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, name="bench-netns")
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def icmp_socket(path):
    return in_netns(path, lambda: socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))


def _checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def _echo(ident, seq):
    head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    body = b"dockyard-bench"
    return struct.pack("!BBHHH", 8, 0, _checksum(head + body), ident, seq) + body


def first_reply(sock, dst, timeout=5.0, interval=0.002):
    """Send ICMP echo requests to ``dst`` every ``interval`` s until one is
    answered; return how many were sent.  A send that fails (no route or carrier
    yet) counts as a lost probe."""
    ident, sent = os.getpid() & 0xFFFF, 0
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        sent += 1
        try:
            sock.sendto(_echo(ident, sent & 0xFFFF), (dst, 0))
        except OSError as exc:
            if exc.errno not in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENOBUFS, errno.ENETDOWN, errno.EAGAIN):
                raise
        until = time.perf_counter() + interval
        while (left := until - time.perf_counter()) > 0:
            if not select.select([sock], [], [], left)[0]:
                break
            packet, (src, _) = sock.recvfrom(2048)
            icmp = packet[(packet[0] & 0x0F) * 4:]  # after the IP header
            if src == dst and icmp[:1] == b"\0" and struct.unpack("!H", icmp[4:6])[0] == ident:
                return sent
    raise NotAvailable(f"no echo reply from {dst} within {timeout:.0f} s ({sent} probes sent)")


# --- what every way of attaching shares ---------------------------------------------------
class Lab:
    """A subnet and namespace/interface names of the workspace's token and a
    one-letter ``tag``; the namespaces are pinned under /run/netns so that
    ``ip -n NAME`` finds them too."""

    def __init__(self, ws, subnet, tag):
        self.ws = ws
        self.subnet = ipaddress.IPv4Network(subnet)
        self.gateway = str(self.subnet.network_address + 1)
        self.ns_prefix = f"dybench-{ws.token}-{tag}"
        self.link_prefix = f"vb{ws.token}{tag}"  # veths of the ip and pyroute2 ways (+3 hex, +p)
        self._n = itertools.count(1)
        ws.on_cleanup(f"removing namespaces /run/netns/{self.ns_prefix}*", self.remove_namespaces)
        self._hosts = itertools.cycle(range(2, min(self.subnet.num_addresses - 1, 250)))

    def next(self):
        """(namespace name, its path, a fresh ``addr/len``, Docker's MAC for it, a veth name)."""
        n = next(self._n)
        ip = self.subnet.network_address + next(self._hosts)
        mac = "02:42:" + ":".join(f"{b:02x}" for b in ip.packed)
        name = f"{self.ns_prefix}{n}"
        return name, f"/run/netns/{name}", f"{ip}/{self.subnet.prefixlen}", mac, f"{self.link_prefix}{n % 4096:03x}"

    def remove_namespaces(self):
        """Namespaces a failed or interrupted run left pinned (normally none)."""
        from dockyard.engine.networks import netns

        left = sorted(n for n in os.listdir("/run/netns") if n.startswith(self.ns_prefix)) \
            if os.path.isdir("/run/netns") else []
        for name in left:
            netns.delete(f"/run/netns/{name}")
        if left:
            raise NotAvailable(f"namespaces left behind: {', '.join(left)} (removed)")

    def measure(self, way):
        """One timed attach + first reply with ``way``, on a fresh namespace
        (made, and afterwards detached and deleted, untimed); returns (ms, probes
        sent, ms of the attach alone)."""
        from dockyard.engine.networks import netns

        name, path, addr, mac, veth = self.next()
        netns.create(path)
        try:
            sock = icmp_socket(path)
            try:
                handle = way.prepare(name, path, addr, mac, veth)
                try:
                    start = time.perf_counter()
                    way.attach(handle)
                    attached = time.perf_counter()
                    probes = first_reply(sock, self.gateway)
                    return (time.perf_counter() - start) * 1000, probes, (attached - start) * 1000
                finally:
                    way.detach(handle)
            finally:
                sock.close()
        finally:
            netns.delete(path)


# --- the ways -------------------------------------------------------------------------------
def load_bridge_driver():
    """Dockyard's ``bridge`` network driver (its entry point) through pluggy, as the
    driver tests load it; returns (driver, hook)."""
    from importlib.metadata import entry_points

    import pluggy
    from dockyard.hookspecs import PROJECT
    from dockyard.hookspecs import network as network_specs

    eps = [ep for ep in entry_points(group="dockyard.network") if ep.name == "bridge"]
    if not eps:
        raise NotAvailable("no 'bridge' entry point in group dockyard.network (not installed)")
    driver = eps[0].load()()
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(network_specs)
    pm.register(driver, name="bridge")
    pm.check_pending()
    return driver, pm.hook


class DriverWay:
    """Dockyard's bridge driver: one network made once; per run network_attach
    (veth made with its peer in the namespace, configured from a thread inside)."""

    def __init__(self, ws, lab, bridge, table):
        from dockyard.errors import NetworkError

        self.lab, self.bridge, self.table = lab, bridge, table
        self.driver, self.hook = load_bridge_driver()
        home = str(ws.tmp / "bridge-driver")
        reason = self.hook.network_supported(home=home, options={"nft_table": table})
        if reason:
            raise NotAvailable(reason)
        self.hook.network_init(home=home, options={"nft_table": table})
        self.network = {"id": uuid.uuid4().hex + uuid.uuid4().hex, "name": "bench", "driver": "bridge",
                        "options": {OPT_NAME: bridge}, "internal": False, "labels": {},
                        "ipam": {"subnet": str(lab.subnet), "gateway": lab.gateway}}
        ws.on_cleanup(f"deleting the driver's network (bridge {bridge}, nft table {table})", self.close)
        try:
            self.hook.network_create(network=self.network)
        except NetworkError as exc:
            raise NotAvailable(f"network_create: {exc}") from None

    def close(self):
        import hostnet

        try:
            self.hook.network_delete(network=self.network)
        finally:
            self.driver.close()
            left = ([f"link {self.bridge}"] if hostnet.remove_link(self.bridge) else []) + \
                [f"nft table {f} {self.table}" for f in hostnet.remove_nft_table(self.table)]
            if left:
                raise NotAvailable(f"network_delete left {', '.join(left)} (removed)")

    def prepare(self, name, path, addr, mac, veth):
        return path, {"id": uuid.uuid4().hex, "name": name, "network_id": self.network["id"],
                      "ipv4": addr, "aliases": []}

    def attach(self, handle):
        path, ep = handle
        got = self.hook.network_attach(network=self.network, endpoint=ep, netns=path)
        if got.get("ipv4") != ep["ipv4"]:
            raise NotAvailable(f"network_attach returned {got!r}")

    def detach(self, handle):
        path, ep = handle
        self.hook.network_detach(network=self.network, endpoint=ep, netns=path)


class IpWay:
    """Plain ``ip`` commands: the veth made with its peer in the namespace (on the
    driver's bridge, up), then address, link up and default route inside."""

    def __init__(self, lab, bridge):
        self.lab, self.bridge = lab, bridge
        run_cmd(["ip", "-V"])

    def commands(self, name, addr, mac, veth):
        return [["ip", "link", "add", veth, "master", self.bridge, "up", "type", "veth",
                 "peer", "name", "eth0", "address", mac, "netns", name],
                ["ip", "-n", name, "addr", "add", addr, "dev", "eth0"],
                ["ip", "-n", name, "link", "set", "eth0", "up"],
                ["ip", "-n", name, "route", "add", "default", "via", self.lab.gateway]]

    def prepare(self, name, path, addr, mac, veth):
        return veth, self.commands(name, addr, mac, veth)

    def attach(self, handle):
        for cmd in handle[1]:
            run_cmd(cmd)

    def detach(self, handle):
        import hostnet

        hostnet.remove_link(handle[0])


class Pyroute2Way:
    """pyroute2 as a first script would use it: the veth pair made in the host, the
    peer moved into the namespace, the host end put on the bridge and up; then
    ``IPRoute(netns=NAME)`` to rename, address, bring up and route inside.  Both
    sockets are opened per run."""

    def __init__(self, lab, bridge):
        import pyroute2
        from pyroute2 import config

        self.lab, self.bridge, self.version = lab, bridge, pyroute2.__version__
        # IPRoute(netns=...) forks a helper that its close() stops with SIGTERM;
        # run_bench makes SIGTERM raise KeyboardInterrupt, which in a helper not yet
        # gone would unwind into this program's own stack and run the workspace's
        # clean-up there (seen: it hung on the driver's threads).  This makes the
        # helper take SIGTERM's default.
        config.disable_mp_signal = True

    def prepare(self, name, path, addr, mac, veth):
        return name, addr, mac, veth

    def attach(self, handle):
        from pyroute2 import IPRoute

        name, addr, mac, veth = handle
        peer = veth + "p"
        with IPRoute() as ipr:
            ipr.link("add", ifname=veth, kind="veth", peer=peer)
            ipr.link("set", index=ipr.link_lookup(ifname=peer)[0], net_ns_fd=name)
            ipr.link("set", index=ipr.link_lookup(ifname=veth)[0], master=ipr.link_lookup(ifname=self.bridge)[0],
                     state="up")
        with IPRoute(netns=name) as ns:
            idx = ns.link_lookup(ifname=peer)[0]
            ns.link("set", index=idx, ifname="eth0", address=mac, state="up")
            ip, plen = addr.split("/")
            ns.addr("add", index=idx, address=ip, prefixlen=int(plen))
            ns.route("add", dst="0.0.0.0/0", gateway=self.lab.gateway)

    def detach(self, handle):
        import hostnet

        veth = handle[3]
        hostnet.remove_link(veth)
        hostnet.remove_link(veth + "p")  # if the move failed
