"""dockyard.engine.networks.dns: the embedded DNS server at 127.0.0.11:53 in network namespaces.

The namespace tests (root) make their own namespaces (``dytest-dns-*``, deleted in
finally; the session ends with a check that none is left) and query from inside them
with busybox's nslookup and with dnslib run through ``ip netns exec``.  The upstream
is a fake DNS server on 127.0.0.1 in the host namespace: no query leaves the machine
(192.0.2.7, a documentation address, is only ever an answer).  The first tests check
the answer-building logic alone, without namespaces or root.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, A, DNSRecord

from dockyard.engine.networks.dns import Resolver, answer, failure, host_nameservers
from dockyard.testing.leaks import NETNS_PREFIX

PREFIX = f"{NETNS_PREFIX}dns-"  # the session's own names
ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
TABLE = {"web": ["172.30.0.2"], "webalias": ["172.30.0.2"], "db": ["172.30.0.3", "172.30.0.4"],
         "web.corp.example": ["172.30.0.2"], "gone": []}


def table_lookup(key, name):
    return TABLE.get(name)


# -- the answer-building logic, no namespaces ------------------------------------

def ask(name, qtype="A", lookup=table_lookup, **kw):
    q = DNSRecord.question(name, qtype)
    wire = answer(q.pack(), lookup, "c1", **kw)
    return q, (None if wire is None else DNSRecord.parse(wire))


def test_answer_our_names():
    seen = []
    q, r = ask("WeB.", lookup=lambda key, name: seen.append((key, name)) or TABLE.get(name))
    assert seen == [("c1", "web")]                 # lower case, no trailing dot, the key
    assert r.header.id == q.header.id and r.header.qr and r.header.rcode == RCODE.NOERROR
    assert str(r.q.qname) == "WeB."                 # the question as asked (0x20 clients)
    assert [(str(rr.rdata), rr.ttl, rr.rtype) for rr in r.rr] == [("172.30.0.2", 600, QTYPE.A)]
    assert sorted(str(rr.rdata) for rr in ask("db")[1].rr) == ["172.30.0.3", "172.30.0.4"]
    assert [str(rr.rdata) for rr in ask("web.corp.example")[1].rr] == ["172.30.0.2"]


def test_answer_other_types_of_our_names_are_not_forwarded():
    for qtype in ("AAAA", "MX", "TXT"):
        _, r = ask("web", qtype)
        assert r.header.rcode == RCODE.NOERROR and r.rr == []
    assert ask("gone")[1].header.rcode == RCODE.NXDOMAIN
    assert ask("gone", "AAAA")[1].header.rcode == RCODE.NXDOMAIN


def test_answer_not_ours():
    assert ask("example.test")[1] is None          # forward
    assert ask("web", qtype="A", lookup=lambda k, n: None)[1] is None
    _, r = ask("example.test", internal=True)
    assert r.header.rcode == RCODE.SERVFAIL and not r.header.ra
    assert [str(rr.rdata) for rr in ask("web", internal=True)[1].rr] == ["172.30.0.2"]


def test_answer_lookup_that_raises_is_servfail():
    def broken(key, name):
        raise KeyError(name)
    assert ask("web", lookup=broken)[1].header.rcode == RCODE.SERVFAIL


def test_answer_truncates_what_udp_cannot_carry():
    many = [f"10.9.{i // 250}.{i % 250 + 1}" for i in range(60)]
    q = DNSRecord.question("big")
    r = DNSRecord.parse(answer(q.pack(), lambda k, n: many, "c1"))
    assert r.header.tc and r.rr == [] and str(r.q.qname) == "big."
    r = DNSRecord.parse(answer(q.pack(), lambda k, n: many, "c1", udp=False))
    assert not r.header.tc and len(r.rr) == 60
    q.add_ar(EDNS0(udp_len=4096))                     # the client takes more over UDP
    assert len(DNSRecord.parse(answer(q.pack(), lambda k, n: many, "c1")).rr) == 60


def test_answer_bad_input():
    assert answer(b"\x12", table_lookup, "c1") == b""            # no header: nothing
    garbage = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff"
    r = answer(garbage, table_lookup, "c1")
    assert r[:2] == b"\x12\x34" and r[3] & 0xF == RCODE.FORMERR and r[2] & 0x80
    reply = DNSRecord.question("web").reply()
    reply.add_answer(RR("web", rdata=A("1.2.3.4")))
    assert answer(reply.pack(), table_lookup, "c1") == b""       # a response: ignored
    q = DNSRecord.question("example.test")
    r = DNSRecord.parse(failure(q.pack()))
    assert r.header.id == q.header.id and r.header.rcode == RCODE.SERVFAIL


def test_host_nameservers(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("# x\nsearch corp.example\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\n")
    assert host_nameservers(conf) == [("127.0.0.53", 53), ("fe80::1", 53)]
    assert host_nameservers(tmp_path / "missing") == []


# -- in real network namespaces (root) --------------------------------------------

@pytest.fixture(scope="session", autouse=True)
def no_dns_namespaces_left():
    yield
    left = [n for n in os.listdir("/run/netns") if n.startswith(PREFIX)] if os.path.isdir("/run/netns") else []
    for name in left:
        subprocess.run(["ip", "netns", "delete", name], check=False)
    assert not left, f"network namespaces left behind: {left}"


@pytest.fixture
def netns():
    made = []

    def make():
        name = PREFIX + uuid.uuid4().hex[:8]
        subprocess.run(["ip", "netns", "add", name], check=True)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "delete", name], check=False)


@pytest.fixture
def resolvers():
    made = []

    def make(lookup=table_lookup, upstreams=()):
        made.append(Resolver(lookup, upstreams=list(upstreams)))
        return made[-1]

    try:
        yield make
    finally:
        for r in made:
            r.close()


QUERY = r"""
import json, socket, sys, time
from dnslib import DNSRecord, RCODE
out = []
for name, qtype, tcp in json.loads(sys.argv[1]):
    timeout = float(sys.argv[2])
    start = time.perf_counter()
    try:
        reply = DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.11", 53, tcp=tcp, timeout=timeout))
    except OSError as exc:
        out.append({"error": type(exc).__name__, "s": time.perf_counter() - start})
        continue
    out.append({"rcode": RCODE.get(reply.header.rcode), "s": time.perf_counter() - start,
                "answers": sorted(str(rr.rdata) for rr in reply.rr)})
