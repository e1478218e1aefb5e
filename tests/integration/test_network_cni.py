"""The ``cni`` network driver with Debian's real CNI plugins (/usr/lib/cni:
bridge, host-local, portmap, loopback), real network namespaces and iptables.

Each test has a configuration directory of its own naming a bridge of this
session (``dy<session>c<hex>``, so the leak check finds it if left) on a private
/24, and host-local's allocations in a directory of its own.  Traffic goes only
to addresses in namespaces the test made, or to 127.0.0.1.
"""

import ipaddress
import json
import os
import random
import secrets
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from dockyard.errors import NetworkError
from dockyard.testing.daemon import Daemon
from dockyard.testing.leaks import LINK_PREFIX, NETNS_PREFIX, NETNS_RUN_DIR

BIN_DIR = "/usr/lib/cni"
pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the CNI plugins need root"),
    pytest.mark.skipif(not os.path.exists(f"{BIN_DIR}/portmap"),
                       reason="needs Debian's containernetworking-plugins in /usr/lib/cni"),
    pytest.mark.xdist_group("cri"),  # with the CRI tests: portmap's chains are the host's, shared
]


class Setup:
    """A configuration directory, its bridge and subnet, and a namespace."""

    def __init__(self, base: Path):
        tag = secrets.token_hex(2)
        self.base = base
        self.bridge = f"{LINK_PREFIX}c{tag}"
        self.subnet = ipaddress.ip_network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        self.name = f"dytest-{tag}"
        self.conf_dir = base / "net.d"
        self.data_dir = base / "ipam"
        self.conf_dir.mkdir(parents=True)
        self.write()
        self.netns_name = f"{NETNS_PREFIX}cni{tag}"
        self.netns = f"{NETNS_RUN_DIR}/{self.netns_name}"
        subprocess.run(["ip", "netns", "add", self.netns_name], check=True)

    def write(self, plugins=None):
        plugins = plugins or [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": str(self.subnet)}]],
                      "dataDir": str(self.data_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"}]
        conf = {"cniVersion": "1.0.0", "name": self.name, "plugins": plugins}
        (self.conf_dir / "10-test.conflist").write_text(json.dumps(conf))

    def allocations(self):
        """The addresses host-local holds (its files named by address)."""
        d = self.data_dir / self.name
        return sorted(n for n in os.listdir(d) if _is_ip(n)) if d.exists() else []

    def veths_on_bridge(self):
        out = subprocess.run(["ip", "-o", "link", "show", "master", self.bridge], capture_output=True, text=True)
        return [line.split(":")[1].strip() for line in out.stdout.splitlines()]

    def close(self):
        subprocess.run(["ip", "netns", "del", self.netns_name], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


def _is_ip(text):
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def nat_rules():
    return subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout


@pytest.fixture
def setup(tmp_path):
    s = Setup(tmp_path)
    yield s
    s.close()


@pytest.fixture
def driver(setup, tmp_path):
    from dockyard.drivers.network.cni.driver import CniDriver

    d = CniDriver()
    d.network_init(home=tmp_path / "home", options={"cni_conf_dir": str(setup.conf_dir), "cni_bin_dir": BIN_DIR})
    return d


def _net(setup):
    return {"id": secrets.token_hex(32), "name": "pods", "driver": "cni", "options": {}, "labels": {},
            "internal": False, "ipam": None}


def _ep(net):
    return {"id": secrets.token_hex(32), "container_id": secrets.token_hex(32), "network_id": net["id"],
            "name": "c1", "aliases": [], "ipv4": "172.31.0.2/16", "mac": "02:42:ac:1f:00:02"}


class Listener:
    """A TCP server in the namespace ``netns`` answering "hello" on ``port``."""

    def __init__(self, netns_name, port=80):
        code = ("import socket,sys\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                f"s.bind(('0.0.0.0',{port}));s.listen();print('ready',flush=True)\n"
                "while True:\n c,_=s.accept();c.sendall(b'hello');c.close()\n")
        self.proc = subprocess.Popen(["ip", "netns", "exec", netns_name, "python3", "-c", code],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self):
        self.proc.kill()
        self.proc.wait()


def fetch(host, port):
    with socket.create_connection((host, port), timeout=5) as s:
        return s.recv(16)


def test_attach_publish_and_detach_leave_nothing(setup, driver):
    net = _net(setup)
    ep = _ep(net)
    got = driver.network_attach(network=net, endpoint=ep, netns=setup.netns)
    ip = ipaddress.ip_interface(got["ipv4"])
    assert ip.ip in setup.subnet and ip.network == setup.subnet
    assert got["interface"] == "eth0" and got["gateway"] == str(next(setup.subnet.hosts()))
    assert got["mac"] and got["mac"] != ep["mac"]  # the plugin's interface, not the core's guess
    assert setup.allocations() == [str(ip.ip)] and len(setup.veths_on_bridge()) == 1
    # the host reaches the pod's address (isGateway: the bridge holds the gateway)
    server = Listener(setup.netns_name)
    try:
        assert fetch(str(ip.ip), 80) == b"hello"
        host_port = _free_port()
        bound = driver.network_publish(network=net, endpoint=ep, ports=[
            {"proto": "tcp", "host_ip": "", "host_port": host_port, "container_port": 80}])
        assert bound == [{"proto": "tcp", "host_ip": "", "host_port": host_port, "container_port": 80}]
        assert fetch("127.0.0.1", host_port) == b"hello"  # portmap's DNAT of loopback (route_localnet)
        assert ep["container_id"] in nat_rules()
        # publishing again with a port the kernel picks replaces the mapping
        again = driver.network_publish(network=net, endpoint=ep, ports=[
            {"proto": "tcp", "host_ip": "127.0.0.1", "host_port": 0, "container_port": 80}])
        new_port = again[0]["host_port"]
        assert new_port and new_port != host_port
        assert fetch("127.0.0.1", new_port) == b"hello"
        assert f"--dport {host_port} " not in nat_rules()
    finally:
        server.close()
    driver.network_detach(network=net, endpoint=ep, netns=setup.netns)
    assert setup.allocations() == [] and setup.veths_on_bridge() == []
    rules = nat_rules()
    assert ep["container_id"] not in rules and str(ip.ip) not in rules
    names = subprocess.run(["ip", "netns", "exec", setup.netns_name, "ip", "-o", "link"],
                           capture_output=True, text=True).stdout
    assert "eth0" not in names
    driver.network_detach(network=net, endpoint=ep, netns=setup.netns)  # idempotent


def test_a_second_network_gets_the_next_interface_name(setup, driver, tmp_path):
    net = _net(setup)
    ep = _ep(net)
    first = driver.network_attach(network=net, endpoint=ep, netns=setup.netns)
    other = Setup(tmp_path / "other")
    try:
        from dockyard.drivers.network.cni.driver import CniDriver

        d2 = CniDriver()
        d2.network_init(home=tmp_path / "home2", options={"conf_dir": str(other.conf_dir), "bin_dir": BIN_DIR})
        net2, ep2 = _net(other), dict(_ep(net), container_id=ep["container_id"])
        second = d2.network_attach(network=net2, endpoint=ep2, netns=setup.netns)
        assert (first["interface"], second["interface"]) == ("eth0", "eth1")
        d2.network_detach(network=net2, endpoint=ep2, netns=setup.netns)
        assert other.allocations() == []
    finally:
        other.close()
    driver.network_detach(network=net, endpoint=ep, netns=setup.netns)


def test_detach_after_a_restart_and_with_the_namespace_gone(setup, driver, tmp_path):
    """The DEL runs from the attachment's record (a new driver: the daemon
    restarted) and frees the address and the port rules though the namespace
    (and the veth with it) is gone."""
    from dockyard.drivers.network.cni.driver import CniDriver

    net = _net(setup)
    ep = _ep(net)
    got = driver.network_attach(network=net, endpoint=ep, netns=setup.netns)
    driver.network_publish(network=net, endpoint=ep, ports=[
        {"proto": "tcp", "host_ip": "", "host_port": _free_port(), "container_port": 80}])
    assert ep["container_id"] in nat_rules()
    setup.write([{"type": "loopback"}])  # the configuration changes: the DEL still runs the ADD's
    subprocess.run(["ip", "netns", "del", setup.netns_name], check=True)
    restarted = CniDriver()
    restarted.network_init(home=tmp_path / "home", options={"cni_conf_dir": str(setup.conf_dir)})
    restarted.network_detach(network=net, endpoint=ep, netns=setup.netns)
    assert setup.allocations() == [] and setup.veths_on_bridge() == []
    rules = nat_rules()
    assert ep["container_id"] not in rules and got["ipv4"].split("/")[0] not in rules
    assert not os.listdir(tmp_path / "home" / "attachments")


def test_a_plugin_error_is_quoted_and_nothing_is_left(setup, driver, tmp_path):
    net = _net(setup)
    ep = _ep(net)
    setup.write([{"type": "bridge", "bridge": setup.bridge, "isGateway": True,
                  "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.300.0.0/24"}]],
                           "dataDir": str(setup.data_dir)}}])
    with pytest.raises(NetworkError) as err:
        driver.network_attach(network=net, endpoint=ep, netns=setup.netns)
    text = str(err.value)
    assert "CNI plugin bridge (ADD" in text and "10.300.0.0/24" in text and "CNI error code" in text, text
    assert setup.veths_on_bridge() == [] and setup.allocations() == []
    assert not os.listdir(tmp_path / "home" / "attachments")


