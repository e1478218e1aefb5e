"""The ``bridge`` network driver, driven directly through its hooks (needs root).

Real bridges, veth pairs and nftables rules.  The "containers" are network
namespaces made here (``dytest-<token>-<n>``); an "outside" namespace joined to
the host by a plain veth pair stands in for the world beyond the host.  Traffic
flows only between those namespaces and the host.  The nft table, the bridge
names, the subnets (``10.<B>.<n>.0/24``, ``B`` free on this host) and the
namespaces are unique to this module, and at its end none of them may be left.
"""

import hashlib
import ipaddress
import json
import os
import random
import socket
import subprocess
import sys
import uuid

import pluggy
import pytest

from dockyard.errors import NetworkError
from dockyard.hookspecs import PROJECT
from dockyard.hookspecs import network as network_specs
from dockyard.testing.daemon import links_named, nft_tables
from dockyard.testing.leaks import NETNS_PREFIX

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="the bridge driver needs root"),
              pytest.mark.xdist_group("host")]  # routes of the host and an "outside": one network test at a time

BridgeDriver = pytest.importorskip("dockyard.drivers.network.bridge.driver").BridgeDriver

TOKEN = uuid.uuid4().hex[:6]
TABLE = f"dyt_{TOKEN}"
PREFIX = f"dyt{TOKEN}"  # bridges, dummies and the outside veth
NS_PREFIX = f"{NETNS_PREFIX}{TOKEN}-"  # the session's own names
MADE = {"veths": set(), "links": set()}  # every interface name the driver was asked to make


def _host_routes():
    out = subprocess.run(["ip", "-4", "-o", "route", "show", "table", "main"], capture_output=True, text=True).stdout
    nets = []
    for line in out.splitlines():
        dst = line.split()[0]
        if dst != "default":
            nets.append(ipaddress.ip_network(dst, strict=False))
    return nets


def _free_octets(n):
    """``n`` second octets B with 10.B.0.0/16 free of host routes."""
    routes = _host_routes()
    free = [b for b in range(64, 250)
            if not any(r.overlaps(ipaddress.ip_network(f"10.{b}.0.0/16")) for r in routes)]
    return random.sample(free, n)


B, C = _free_octets(2)  # B: this module's networks; C: the overlap test's host route
OUTSIDE_HOST, OUTSIDE_PEER = f"10.{B}.250.1", f"10.{B}.250.2"

SERVER = r"""
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, a = s.accept(); c.sendall(a[0].encode()); c.close()
    else:
        d, a = s.recvfrom(100); s.sendto(a[0].encode(), a)
"""

CLIENT = r"""
import socket, sys
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    if proto == "tcp":
        s = socket.create_connection((host, port), timeout=float(sys.argv[4]))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[4]))
        s.connect((host, port)); s.send(b"hi")
    print(s.recv(100).decode())
except OSError as e:
    print(e, file=sys.stderr); sys.exit(1)
"""


def ns_run(ns, *cmd, check=True):
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, check=check)


