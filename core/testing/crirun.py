"""Running Kubernetes' CRI validation suite (critest) against a runtime on this host:
ours (a private Dockyard daemon serving the CRI) or the reference, Debian's
containerd 1.6 with its CRI plugin, each on private roots, sockets and CNI configs.

    with CriHarness(tmp) as h:                      # registry of stand-ins, CNI conf of its own
        with h.dockyard() as endpoint:              # or h.containerd()
            result = run_critest(endpoint, tmp / "critest.log")
    result.passed, result.failed, result.seconds

The harness cleans up after itself: the runtime's processes and mounts, the CNI
bridge, the network namespaces and iptables chains made while it ran, and the
1 MiB SysV shared-memory segments the two HostIpc specs make with ``ipcmk`` on
the host and never remove.  Pods stay off the internet: the bridge has no
masquerade and the pods no default route; the host reaches them on their IPs,
and hostPorts answer on 127.0.0.1 (the portmap plugin).

``python -m dockyard.testing.crirun [--runtime dockyard|containerd] [--benchmark]``
is scripts/critest.sh; it exits 1 on any failed spec.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import attrs

from . import criimages, leaks
from .registry import RegistryServer

REPO = Path(__file__).resolve().parents[2]
CRI_TOOLS_BIN = Path(os.environ.get("CRI_TOOLS_BIN", "/var/cache/cri-tools/bin"))
CNI_BIN_DIR = "/usr/lib/cni"


def cri_tools(build=True):
    """``(crictl, critest)`` paths, building them from ``../shared/cri-tools`` (the
    vendored source beside the repo) when missing; raises FileNotFoundError with the
    reason when neither is possible."""
    crictl, critest = CRI_TOOLS_BIN / "crictl", CRI_TOOLS_BIN / "critest"
    if crictl.exists() and critest.exists():
        return crictl, critest
    script = REPO.parent / "shared" / "cri-tools" / "build.sh"
    if not build or not script.exists():
        raise FileNotFoundError(f"no critest in {CRI_TOOLS_BIN} and no {script} to build it from")
    subprocess.run(["bash", str(script), str(CRI_TOOLS_BIN)], check=True, stdout=subprocess.DEVNULL)
    return crictl, critest


def cri_server_missing():
    """Why our CRI cannot be tested here (None when it can)."""
    import importlib.util

    if importlib.util.find_spec("dockyard.cri.server") is None:
        return "dockyard.cri.server does not exist yet (issue 16)"
    return None


# --- what critest leaves on the host ----------------------------------------------------------------
def shm_segments():
    """``{shmid: bytes}`` of the host's SysV shared-memory segments."""
    out = {}
    for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]:
        f = line.split()
        out[int(f[1])] = int(f[3])
    return out


def remove_new_shm(before):
    """Remove the 1 MiB segments that are not in ``before`` (the HostIpc specs' ``ipcmk -M 1048576``)."""
    gone = []
    for shmid, size in shm_segments().items():
        if shmid not in before and size == 1 << 20:
            if subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True).returncode == 0:
                gone.append(shmid)
    return gone


def _netns():
    return set(os.listdir(leaks.NETNS_RUN_DIR)) if os.path.isdir(leaks.NETNS_RUN_DIR) else set()


def _nat_chains():
    out = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    return {line.split()[1] for line in out.splitlines() if line.startswith("-N ")}


def _nft_tables():
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return [tuple(line.split()[1:3]) for line in out.splitlines() if line.startswith("table ")]


def _has_rules(family, table):
    """Whether ``family table`` holds a rule (base chains with no rule are what is left
    of a table once portmap's chains are gone)."""
    out = subprocess.run(["nft", "list", "table", family, table], capture_output=True, text=True).stdout
    body = [line.strip() for line in out.splitlines()]
    return any(line and not line.startswith(("table ", "chain ", "type ", "}", "#")) for line in body)


