"""Daemons side by side on one host, as dockerd is with docker0: a second daemon
on a bridge another live daemon owns is refused, naming it; each data root has an
nft table of its own, kept across restarts; a bridge that already has an address
gives the default network its subnet; a user subnet that overlaps only another
daemon's network (or a stale route) is created; clients that hang up on streams
are no errors.

Every daemon here has bridges of its own (the harness's ``dy<tag>``, or one made
here), never ``dockyard0``; the tables of the daemons run without ``nft_table``
are named after their data roots.  Each test removes the bridges, tables, claims
and routes it made.
"""

import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from dockyard.testing.busybox import make_busybox_tar
from dockyard.testing.daemon import Daemon, nft_tables

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.xdist_group("host")]  # bridges, tables and routes of the host: one at a time

CLAIMS = Path("/run/dockyard-network")


@pytest.fixture(scope="module")
def base():
    path = Path(tempfile.mkdtemp(prefix="dockyard-sbs-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def busybox(base):
    return make_busybox_tar(base / "busybox.tar")


@pytest.fixture
def daemons(base):
    """``make(name, default_table=False, extra_args=())``: a Daemon (not started),
    stopped and cleaned up after the test, its leaks checked."""
    made, extra = [], {"links": [], "files": []}

    def make(name, default_table=False, extra_args=()):
        d = Daemon(base / f"{name}-{uuid.uuid4().hex[:6]}", extra_args=list(extra_args))
        if default_table:  # this data root's own table, as a daemon without the option gets
            i = d.args.index(f"nft_table={d.nft_table}")
            del d.args[i - 1:i + 1]
            d.nft_table = None  # known once it has started: see own_table()
        made.append(d)
        return d

    make.extra = extra
    yield make
    for d in made:
        if d.proc is not None and d.proc.poll() is None:
            _remove_all(d)
        d.stop()
    for d in made:
        if d.nft_table is None:  # it never told: its record does
            record = d.data_root / "network" / "bridge" / "nft_table"
            d.nft_table = record.read_text().strip() if record.exists() else "dyt_none"
        d.remove_network_objects()
    for name in extra["links"]:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    for path in extra["files"]:  # the claims a SIGKILLed daemon could not give up
        Path(path).unlink(missing_ok=True)
    for d in made:
        assert d.leaks() == [], d.leaks()


def _remove_all(d):
    """The containers and user networks a test left (when it failed half-way)."""
    client = d.sdk()
    try:
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.networks.prune()
    finally:
        client.close()


def own_table(d):
    """The table a daemon without ``nft_table`` uses (its data root's record),
    remembered for the harness's cleanup."""
    d.nft_table = (d.data_root / "network" / "bridge" / "nft_table").read_text().strip()
    return d.nft_table


def table_text(name):
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True, text=True).stdout


def inet_addresses(link):
    out = json.loads(subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", link], capture_output=True,
                                    text=True, check=True).stdout)
    return [f"{a['local']}/{a['prefixlen']}" for entry in out for a in entry["addr_info"]]


def free_10_net(count=1):
    """``count`` 10.B.0.0/16 networks no host route overlaps."""
    routes = []
    for line in subprocess.run(["ip", "-4", "-o", "route", "show", "table", "main"], capture_output=True,
                               text=True).stdout.splitlines():
        if not line.startswith("default"):
            routes.append(ipaddress.ip_network(line.split()[0], strict=False))
    free = [b for b in range(100, 250)
            if not any(r.overlaps(ipaddress.ip_network(f"10.{b}.0.0/16")) for r in routes)]
    return free[:count] if count > 1 else free[0]


def inspect_bridge(d):
    res = d.docker("network", "inspect", "bridge", "-f", "{{json .IPAM.Config}}")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- one bridge, one daemon -----------------------------------------------------------