def test_a_missing_plugin_names_it_and_the_bin_dir(setup, driver):
    setup.write([{"type": "no-such-plugin"}])
    net = _net(setup)
    with pytest.raises(NetworkError, match=r"CNI plugin 'no-such-plugin' not found in /usr/lib/cni"):
        driver.network_attach(network=net, endpoint=_ep(net), netns=setup.netns)


def test_a_network_picks_its_configuration_by_name(setup, driver):
    """The first file by name is used, unless the network's option cni_network names one."""
    (setup.conf_dir / "05-first.conflist").write_text(json.dumps(
        {"cniVersion": "1.0.0", "name": "first", "plugins": [{"type": "no-such-plugin"}]}))
    net = _net(setup)
    with pytest.raises(NetworkError, match="no-such-plugin"):
        driver.network_attach(network=net, endpoint=_ep(net), netns=setup.netns)
    net["options"] = {"cni_network": setup.name}
    ep = _ep(net)
    got = driver.network_attach(network=net, endpoint=ep, netns=setup.netns)
    assert ipaddress.ip_interface(got["ipv4"]).ip in setup.subnet
    driver.network_detach(network=net, endpoint=ep, netns=setup.netns)
    assert setup.allocations() == []


def test_no_configuration_is_named_in_the_error(tmp_path):
    from dockyard.drivers.network.cni.driver import CniDriver

    d = CniDriver()
    d.network_init(home=tmp_path / "home", options={"cni_conf_dir": str(tmp_path / "empty")})
    net = _net(None)
    with pytest.raises(NetworkError, match=f"no CNI network configuration in {tmp_path / 'empty'}"):
        d.network_attach(network=net, endpoint=_ep(net), netns="/proc/self/ns/net")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- through a daemon and the docker CLI -----------------------------------------------