def connect(host, port, ns=None, proto="tcp", timeout=1.5):
    """The peer address the server saw, or None when the connection failed."""
    cmd = [sys.executable, "-c", CLIENT, host, str(port), proto, str(timeout)]
    done = subprocess.run(["ip", "netns", "exec", ns, *cmd] if ns else cmd, capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def ping(ns, ip):
    return ns_run(ns, "/bin/busybox", "ping", "-c1", "-W1", ip, check=False).returncode == 0


def veth_of(net, ep):
    return "veth" + hashlib.sha256(f"{net['id']}/{ep['id']}".encode()).hexdigest()[:10]


def table_text():
    return subprocess.run(["nft", "list", "table", "ip", TABLE], capture_output=True, text=True).stdout


def rules_tagged(tag):
    """Rules whose comment is ``tag`` (or starts with it, when it ends in a space)."""
    want = f'comment "{tag}' if tag.endswith(" ") else f'comment "{tag}"'
    return [line.strip() for line in table_text().splitlines() if want in line]


def ip_json(ns, *args):
    """``ip -j ARGS`` in namespace ``ns`` (the host's for None)."""
    cmd = ["ip", "-j", *args]
    return json.loads(subprocess.run(["ip", "netns", "exec", ns, *cmd] if ns else cmd,
                                     capture_output=True, text=True, check=True).stdout)


def make_hook(driver):
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(network_specs)
    pm.register(driver, name="bridge")
    pm.check_pending()
    assert pm.hook.network_supported(home="/nonexistent", options={}) is None
    pm.hook.network_init(home="/nonexistent", options={"nft_table": TABLE})
    return pm.hook


class Env:
    """A driver, and what a test made with it, undone in :meth:`cleanup`."""

    def __init__(self):
        self.driver = BridgeDriver()
        self.hook = make_hook(self.driver)
        self.networks, self.endpoints, self.namespaces, self.procs, self.links = [], [], [], [], []
        self._n = 0

    def network(self, n, name=None, internal=False, bridge="", **options):
        net = {"id": uuid.uuid4().hex + uuid.uuid4().hex, "name": name or f"net{n}", "driver": "bridge",
               "options": dict(options), "internal": internal, "labels": {},
               "ipam": {"subnet": f"10.{B}.{n}.0/24", "gateway": f"10.{B}.{n}.1"}}
        if bridge is not None:
            net["options"]["com.docker.network.bridge.name"] = bridge or f"{PREFIX}{n}"
        MADE["links"].add(net["options"].get("com.docker.network.bridge.name") or f"dy-{net['id'][:12]}")
        self.networks.append(net)
        data = self.hook.network_create(network=net)
        assert data["bridge"] in MADE["links"] and data["nft_table"] == TABLE
        return net

    def netns(self):
        self._n += 1
        name = f"{NS_PREFIX}{self._n}"
        subprocess.run(["ip", "netns", "add", name], check=True)
        self.namespaces.append(name)
        return name

    def endpoint(self, net, host):
        n = net["ipam"]["subnet"].split(".")[2]
        ep = {"id": uuid.uuid4().hex, "name": f"ep{n}-{host}", "network_id": net["id"],
              "ipv4": f"10.{B}.{n}.{host}/24", "aliases": []}
        MADE["veths"].add(veth_of(net, ep))
        return ep

    def attach(self, net, ns, host):
        ep = self.endpoint(net, host)
        self.endpoints.append((net, ep, ns))
        return ep, self.hook.network_attach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")

    def serve(self, ns, port, proto="tcp"):
        cmd = [sys.executable, "-c", SERVER, proto, str(port)]
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *cmd] if ns else cmd,
                                stdout=subprocess.PIPE, text=True)
        self.procs.append(proc)
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def plain_link(self, tag):
        """A host veth pair ``<PREFIX><tag>``/``<PREFIX><tag>p`` of the test's own
        (this kernel has no dummy driver); return the first name."""
        name = f"{PREFIX}{tag}"
        self.links.append(name)
        MADE["links"].update({name, name + "p"})
        subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"], check=True)
        subprocess.run(["ip", "link", "set", name + "p", "up"], check=True)
        return name

    def outside(self):
        """A namespace beyond the host: ``OUTSIDE_PEER``, routed via ``OUTSIDE_HOST``."""
        ns, link = self.netns(), f"{PREFIX}o"
        self.links.append(link)
        MADE["links"].add(link)
        cmds = [["ip", "link", "add", link, "type", "veth", "peer", "name", "out0", "netns", ns],
                ["ip", "addr", "add", f"{OUTSIDE_HOST}/30", "dev", link], ["ip", "link", "set", link, "up"],
                ["ip", "-n", ns, "addr", "add", f"{OUTSIDE_PEER}/30", "dev", "out0"],
                ["ip", "-n", ns, "link", "set", "out0", "up"], ["ip", "-n", ns, "link", "set", "lo", "up"],
                ["ip", "-n", ns, "route", "add", "default", "via", OUTSIDE_HOST]]
        for cmd in cmds:
            subprocess.run(cmd, check=True, capture_output=True)
        return ns

    def cleanup(self):
        errors = []
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for net, ep, ns in reversed(self.endpoints):
            try:
                self.hook.network_detach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")
            except Exception as e:
                errors.append(e)
        for net in reversed(self.networks):
            try:
                self.hook.network_delete(network=net)
            except Exception as e:
                errors.append(e)
        for link in self.links:
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.driver.close()
        if errors:
            raise errors[0]