class HostState:
    """What the host had before a run, to remove what the run made after it: network
    namespaces (containerd names them ``cni-...`` under /run/netns), the portmap
    plugin's nat chains, shm segments."""

    def __init__(self):
        self.netns, self.chains, self.shm = _netns(), _nat_chains(), shm_segments()
        self.tables = set(_nft_tables())

    def clean(self):
        for name in _netns() - self.netns:
            if name.startswith("cni-"):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        new = [c for c in _nat_chains() - self.chains if c.startswith("CNI-")]
        rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout.splitlines()
        for chain in new:  # the jumps to them first, then the chains
            for rule in rules:
                if rule.startswith("-A ") and f" -j {chain}" in rule:
                    subprocess.run(["iptables", "-t", "nat", "-D", *shlex.split(rule)[1:]], capture_output=True)
        for chain in new:
            subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True)
            subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True)
        for family, table in set(_nft_tables()) - self.tables:  # iptables-nft's, made by portmap in the run
            if (family, table) in (("ip", "nat"), ("ip6", "nat")) and not _has_rules(family, table):
                subprocess.run(["nft", "delete", "table", family, table], capture_output=True)
        return remove_new_shm(self.shm)


# --- the network the pods use ------------------------------------------------------------------------
def free_subnet():
    """A /24 of 10.200.0.0/13 no route of the host's touches (other sessions' bridges)."""
    used = []
    for line in subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.splitlines():
        with contextlib.suppress(ValueError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    start = os.getpid() % 2048
    for i in range(2048):
        n = (start + i) % 2048
        net = ipaddress.ip_network(f"10.{200 + n // 256}.{n % 256}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen):
            return net
    raise RuntimeError("no free /24 in 10.200.0.0/13")


@attrs.define
class CniNet:
    """A CNI configuration directory of its own: a bridge (named for the test session,
    so leak checks know it) with host-local addresses kept under ``base``, a gateway
    address on the bridge for the host, no masquerade, no default route in the pods,
    and portmap for hostPorts."""

    base: Path
    #: the session's prefix (its leak checks know it) and a tag of this configuration's own:
    #: a session may hold two at once (a module's daemon and critest's harness)
    bridge: str = attrs.field(factory=lambda: f"{leaks.LINK_PREFIX}c{os.urandom(3).hex()[:5]}")
    subnet: ipaddress.IPv4Network = attrs.field(factory=free_subnet)

    @property
    def conf_dir(self):
        return self.base / "net.d"

    def write(self):
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        conf = {"cniVersion": "0.4.0", "name": "critest-pods", "plugins": [
            {"type": "bridge", "bridge": self.bridge, "isGateway": True, "isDefaultGateway": False,
             "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(self.base / "ipam"),
                      "ranges": [[{"subnet": str(self.subnet)}]]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ]}
        (self.conf_dir / "10-critest.conflist").write_text(json.dumps(conf, indent=2))
        return self

    def remove(self):
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)


# --- runtimes -----------------------------------------------------------------------------------------
def _wait_socket(path, proc, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}:\n{Path(log).read_text()[-4000:]}")
        if os.path.exists(path):
            return
        time.sleep(0.05)
    raise RuntimeError(f"no socket {path} after {timeout}s:\n{Path(log).read_text()[-4000:]}")


def _stop(proc, timeout=20):
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _kill_and_unmount(base):
    """Processes naming ``base`` (shims), then mounts under it, innermost first."""
    for line in leaks.processes_mentioning(str(base)):
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
    time.sleep(0.2)
    for target in reversed(leaks.mounts_under(base)):
        subprocess.run(["umount", "-l", target], capture_output=True)


def containerd_config(base, registry_url, cni):
    mirrors = "".join(f'[plugins."io.containerd.grpc.v1.cri".registry.mirrors."{h}"]\n  endpoint = ["{registry_url}"]\n'
                      for h in criimages.MIRROR_HOSTS)
    return f"""version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{criimages.PAUSE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{CNI_BIN_DIR}"
  conf_dir = "{cni.conf_dir}"
[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
{mirrors}"""


@contextlib.contextmanager
def containerd(base, registry_url, cni):
    """Debian's containerd with its CRI plugin on roots, socket and config under
    ``base`` (never /run/containerd; its shims' sockets are in /run/containerd/s,
    named by a hash of our socket's path); yields the CRI endpoint."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(containerd_config(base, registry_url, cni))
    log = base / "containerd.log"
    with open(log, "ab") as logf:
        proc = subprocess.Popen(["containerd", "--config", str(base / "config.toml")], stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        _wait_socket(base / "containerd.sock", proc, log)
        yield f"unix://{base}/containerd.sock"
    finally:
        _stop(proc)
        _kill_and_unmount(base)
        for parent in Path(leaks.CGROUP_ROOT).glob("*/k8s.io"):  # runc's default parent of the CRI's pods
            with contextlib.suppress(OSError):
                parent.rmdir()  # only when empty: another containerd may be using it


@contextlib.contextmanager
def dockyard(base, registry_url, cni):
    """A private Dockyard daemon serving the CRI (on its exec root's cri.sock) with the
    stand-ins' mirrors and ``cni``'s configuration; yields the CRI endpoint."""
    from .daemon import Daemon

    d = Daemon(base, extra_args=["--cni-conf-dir", str(cni.conf_dir), "--cni-bin-dir", CNI_BIN_DIR,
                                 *criimages.mirror_args(registry_url)])
    sock = d.cri_sock  # in the daemon's own exec root
    try:
        d.start()
        _wait_socket(sock, d.proc, d.log)
        yield f"unix://{sock}"
    finally:
        with contextlib.suppress(Exception):
            _remove_pods(f"unix://{sock}")
        d.stop()
        d.remove_network_objects()
        _kill_and_unmount(base)


def _remove_pods(endpoint):
    """What critest left running (a spec that failed half-way): every pod, by crictl."""
    crictl = CRI_TOOLS_BIN / "crictl"
    ids = subprocess.run([crictl, "-r", endpoint, "pods", "-q"], capture_output=True, text=True, timeout=30).stdout
    for pod in ids.split():
        subprocess.run([crictl, "-r", endpoint, "stopp", pod], capture_output=True, timeout=60)
        subprocess.run([crictl, "-r", endpoint, "rmp", "-f", pod], capture_output=True, timeout=60)


class CriHarness:
    """The pieces every run shares: the stand-in images on a local ``docker-registry``
    and a CNI configuration of its own; :meth:`runtime` starts one runtime on them."""

    def __init__(self, base):
        self.base = Path(base)
        self.registry = RegistryServer(self.base / "registry")
        self.cni = CniNet(self.base / "cni")
        self.host = None

    def __enter__(self):
        self.host = HostState()
        self.registry.start()
        try:
            criimages.push_images(self.registry.url, criimages.build_images())
            self.cni.write()
        except BaseException:
            self.registry.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.registry.stop()
        self.cni.remove()
        self.shm_removed = self.host.clean()

    def runtime(self, name):
        """A context manager of ``name``'s CRI endpoint: ``"dockyard"`` or ``"containerd"``."""
        runner = {"dockyard": dockyard, "containerd": containerd}[name]
        return runner(self.base / name, self.registry.url, self.cni)


# --- critest ------------------------------------------------------------------------------------------
@attrs.frozen
class CritestResult:
    returncode: int
    passed: int
    failed: int
    skipped: int
    ran: int
    total: int
    seconds: float
    output: str
    failures: list[str]

    @property
    def ok(self):
        return self.returncode == 0 and self.failed == 0 and self.ran > 0


def skip_regex(skips=None):
    return "|".join(criimages.SKIPS if skips is None else skips)


def run_critest(endpoint, log_path, skips=None, focus=None, benchmark=False, timeout=1200, extra=()):
    """Run critest against ``endpoint``; the output goes to ``log_path`` too."""
    _, critest = cri_tools()
    cmd = [str(critest), "--runtime-endpoint", endpoint, "--ginkgo.no-color"]
    if benchmark:  # the lifecycles' sample counts (without them critest skips those benchmarks)
        params = Path(log_path).with_suffix(".params.yaml")
        params.write_text(json.dumps({"containersNumber": 10, "podsNumber": 10, "imagesNumber": 5,
                                      "imagePullingBenchmarkImage": criimages.E2E + "busybox:1.29-2"}))
        cmd += ["--benchmark", f"--benchmarking-params-file={params}"]
    else:
        cmd.append(f"--ginkgo.skip={skip_regex(skips)}")
    if focus:
        cmd.append(f"--ginkgo.focus={focus}")
    cmd += list(extra)
    started = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=Path(log_path).parent)
    seconds = time.monotonic() - started
    output = res.stdout + res.stderr
    Path(log_path).write_text(output)
    return parse(output, res.returncode, seconds)


def parse(output, returncode=0, seconds=0.0):
    """critest's (ginkgo v2's) summary: ``Ran 79 of 85 Specs`` and ``79 Passed | 0 Failed | ... | 6 Skipped``."""
    ran = re.search(r"Ran (\d+) of (\d+) Specs", output)
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (Passed|Failed|Pending|Skipped)", output)}
    failures = re.findall(r"\[FAIL\] (.+)", output)
    return CritestResult(returncode, counts.get("Passed", 0), counts.get("Failed", 0), counts.get("Skipped", 0),
                         int(ran.group(1)) if ran else 0, int(ran.group(2)) if ran else 0, seconds, output,
                         sorted(set(failures)))


def benchmarks(output):
    """The medians of critest -benchmark's measurements, ``{name: milliseconds}``, from
    its gmeasure tables (``Name | N | Min | Median | Mean | StdDev | Max``)."""
    units = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}
    out, columns = {}, None
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) < 4:
            continue
        if cells[0] == "Name":
            columns = cells
            continue
        if columns and "Median" in columns and len(cells) == len(columns):
            m = re.fullmatch(r"([\d.]+)([a-zµ]+)", cells[columns.index("Median")])
            if m and m.group(2) in units:
                out[cells[0]] = round(float(m.group(1)) * units[m.group(2)], 2)
    return out


