"""An ``--internal`` network reaches nothing but its own subnet (issue 13, hole 8).

The attack: a container on an internal network connects to a service bound on
one of the host's addresses (eth0's, another network's gateway).  Before, the
container had a default route via its bridge and the connection succeeded: the
host's own addresses are not "outside", so the forward chain's drops never saw
it.  Since v25 dockerd gives an internal network no default route (moby#46603);
so does Dockyard, and its nft table drops what the network sends to the host's
addresses other than its own gateway, which catches the attacker who needs no
route: Ethernet frames made by hand (CAP_NET_RAW is a default capability).

The same hand-made frames from a *normal* network towards 127.0.0.1 are the
CVE-2020-8558 class: every bridge has ``route_localnet`` (for ports published on
127.0.0.1), so the host accepted them and its loopback-only services answered.
And over IPv6 the bridge's link-local address led to every host service bound
on ``::``; the networks are IPv4 only, so the bridges now have no IPv6.

The probes that must fail have a control where one exists: the same probe
succeeds from a normal network, or towards the internal network's own gateway
(which Docker leaves reachable), so these tests can fail.  Traffic stays on this
machine: the host's own addresses and the bridges' gateways.
"""

import ipaddress
import json
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
TOKEN = uuid.uuid4().hex[:6]


def _host_address():
    """A global IPv4 address of the host on an interface none of ours (eth0's)."""
    out = subprocess.run(["ip", "-j", "-4", "addr", "show", "scope", "global"],
                         capture_output=True, text=True, check=True).stdout
    for link in json.loads(out):
        if link["ifname"].startswith(("dy", "veth", "br-", "docker")):
            continue
        for a in link.get("addr_info", []):
            return a["local"]
    return None


class Listeners:
    """TCP and UDP listeners of the test process on host addresses, recording
    who reached them: ``tcp[(addr, port)]`` the peers accepted, ``udp[...]``
    the datagrams' texts."""

    def __init__(self):
        self.tcp, self.udp, self._socks = {}, {}, []
        self._stop = False

    def listen(self, addr, kind):
        """Listen on ``addr`` (``"::"``: every address, IPv4 and IPv6)."""
        s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, kind)
        if ":" in addr:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind((addr, 0))
        s.settimeout(0.2)
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        self._socks.append(s)
        key = s.getsockname()[:2]
        (self.tcp if kind == socket.SOCK_STREAM else self.udp)[key] = []
        threading.Thread(target=self._serve, args=(s, kind, key), daemon=True).start()
        return key

    def _serve(self, s, kind, key):
        while not self._stop:
            try:
                if kind == socket.SOCK_STREAM:
                    conn, peer = s.accept()
                    conn.close()
                    self.tcp[key].append(peer[0])
                else:
                    data, _ = s.recvfrom(2048)
                    self.udp[key].append(data.decode(errors="replace"))
            except OSError:
                continue

    def wait_udp(self, key, text, timeout=5):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and text not in self.udp[key]:
            time.sleep(0.05)
        return text in self.udp[key]

    def close(self):
        self._stop = True
        for s in self._socks:
            s.close()


@pytest.fixture(scope="module")
def probe(cc):
    return cc("netprobe", (HERE / "c" / "netprobe.c").read_text())


@pytest.fixture(scope="module")
def nets(daemon):
    """An internal and a normal user-defined network."""
    client = daemon.sdk()
    made = {}
    try:
        for kind, internal in (("int", True), ("nor", False)):
            net = client.networks.create(f"sec-{kind}-{TOKEN}", driver="bridge", internal=internal)
            net.reload()
            made[kind] = {"name": net.name, "obj": net, "gateway": net.attrs["IPAM"]["Config"][0]["Gateway"],
                          "subnet": net.attrs["IPAM"]["Config"][0]["Subnet"]}
        made["default_gateway"] = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
        yield made
    finally:
        for kind in ("int", "nor"):
            if kind in made:
                made[kind]["obj"].remove()
        client.close()