def leftovers():
    """Whatever of this module's is still on the host."""
    names = set(os.listdir("/sys/class/net"))
    left = sorted(names & (MADE["veths"] | MADE["links"])) + links_named(PREFIX)
    left += [f"netns {ns}" for ns in (os.listdir("/run/netns") if os.path.isdir("/run/netns") else ())
             if ns.startswith(NS_PREFIX)]
    left += [f"nft table {t}" for t in nft_tables() if t == f"ip {TABLE}"]
    return sorted(set(left))


@pytest.fixture(scope="module", autouse=True)
def nothing_left_by_the_module():
    yield
    assert leftovers() == []


@pytest.fixture
def env():
    e = Env()
    try:
        yield e
    finally:
        e.cleanup()
    assert leftovers() == []


# -- networks ------------------------------------------------------------------------

def test_supported_and_private_namespace(env):
    assert env.hook.network_supported(home="/x", options={}) is None
    assert env.hook.network_namespace(network={"id": "x"}) == "private"


def test_create_makes_bridge_and_rules_idempotently(env):
    net = env.network(1)
    again = env.hook.network_create(network=net)
    assert again["bridge"] == f"{PREFIX}1"
    (br,) = ip_json(None, "-d", "addr", "show", f"{PREFIX}1")
    assert br["linkinfo"]["info_kind"] == "bridge" and br["mtu"] == 1500 and "UP" in br["flags"]
    assert [(a["local"], a["prefixlen"]) for a in br["addr_info"] if a["family"] == "inet"] == [(f"10.{B}.1.1", 24)]
    assert open("/proc/sys/net/ipv4/ip_forward").read().strip() == "1"
    assert open(f"/proc/sys/net/ipv4/conf/{PREFIX}1/route_localnet").read().strip() == "1"
    if os.path.isdir("/proc/sys/net/ipv6"):  # IPv4 only: no link-local of the host's on the bridge
        assert open(f"/proc/sys/net/ipv6/conf/{PREFIX}1/disable_ipv6").read().strip() == "1"
        assert ip_json(None, "-6", "addr", "show", f"{PREFIX}1") == []
    rules = rules_tagged(f"net {PREFIX}1")
    assert len(rules) == 9 and len(set(rules)) == 9  # no duplicates after the second create
    assert any(f"ip saddr 10.{B}.1.0/24 oifname != \"{PREFIX}1\" masquerade" in r for r in rules)
    assert f'elements = {{ "{PREFIX}1" }}' in table_text()


def test_default_bridge_name_and_mtu_option(env):
    net = env.network(2, bridge=None, **{"com.docker.network.driver.mtu": "1400"})
    name = f"dy-{net['id'][:12]}"
    assert os.path.exists(f"/sys/class/net/{name}")
    assert open(f"/sys/class/net/{name}/mtu").read().strip() == "1400"
    ns = env.netns()
    _, res = env.attach(net, ns, 2)
    assert res["mtu"] == 1400
    assert ip_json(ns, "link", "show", "eth0")[0]["mtu"] == 1400


def test_delete_removes_bridge_rules_and_last_table(env):
    a, b = env.network(3), env.network(4)
    env.hook.network_delete(network=a)
    assert not os.path.exists(f"/sys/class/net/{PREFIX}3")
    assert rules_tagged(f"net {PREFIX}3") == [] and len(rules_tagged(f"net {PREFIX}4")) == 9
    assert f"{PREFIX}3" not in table_text()
    env.hook.network_delete(network=a)  # idempotent
    env.hook.network_delete(network=b)
    assert f"ip {TABLE}" not in nft_tables()
    assert not os.path.exists(f"/sys/class/net/{PREFIX}4")
    env.hook.network_delete(network=b)