print(json.dumps(out))
"""


def in_ns(ns, argv, **kw):
    enter = ["nsenter", f"--net={ns}"] if ns.startswith("/") else ["ip", "netns", "exec", ns]
    return subprocess.run(enter + argv, check=False, capture_output=True, text=True, timeout=30, **kw)


def query(ns, *queries, timeout=5):
    """[(name, qtype="A", tcp=False)...] asked from inside ``ns``: rcode, answers."""
    spec = [(q, "A", False) if isinstance(q, str) else (tuple(q) + ("A", False)[len(q) - 1:])
            for q in queries]
    proc = in_ns(ns, [sys.executable, "-c", QUERY, json.dumps(spec), str(timeout)])
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def rcodes(results):
    return [(r.get("rcode") or r["error"], r.get("answers")) for r in results]


def listening_53(ns):
    out = in_ns(ns, ["ss", "-Hlntu"]).stdout
    return [line for line in out.splitlines() if ":53 " in line]


class FakeUpstream:
    """A DNS server on 127.0.0.1 (UDP and TCP): example.test -> 192.0.2.7, others
    NXDOMAIN; ``silent`` reads queries and never answers.  Records names asked."""

    def __init__(self, silent=False):
        self.silent, self.seen, self.stopping = silent, [], threading.Event()
        for _ in range(20):
            self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.udp.bind(("127.0.0.1", 0))
            self.port = self.udp.getsockname()[1]
            self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                self.tcp.bind(("127.0.0.1", self.port))
                break
            except OSError:
                self.udp.close()
                self.tcp.close()
        self.tcp.listen(8)
        for s in (self.udp, self.tcp):
            s.settimeout(0.1)
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self.serve_udp, self.serve_tcp)]
        for t in self.threads:
            t.start()

    def reply(self, data):
        q = DNSRecord.parse(data)
        self.seen.append(str(q.q.qname).rstrip("."))
        r = q.reply()
        if str(q.q.qname).rstrip(".") == "example.test" and q.q.qtype == QTYPE.A:
            r.add_answer(RR(q.q.qname, rdata=A("192.0.2.7"), ttl=30))
        else:
            r.header.rcode = RCODE.NXDOMAIN
        return r.pack()

    def serve_udp(self):
        while not self.stopping.is_set():
            try:
                data, addr = self.udp.recvfrom(65535)
            except TimeoutError:
                continue
            wire = self.reply(data)
            if not self.silent:
                self.udp.sendto(wire, addr)

    def serve_tcp(self):
        while not self.stopping.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                size = int.from_bytes(conn.recv(2), "big")
                data = b""
                while len(data) < size:
                    data += conn.recv(size - len(data))
                wire = self.reply(data)
                if self.silent:
                    time.sleep(3)
                else:
                    conn.sendall(len(wire).to_bytes(2, "big") + wire)

    def close(self):
        self.stopping.set()
        for t in self.threads:
            t.join()
        self.udp.close()
        self.tcp.close()


@pytest.fixture
def upstream():
    servers = []

    def make(silent=False):
        servers.append(FakeUpstream(silent))
        return servers[-1]

    try:
        yield make
    finally:
        for s in servers:
            s.close()


@ROOT
def test_names_and_aliases_with_busybox(netns, resolvers):
    ns = netns()
    resolvers().add("c1", f"/run/netns/{ns}")
    for name, addr in (("web", "172.30.0.2"), ("webalias", "172.30.0.2"), ("WEB.", "172.30.0.2")):
        out = in_ns(ns, ["/bin/busybox", "nslookup", name, "127.0.0.11"])
        assert out.returncode == 0 and f"Address: {addr}" in out.stdout, out.stdout + out.stderr
    out = in_ns(ns, ["/bin/busybox", "nslookup", "gone", "127.0.0.11"])
    assert out.returncode != 0 and "NXDOMAIN" in out.stdout


@ROOT
def test_names_over_udp_and_tcp(netns, resolvers):
    ns = netns()
    resolvers().add("c1", f"/run/netns/{ns}")
    got = query(ns, "web", "webalias.", ("db", "A", True), ("web", "AAAA"), ("web", "AAAA", True),
                "gone", "web.corp.example", ("web", "A", True))
    assert rcodes(got) == [("NOERROR", ["172.30.0.2"]), ("NOERROR", ["172.30.0.2"]),
                           ("NOERROR", ["172.30.0.3", "172.30.0.4"]), ("NOERROR", []),
                           ("NOERROR", []), ("NXDOMAIN", []), ("NOERROR", ["172.30.0.2"]),
                           ("NOERROR", ["172.30.0.2"])]


PIPELINED = r"""
import socket
from dnslib import DNSRecord
s = socket.create_connection(("127.0.0.11", 53), timeout=5)
wires = [DNSRecord.question(n).pack() for n in ("web", "db", "gone")]
s.sendall(b"".join(len(w).to_bytes(2, "big") + w for w in wires))   # three queries, one write
buf, got = b"", []
while len(got) < 3:
    while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
        chunk = s.recv(4096)
        if not chunk:
            raise SystemExit("connection closed early")
        buf += chunk
    size = int.from_bytes(buf[:2], "big")
    got.append(DNSRecord.parse(buf[2:2 + size]))
    buf = buf[2 + size:]
