"""Driving an exec driver through its hooks, without a daemon: bundles, a test
environment and leak checks (for our driver tests, benchmarks and a third-party
driver's own tests; the daemon-level kit is :mod:`dockyard.testing.exec`).

    hook = load_exec(MyDriver(), tmp_path / "home", {"cgroup_parent": parent})
    env = ExecEnv(tmp_path, hook)
    state, logs = env.run(["echo", "hi"])
    env.cleanup()
"""

import json
import os
import signal
import time
import uuid

import pluggy

from dockyard.errors import ContainerNotFound, DriverUnsupported
from dockyard.hookspecs import PROJECT
from dockyard.hookspecs import exec as exec_specs
from dockyard.testing.busybox import make_busybox_rootfs

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_NAMESPACES = ("pid", "mount", "uts", "ipc", "network")

#: what every bundle from the engine mounts first (Docker's defaults)
STANDARD_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
]


def oci_config(rootfs, args, env=None, cwd="/", hostname="box", namespaces=DEFAULT_NAMESPACES,
               mounts=(), readonly=False, user=None):
    """A runtime-spec config.json for ``args`` on ``rootfs``: the standard mounts,
    a few masked paths, read-only /proc/sys."""
    return {
        "ociVersion": "1.0.2",
        "process": {"terminal": False, "user": user or {"uid": 0, "gid": 0, "additionalGids": []},
                    "args": list(args), "cwd": cwd, "env": [PATH, *(env or [])]},
        "root": {"path": str(rootfs), "readonly": readonly},
        "hostname": hostname,
        "mounts": STANDARD_MOUNTS + list(mounts),
        "linux": {"namespaces": [{"type": t} for t in namespaces],
                  "maskedPaths": ["/proc/kcore", "/proc/timer_list", "/sys/firmware"],
                  "readonlyPaths": ["/proc/sys"]},
    }


def load_exec(driver, home, options=None, name="driver"):
    """Register ``driver`` like the core does, check support, init it in ``home``;
    return ``pm.hook`` (``DriverUnsupported`` if it cannot run here)."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(exec_specs)
    pm.register(driver, name=name)
    pm.check_pending()
    options = dict(options or {})
    reason = pm.hook.exec_supported(home=str(home), options=options)
    if reason is not None:
        raise DriverUnsupported("exec", name, reason)
    pm.hook.exec_init(home=str(home), options=options)
    return pm.hook


def new_cgroup_parent():
    return f"dockyard-test-{uuid.uuid4().hex[:8]}"


def cgroups_left(parent, root="/sys/fs/cgroup"):
    """Cgroups below ``parent`` in every hierarchy (cgroup2's too); an empty
    ``parent`` is removed on the way."""
    left = []
    for hier in os.listdir(root):
        top = os.path.join(root, hier, parent)
        if os.path.isdir(top):
            children = [d for d in os.listdir(top) if os.path.isdir(os.path.join(top, d))]
            left += [os.path.join(top, d) for d in children]
            if not children:
                os.rmdir(top)
    return left


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.02)


class ExecEnv:
    """One test's driver (``hook``), busybox rootfs, bundles and containers."""

    def __init__(self, tmp, hook, home=None):
        self.tmp = tmp
        self.home = home or tmp / "home"
        self.rootfs = make_busybox_rootfs(tmp / "rootfs")
        self.hook = hook
        self.ids = []
        self.pids = []

    def bundle(self, cid, args, change=None, **kw):
        """A bundle for ``args``; ``change(config)`` edits its config.json first."""
        bundle = self.tmp / f"bundle-{cid}"
        bundle.mkdir()
        cfg = oci_config(self.rootfs, args, **kw)
        if change is not None:
            change(cfg)
        (bundle / "config.json").write_text(json.dumps(cfg))
        return bundle

    def create(self, args, cid=None, stdin=None, change=None, **kw):
        cid = cid or f"c{len(self.ids)}"
        bundle = self.bundle(cid, args, change, **kw)
        self.ids.append(cid)
        self.hook.exec_create(id=cid, bundle=str(bundle), log_path=str(self.tmp / f"{cid}.log"), stdin=stdin)
        return cid

    def start(self, args, **kw):
        cid = self.create(args, **kw)
        pid = self.hook.exec_start(id=cid)
        self.pids.append(pid)
        return cid, pid

    def run(self, args, **kw):
        cid, _ = self.start(args, **kw)
        state = self.hook.exec_wait(id=cid, timeout=30)
        assert state["status"] == "stopped", state
        return state, self.logs(cid)

    def logs(self, cid):
        path = self.tmp / f"{cid}.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines()]

    def output(self, cid, stream=None):
        return "".join(e["log"] for e in self.logs(cid) if stream in (None, e["stream"]))

    def cleanup(self):
        for cid in self.ids:
            try:
                if self.hook.exec_state(id=cid)["status"] in ("running", "paused"):
                    self.hook.exec_kill(id=cid, signal=signal.SIGKILL)
                    self.hook.exec_wait(id=cid, timeout=10)
            except ContainerNotFound:
                pass
            self.hook.exec_delete(id=cid)