@pytest.fixture
def listeners():
    ls = Listeners()
    yield ls
    ls.close()


@pytest.fixture(scope="module")
def host_address():
    addr = _host_address()
    if addr is None:
        pytest.skip("this machine has no global IPv4 address outside Dockyard's bridges")
    return addr


def run_in(daemon, probe, networks, script):
    """Run ``sh -c script`` in a default busybox container on ``networks`` (the
    first is its NetworkMode, the others connected before start), with the probe
    at /h/netprobe; return its output."""
    client = daemon.sdk()
    c = client.containers.create("busybox", ["sh", "-c", script], network=networks[0],
                                 volumes={str(probe.parent): {"bind": "/h", "mode": "ro"}})
    try:
        for extra in networks[1:]:
            client.networks.get(extra).connect(c)
        c.start()
        assert c.wait(timeout=60)["StatusCode"] == 0, c.logs().decode()
        return c.logs().decode()
    finally:
        c.remove(force=True)
        client.close()


def frames(gateway, targets, text):
    """A script sending one hand-made frame per ``(addr, port)`` of ``targets``
    to the MAC of ``gateway`` (from the container's ARP table: a bridge's MAC
    changes as ports join it)."""
    script = f"ping -c1 -W1 {gateway} >/dev/null; mac=$(awk '$1 == \"{gateway}\" {{print $4}}' /proc/net/arp);"
    return script + "".join(f"/h/netprobe frame eth0 $mac {a} {p} {text}{a};" for a, p in targets)


def default_routes(output):
    return [line.split() for line in output.splitlines() if line.startswith("default")]


def test_internal_network_has_no_default_route(daemon, probe, nets):
    """moby#46603: a container on an internal network routes to its subnet only;
    on a normal network it routes out via its gateway (the control)."""
    internal = run_in(daemon, probe, [nets["int"]["name"]], "ip -4 route")
    assert default_routes(internal) == []
    assert any(line.startswith(nets["int"]["subnet"]) for line in internal.splitlines())
    normal = run_in(daemon, probe, [nets["nor"]["name"]], "ip -4 route")
    assert [r[2] for r in default_routes(normal)] == [nets["nor"]["gateway"]]


def test_internal_network_connects_to_no_host_address(daemon, probe, nets, listeners, host_address):
    """The reported attack: TCP from an internal network to a service on the
    host's eth0 address and on the other networks' gateways.  Every connection
    fails, and the same connections from a normal network succeed."""
    targets = [listeners.listen(a, socket.SOCK_STREAM)
               for a in (host_address, nets["nor"]["gateway"], nets["default_gateway"])]
    script = "".join(f"echo {a}:{p} $(/h/netprobe tcp {a} {p});" for a, p in targets)
    internal = dict(line.split() for line in run_in(daemon, probe, [nets["int"]["name"]], script).splitlines())
    assert all(result != "ok" for result in internal.values()), internal
    assert all(peers == [] for peers in listeners.tcp.values()), listeners.tcp
    normal = dict(line.split() for line in run_in(daemon, probe, [nets["nor"]["name"]], script).splitlines())
    assert set(normal.values()) == {"ok"}, normal


def test_internal_network_still_reaches_its_own_gateway(daemon, probe, nets, listeners):
    """What Docker leaves reachable: the internal network's own gateway (the
    host's address on its bridge), so the probe works from in there."""
    addr, port = listeners.listen(nets["int"]["gateway"], socket.SOCK_STREAM)
    out = run_in(daemon, probe, [nets["int"]["name"]], f"/h/netprobe tcp {addr} {port}")
    assert out.strip() == "ok"


