"""Networks as dockerd 20.10 gives them, through the docker CLI and SDK (issue 15):
legacy links, MAC and link-local addresses, a bridge container connected to a user
network later, ``--network container:X``, network events at start and stop, a
missing network, an internal first network with published ports, nullable fields
of a network create.  What dockerd answers was read from a dockerd 20.10 on a
private root.  Traffic goes only to loopback and the containers' own namespaces."""

import json
import os
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from dockyard.testing.daemon import http

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.xdist_group("host")]  # fixed subnets: one network test at a time


def name():
    return f"p-{uuid.uuid4().hex[:8]}"


def ok(res):
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def api(d, method, path, body=None):
    status, _, payload = http(d.sock, method, "/v1.41" + path, json.dumps(body).encode() if body is not None
                              else b"", {"Content-Type": "application/json"})
    return status, json.loads(payload) if payload.strip() else None


def test_legacy_links_env_hosts_and_rm_link(netd):
    web, parent = name(), name()
    ok(netd.docker("run", "-d", "--name", web, "-e", "FOO=bar", "--expose", "80", "--expose", "53/udp",
                   "--expose", "8000-8002", "busybox", "sleep", "100"))
    ip = json.loads(ok(netd.docker("inspect", web)))[0]["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    hostname = json.loads(ok(netd.docker("inspect", web)))[0]["Config"]["Hostname"]
    ok(netd.docker("run", "-d", "--name", parent, "--link", f"{web}:db", "--link", web, "-e", "DB_ENV_FOO=mine",
                   "busybox", "sleep", "100"))
    env = set(ok(netd.docker("exec", parent, "env")).split())
    expected = {f"DB_NAME=/{parent}/db", f"DB_PORT=udp://{ip}:53", f"DB_PORT_80_TCP=tcp://{ip}:80",
                f"DB_PORT_80_TCP_ADDR={ip}", "DB_PORT_80_TCP_PORT=80", "DB_PORT_80_TCP_PROTO=tcp",
                f"DB_PORT_53_UDP=udp://{ip}:53", f"DB_PORT_8000_TCP_START=tcp://{ip}:8000",
                f"DB_PORT_8000_TCP_END=tcp://{ip}:8002", "DB_PORT_8000_TCP_PORT_START=8000",
                "DB_PORT_8000_TCP_PORT_END=8002", f"DB_PORT_8001_TCP=tcp://{ip}:8001",
                "DB_ENV_FOO=mine"}  # the container's own Env wins
    assert expected <= env, expected - env
    assert not any(v.startswith(("DB_ENV_PATH=", "DB_ENV_HOME=")) for v in env)
    alias = web.upper().replace("-", "_")
    assert f"{alias}_NAME=/{parent}/{web}" in env and f"{alias}_ENV_FOO=bar" in env
    hosts = ok(netd.docker("exec", parent, "cat", "/etc/hosts")).splitlines()
    assert f"{ip}\tdb {hostname} {web}" in hosts and f"{ip}\t{web} {hostname}" in hosts, hosts
    links = json.loads(ok(netd.docker("inspect", parent)))[0]["HostConfig"]["Links"]
    assert sorted(links) == sorted([f"/{web}:/{parent}/db", f"/{web}:/{parent}/{web}"])
    # docker rm --link: the link and its hosts line go
    ok(netd.docker("rm", "--link", f"/{parent}/db"))
    assert json.loads(ok(netd.docker("inspect", parent)))[0]["HostConfig"]["Links"] == [f"/{web}:/{parent}/{web}"]
    hosts = ok(netd.docker("exec", parent, "cat", "/etc/hosts")).splitlines()
    assert not any(line.split()[1:2] == ["db"] for line in hosts) and f"{ip}\t{web} {hostname}" in hosts
    assert api(netd, "DELETE", f"/containers/{parent}/nothere?link=1") == (
        404, {"message": f"No such container: {parent}/nothere"})
    status, body = api(netd, "DELETE", f"/containers/{parent}?link=1")
    assert (status, body["message"]) == (500, "Conflict, cannot remove the default link name of the container")
    # dockerd's refusals: a container that does not exist (create), one that does not run (start)
    status, body = api(netd, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                            "HostConfig": {"Links": ["nonexist:x"]}})
    assert (status, body["message"]) == (400, "could not get container for nonexist: No such container: nonexist")
    status, body = api(netd, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"], "HostConfig": {
        "Links": [f"{web}:x"], "NetworkMode": "host"}})
    assert status == 400 and "host type networking can't be used with links" in body["message"]
    stopped, child = name(), name()
    ok(netd.docker("create", "--name", stopped, "busybox", "true"))
    res = netd.docker("run", "--name", child, "--link", f"{stopped}:x", "busybox", "true")
    assert res.returncode != 0 and f"Cannot link to a non running container: /{stopped} AS /{child}/x" in \
        res.stderr.decode(), res.stderr
    for c in (web, parent, stopped, child):
        netd.docker("rm", "-f", c)


