"""Networks through the daemon, as users hit them: the default bridge, user-defined
networks with name resolution, isolation, published ports, churn and a daemon
SIGKILL in the middle of it.  Traffic goes only to loopback and to the containers'
own namespaces."""

import json
import os
import signal
import subprocess
import time
import urllib.request
import uuid

import pytest


pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.xdist_group("host")]  # fixed subnets: routes of the host, one network test at a time


def name():
    return f"n-{uuid.uuid4().hex[:8]}"


def ip_of(c, network="bridge"):
    c.reload()
    return c.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]


def wait_logs(c, text, timeout=15):
    deadline = time.monotonic() + timeout
    while text.encode() not in c.logs():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in {c.logs()!r}")
        time.sleep(0.05)


# "listening" is printed only once the socket is bound: netstat sees it in LISTEN.
# nc's stdin is a FIFO the shell holds open: a background job's stdin is /dev/null,
# and busybox nc that saw its stdin end before the client's data arrived closed the
# connection unread (under load the client's "hello" was lost, 3 runs in 10)
SERVER = ["sh", "-c", "mkfifo /tmp/in; nc -l -p 7000 < /tmp/in > /tmp/got & exec 3> /tmp/in; "
                      "until netstat -ltn | grep -q ':7000 '; do sleep 0.05; done; "
                      "echo listening; wait; cat /tmp/got; sleep 100"]


def test_default_bridge_tcp_between_two_containers(client):
    srv = client.containers.run("busybox", SERVER, detach=True, name=name())
    try:
        wait_logs(srv, "listening")
        addr = ip_of(srv)
        assert addr.startswith(tuple(f"172.{n}." for n in range(16, 32))) or addr.startswith("192.168.")
        out = client.containers.run("busybox", ["sh", "-c", f"echo hello-tcp | nc -w 3 {addr} 7000; "
                                                            "ip -o -4 addr show eth0; ip route"], remove=True)
        assert b"inet " in out and b"default via" in out, out
        wait_logs(srv, "hello-tcp")
        inspect = client.api.inspect_container(srv.id)["NetworkSettings"]
        assert inspect["IPAddress"] == addr and inspect["Gateway"] and inspect["MacAddress"].startswith("02:42:")
        hosts = srv.exec_run(["cat", "/etc/hosts"]).output.decode()
        assert f"{addr}\t{srv.attrs['Config']['Hostname']}" in hosts
    finally:
        srv.remove(force=True)


def test_user_network_resolves_names_and_aliases(client):
    net = client.networks.create(name(), driver="bridge")
    try:
        srv = client.containers.run("busybox", SERVER, detach=True, name=name(), network=net.name)
        client.api.disconnect_container_from_network(srv.id, net.id)  # and back, with an alias
        client.api.connect_container_to_network(srv.id, net.id, aliases=["db"])
        wait_logs(srv, "listening")
        addr = ip_of(srv, net.name)
        script = (f"nslookup {srv.name} | grep -A1 '^Name:'; nslookup db | grep -A1 '^Name:'; "
                  "cat /etc/resolv.conf; echo by-name | nc -w 3 db 7000")
        out = client.containers.run("busybox", ["sh", "-c", script], remove=True, network=net.name).decode()
        assert out.count(addr) >= 2 and "nameserver 127.0.0.11" in out, out
        wait_logs(srv, "by-name")
        srv.remove(force=True)
    finally:
        net.remove()


def test_networks_are_isolated_from_each_other(client):
    a, b = client.networks.create(name()), client.networks.create(name())
    try:
        srv = client.containers.run("busybox", SERVER, detach=True, name=name(), network=a.name)
        wait_logs(srv, "listening")
        addr = ip_of(srv, a.name)
        out = client.containers.run("busybox", ["sh", "-c", f"echo x | nc -w 2 {addr} 7000 && echo REACHED; "
                                                            "echo done"], remove=True, network=b.name)
        assert b"REACHED" not in out and b"done" in out
        srv.remove(force=True)
    finally:
        a.remove()
        b.remove()