def test_crafted_frames_from_internal_network_reach_no_host_address(daemon, probe, nets, listeners, host_address):
    """The attacker who needs no route: UDP in Ethernet frames made by hand and
    sent to the bridge's MAC, towards eth0's address, another network's gateway
    and 127.0.0.1.  None arrives; the last frame, to the network's own gateway,
    does (the control: frames get through, and in order)."""
    net = nets["int"]
    blocked = {a: listeners.listen(a, socket.SOCK_DGRAM) for a in (host_address, nets["nor"]["gateway"], "127.0.0.1")}
    control = listeners.listen(net["gateway"], socket.SOCK_DGRAM)
    script = frames(net["gateway"], [*blocked.values(), control], "from-internal-to-")
    assert run_in(daemon, probe, [net["name"]], script).split() == ["sent"] * 4
    assert listeners.wait_udp(control, f"from-internal-to-{net['gateway']}")
    time.sleep(0.3)
    assert {a: listeners.udp[key] for a, key in blocked.items()} == {a: [] for a in blocked}


def test_crafted_frames_from_normal_network_do_not_reach_host_loopback(daemon, probe, nets, listeners, host_address):
    """CVE-2020-8558 class: the bridges have route_localnet (ports published on
    127.0.0.1 need it), so a frame to 127.0.0.1 sent to the bridge's MAC was
    delivered to the host's loopback-only services.  It is dropped; the same
    frame to eth0's address, which Docker lets a normal network reach, arrives."""
    net = nets["nor"]
    loopback = listeners.listen("127.0.0.1", socket.SOCK_DGRAM)
    control = listeners.listen(host_address, socket.SOCK_DGRAM)
    script = frames(net["gateway"], [loopback, control], "from-normal-to-")
    assert run_in(daemon, probe, [net["name"]], script).split() == ["sent"] * 2
    assert listeners.wait_udp(control, f"from-normal-to-{host_address}")
    time.sleep(0.3)
    assert listeners.udp[loopback] == []


def test_on_internal_and_normal_networks_it_routes_out_through_the_normal_one(daemon, probe, nets, listeners,
                                                                             host_address):
    """As in Docker: the default route comes from the normal network, whichever
    is attached first (here the internal one is the NetworkMode), and the host's
    address is reached through it."""
    addr, port = listeners.listen(host_address, socket.SOCK_STREAM)
    out = run_in(daemon, probe, [nets["int"]["name"], nets["nor"]["name"]],
                 f"ip -4 route; /h/netprobe tcp {addr} {port}")
    assert [r[2] for r in default_routes(out)] == [nets["nor"]["gateway"]]
    assert out.splitlines()[-1] == "ok"
    normal = ipaddress.ip_network(nets["nor"]["subnet"])
    assert [ipaddress.ip_address(peer) in normal for peer in listeners.tcp[(addr, port)]] == [True]


def test_internal_network_reaches_no_host_service_over_ipv6(daemon, probe, nets, listeners):
    """The same attack over IPv6: the networks are IPv4 only, but the bridge had
    an IPv6 link-local address, which a container finds by pinging all nodes
    (ff02::1) and through which it reached every host service bound on ``::``
    (most dual-stack servers).  IPv6 is off on the bridge: no host address
    answers there and the listener sees nothing."""
    addr, port = listeners.listen("::", socket.SOCK_STREAM)
    script = ("sleep 2; me=$(ip -6 addr show eth0 | awk '/inet6/ {split($2, a, \"/\"); print a[1]}'); "
              "for a in $(ping -6 -c 2 -w 3 ff02::1%eth0 | sed -n 's/.* from \\([0-9a-f:]*\\):.*/\\1/p' | sort -u); do "
              f"[ $a = \"$me\" ] || echo $a $(echo hi | nc -w 2 $a%eth0 {port} >/dev/null 2>&1 && echo ok "
              "|| echo failed); "
              "done; echo done")
    out = run_in(daemon, probe, [nets["int"]["name"]], script)
    assert out.splitlines()[-1] == "done" and " ok" not in out, out
    assert listeners.tcp[(addr, port)] == []
    bridge = "dy-" + nets["int"]["obj"].id[:12]
    assert subprocess.run(["ip", "-6", "addr", "show", "dev", bridge], capture_output=True, text=True,
                          check=True).stdout == ""