def test_links_on_a_user_network_are_names_of_the_embedded_dns(netd):
    net, target, c1, c2 = name(), name(), name(), name()
    ok(netd.docker("network", "create", "--subnet", "10.236.1.0/24", net))
    try:
        ok(netd.docker("run", "-d", "--name", target, "--network", net, "busybox", "sleep", "100"))
        ok(netd.docker("run", "-d", "--name", c1, "--network", net, "--link", f"{target}:db", "busybox",
                       "sleep", "100"))
        ip = json.loads(ok(netd.docker("inspect", target)))[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        info = json.loads(ok(netd.docker("inspect", c1)))[0]
        assert info["NetworkSettings"]["Networks"][net]["Links"] == [f"{target}:db"]
        assert info["HostConfig"]["Links"] is None  # dockerd keeps a user network's links on its endpoint
        assert f"Address: {ip}" in ok(netd.docker("exec", c1, "nslookup", "db"))
        assert f"Address: {ip}" in ok(netd.docker("exec", c1, "nslookup", f"db.{net}"))
        assert netd.docker("exec", target, "nslookup", "db").returncode != 0  # the linking container's alone
        # network connect --link
        ok(netd.docker("run", "-d", "--name", c2, "busybox", "sleep", "100"))
        ok(netd.docker("network", "connect", "--link", f"{target}:other", net, c2))
        assert f"Address: {ip}" in ok(netd.docker("exec", c2, "nslookup", "other"))
    finally:
        for c in (target, c1, c2):
            netd.docker("rm", "-f", c)
        netd.docker("network", "rm", net)


def test_mac_addresses_and_link_local_ips(netd, client):
    net, made = name(), []
    ok(netd.docker("network", "create", "--subnet", "10.236.2.0/24", net))
    try:
        c = client.containers.create("busybox", ["sleep", "100"], mac_address="02:42:AA:BB:CC:DE", network=net,
                                     name=name())
        made.append(c.id)
        c.start()
        assert c.exec_run(["cat", "/sys/class/net/eth0/address"]).output.decode().strip() == "02:42:aa:bb:cc:de"
        c.reload()
        assert c.attrs["NetworkSettings"]["Networks"][net]["MacAddress"] == "02:42:aa:bb:cc:de"
        status, _ = api(netd, "POST", "/networks/bridge/connect",
                        {"Container": c.id, "EndpointConfig": {"MacAddress": "02:42:11:22:33:44"}})
        assert status == 200
        assert c.exec_run(["cat", "/sys/class/net/eth1/address"]).output.decode().strip() == "02:42:11:22:33:44"
        c.remove(force=True)
        # --link-local-ip: one more address, shown in IPAMConfig
        cid = ok(netd.docker("run", "-d", "--network", net, "--link-local-ip", "169.254.7.7", "busybox", "sleep",
                             "100")).strip()
        made.append(cid)
        out = ok(netd.docker("exec", cid, "ip", "-o", "-4", "addr", "show", "eth0"))
        assert "169.254.7.7/16" in out, out
        ipam = json.loads(ok(netd.docker("inspect", cid)))[0]["NetworkSettings"]["Networks"][net]["IPAMConfig"]
        assert ipam["LinkLocalIPs"] == ["169.254.7.7"]
        netd.docker("rm", "-f", cid)
        res = netd.docker("run", "--rm", "--network", net, "--link-local-ip", "10.9.9.9", "busybox", "true")
        assert res.returncode != 0 and b"invalid link local IP address: 10.9.9.9" in res.stderr, res.stderr
        status, body = api(netd, "POST", "/containers/create", {
            "Image": "busybox", "Cmd": ["true"], "HostConfig": {"NetworkMode": net},
            "NetworkingConfig": {"EndpointsConfig": {net: {"IPAMConfig": {"LinkLocalIPs": ["nope"]}}}}})
        assert (status, body["message"]) == (400, "Invalid link-local IP address: [nope]")
    finally:
        for cid in made:
            netd.docker("rm", "-f", cid)
        netd.docker("network", "rm", net)


def test_a_bridge_container_connected_to_a_user_network_resolves_its_names(netd):
    net, target, c = name(), name(), name()
    ok(netd.docker("network", "create", "--subnet", "10.236.3.0/24", net))
    try:
        ok(netd.docker("run", "-d", "--name", target, "--network", net, "busybox", "sleep", "100"))
        ok(netd.docker("run", "-d", "--name", c, "busybox", "sleep", "100"))
        assert "127.0.0.11" not in ok(netd.docker("exec", c, "cat", "/etc/resolv.conf"))
        ok(netd.docker("network", "connect", net, c))
        assert "nameserver 127.0.0.11" in ok(netd.docker("exec", c, "cat", "/etc/resolv.conf"))
        ip = json.loads(ok(netd.docker("inspect", target)))[0]["NetworkSettings"]["Networks"][net]["IPAddress"]
        assert f"Address: {ip}" in ok(netd.docker("exec", c, "nslookup", target))
        info = json.loads(ok(netd.docker("inspect", c)))[0]
        mine = info["NetworkSettings"]["Networks"][net]["IPAddress"]
        line = f"{mine}\t{info['Config']['Hostname']}"
        assert line in ok(netd.docker("exec", c, "cat", "/etc/hosts")).splitlines()  # /etc/hosts names it too
        ok(netd.docker("network", "disconnect", net, c))
        assert line not in ok(netd.docker("exec", c, "cat", "/etc/hosts")).splitlines()
    finally:
        for x in (target, c):
            netd.docker("rm", "-f", x)
        netd.docker("network", "rm", net)


def test_container_network_mode_takes_its_hostname_and_aliases_show_at_create(netd):
    owner, net = name(), name()
    ok(netd.docker("run", "-d", "--name", owner, "busybox", "sleep", "100"))
    hostname = json.loads(ok(netd.docker("inspect", owner)))[0]["Config"]["Hostname"]
    out = ok(netd.docker("run", "--rm", "--network", f"container:{owner}", "busybox", "sh", "-c",
                         "hostname; cat /etc/hostname"))
    assert out.split() == [hostname, hostname]
    status, body = api(netd, "POST", "/containers/create", {"Image": "busybox", "Hostname": "x", "Cmd": ["true"],
                                                            "HostConfig": {"NetworkMode": f"container:{owner}"}})
    assert (status, body["message"]) == (400, "conflicting options: hostname and the network mode")
    ok(netd.docker("network", "create", "--subnet", "10.236.4.0/24", net))
    try:
        cid = ok(netd.docker("create", "--network", net, "--network-alias", "foo", "busybox", "sleep", "100")).strip()
        nets = json.loads(ok(netd.docker("inspect", cid)))[0]["NetworkSettings"]["Networks"]
        assert nets[net]["Aliases"] == ["foo"]
        ok(netd.docker("start", cid))
        nets = json.loads(ok(netd.docker("inspect", cid)))[0]["NetworkSettings"]["Networks"]
        assert nets[net]["Aliases"] == ["foo", cid[:12]]  # dockerd 20.10's order
        netd.docker("rm", "-f", cid)
    finally:
        netd.docker("rm", "-f", owner)
        netd.docker("network", "rm", net)


def test_network_events_at_start_and_stop(netd, client):
    net = name()
    ok(netd.docker("network", "create", "--subnet", "10.236.5.0/24", net))
    try:
        since = time.time() - 1
        c = client.containers.run("busybox", ["sleep", "100"], detach=True, network=net, name=name())
        client.networks.get("bridge").connect(c)
        c.stop(timeout=0)
        until = time.time() + 1
        time.sleep(1.1)
        seen = [(e["Type"], e["Action"], e["Actor"]["Attributes"].get("name"))
                for e in client.events(since=since, until=until, decode=True)
                if e["Actor"]["ID"] == c.id or e["Actor"]["Attributes"].get("container") == c.id]
        assert seen[:4] == [("container", "create", c.name), ("network", "connect", net),
                            ("container", "start", c.name), ("network", "connect", "bridge")], seen
        die = seen.index(("container", "die", c.name))  # then the disconnects and "stop", as dockerd's
        assert sorted(seen[die + 1:]) == [("container", "stop", c.name), ("network", "disconnect", "bridge"),
                                          ("network", "disconnect", net)], seen
        event = next(e for e in client.events(since=since, until=until, decode=True) if e["Action"] == "connect")
        assert event["Actor"]["Attributes"]["type"] == "bridge"
        c.remove()
    finally:
        netd.docker("network", "rm", net)


def test_a_missing_network_fails_the_start_not_the_create(netd):
    res = netd.docker("run", "--rm", "--network", "nope-net", "busybox", "true")
    err = res.stderr.decode()
    assert res.returncode != 0 and "network nope-net not found" in err and "Unable to find image" not in err, err
    status, body = api(netd, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                            "HostConfig": {"NetworkMode": "nope-net"}})
    assert status == 201, body
    assert api(netd, "POST", f"/containers/{body['Id']}/start") == (404, {"message": "network nope-net not found"})
    api(netd, "DELETE", f"/containers/{body['Id']}?force=1")