def test_overlap_with_a_host_route_is_no_refusal(env):
    """As dockerd: only the pools the core picks itself avoid host routes (another
    daemon's bridge, a stale route); the core refuses overlaps among its own networks."""
    dummy = env.plain_link("d")
    for cmd in (["ip", "link", "set", dummy, "up"], ["ip", "route", "add", f"10.{C}.0.0/16", "dev", dummy]):
        subprocess.run(cmd, check=True)
    net = {"id": uuid.uuid4().hex, "name": "past-a-route", "options": {"com.docker.network.bridge.name": f"{PREFIX}x"},
           "ipam": {"subnet": f"10.{C}.5.0/24", "gateway": f"10.{C}.5.1"}, "internal": False}
    MADE["links"].add(f"{PREFIX}x")
    env.networks.append(net)
    env.hook.network_create(network=net)
    assert [(a["local"], a["prefixlen"]) for a in ip_json(None, "addr", "show", f"{PREFIX}x")[0]["addr_info"]
            if a["family"] == "inet"] == [(f"10.{C}.5.1", 24)]


def test_bad_input_is_refused_and_leaves_nothing(env):
    def net(**kw):
        base = {"id": uuid.uuid4().hex, "name": "bad", "options": {"com.docker.network.bridge.name": f"{PREFIX}b"},
                "ipam": {"subnet": f"10.{B}.9.0/24", "gateway": f"10.{B}.9.1"}}
        base.update(kw)
        return base
    cases = [
        (net(options={"com.docker.network.bridge.name": "a-name-too-long-x"}), "bridge name 'a-name-too-long-x'"),
        (net(ipam={"subnet": "fd00:1::/64", "gateway": "fd00:1::1"}), "ipam needs an IPv4 subnet"),
        (net(ipam={"subnet": f"10.{B}.9.0/24", "gateway": f"10.{B}.10.1"}), "outside the subnet"),
        (net(options={"com.docker.network.bridge.name": f"{PREFIX}b", "com.docker.network.driver.mtu": "9x"}),
         "is not an MTU"),
    ]
    for network, text in cases:
        with pytest.raises(NetworkError, match="network bad: .*" + text.replace("(", r"\(")):
            env.hook.network_create(network=network)
    dummy = env.plain_link("n")
    with pytest.raises(NetworkError, match="exists and is not a bridge"):
        env.hook.network_create(network=net(options={"com.docker.network.bridge.name": dummy}))
    assert os.path.exists(f"/sys/class/net/{dummy}")  # not ours: left alone
    assert links_named(f"{PREFIX}b") == [] and f"ip {TABLE}" not in nft_tables()


def test_failed_rules_remove_the_new_bridge(env, monkeypatch):
    """A test double for the nft step's failure (nft itself does not fail on demand)."""
    env.network(5)  # make the table exist, so that the failure is not just "no table"
    def fail(*a, **k):
        raise NetworkError("network net6: nft: injected failure")
    monkeypatch.setattr(env.driver._table, "add_network", fail)
    with pytest.raises(NetworkError, match="injected"):
        env.network(6)
    assert not os.path.exists(f"/sys/class/net/{PREFIX}6")


# -- endpoints -----------------------------------------------------------------------