def test_published_port_answers_on_loopback(client, netd):
    c = client.containers.run("busybox", ["sh", "-c", "mkdir /www; echo served > /www/index.html; "
                                                      "httpd -f -p 80 -h /www"],
                              detach=True, name=name(), ports={"80/tcp": ("127.0.0.1", None)})
    try:
        port = int(client.api.port(c.id, 80)[0]["HostPort"])
        deadline = time.monotonic() + 10
        while True:
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert body == b"served\n"
        res = netd.docker("port", c.id)
        assert res.stdout.decode().strip() == f"80/tcp -> 127.0.0.1:{port}"
        ps = netd.docker("ps", "--format", "{{.Ports}}", "--filter", f"id={c.id}").stdout.decode()
        assert f"127.0.0.1:{port}->80/tcp" in ps
        clash = netd.docker("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true")
        assert clash.returncode != 0 and b"already in use" in clash.stderr, clash.stderr
    finally:
        c.remove(force=True)


def test_chosen_ip_full_pool_and_bad_input(client, netd):
    net = client.networks.create(name(), ipam={"Config": [{"Subnet": "10.231.7.0/29"}]})
    try:
        res = netd.docker("run", "-d", "--network", net.name, "--ip", "10.231.7.5", "busybox", "sleep", "100")
        assert res.returncode == 0, res.stderr
        first = res.stdout.decode().strip()
        res = netd.docker("run", "--rm", "--network", net.name, "--ip", "10.231.7.5", "busybox", "true")
        assert res.returncode != 0 and b"Address already in use" in res.stderr
        started = [first]
        for _ in range(4):  # .2 .3 .4 .6: /29 has .1 (gateway) to .6
            started.append(netd.docker("run", "-d", "--network", net.name, "busybox", "sleep", "100")
                           .stdout.decode().strip())
        res = netd.docker("run", "--rm", "--network", net.name, "busybox", "true")
        assert res.returncode != 0 and b"no available IPv4 addresses" in res.stderr, res.stderr
        res = netd.docker("run", "--rm", "--ip", "172.17.9.9", "busybox", "true")
        assert res.returncode != 0 and b"user defined networks only" in res.stderr
        res = netd.docker("network", "create", "--subnet", "10.231.7.0/24", name())
        assert res.returncode != 0 and b"overlaps" in res.stderr
        res = netd.docker("network", "rm", net.name)
        assert res.returncode != 0 and b"active endpoints" in res.stderr
        for cid in started:
            netd.docker("rm", "-f", cid)
    finally:
        net.remove()


def leftovers(netd):
    """What no container holds: the daemon's veths, allocations, pinned namespaces."""
    veths = netd.veths()
    db = netd.data_root / "dockyard.db"
    rows = subprocess.run(["python3", "-c", f"import sqlite3; c=sqlite3.connect({str(db)!r}); "
                                            "print(c.execute(\"select count(*) from ip_allocations "
                                            "where owner != 'gateway'\").fetchone()[0])"],
                          capture_output=True, text=True).stdout.strip()
    pinned = os.listdir(netd.exec_root / "netns") if (netd.exec_root / "netns").is_dir() else []
    return veths, int(rows or -1), pinned


@pytest.mark.slow
def test_churn_and_a_daemon_killed_in_the_middle(client, netd):
    net = client.networks.create(name())
    ids = []
    try:
        for i in range(100):
            c = client.containers.create("busybox", ["sleep", "100"], name=name())
            ids.append(c.id)
            c.start()
            net.connect(c)
            if i % 2:
                net.disconnect(c)
            if i == 60:  # a crash in the middle of the churn
                client.close()
                netd.stop(signal.SIGKILL)
                netd.start()
                client = netd.sdk()
                net = client.networks.get(net.id)
            if i % 3 == 0:
                client.containers.get(c.id).remove(force=True)
                ids.remove(c.id)
        addresses = [ip_of(client.containers.get(cid)) for cid in ids]
        assert len(set(addresses)) == len(addresses)  # never two on one address
        for cid in ids:
            client.containers.get(cid).remove(force=True)
        ids = []
        assert leftovers(netd) == ([], 0, []), leftovers(netd)
    finally:
        for cid in ids:
            client.containers.get(cid).remove(force=True)
        net.remove()