def test_internal_first_network_publishes_on_the_other(netd):
    back, front, c = name(), name(), name()
    ok(netd.docker("network", "create", "--internal", "--subnet", "10.236.6.0/24", back))
    ok(netd.docker("network", "create", "--subnet", "10.236.7.0/24", front))
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    try:
        ok(netd.docker("create", "--name", c, "--network", back, "-p", f"127.0.0.1:{port}:80", "busybox", "sh",
                       "-c", "while true; do echo hello | nc -l -p 80; done"))
        ok(netd.docker("network", "connect", front, c))
        ok(netd.docker("start", c))
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                    got = s.recv(100)
                if got == b"hello\n":
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the published port never answered"
            time.sleep(0.1)
        gateway = json.loads(ok(netd.docker("network", "inspect", front)))[0]["IPAM"]["Config"][0]["Gateway"]
        assert f"default via {gateway}" in ok(netd.docker("exec", c, "ip", "route"))
        netd.docker("rm", "-f", c)
        # only internal networks: nothing is published, and nothing claims to be
        ok(netd.docker("create", "--name", c, "--network", back, "-p", f"127.0.0.1:{port}:80", "busybox", "sleep",
                       "100"))
        ok(netd.docker("start", c))
        assert ok(netd.docker("port", c)).strip() == ""
    finally:
        netd.docker("rm", "-f", c)
        netd.docker("network", "rm", back)
        netd.docker("network", "rm", front)