def test_two_containers_on_one_bridge_talk(env):
    net = env.network(10)
    a, b = env.netns(), env.netns()
    ep_a, res_a = env.attach(net, a, 2)
    _, res_b = env.attach(net, b, 3)
    assert res_a == {"interface": "eth0", "ipv4": f"10.{B}.10.2/24", "gateway": f"10.{B}.10.1",
                     "mac": "02:42:0a:%02x:0a:02" % B, "dns": [], "mtu": 1500}
    (eth0,) = ip_json(a, "addr", "show", "eth0")
    assert eth0["address"] == res_a["mac"] and "UP" in eth0["flags"]
    assert [x["local"] for x in eth0["addr_info"] if x["family"] == "inet"] == [f"10.{B}.10.2"]
    assert "UP" in ip_json(a, "link", "show", "lo")[0]["flags"]
    assert [(r["dst"], r.get("gateway")) for r in ip_json(a, "route") if r["dst"] == "default"] == \
        [("default", f"10.{B}.10.1")]
    master = open(f"/sys/class/net/{veth_of(net, ep_a)}/master/uevent").read()
    assert f"INTERFACE={PREFIX}10" in master
    # attach again: the same answer, nothing new
    assert env.hook.network_attach(network=net, endpoint=ep_a, netns=f"/run/netns/{a}") == res_a
    assert [l["ifname"] for l in ip_json(a, "link")] == ["lo", "eth0"]
    assert ping(a, f"10.{B}.10.3") and ping(b, f"10.{B}.10.2") and ping(a, f"10.{B}.10.1")
    env.serve(b, 8000)
    assert connect(f"10.{B}.10.3", 8000, ns=a) == f"10.{B}.10.2"
    assert res_b["interface"] == "eth0" and res_b["mac"] == "02:42:0a:%02x:0a:03" % B


def test_second_network_is_eth1_without_default_route(env):
    one, two = env.network(11), env.network(12)
    ns = env.netns()
    _, r1 = env.attach(one, ns, 2)
    _, r2 = env.attach(two, ns, 2)
    assert (r1["interface"], r2["interface"]) == ("eth0", "eth1")
    defaults = [(r.get("gateway"), r["dev"]) for r in ip_json(ns, "route") if r["dst"] == "default"]
    assert defaults == [(f"10.{B}.11.1", "eth0")]
    assert ping(ns, f"10.{B}.12.1")


def test_isolation_between_bridges(env):
    one, two = env.network(13), env.network(14)
    a, b, b2 = env.netns(), env.netns(), env.netns()
    env.attach(one, a, 2)
    env.attach(two, b, 2)
    env.attach(two, b2, 3)
    env.serve(b, 8000)
    assert connect(f"10.{B}.14.2", 8000, ns=b2) == f"10.{B}.14.3"  # within a bridge: allowed
    assert connect(f"10.{B}.14.2", 8000) is not None  # the host reaches it
    assert connect(f"10.{B}.14.2", 8000, ns=a, timeout=1) is None  # across bridges: dropped
    assert not ping(a, f"10.{B}.14.2")
    assert rules_tagged(f"net {PREFIX}13")[0].startswith(f'iifname "{PREFIX}13" oifname @bridges')


def test_masquerade_out_and_internal_network(env):
    outside = env.outside()
    env.serve(outside, 9000)
    normal, plain, internal = env.network(15), env.network(16, **{
        "com.docker.network.bridge.enable_ip_masquerade": "false"}), env.network(17, internal=True)
    a, b, c = env.netns(), env.netns(), env.netns()
    env.attach(normal, a, 2)
    env.attach(plain, b, 2)
    env.attach(internal, c, 2)
    assert connect(OUTSIDE_PEER, 9000, ns=a) == OUTSIDE_HOST  # masqueraded to the host's address
    assert connect(OUTSIDE_PEER, 9000, ns=b) == f"10.{B}.16.2"  # forwarded, not masqueraded
    assert connect(OUTSIDE_PEER, 9000, ns=c, timeout=1) is None  # internal: no way out
    assert ping(c, f"10.{B}.17.1")  # ... but its gateway answers
    assert not [r for r in rules_tagged(f"net {PREFIX}17") if "masquerade" in r]
    assert not [r for r in rules_tagged(f"net {PREFIX}16") if f"ip saddr 10.{B}.16.0/24 oifname" in r]
    # unsolicited traffic from outside to a container is dropped (only published ports get in)
    subprocess.run(["ip", "-n", outside, "route", "add", f"10.{B}.15.0/24", "via", OUTSIDE_HOST], check=True)
    env.serve(a, 8000)
    assert connect(f"10.{B}.15.2", 8000, ns=outside, timeout=1) is None