@pytest.fixture
def cni_daemon(session_root, busybox_tar, tmp_path):
    setup = Setup(tmp_path / "cni")
    config = tmp_path / "plugins.toml"
    config.write_text('[network]\ndrivers = ["bridge", "host", "none", "cni"]\ndefault = "bridge"\n')
    d = Daemon(session_root / f"cni-{uuid.uuid4().hex[:8]}", config=config,
               extra_args=["--network-opt", f"cni_conf_dir={setup.conf_dir}"]).start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        yield d, setup
    finally:
        try:
            client = d.sdk()
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        finally:
            d.stop()
            d.remove_network_objects()
            setup.close()


def test_docker_run_on_a_cni_network(cni_daemon):
    d, setup = cni_daemon
    res = d.docker("network", "create", "-d", "cni", "pods")
    assert res.returncode == 0, res.stderr.decode()
    host_port = _free_port()
    res = d.docker("run", "-d", "--name", "web", "--network", "pods", "-p", f"127.0.0.1:{host_port}:80",
                   "busybox", "sh", "-c", "mkdir /www && echo hello > /www/index.html && httpd -f -p 80 -h /www")
    assert res.returncode == 0, res.stderr.decode()
    info = json.loads(d.docker("inspect", "web").stdout)[0]
    ep = info["NetworkSettings"]["Networks"]["pods"]
    ip = ep["IPAddress"]
    assert ipaddress.ip_address(ip) in setup.subnet and ep["Gateway"] == str(next(setup.subnet.hosts()))
    assert info["NetworkSettings"]["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(host_port)}]
    assert setup.allocations() == [ip]
    for target in ((ip, 80), ("127.0.0.1", host_port)):
        assert b"hello" in _http_get(*target), target
    cid = info["Id"]
    assert cid in nat_rules()
    res = d.docker("rm", "-f", "web")
    assert res.returncode == 0, res.stderr.decode()
    assert setup.allocations() == [] and setup.veths_on_bridge() == []
    assert cid not in nat_rules() and ip not in nat_rules()
    # a run --rm that ends by itself goes the same way
    res = d.docker("run", "--rm", "--network", "pods", "busybox", "ip", "-o", "-4", "addr", "show", "eth0")
    assert res.returncode == 0 and str(setup.subnet)[:-5].rsplit(".", 1)[0] in res.stdout.decode(), res
    assert setup.allocations() == [] and setup.veths_on_bridge() == []
    assert d.docker("network", "rm", "pods").returncode == 0


def _http_get(host, port):
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\r\n\r\n")
                data = b""
                while chunk := s.recv(4096):
                    data += chunk
                return data
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