def test_network_create_nulls_and_a_subnet_a_host_route_has(netd):
    dummy = f"dyp{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", dummy, "type", "bridge"], check=True)
    try:  # a stale route (another daemon's bridge, a link gone down) overlaps nothing of ours
        subprocess.run(["ip", "addr", "add", "10.236.8.1/24", "dev", dummy], check=True)
        subprocess.run(["ip", "link", "set", dummy, "up"], check=True)
        net = name()
        status, body = api(netd, "POST", "/networks/create", {
            "Name": net, "Driver": None, "Options": None, "Labels": None, "EnableIPv6": None, "Internal": None,
            "IPAM": {"Driver": None, "Options": None, "Config": [{"Subnet": "10.236.9.0/24", "Gateway": None}]}})
        assert status == 201, body
        ok(netd.docker("network", "rm", net))
        status, body = api(netd, "POST", "/networks/create", {"Name": net, "IPAM": {"Config": None}, "Options": None})
        assert status == 201, body
        ok(netd.docker("network", "rm", net))
        ok(netd.docker("network", "create", "--subnet", "10.236.8.0/24", net))
        ok(netd.docker("network", "rm", net))
    finally:
        subprocess.run(["ip", "link", "del", dummy])


def test_ipv6_networks(netd):
    net, plain, c1, c2 = name(), name(), name(), name()
    res = netd.docker("network", "create", "--ipv6", name())
    assert res.returncode != 0 and b"non-overlapping IPv6 address pool" in res.stderr, res.stderr  # dockerd 20.10's
    ok(netd.docker("network", "create", "--ipv6", "--subnet", "10.236.10.0/24", "--subnet", "fd36:10::/64",
                   "--gateway", "fd36:10::fe", net))
    ok(netd.docker("network", "create", "--subnet", "10.236.11.0/24", plain))
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    try:
        info = json.loads(ok(netd.docker("network", "inspect", net)))[0]
        assert info["EnableIPv6"] is True and info["IPAM"]["Config"] == [
            {"Subnet": "10.236.10.0/24", "Gateway": "10.236.10.1"}, {"Subnet": "fd36:10::/64", "Gateway": "fd36:10::fe"}]
        bridge = info["Options"].get("com.docker.network.bridge.name") or f"dy-{info['Id'][:12]}"
        other = json.loads(ok(netd.docker("network", "inspect", plain)))[0]
        plain_bridge = other["Options"].get("com.docker.network.bridge.name") or f"dy-{other['Id'][:12]}"
        # IPv6 only where asked for (issue 13): the other bridge has none
        assert Path(f"/proc/sys/net/ipv6/conf/{bridge}/disable_ipv6").read_text().strip() == "0"
        assert Path(f"/proc/sys/net/ipv6/conf/{plain_bridge}/disable_ipv6").read_text().strip() == "1"
        ok(netd.docker("run", "-d", "--name", c1, "--network", net, "--ip6", "fd36:10::99", "-p", f"{port}:80",
                       "busybox", "sh", "-c", "while true; do echo hello6 | nc -l -p 80; done"))
        out = ok(netd.docker("exec", c1, "sh", "-c", "ip -6 addr show eth0; ip -6 route"))
        assert "inet6 fd36:10::99/64" in out and "default via fd36:10::fe" in out, out
        settings = json.loads(ok(netd.docker("inspect", c1)))[0]["NetworkSettings"]["Networks"][net]
        assert (settings["GlobalIPv6Address"], settings["GlobalIPv6PrefixLen"], settings["IPv6Gateway"]) == (
            "fd36:10::99", 64, "fd36:10::fe")
        containers = json.loads(ok(netd.docker("network", "inspect", net)))[0]["Containers"]
        assert [c["IPv6Address"] for c in containers.values()] == ["fd36:10::99/64"]
        ok(netd.docker("run", "-d", "--name", c2, "--network", net, "busybox", "sleep", "100"))
        six = json.loads(ok(netd.docker("inspect", c2)))[0]["NetworkSettings"]["Networks"][net]["GlobalIPv6Address"]
        assert six == "fd36:10::1"  # the first free address (the gateway is ::fe)
        assert f"{six}\t" in ok(netd.docker("exec", c2, "cat", "/etc/hosts"))
        ok(netd.docker("exec", c2, "ping6", "-c", "1", "-W", "3", "fd36:10::99"))
        out = ok(netd.docker("exec", c2, "nslookup", "-type=aaaa", c1))  # the embedded DNS answers AAAA
        assert "fd36:10::99" in out, out
        # the published port on the host's IPv6 addresses (the bridge's gateway is one), by DNAT in the ip6 table
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("fd36:10::fe", port), timeout=3) as s:
                    if s.recv(100) == b"hello6\n":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the port published over IPv6 never answered"
            time.sleep(0.1)
        rules = subprocess.run(["nft", "list", "table", "ip6", netd.nft_table], capture_output=True, text=True)
        assert "ip6 saddr fd36:10::/64" in rules.stdout and "masquerade" in rules.stdout, rules
    finally:
        for c in (c1, c2):
            netd.docker("rm", "-f", c)
        netd.docker("network", "rm", net)
        netd.docker("network", "rm", plain)
    # the last IPv6 network gone, so is its table
    assert subprocess.run(["nft", "list", "table", "ip6", netd.nft_table], capture_output=True).returncode != 0
