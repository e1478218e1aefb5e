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
import re
import signal
import threading
import time
import uuid

import pluggy
import pytest
from dockyard.errors import ContainerNotFound, DriverUnsupported, ExecError
from dockyard.hookspecs import PROJECT
from dockyard.hookspecs import exec as exec_specs
from dockyard.testing.busybox import make_busybox_rootfs
from dockyard.testing.leaks import CGROUP_PREFIX

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")
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
    """A cgroup parent of the test session's own (its tag: :mod:`dockyard.testing.leaks`)."""
    return f"{CGROUP_PREFIX}{uuid.uuid4().hex[:8]}"


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


def wait_for(predicate, timeout=10, what="condition", every=0.02):
    """Poll ``predicate`` until it is true; return its value.  An AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


class ExecEnv:
    """One test's driver, busybox rootfs, bundles and containers.  ``make_hook(home)``
    loads the driver (:func:`load_exec`); :meth:`fresh_hook` loads it again on the
    same home, as a restarted daemon would."""

    def __init__(self, tmp, make_hook):
        self.tmp = tmp
        self.home = tmp / "home"
        self.rootfs = make_busybox_rootfs(tmp / "rootfs")
        self.make_hook = make_hook
        self.hook = make_hook(self.home)
        self.ids = []
        self.pids = []

    def fresh_hook(self):
        return self.make_hook(self.home)

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
        self.hook.exec_create(id=cid, bundle=str(bundle), log_path=str(self.tmp / f"{cid}.log"), stdin=stdin, log=None)
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


class DriverConformance:
    """Hook-level checks every exec driver passes, whatever it is built on.

    Subclass it in a test module that has an ``env`` fixture giving an
    :class:`ExecEnv` of the driver (and cleaning it up)::

        class TestKit(DriverConformance):
            pass

    The daemon-level kit (:mod:`dockyard.testing.exec`) checks the rest through
    the API."""

    def test_supported_and_echo_goes_to_json_log(self, env):
        state, logs = env.run(["echo", "hi"])
        assert state["exit_code"] == 0 and state["error"] == "" and state["oom_killed"] is False
        assert state["started_at"] and state["finished_at"]
        assert [(e["log"], e["stream"]) for e in logs] == [("hi\n", "stdout")]
        assert TIME_RE.match(logs[0]["time"])

    def test_exit_code(self, env):
        state, _ = env.run(["sh", "-c", "exit 3"])
        assert state["exit_code"] == 3

    def test_private_network_has_only_loopback_up(self, env):
        _, logs = env.run(["sh", "-c", "cat /proc/net/dev; ip link"])
        out = "".join(e["log"] for e in logs)
        dev_lines = [line for line in out.splitlines() if re.match(r"^\s*\w+:\s+\d", line)]
        assert [line.split(":")[0].strip() for line in dev_lines] == ["lo"], out
        assert re.search(r"^1: lo: <LOOPBACK,UP", out, re.M)

    def test_not_executable_raises_126(self, env):
        cid = env.create(["/etc/passwd"])
        with pytest.raises(ExecError) as info:
            env.hook.exec_start(id=cid)
        assert info.value.exit_code == 126 and "permission denied" in str(info.value)

    def test_missing_absolute_path_raises_127(self, env):
        cid = env.create(["/no/such/file"])
        with pytest.raises(ExecError) as info:
            env.hook.exec_start(id=cid)
        assert info.value.exit_code == 127 and "no such file or directory" in str(info.value)

    def test_restore_after_daemon_loss(self, env):
        cid, pid = env.start(["sh", "-c", "echo before; sleep 1; echo after; exit 5"])
        done, _ = env.start(["sh", "-c", "exit 4"])
        env.hook.exec_wait(id=done, timeout=10)
        fresh = env.fresh_hook()  # a new daemon: knows nothing but the home directory
        assert fresh.exec_restore(id="unknown") is None
        state = fresh.exec_restore(id=cid)
        assert state["status"] == "running" and state["pid"] == pid
        assert fresh.exec_restore(id=done)["exit_code"] == 4
        state = fresh.exec_wait(id=cid, timeout=10)
        assert state["status"] == "stopped" and state["exit_code"] == 5
        assert env.output(cid) == "before\nafter\n"
        env.hook = fresh

    def test_concurrent_starts(self, env):
        results = {}

        def one(i):
            state, logs = env.run(["sh", "-c", f"echo {i}; exit {i}"], cid=f"par{i}")
            results[i] = (state["exit_code"], "".join(e["log"] for e in logs))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == {i: (i, f"{i}\n") for i in range(6)}

    def test_stdin_once_gets_eof_when_the_writer_goes(self, env):
        cid = env.create(["sh", "-c", "cat; echo done"], stdin="once")
        env.hook.exec_start(id=cid)
        sock = env.hook.exec_attach_stdin(id=cid, exec_id=None)
        sock.sendall(b"hello\nworld\n")
        sock.close()
        state = env.hook.exec_wait(id=cid, timeout=10)
        assert state["exit_code"] == 0 and env.output(cid) == "hello\nworld\ndone\n"

    def test_stdin_open_survives_writers(self, env):
        cid = env.create(["sh", "-c", "read a; read b; echo $a-$b"], stdin="open")
        env.hook.exec_start(id=cid)
        for word in (b"one\n", b"two\n"):
            sock = env.hook.exec_attach_stdin(id=cid, exec_id=None)
            sock.sendall(word)
            sock.close()
        env.hook.exec_wait(id=cid, timeout=10)
        assert env.output(cid) == "one-two\n"

    def test_no_stdin_is_refused(self, env):
        cid, _ = env.start(["sleep", "10"])
        with pytest.raises(ExecError, match="no open stdin"):
            env.hook.exec_attach_stdin(id=cid, exec_id=None)

    def test_memory_limit_oom_is_reported(self, env):
        cid = env.create(["sh", "-c", "head -c 200m /dev/zero | tail > /dev/null"],
                         change=lambda c: c["linux"].update(resources={"memory": {"limit": 32 * 2**20}}))
        env.hook.exec_start(id=cid)
        state = env.hook.exec_wait(id=cid, timeout=30)
        assert state["oom_killed"] is True and state["exit_code"] != 0