def test_a_second_daemon_on_a_live_daemons_bridge_is_refused_naming_it(daemons):
    first = daemons("first").start()
    (cfg,) = inspect_bridge(first)
    second = daemons("second", extra_args=["--bridge", first.bridge])
    with pytest.raises(RuntimeError) as refused:
        second.start()
    message = str(refused.value)
    assert (f"bridge {first.bridge} belongs to another Dockyard daemon (pid {first.proc.pid}, "
            f"data root {first.data_root})") in message, message
    assert "--bridge NAME" in message
    # the refused daemon added nothing to the first one's bridge, and the first still serves
    assert inet_addresses(first.bridge) == [f"{cfg['Gateway']}/{cfg['Subnet'].split('/')[1]}"]
    assert first.docker("network", "ls").returncode == 0

    # only a *live* daemon owns it: once the first is killed, the second takes the bridge
    # and its subnet (the address on it), and adds no address of its own
    table_claim = CLAIMS / f"nft-table.{first.nft_table}"
    daemons.extra["files"].append(table_claim)
    first.stop(signal.SIGKILL)
    second.start()
    assert inspect_bridge(second) == [cfg]
    assert inet_addresses(first.bridge) == [f"{cfg['Gateway']}/{cfg['Subnet'].split('/')[1]}"]
    assert first.bridge in table_text(second.nft_table)
    second.stop()
    # a daemon that stops gives its claims up
    assert not (CLAIMS / f"bridge.{first.bridge}").exists()
    assert not (CLAIMS / f"nft-table.{second.nft_table}").exists()


def test_a_refused_daemon_runs_on_the_bridge_its_flags_give_next(daemons):
    """The refusal's advice works for a data root whose default network was made
    on the bridge before: its --bridge flag wins at the next start, as dockerd
    makes its default network from its flags each time."""
    d = daemons("moved").start()
    (old,) = inspect_bridge(d)
    d.stop()
    other = daemons("taker", extra_args=["--bridge", d.bridge]).start()  # adopts d's subnet, on d's bridge
    assert inspect_bridge(other) == [old]
    with pytest.raises(RuntimeError) as refused:
        d.start()
    assert f"(pid {other.proc.pid}, data root {other.data_root})" in str(refused.value)
    own = f"dyb{uuid.uuid4().hex[:8]}"
    daemons.extra["links"].append(own)
    d.args += ["--bridge", own]
    d.start()
    res = d.docker("network", "inspect", "bridge", "-f", "{{json .Options}} {{json .IPAM.Config}}")
    options, (cfg,) = (json.loads(part) for part in res.stdout.decode().split(" ", 1))
    assert options["com.docker.network.bridge.name"] == own
    assert not ipaddress.ip_network(cfg["Subnet"]).overlaps(ipaddress.ip_network(old["Subnet"]))
    assert inet_addresses(own) == [f"{cfg['Gateway']}/{cfg['Subnet'].split('/')[1]}"]
    # the other daemon's bridge and rules are as they were; d's rules for it are gone
    assert inet_addresses(d.bridge) == [f"{old['Gateway']}/{old['Subnet'].split('/')[1]}"]
    assert d.bridge in table_text(other.nft_table)
    assert d.bridge not in table_text(d.nft_table) and own in table_text(d.nft_table)


def test_a_new_bip_replaces_the_default_bridges_address(daemons):
    d = daemons("bip").start()
    (old,) = inspect_bridge(d)
    d.stop()
    b = free_10_net()
    d.args += ["--bip", f"10.{b}.9.1/24"]
    d.start()
    assert inspect_bridge(d) == [{"Subnet": f"10.{b}.9.0/24", "Gateway": f"10.{b}.9.1"}]
    assert inet_addresses(d.bridge) == [f"10.{b}.9.1/24"]  # not the old {old['Gateway']} beside it
    assert table_text(d.nft_table).count(f'comment "net {d.bridge}"') == 9
    assert f"10.{b}.9.0/24" in table_text(d.nft_table) and old["Subnet"] not in table_text(d.nft_table)