print(" ".join(f"{r.q.qname}{len(r.rr)}:{r.header.rcode}" for r in got))
"""


@ROOT
def test_tcp_connection_carries_several_queries(netns, resolvers):
    ns = netns()
    resolvers().add("c1", f"/run/netns/{ns}")
    out = in_ns(ns, [sys.executable, "-c", PIPELINED])
    assert out.stdout.split() == ["web.1:0", "db.2:0", "gone.0:3"], out.stderr


@ROOT
def test_add_moves_a_key_to_its_new_namespace(netns, resolvers):
    r = resolvers()
    ns1, ns2 = netns(), netns()
    r.add("c1", f"/run/netns/{ns1}")
    r.add("c1", f"/run/netns/{ns2}")                # the container got a new netns
    assert listening_53(ns1) == [] and len(listening_53(ns2)) == 2
    assert rcodes(query(ns2, "web")) == [("NOERROR", ["172.30.0.2"])]


@ROOT
def test_forwards_what_is_not_ours(netns, resolvers, upstream):
    up = upstream()
    ns = netns()
    resolvers(upstreams=[("127.0.0.1", up.port)]).add("c1", f"/run/netns/{ns}")
    got = query(ns, "example.test", ("example.test", "A", True), "nosuch.test", "web")
    assert rcodes(got) == [("NOERROR", ["192.0.2.7"]), ("NOERROR", ["192.0.2.7"]),
                           ("NXDOMAIN", []), ("NOERROR", ["172.30.0.2"])]
    assert up.seen == ["example.test", "example.test", "nosuch.test"]   # never ours


@ROOT
def test_next_upstream_when_the_first_refuses(netns, resolvers, upstream):
    up = upstream()
    dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dead.bind(("127.0.0.1", 0))
    dead_port = dead.getsockname()[1]
    dead.close()                                   # nothing there: ICMP port unreachable
    ns = netns()
    resolvers(upstreams=[("127.0.0.1", dead_port), ("127.0.0.1", up.port)]).add("c1", f"/run/netns/{ns}")
    assert rcodes(query(ns, "example.test")) == [("NOERROR", ["192.0.2.7"])]


@ROOT
def test_internal_network_never_forwards(netns, resolvers, upstream):
    up = upstream()
    ns = netns()
    resolvers(upstreams=[("127.0.0.1", up.port)]).add("c1", f"/run/netns/{ns}", internal=True)
    got = query(ns, "example.test", ("example.test", "A", True), "web")
    assert rcodes(got) == [("SERVFAIL", []), ("SERVFAIL", []), ("NOERROR", ["172.30.0.2"])]
    assert up.seen == []


@ROOT
def test_two_namespaces_served_at_once(netns, resolvers):
    tables = {"c1": {"web": ["172.30.0.2"]}, "c2": {"web": ["172.31.0.2"], "other": ["172.31.0.9"]}}
    r = resolvers(lookup=lambda key, name: tables[key].get(name, []))
    ns1, ns2 = netns(), netns()
    r.add("c1", f"/run/netns/{ns1}")
    r.add("c2", f"/run/netns/{ns2}")
    r.add("c1", f"/run/netns/{ns1}")                # idempotent
    assert rcodes(query(ns1, "web", "other")) == [("NOERROR", ["172.30.0.2"]), ("NXDOMAIN", [])]
    assert rcodes(query(ns2, "web", "other")) == [("NOERROR", ["172.31.0.2"]), ("NOERROR", ["172.31.0.9"])]


@ROOT
def test_remove_stops_answering(netns, resolvers):
    r = resolvers()
    ns1, ns2 = netns(), netns()
    r.add("c1", f"/run/netns/{ns1}")
    r.add("c2", f"/run/netns/{ns2}")
    assert len(listening_53(ns1)) == 2
    r.remove("c1")
    r.remove("c1")                                  # idempotent
    r.remove("never-added")
    assert listening_53(ns1) == []
    assert rcodes(query(ns1, "web", ("web", "A", True), timeout=0.5)) == [   # no ICMP for
        ("TimeoutError", None), ("ConnectionRefusedError", None)]           # unconnected UDP
    assert rcodes(query(ns2, "web")) == [("NOERROR", ["172.30.0.2"])]
    r.add("c1", f"/run/netns/{ns1}")                # and back
    assert rcodes(query(ns1, "web")) == [("NOERROR", ["172.30.0.2"])]


@ROOT
def test_upstream_timeout_is_servfail_and_blocks_nobody(netns, resolvers, upstream):
    up = upstream(silent=True)
    ns = netns()
    resolvers(upstreams=[("127.0.0.1", up.port)]).add("c1", f"/run/netns/{ns}")
    slow = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", QUERY,
                             json.dumps([["example.test", "A", False], ["example.test", "A", True]]), "5"],
                            stdout=subprocess.PIPE, text=True)
    try:
        while not up.seen:                          # the forward is in flight...
            time.sleep(0.01)
        assert rcodes(query(ns, "web")) == [("NOERROR", ["172.30.0.2"])]
        assert slow.poll() is None                  # ...and our names were answered meanwhile
        out, _ = slow.communicate(timeout=30)
    finally:
        slow.kill()
        slow.wait()
    got = json.loads(out)
    assert rcodes(got) == [("SERVFAIL", []), ("SERVFAIL", [])]
    assert all(r["s"] < 4.5 for r in got), got     # the resolver's 2 s, not the client's 5 s


@ROOT
def test_proc_pid_namespace_with_lo_down(resolvers):
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        for _ in range(100):                        # until unshare has exec'd sleep
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        assert "UP" not in in_ns(path, ["ip", "-o", "link", "show", "lo"]).stdout.split(">")[0]
        resolvers().add("c1", path)
        assert "UP" in in_ns(path, ["ip", "-o", "link", "show", "lo"]).stdout.split(">")[0]
        assert rcodes(query(path, "web")) == [("NOERROR", ["172.30.0.2"])]
    finally:
        holder.kill()
        holder.wait()


@ROOT
def test_bad_namespace_is_an_oserror_naming_it(tmp_path, resolvers):
    r = resolvers()
    missing = tmp_path / "no-such-netns"
    with pytest.raises(OSError, match=str(missing)):
        r.add("c1", str(missing))
    not_a_netns = tmp_path / "plain-file"
    not_a_netns.write_text("")
    with pytest.raises(OSError, match=str(not_a_netns)) as info:
        r.add("c1", str(not_a_netns))
    assert info.value.errno == 22                   # EINVAL from setns
    assert not [t for t in threading.enumerate() if t.name.startswith("dockyard-dns")]


def open_sockets():
    fds = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                fds.append(fd)
        except OSError:
            pass
    return set(fds)


@ROOT
def test_close_leaves_nothing(netns, upstream):
    up = upstream()
    before = open_sockets()
    ns1, ns2 = netns(), netns()
    r = Resolver(table_lookup, upstreams=[("127.0.0.1", up.port)])
    r.add("c1", f"/run/netns/{ns1}")
    r.add("c2", f"/run/netns/{ns2}", internal=True)
    assert rcodes(query(ns1, "web", ("example.test", "A", True))) == [
        ("NOERROR", ["172.30.0.2"]), ("NOERROR", ["192.0.2.7"])]
    r.close()
    r.close()                                       # idempotent
    assert not [t for t in threading.enumerate() if t.name.startswith("dockyard-dns")]
    assert open_sockets() == before
    assert listening_53(ns1) == [] and listening_53(ns2) == []


def test_answer_aaaa_with_the_ipv6_addresses():
    """An EnableIPv6 network's container has both: A gets the IPv4, AAAA the IPv6."""
    def lookup(key, name):
        return ["10.1.2.3", "fd00::3"] if name == "web" else None

    _, a = ask("web", "A", lookup=lookup)
    _, aaaa = ask("web", "AAAA", lookup=lookup)
    assert [str(rr.rdata) for rr in a.rr] == ["10.1.2.3"]
    assert [str(rr.rdata) for rr in aaaa.rr] == ["fd00::3"]