def test_docker_cli_network_commands(netd):
    net = name()
    res = netd.docker("network", "create", "--subnet", "10.232.9.0/24", "--gateway", "10.232.9.254",
                      "--internal", "--label", "team=a", net)
    assert res.returncode == 0, res.stderr
    try:
        ls = netd.docker("network", "ls", "--filter", "label=team=a", "--format", "{{.Name}} {{.Driver}}")
        assert ls.stdout.decode().split() == [net, "bridge"]
        info = json.loads(netd.docker("network", "inspect", net).stdout)[0]
        assert info["Internal"] is True and info["IPAM"]["Config"] == [{"Subnet": "10.232.9.0/24",
                                                                         "Gateway": "10.232.9.254"}]
        cid = netd.docker("run", "-d", "--network", net, "busybox", "sleep", "100").stdout.decode().strip()
        out = netd.docker("exec", cid, "sh", "-c", "ip -o -4 addr show eth0; ip route").stdout.decode()
        assert "10.232.9.1/24" in out and "10.232.9.0/24 dev eth0" in out and "default" not in out, out  # moby#46603
        other = name()
        assert netd.docker("network", "create", other).returncode == 0
        assert netd.docker("network", "connect", "--alias", "second", other, cid).returncode == 0
        out = netd.docker("exec", cid, "ip", "-o", "-4", "addr").stdout.decode()
        assert "eth1" in out, out
        gateway = json.loads(netd.docker("network", "inspect", other).stdout)[0]["IPAM"]["Config"][0]["Gateway"]
        out = netd.docker("exec", cid, "ip", "route").stdout.decode()
        assert f"default via {gateway} dev eth1" in out, out  # the normal network routes out
        info = json.loads(netd.docker("inspect", cid).stdout)[0]["NetworkSettings"]["Networks"]
        assert set(info) == {net, other} and "second" in info[other]["Aliases"]
        assert netd.docker("network", "disconnect", other, cid).returncode == 0
        assert "eth1" not in netd.docker("exec", cid, "ip", "-o", "link").stdout.decode()
        netd.docker("rm", "-f", cid)
        pruned = netd.docker("network", "prune", "-f").stdout.decode()
        assert net in pruned and other in pruned, pruned
        for builtin in ("bridge", "host", "none"):
            res = netd.docker("network", "rm", builtin)
            assert res.returncode != 0 and b"pre-defined network" in res.stderr
        res = netd.docker("network", "create", "--driver", "host", name())
        assert res.returncode != 0 and b"only one instance" in res.stderr
    finally:
        netd.docker("network", "rm", net)


def test_sdk_ports_and_none_network(client):
    c = client.containers.run("busybox", ["sleep", "100"], detach=True, name=name(),
                              ports={"7001/tcp": None, "7002/udp": ("127.0.0.1", None)})
    try:
        c.reload()
        ports = c.attrs["NetworkSettings"]["Ports"]
        assert ports["7001/tcp"][0]["HostIp"] == "0.0.0.0" and int(ports["7001/tcp"][0]["HostPort"]) > 0
        assert ports["7002/udp"][0]["HostIp"] == "127.0.0.1"
        listed = client.api.containers(filters={"id": c.id})[0]["Ports"]
        assert {(p["PrivatePort"], p["Type"]) for p in listed} == {(7001, "tcp"), (7002, "udp")}
    finally:
        c.remove(force=True)
    out = client.containers.run("busybox", ["ip", "-o", "link"], network="none", remove=True).decode()
    assert [line.split(":")[1].strip() for line in out.splitlines()] == ["lo"], out


def test_publish_all_exposed_ports(netd):
    res = netd.docker("run", "-d", "-P", "--expose", "8123", "--expose", "8124/udp", "busybox", "sleep", "100")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.decode().strip()
    try:
        lines = sorted(netd.docker("port", cid).stdout.decode().splitlines())
        assert [line.split(" -> ")[0] for line in lines] == ["8123/tcp", "8124/udp"], lines
        assert all(int(line.rsplit(":", 1)[1]) > 0 for line in lines)
    finally:
        netd.docker("rm", "-f", cid)
