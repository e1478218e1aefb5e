"""Private engines for the benchmarks: a Dockyard daemon, dockerd with the containerd
it starts itself, and podman, each on its own socket and roots inside a
:class:`common.Workspace`, with cgroups under the workspace's token, registering
their own teardown with it."""

import hashlib
import http.client
import ipaddress
import json
import signal
import socket
import subprocess
import time
from pathlib import Path

import hostnet
from common import PY, NotAvailable, cmdline, last_line, need, processes_mentioning, run_cmd


# --- HTTP on a unix socket -------------------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sock, method, path, body=None, raw=None, headers=None):
    """One request; returns (status, parsed JSON or bytes)."""
    conn = UnixHTTPConnection(sock)
    try:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(payload) if payload else None
    except ValueError:
        return resp.status, payload


def ping(sock):
    try:
        return api(sock, "GET", "/_ping")[0] == 200
    except OSError:
        return False


def wait_until(check, proc, log, what, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NotAvailable(f"{what} exited {proc.returncode}: {last_line(Path(log).read_text(errors='replace'))}")
        if check():
            return
        time.sleep(0.05)
    raise NotAvailable(f"{what} did not answer in {timeout}s")


def stop_process(proc, timeout=30):
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- private engines -----------------------------------------------------------------
class DockyardDaemon:
    """A Dockyard daemon on its own socket, data root, exec root and cgroup parent,
    and its own default bridge ``dyb<token>`` and nft table ``dockyard_bench_<token>``
    (a second daemon's names end in two hex digits of its name).  The daemon keeps
    both when it stops, as dockerd keeps docker0: they are removed afterwards."""

    def __init__(self, ws, name="dockyard", exec_driver=None, storage_driver=None, config=None, python=PY,
                 exec_opts=()):
        self.ws, self.base = ws, ws.tmp / name
        self.python = python  # another checkout's interpreter runs that checkout's Dockyard
        self.sock = str(self.base / "dockyard.sock")
        self.host = f"unix://{self.sock}"
        self.exec_root = self.base / "exec"
        self.cgroup_parent = ws.cgroup() if name == "dockyard" else ws.cgroup(name)
        self.log = self.base / "daemon.log"
        tag = "" if name == "dockyard" else hashlib.sha256(name.encode()).hexdigest()[:2]
        self.bridge, self.nft_table = f"dyb{ws.token}{tag}", f"dockyard_bench_{ws.token}{'_' + tag if tag else ''}"
        self.cmd = [python, "-m", "dockyard.daemon.main", "-H", self.host, "--data-root", str(self.base / "data"),
                    "--exec-root", str(self.exec_root), "--exec-opt", f"cgroup_parent={self.cgroup_parent}",
                    "--bridge", self.bridge, "--network-opt", f"nft_table={self.nft_table}",
                    "--cri-socket", str(self.exec_root / "cri.sock")]  # never the host's /run/dockyard
        self.cmd += ["--exec-driver", exec_driver] if exec_driver else []
        self.cmd += [arg for opt in exec_opts for arg in ("--exec-opt", opt)]  # e.g. supervisor=hub
        self.cmd += ["--storage-driver", storage_driver] if storage_driver else []
        self.cmd += ["--config", str(config)] if config else []
        self.proc = None

    def start(self, tar):
        self.base.mkdir(parents=True)
        self.ws.on_cleanup(f"removing {self.base.name}'s bridge {self.bridge} and nft table {self.nft_table}",
                           self.remove_network_objects)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ws.on_cleanup(f"stopping {self.base.name}", self.stop)
        wait_until(lambda: ping(self.sock), self.proc, self.log, "dockyard daemon")
        run_cmd(self.cli("import", str(tar), "busybox"), timeout=300)
        return self

    def cli(self, *args):
        return [self.python, "-m", "dockyard.cli.main", "-H", self.host, *args]

    def api(self, method, path, body=None):
        return api(self.sock, method, path, body)

    def drivers(self):
        status, info = self.api("GET", "/info")
        if status != 200 or not isinstance(info, dict):
            return "?"
        return f"storage {info.get('Driver')}, exec {(info.get('Drivers') or {}).get('exec', '?')}"

    def create(self, cmd):
        status, body = self.api("POST", "/containers/create",
                                {"Image": "busybox", "Cmd": cmd, "HostConfig": {"NetworkMode": "none"}})
        if status != 201:
            raise NotAvailable(f"create: {status} {body!r}")
        return body["Id"]

    def start_container(self, cid):
        status, body = self.api("POST", f"/containers/{cid}/start")
        if status not in (204, 304):
            raise NotAvailable(f"start: {status} {body!r}")

    def remove(self, cid):
        status, body = self.api("DELETE", f"/containers/{cid}?force=1")
        if status != 204:
            raise NotAvailable(f"delete: {status} {body!r}")

    def pid_of(self, cid):
        return self.api("GET", f"/containers/{cid}/json")[1]["State"]["Pid"]

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:  # remove whatever containers are left (a failed run may leave some)
            status, rows = self.api("GET", "/containers/json?all=1")
            for row in rows if status == 200 else []:
                self.remove(row["Id"])
        except (OSError, NotAvailable):
            pass
        stop_process(self.proc)

    def remove_network_objects(self):
        """After the stop (it runs after :meth:`stop`): the default bridge and nft table."""
        if self.proc is not None and self.proc.poll() is None:
            raise NotAvailable(f"{self.base.name} is still running; its bridge {self.bridge} is left")
        hostnet.remove_link(self.bridge)
        hostnet.remove_nft_table(self.nft_table)


def overlapping_route(subnet):
    """The host route (``ip route`` text) that overlaps ``subnet``, or None."""
    subnet = ipaddress.ip_network(subnet, strict=False)
    for line in run_cmd(["ip", "-4", "route", "show", "table", "main"]).stdout.splitlines():
        dst = line.split()[0]
        if dst != "default" and ipaddress.ip_network(dst, strict=False).overlaps(subnet):
            return line.strip()
    return None


class Dockerd:
    """dockerd (with the containerd it starts itself) on a private socket and roots,
    cgroups under ``dockyard-bench-<token>-docker``.  By default no bridge and no
    iptables rules; with ``bip`` (e.g. ``10.253.0.1/24``) its default bridge network:
    docker0 on that address and its iptables rules (IPv4 only), which dockerd keeps
    when it stops: they are removed afterwards (docker0, the ``DOCKER*`` chains and
    the rules that jump to them or name docker0 or the subnet)."""

    def __init__(self, ws, bip=None, extra_args=()):
        self.ws, self.base = ws, ws.tmp / "docker"
        self.extra_args = list(extra_args)  # more dockerd flags, e.g. ["--insecure-registry", "127.0.0.0/8"]
        self.sock = str(self.base / "docker.sock")
        self.image = f"dockyard-bench-{ws.token}:latest"
        self.env = {"DOCKER_CONFIG": str(self.base / "cli-config")}
        self.bip = bip
        self.removed = []  # what the clean-up after a bridged run had to remove
        self.proc = None

    def network_args(self):
        if self.bip is None:
            return ["--bridge", "none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"]
        subnet = ipaddress.ip_interface(self.bip).network
        if "docker0" in hostnet.links():
            raise NotAvailable("docker0 exists already (another dockerd's?): not touching it")
        clash = overlapping_route(subnet)
        if clash:
            raise NotAvailable(f"--bip {self.bip} overlaps the host route {clash}")
        before = hostnet.snapshot()

        def remove():
            if self.proc is not None and self.proc.poll() is None:
                raise NotAvailable("dockerd is still running; docker0 and its iptables rules are left")
            self.removed += ["link docker0"] if hostnet.remove_link("docker0") else []
            self.removed += hostnet.remove_xtables(("DOCKER",), ("docker0", str(subnet)), before)
        self.ws.on_cleanup("removing docker0 and dockerd's iptables rules", remove)
        return ["--bip", self.bip, "--ip6tables=false"]

    def start(self, tar):
        exe = need("dockerd")
        self.base.mkdir()
        (self.base / "daemon.json").write_text("{}")
        log = self.base / "dockerd.log"
        network = self.network_args()
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                [exe, "--host", f"unix://{self.sock}", "--data-root", str(self.base / "data"),
                 "--exec-root", str(self.base / "exec"), "--pidfile", str(self.base / "docker.pid"),
                 "--config-file", str(self.base / "daemon.json"), *network, *self.extra_args,
                 "--cgroup-parent", f"/{self.ws.cgroup('docker')}"],
                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.ws.on_cleanup("stopping dockerd", self.stop)
        wait_until(lambda: ping(self.sock), self.proc, log, "dockerd", timeout=60)
        run_cmd(self.cli("import", str(tar), self.image), timeout=300, env=self.env)
        return self

    def cli(self, *args):
        return [need("docker"), "-H", f"unix://{self.sock}", *args]

    def run(self, *args, timeout=60):
        return run_cmd(self.cli(*args), timeout=timeout, env=self.env).stdout.strip()

    def daemon_pids(self):
        """dockerd and its containerd (the one whose config lives in our exec root)."""
        return [self.proc.pid] + [p for p in processes_mentioning(str(self.base / "exec"))
                                  if cmdline(p).startswith("containerd ")]

    def shim_pids(self):
        return [p for p in processes_mentioning(str(self.base / "exec"))
                if "containerd-shim-runc-v2" in cmdline(p)]

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            ids = self.run("ps", "-aq").split()
            if ids:
                self.run("rm", "-f", *ids, timeout=120)
            self.run("rmi", "-f", self.image, timeout=120)
        except NotAvailable:
            pass
        stop_process(self.proc, timeout=60)


class Podman:
    """podman with private --root/--runroot/--tmpdir, cgroupfs, runc (crun refuses
    this host's cgroups), rlimits it may set here, cgroups under ``...-podman``.

    With ``network``, containers may use podman's default network (netavark or
    CNI, as podman chooses; a private --network-config-dir), whose bridge and
    iptables chains podman leaves when it is done: they are removed afterwards
    (``podman0``/``cni-podman0``, the ``NETAVARK*``/``CNI-*`` chains and the rules
    that jump to them or name the bridge or subnet)."""

    BRIDGES = ("podman0", "cni-podman0")

    def __init__(self, ws, network=False, name="podman"):
        self.ws, self.base = ws, ws.tmp / name  # another name: another private root
        self.image = f"localhost/dockyard-bench-{ws.token}:latest"
        self.network = network
        self.removed = []  # what the clean-up after a networked run had to remove
        self.used = False

    def cli(self, *args):
        net = ["--network-config-dir", str(self.base / "networks")] if self.network else []
        return [need("podman"), "--root", str(self.base / "root"), "--runroot", str(self.base / "run"),
                "--tmpdir", str(self.base / "tmp"), "--cgroup-manager", "cgroupfs", "--events-backend", "file",
                "--runtime", need("runc"), *net, *args]

    # podman asks for RLIMIT_NPROC/NOFILE values that a process without
    # CAP_SYS_RESOURCE cannot set here ("error setting rlimit type 6").
    RUN_FLAGS = ("--network", "none", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096")

    def run_args(self, network="none"):
        flags = list(self.RUN_FLAGS)
        if network is None:  # podman's default network
            del flags[:2]
        else:
            flags[1] = network
        return [*flags, "--cgroup-parent", f"/{self.ws.cgroup('podman')}"]

    def network_info(self):
        """(backend, default network's subnet), after :meth:`start`."""
        backend = self.run("info", "--format", "{{.Host.NetworkBackend}}")
        subnet = self.run("network", "inspect", "podman", "--format", "{{range .Subnets}}{{.Subnet}} {{end}}")
        return backend, subnet.split()[0] if subnet.split() else None

    def prepare_network(self):
        """Check that podman's default network may be used here and register the
        removal of what it leaves; returns (backend, subnet)."""
        backend, subnet = self.network_info()
        for name in self.BRIDGES:
            if name in hostnet.links():
                raise NotAvailable(f"{name} exists already (another podman's?): not touching it")
        clash = subnet and overlapping_route(subnet)
        if clash:
            raise NotAvailable(f"podman's default subnet {subnet} overlaps the host route {clash}")
        before = hostnet.snapshot()

        def remove():
            self.stop()  # its containers first (registered after start(), so it runs before stop)
            self.removed += [f"link {n}" for n in self.BRIDGES if hostnet.remove_link(n)]
            self.removed += hostnet.remove_xtables(("NETAVARK", "CNI-"), (*self.BRIDGES, *([subnet] if subnet else [])),
                                                   before)
        self.ws.on_cleanup("removing podman's bridge and iptables rules", remove)
        return backend, subnet

    def run(self, *args, timeout=60):
        return run_cmd(self.cli(*args), timeout=timeout).stdout.strip()

    def start(self, tar):
        need("podman")
        self.base.mkdir()
        self.used = True
        self.ws.on_cleanup("removing podman's containers and image", self.stop)
        self.run("import", str(tar), self.image, timeout=300)
        return self

    def conmon_pids(self):
        return [p for p in processes_mentioning(str(self.base)) if cmdline(p).startswith("/usr/bin/conmon")]

    def stop(self):
        if not self.used:
            return
        for args in (("rm", "-af", "-t", "0"), ("rmi", "-af")):
            try:
                self.run(*args, timeout=120)
            except NotAvailable:
                pass
        self.used = False