def main(argv=None):
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="python -m dockyard.testing.crirun",
                                     description="Run critest against a private runtime with offline stand-in images.")
    parser.add_argument("--runtime", choices=("dockyard", "containerd"), default="dockyard")
    parser.add_argument("--benchmark", action="store_true", help="critest -benchmark instead of the validation specs")
    parser.add_argument("--focus", help="ginkgo focus regex (a subset of the specs)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    cri_tools()
    if os.geteuid() != 0:
        print("crirun: needs root", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix=leaks.CGROUP_PREFIX + "critest-"))
    log = base / "critest.log"
    try:
        with CriHarness(base) as h, h.runtime(args.runtime) as endpoint:
            print(f"crirun: {args.runtime} on {endpoint}; skipped: " + "; ".join(
                f"{k!r} ({v})" for k, v in criimages.SKIPS.items()), flush=True)
            result = run_critest(endpoint, log, focus=args.focus, benchmark=args.benchmark)
        print(result.output[-6000:])
        print(f"crirun: {args.runtime}: {result.passed} passed, {result.failed} failed, {result.skipped} skipped "
              f"of {result.total} in {result.seconds:.1f}s; shm segments removed: {len(h.shm_removed)}")
        for f in result.failures:
            print(f"crirun: FAILED {f}")
        return 0 if result.ok else 1
    finally:
        if args.keep:
            print(f"crirun: logs in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