def test_an_existing_bridges_address_is_the_default_networks_subnet(daemons, busybox):
    b = free_10_net()
    bridge = f"dya{uuid.uuid4().hex[:8]}"
    daemons.extra["links"].append(bridge)
    for cmd in (["ip", "link", "add", bridge, "type", "bridge"],
                ["ip", "addr", "add", f"10.{b}.77.1/24", "dev", bridge]):
        subprocess.run(cmd, check=True)
    d = daemons("adopt", extra_args=["--bridge", bridge]).start()
    assert d.cli("import", str(busybox), "busybox").returncode == 0
    assert inspect_bridge(d) == [{"Subnet": f"10.{b}.77.0/24", "Gateway": f"10.{b}.77.1"}]
    res = d.docker("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert res.returncode == 0, res.stderr
    assert f"inet 10.{b}.77.2/24" in res.stdout.decode()
    assert inet_addresses(bridge) == [f"10.{b}.77.1/24"]  # no second gateway on it


# -- nft tables -------------------------------------------------------------------------

def test_each_data_root_has_its_own_table_kept_across_restarts(daemons):
    a = daemons("tab-a", default_table=True).start()
    b = daemons("tab-b", default_table=True).start()
    ta, tb = own_table(a), own_table(b)
    assert ta != tb and ta.startswith("dockyard_") and tb.startswith("dockyard_")
    assert {f"ip {ta}", f"ip {tb}"} <= set(nft_tables())
    assert a.bridge in table_text(ta) and b.bridge not in table_text(ta)
    assert b.bridge in table_text(tb) and a.bridge not in table_text(tb)
    b_rules = table_text(tb)

    a.stop()
    a.start()
    assert own_table(a) == ta
    assert table_text(ta).count(f'comment "net {a.bridge}"') == 9  # its rules, once each
    assert table_text(tb) == b_rules  # the other daemon's rules are untouched


def test_a_table_an_earlier_daemon_of_the_data_root_left_is_removed(daemons, busybox):
    d = daemons("earlier")
    old = d.nft_table
    d.start()
    assert d.cli("import", str(busybox), "busybox").returncode == 0
    res = d.docker("run", "-d", "-p", "127.0.0.1::80", "busybox", "httpd", "-f", "-p", "80")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.decode().strip()
    assert f"port {d.bridge} " in table_text(old)
    d.stop()
    i = d.args.index(f"nft_table={old}")  # the next daemon of this data root: its own default table
    del d.args[i - 1:i + 1]
    d.start()
    new = own_table(d)
    assert new != old and f"ip {old}" not in nft_tables()
    text = table_text(new)
    assert f'comment "net {d.bridge}"' in text and f"port {d.bridge} " in text  # the running container's port
    port = json.loads(d.docker("inspect", cid).stdout)[0]["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
    assert f"dport {port} " in text
    d.docker("rm", "-f", cid)


def test_a_table_another_live_daemon_owns_is_refused(daemons):
    first = daemons("tab-owner").start()
    second = daemons("tab-second", extra_args=["--network-opt", f"nft_table={first.nft_table}"])
    second.nft_table = "dyt_none"  # it never gets one: the cleanup must not touch the first's
    with pytest.raises(RuntimeError) as refused:
        second.start()
    assert (f"nft table ip {first.nft_table} belongs to another Dockyard daemon (pid {first.proc.pid}, "
            f"data root {first.data_root})") in str(refused.value)
    assert first.bridge in table_text(first.nft_table)


# -- user subnets -----------------------------------------------------------------------

def test_a_user_subnet_overlapping_only_another_daemons_network_or_a_stale_route_is_created(daemons):
    b, c = free_10_net(2)
    one = daemons("ov-one").start()
    two = daemons("ov-two").start()
    res = one.docker("network", "create", "--subnet", f"10.{b}.1.0/24", "theirs")
    assert res.returncode == 0, res.stderr
    try:
        # dockerd checks host routes only for the pools it picks itself
        res = two.docker("network", "create", "--subnet", f"10.{b}.0.0/16", "mine")
        assert res.returncode == 0, res.stderr
        veth = f"dyr{uuid.uuid4().hex[:8]}"
        daemons.extra["links"].append(veth)
        for cmd in (["ip", "link", "add", veth, "type", "veth", "peer", "name", veth + "p"],
                    ["ip", "link", "set", veth, "up"], ["ip", "route", "add", f"10.{c}.0.0/16", "dev", veth]):
            subprocess.run(cmd, check=True)
        res = two.docker("network", "create", "--subnet", f"10.{c}.5.0/24", "past-a-route")
        assert res.returncode == 0, res.stderr
        # ... but an overlap with a network of its own is refused, as dockerd's
        res = two.docker("network", "create", "--subnet", f"10.{b}.3.0/24", "clash")
        assert res.returncode != 0 and b"overlaps" in res.stderr, res.stderr
        # and a pool it picks itself avoids what the host routes (the other daemon's too)
        res = two.docker("network", "create", "picked")
        assert res.returncode == 0, res.stderr
        picked = ipaddress.ip_network(json.loads(two.docker("network", "inspect", "picked").stdout)
                                      [0]["IPAM"]["Config"][0]["Subnet"])
        (theirs,) = inspect_bridge(one)
        assert not picked.overlaps(ipaddress.ip_network(theirs["Subnet"]))
        for name in ("mine", "past-a-route", "picked"):
            assert two.docker("network", "rm", name).returncode == 0
        # a bridge a user network names is one daemon's, and one network's, too
        res = two.docker("network", "create", "-o", f"com.docker.network.bridge.name={one.bridge}", "steal")
        assert res.returncode != 0 and f"belongs to another Dockyard daemon (pid {one.proc.pid}, " \
            f"data root {one.data_root})".encode() in res.stderr, res.stderr
        res = two.docker("network", "create", "-o", f"com.docker.network.bridge.name={two.bridge}", "twice")
        assert res.returncode != 0 and f"bridge {two.bridge} is the bridge of network".encode() in res.stderr
        assert inet_addresses(one.bridge) == [f"{theirs['Gateway']}/{theirs['Subnet'].split('/')[1]}"]
    finally:
        one.docker("network", "rm", "theirs")


def test_null_option_values_are_empty_strings_as_go_decodes_them(daemons):
    from dockyard.testing.daemon import http

    d = daemons("nulls").start()
    body = {"Name": "nulls", "Options": {"com.docker.network.bridge.enable_ip_masquerade": None,
                                         "com.docker.network.driver.mtu": None},
            "Labels": {"a": None}, "IPAM": {"Config": [{"Subnet": None, "Gateway": None}], "Options": None}}
    status, _, out = http(d.sock, "POST", "/networks/create", json.dumps(body).encode(),
                          {"Content-Type": "application/json"})
    assert status == 201, out
    res = d.docker("network", "inspect", "nulls", "-f", "{{json .Options}} {{json .Labels}}")
    assert res.stdout.decode().split() == [
        json.dumps({"com.docker.network.bridge.enable_ip_masquerade": "", "com.docker.network.driver.mtu": ""},
                   separators=(",", ":")), '{"a":""}']
    bad = {"Name": "bad", "Options": {"com.docker.network.driver.mtu": "9x"}}
    status, _, out = http(d.sock, "POST", "/networks/create", json.dumps(bad).encode(),
                          {"Content-Type": "application/json"})
    assert status == 400 and b"is not an MTU" in out, out
    assert d.docker("network", "rm", "nulls").returncode == 0


# -- clients that hang up ---------------------------------------------------------------

def _until(proc, text, timeout=30):
    """Read ``proc``'s output until ``text`` shows (the stream is flowing)."""
    deadline, seen = time.monotonic() + timeout, b""
    os.set_blocking(proc.stdout.fileno(), False)
    while text not in seen:
        assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
        seen += proc.stdout.read() or b""
        time.sleep(0.05)


def test_clients_hanging_up_on_streams_are_no_errors(daemons, busybox, tmp_path):
    d = daemons("hangup", extra_args=["-D"]).start()
    assert d.cli("import", str(busybox), "busybox").returncode == 0
    res = d.docker("run", "-d", "busybox", "sh", "-c",
                   "dd if=/dev/zero of=/big bs=1M count=64; while true; do echo tick; sleep 0.1; done")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.decode().strip()
    env = {**os.environ, "DOCKER_CONFIG": str(d.base / "docker-config"), "DOCKER_BUILDKIT": "0"}
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo building; sleep 60\n")

    def hang_up(args, text):
        proc = subprocess.Popen(["docker", "-H", d.host, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            _until(proc, text)
        finally:
            proc.kill()
            proc.wait()

    hang_up(["logs", "-f", cid], b"tick")
    hang_up(["stats", cid], b"CONTAINER")
    assert d.docker("network", "create", "ev").returncode == 0
    hang_up(["events", "--since", "10m"], b"network create")
    hang_up(["build", str(tmp_path)], b"building")
    proc = subprocess.Popen(["docker", "-H", d.host, "cp", f"{cid}:/big", "-"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout.read(1 << 16)  # the tar is flowing
    proc.kill()
    proc.wait()
    # each stream's handler noticed (dockerd says as little), and none of it is an error
    wanted = [r"/logs: the client went away", r"/stats: the client went away", r"/build: the client went away",
              r"/archive: the client went away"]
    deadline = time.monotonic() + 30
    while not all(re.search(w, d.log.read_text()) for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.2)
    log = d.log.read_text()
    assert all(re.search(w, log) for w in wanted), [w for w in wanted if not re.search(w, log)]
    deadline = time.monotonic() + 30  # the build's container goes with it
    while d.docker("ps", "-aq").stdout.decode().split() != [cid[:12]]:
        assert time.monotonic() < deadline, d.docker("ps", "-a").stdout.decode()
        time.sleep(0.2)
    d.docker("rm", "-f", cid)
    d.docker("network", "rm", "ev")
    assert " ERROR " not in log and "Traceback" not in log, [l for l in log.splitlines() if "ERROR" in l]