# -- published ports -----------------------------------------------------------------

def _host_address():
    """A global IPv4 address of the host not of this module's making."""
    for link in ip_json(None, "-4", "addr", "show", "scope", "global"):
        if link["ifname"].startswith(("dy", "veth")):
            continue
        for a in link.get("addr_info", []):
            return a["local"]
    return None


def test_published_port_answers_on_loopback_host_address_and_outside(env):
    net = env.network(20)
    ns, other = env.netns(), env.netns()
    ep, _ = env.attach(net, ns, 2)
    env.attach(net, other, 3)
    env.serve(ns, 80)
    env.serve(ns, 53, proto="udp")
    ports = [{"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 80},
             {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "container_port": 80},
             {"proto": "udp", "host_ip": "0.0.0.0", "host_port": 0, "container_port": 53}]
    bound = env.hook.network_publish(network=net, endpoint=ep, ports=ports)
    assert [(p["proto"], p["host_ip"], p["container_port"]) for p in bound] == \
        [("tcp", "0.0.0.0", 80), ("tcp", "127.0.0.1", 80), ("udp", "0.0.0.0", 53)]
    any_port, lo_port, udp_port = (p["host_port"] for p in bound)
    assert all(p > 0 for p in (any_port, lo_port, udp_port))
    assert connect("127.0.0.1", any_port) == f"10.{B}.20.1"  # 127.0.0.1 is masqueraded to the gateway
    assert connect("127.0.0.1", lo_port) == f"10.{B}.20.1"
    assert connect("127.0.0.1", udp_port, proto="udp") == f"10.{B}.20.1"
    host = _host_address()
    if host:
        assert connect(host, any_port) == host
        assert connect(host, lo_port, timeout=1) is None  # published on 127.0.0.1 only
    assert connect(f"10.{B}.20.1", any_port, ns=other) == f"10.{B}.20.1"  # hairpin, masqueraded
    outside = env.outside()
    assert connect(OUTSIDE_HOST, any_port, ns=outside) == OUTSIDE_PEER  # prerouting, no masquerade
    # the ports are held: nobody else can bind them
    for proto, port in (("tcp", any_port), ("udp", udp_port)):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
        with s, pytest.raises(OSError):
            s.bind(("0.0.0.0", port))
    # publishing again (a daemon restart) changes nothing
    rules = rules_tagged(f"port {PREFIX}20 ")
    assert len(rules) == 6
    assert env.hook.network_publish(network=net, endpoint=ep, ports=bound) == bound
    assert rules_tagged(f"port {PREFIX}20 ") == rules
    # ... and a fresh driver (the restarted daemon) re-reserves them without duplicating rules
    env.driver.close()
    fresh = Env.__new__(Env)
    fresh.driver = BridgeDriver()
    hook = make_hook(fresh.driver)
    try:
        assert hook.network_publish(network=net, endpoint=ep, ports=bound) == bound
        assert rules_tagged(f"port {PREFIX}20 ") == rules
        assert connect("127.0.0.1", any_port) == f"10.{B}.20.1"
    finally:
        env.driver, env.hook = fresh.driver, hook


def test_a_used_port_is_refused(env):
    net = env.network(21)
    a, b = env.netns(), env.netns()
    ep_a, _ = env.attach(net, a, 2)
    ep_b, _ = env.attach(net, b, 3)
    squatter = socket.socket()
    squatter.bind(("0.0.0.0", 0))
    squatter.listen()
    busy = squatter.getsockname()[1]
    try:
        with pytest.raises(NetworkError) as err:
            env.hook.network_publish(network=net, endpoint=ep_a, ports=[
                {"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 81},
                {"proto": "tcp", "host_ip": "", "host_port": busy, "container_port": 80}])
        assert f"port {busy}/tcp is already in use on 0.0.0.0" in str(err.value)
        assert "endpoint ep21-2" in str(err.value)
        assert rules_tagged(f"port {PREFIX}21 ") == []
    finally:
        squatter.close()
    (mine,) = env.hook.network_publish(network=net, endpoint=ep_a, ports=[
        {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": busy, "container_port": 80}])
    with pytest.raises(NetworkError, match=f"port {busy}/tcp is already in use on 0.0.0.0"):
        env.hook.network_publish(network=net, endpoint=ep_b, ports=[
            {"proto": "tcp", "host_ip": "", "host_port": busy, "container_port": 80}])
    with pytest.raises(NetworkError, match="not an address of this host"):
        env.hook.network_publish(network=net, endpoint=ep_b, ports=[
            {"proto": "tcp", "host_ip": "203.0.113.9", "host_port": 0, "container_port": 80}])
    with pytest.raises(NetworkError, match="protocol 'sctp'"):
        env.hook.network_publish(network=net, endpoint=ep_b, ports=[
            {"proto": "sctp", "host_ip": "", "host_port": 0, "container_port": 80}])
    assert len(rules_tagged(f"port {PREFIX}21 ")) == 2 and mine["host_port"] == busy


def test_internal_network_routes_nowhere_but_its_subnet(env):
    """moby#46603: no default route from an internal network (a normal network
    attached too gives it, in either order); its input rule goes with it."""
    internal, normal = env.network(18, internal=True), env.network(19)
    alone, first, second = env.netns(), env.netns(), env.netns()
    _, res = env.attach(internal, alone, 2)
    assert res["gateway"] is None
    assert [r["dst"] for r in ip_json(alone, "-4", "route")] == [f"10.{B}.18.0/24"]
    assert ping(alone, f"10.{B}.18.1")
    env.attach(internal, first, 3)
    env.attach(normal, first, 3)
    env.attach(normal, second, 4)
    env.attach(internal, second, 4)
    for ns in (first, second):
        assert [(r.get("gateway"), r["dev"]) for r in ip_json(ns, "-4", "route") if r["dst"] == "default"] == \
            [(f"10.{B}.19.1", "eth1" if ns == first else "eth0")]
    (local,) = [r for r in rules_tagged(f"net {PREFIX}18") if "fib daddr type local" in r]
    assert f"ip daddr != 10.{B}.18.1" in local and local.endswith('drop comment "net %s18"' % PREFIX)
    env.hook.network_delete(network=internal)
    assert rules_tagged(f"net {PREFIX}18") == [] and "fib daddr" not in table_text()


def test_internal_network_publishes_nothing(env):
    net = env.network(22, internal=True)
    ns = env.netns()
    ep, _ = env.attach(net, ns, 2)
    assert env.hook.network_publish(network=net, endpoint=ep, ports=[
        {"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 80}]) == []
    assert rules_tagged(f"port {PREFIX}22 ") == []


# -- leaving nothing behind ------------------------------------------------------------

def test_detach_and_delete_remove_everything(env):
    net = env.network(23)
    ns, gone = env.netns(), env.netns()
    ep, _ = env.attach(net, ns, 2)
    ep_gone, _ = env.attach(net, gone, 3)
    (p,) = env.hook.network_publish(network=net, endpoint=ep, ports=[
        {"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 80}])
    env.hook.network_detach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")
    assert not os.path.exists(f"/sys/class/net/{veth_of(net, ep)}")
    assert [l["ifname"] for l in ip_json(ns, "link")] == ["lo"]
    assert rules_tagged(f"port {PREFIX}23 ") == []
    with socket.socket() as s:
        s.bind(("0.0.0.0", p["host_port"]))  # released
    env.hook.network_detach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")  # idempotent
    subprocess.run(["ip", "netns", "del", gone], check=True)  # the container's namespace went first
    env.namespaces.remove(gone)
    env.hook.network_detach(network=net, endpoint=ep_gone, netns=f"/run/netns/{gone}")
    assert not os.path.exists(f"/sys/class/net/{veth_of(net, ep_gone)}")
    env.hook.network_delete(network=net)
    assert not os.path.exists(f"/sys/class/net/{PREFIX}23") and f"ip {TABLE}" not in nft_tables()


def test_delete_takes_endpoints_never_detached(env):
    net = env.network(24)
    ns = env.netns()
    ep, _ = env.attach(net, ns, 2)
    (p,) = env.hook.network_publish(network=net, endpoint=ep, ports=[
        {"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 80}])
    env.hook.network_delete(network=net)
    assert not os.path.exists(f"/sys/class/net/{veth_of(net, ep)}")
    with socket.socket() as s:
        s.bind(("0.0.0.0", p["host_port"]))
    assert f"ip {TABLE}" not in nft_tables()


def test_attach_errors_leave_nothing(env):
    net = env.network(25)
    ep = env.endpoint(net, 2)
    with pytest.raises(NetworkError, match="endpoint ep25-2: network namespace /run/netns/nope"):
        env.hook.network_attach(network=net, endpoint=ep, netns="/run/netns/nope")
    with pytest.raises(NetworkError, match="not a network namespace"):
        env.hook.network_attach(network=net, endpoint=ep, netns="/proc/self/ns/uts")
    with pytest.raises(NetworkError, match="outside the subnet"):
        env.hook.network_attach(network=net, endpoint=dict(ep, ipv4="192.168.77.2/24"), netns="/proc/self/ns/net")
    assert not os.path.exists(f"/sys/class/net/{veth_of(net, ep)}")
    other = env.network(26)
    env.hook.network_delete(network=other)
    with pytest.raises(NetworkError, match="bridge .* does not exist"):
        env.hook.network_attach(network=other, endpoint=env.endpoint(other, 2), netns=f"/run/netns/{env.netns()}")


def test_fifty_attach_detach_cycles_leave_nothing(env):
    net = env.network(27)
    ns = env.netns()
    before = table_text()
    for i in range(50):
        ep = env.endpoint(net, 2 + i % 5)
        res = env.hook.network_attach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")
        assert res["interface"] == "eth0"
        if i % 10 == 0:
            env.hook.network_publish(network=net, endpoint=ep, ports=[
                {"proto": "tcp", "host_ip": "", "host_port": 0, "container_port": 80}])
        env.hook.network_detach(network=net, endpoint=ep, netns=f"/run/netns/{ns}")
    assert [l["ifname"] for l in ip_json(ns, "link")] == ["lo"]
    assert ip_json(ns, "-4", "route") == []
    assert [n for n in os.listdir("/sys/class/net") if n in MADE["veths"]] == []
    assert os.listdir(f"/sys/class/net/{PREFIX}27/brif") == []
    assert table_text() == before


def test_concurrent_attach_publish_detach(env):
    """Hooks run in the daemon's worker threads, several at once."""
    from concurrent.futures import ThreadPoolExecutor
    net = env.network(28)
    spaces = [env.netns() for _ in range(8)]
    eps = [env.endpoint(net, 2 + i) for i in range(8)]

    def up(i):
        res = env.hook.network_attach(network=net, endpoint=eps[i], netns=f"/run/netns/{spaces[i]}")
        (p,) = env.hook.network_publish(network=net, endpoint=eps[i], ports=[
            {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "container_port": 80}])
        return res, p["host_port"]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(up, range(8)))
    assert [r["ipv4"] for r, _ in results] == [f"10.{B}.28.{2 + i}/24" for i in range(8)]
    assert len({port for _, port in results}) == 8 and len(rules_tagged(f"port {PREFIX}28 ")) == 16
    for i in (0, 7):
        env.serve(spaces[i], 80)
        assert connect("127.0.0.1", results[i][1]) == f"10.{B}.28.1"
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: env.hook.network_detach(network=net, endpoint=eps[i],
                                                        netns=f"/run/netns/{spaces[i]}"), range(8)))
    assert os.listdir(f"/sys/class/net/{PREFIX}28/brif") == [] and rules_tagged(f"port {PREFIX}28 ") == []
