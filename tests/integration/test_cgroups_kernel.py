"""dockyard.driverkit.cgroups against the real kernel (needs root).

This host's cgroups are hybrid: the v1 manager is tested on the real v1
hierarchies; the v2 manager's kernel-facing core (mkdir and subtree_control,
cgroup.procs, cgroup.freeze/cgroup.events, cgroup.kill, the eBPF device program)
is tested for real on the hybrid's cgroup2 mount (/sys/fs/cgroup/unified), which
has no memory/cpu/pids controllers; those v2 files are covered by the unit tests'
fake tree.  Every test works under a unique parent cgroup, removed at the end,
and checks that nothing is left in any hierarchy.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from dockyard.driverkit.cgroups import Cgroup, CgroupError, Layout, detect
from dockyard.testing import driver

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="making cgroups needs root"),
              pytest.mark.xdist_group("host")]  # it delegates controllers of the host's cgroup2 root

MiB = 1 << 20
PY = sys.executable


@pytest.fixture(scope="module")
def layout():
    lay = detect()
    if lay.version != "v1":
        pytest.skip("these tests are written for this host's v1 (hybrid) layout")
    return lay


def leftovers(layout, name):
    roots = [*layout.hierarchies, *([layout.unified] if layout.unified else [])]
    return [os.path.join(r, name) for r in roots if os.path.lexists(os.path.join(r, name))]


def subtree_control(mount):
    with open(os.path.join(mount, "cgroup.subtree_control")) as fh:
        return fh.read().split()


def _undelegate(root, ctrl, patience=5.0):
    """Take ``ctrl`` back out of the cgroup2 root's subtree_control.  LXC (the lxc
    exec driver's tests, maybe running at once in another worker) delegates
    controllers there too, and while its containers' cgroups use one the kernel
    answers EBUSY: that one is then theirs, left for LXC to take back."""
    deadline = time.monotonic() + patience
    while True:
        try:
            with open(os.path.join(root, "cgroup.subtree_control"), "w") as fh:
                fh.write(f"-{ctrl}")
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                if exc.errno == errno.EBUSY:
                    return
                raise
            time.sleep(0.1)


@pytest.fixture
def parent(layout):
    name = driver.new_cgroup_parent()  # the session's own name
    # the v2 test delegates controllers from the unified root; put that back after
    delegated = subtree_control(layout.unified) if layout.unified else []
    try:
        yield name
    finally:
        problems = []
        layouts = [layout, *([Layout.for_v2(layout.unified)] if layout.unified else [])]
        for lay in layouts:
            try:
                Cgroup(lay, name).destroy()
            except CgroupError as exc:
                problems.append(str(exc))
        if layout.unified:
            for ctrl in set(subtree_control(layout.unified)) - set(delegated):
                _undelegate(layout.unified, ctrl)
        left = leftovers(layout, name)
        assert not left and not problems, f"left behind: {left} {problems}"


@pytest.fixture
def procs():
    """Popen objects to kill and reap however the test ends."""
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait()


def start(procs, cg, *argv, **kw):
    """Run argv with its pid in ``cg`` before it executes anything."""
    p = subprocess.Popen(["sh", "-c", 'read go; exec "$@"', "sh", *argv], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)
    procs.append(p)
    cg.join(p.pid)
    p.stdin.write(b"go\n")
    p.stdin.close()
    p.stdin = None  # so that communicate() does not flush it
    return p


def wait_for(cond, timeout=10.0, what="condition"):
    return driver.wait_for(cond, timeout, what, every=0.01)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


TOUCH_200M = "b = bytearray(200 << 20)\nb[::4096] = b'x' * len(range(0, len(b), 4096))\nprint('survived')"


def test_memory_limit_oom_kills(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/mem")
    cg.create({"memory": {"limit": 50 * MiB, "swap": 50 * MiB}})
    assert cg.oom_kills() == 0
    p = start(procs, cg, PY, "-c", TOUCH_200M)
    out, _ = p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL and b"survived" not in out
    assert cg.oom_kills() >= 1
    assert cg.stats()["memory_stats"]["max_usage"] <= 50 * MiB


def test_pids_limit_makes_fork_fail(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/pids")
    cg.create({"pids": {"limit": 5}})
    p = start(procs, cg, "sh", "-c", "for i in $(seq 20); do sleep 30 </dev/null >/dev/null 2>&1 & done")
    _, err = p.communicate(timeout=30)
    assert "fork" in err.decode().lower() or "resource temporarily unavailable" in err.decode().lower(), err
    left = cg.pids()
    assert 1 <= len(left) <= 4  # the sleeps that got in; the shell gave up
    assert cg.stats()["pids_stats"] == {"current": len(left), "limit": 5}


def test_freeze_stops_and_thaw_resumes(layout, parent, procs, tmp_path):
    counter = tmp_path / "count"
    counter.write_bytes(b"0".rjust(20))
    cg = Cgroup(layout, f"{parent}/frz")
    cg.create({})
    code = ("import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\ni = 0\n"
            "while True:\n    i += 1\n    os.pwrite(fd, str(i).rjust(20).encode(), 0)\n")
    start(procs, cg, PY, "-c", code, str(counter))
    count = lambda: int(counter.read_bytes())
    wait_for(lambda: count() > 0, what="the counter to start")
    cg.freeze()
    assert cg.frozen()
    a = count()
    time.sleep(0.3)
    assert count() == a, "a frozen process kept counting"
    cg.thaw()
    assert not cg.frozen()
    wait_for(lambda: count() > a, timeout=5, what="the counter to resume")


def test_cpu_quota_holds_a_busy_loop_down(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/cpu")
    cg.create({"cpu": {"quota": 20000, "period": 100000}})  # 0.2 CPU
    start(procs, cg, "sh", "-c", "while :; do :; done")
    time.sleep(0.2)
    u0, t0 = cg.stats()["cpu_stats"]["cpu_usage"]["total_usage"], time.monotonic()
    time.sleep(1.0)
    s = cg.stats()["cpu_stats"]
    share = (s["cpu_usage"]["total_usage"] - u0) / ((time.monotonic() - t0) * 1e9)
    assert 0.02 < share < 0.5, f"the loop used {share:.0%} of one CPU under a 20% quota"
    assert s["throttling_data"]["throttled_periods"] > 0


def test_stats_shape_and_sanity(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/stats")
    cg.create({"memory": {"limit": 100 * MiB}, "pids": {"limit": 20}})
    p = start(procs, cg, PY, "-c", "b = bytearray(20 << 20)\nb[::4096] = b'x' * len(range(0, len(b), 4096))\n"
                                   "print('ready', flush=True)\nimport time\ntime.sleep(60)")
    assert p.stdout.readline() == b"ready\n"
    s = cg.stats()
    json.dumps(s)
    cpu, mem = s["cpu_stats"], s["memory_stats"]
    assert set(s) == {"cpu_stats", "memory_stats", "pids_stats", "blkio_stats"}
    assert set(cpu["cpu_usage"]) == {"total_usage", "percpu_usage", "usage_in_kernelmode", "usage_in_usermode"}
    assert cpu["cpu_usage"]["total_usage"] > 0
    assert sum(cpu["cpu_usage"]["percpu_usage"]) == pytest.approx(cpu["cpu_usage"]["total_usage"], rel=0.05)
    assert cpu["online_cpus"] == os.cpu_count() and cpu["system_cpu_usage"] > cpu["cpu_usage"]["total_usage"]
    assert set(cpu["throttling_data"]) == {"periods", "throttled_periods", "throttled_time"}
    assert mem["usage"] >= 20 * MiB and mem["max_usage"] >= mem["usage"] and mem["limit"] == 100 * MiB
    assert mem["failcnt"] == 0
    assert mem["usage"] - mem["stats"]["total_inactive_file"] >= 20 * MiB  # what `docker stats` shows
    assert mem["stats"]["hierarchical_memory_limit"] == 100 * MiB
    assert s["pids_stats"] == {"current": len(cg.pids()), "limit": 20} and cg.pids() == [p.pid]
    for key in ("io_service_bytes_recursive", "io_serviced_recursive"):
        assert isinstance(s["blkio_stats"][key], list)
    unlimited = Cgroup(layout, f"{parent}/nolimit")
    unlimited.create({})
    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert unlimited.stats()["memory_stats"]["limit"] == total  # dockerd shows the host's memory


def test_update_raises_limits(layout, parent):
    cg = Cgroup(layout, f"{parent}/upd")
    cg.create({"memory": {"limit": 50 * MiB, "swap": 50 * MiB}, "pids": {"limit": 5}})
    mem = layout.controllers["memory"] + f"/{parent}/upd/"
    cg.update({"memory": {"limit": 100 * MiB, "swap": 150 * MiB}})  # memsw has to go first
    assert open(mem + "memory.limit_in_bytes").read().strip() == str(100 * MiB)
    assert open(mem + "memory.memsw.limit_in_bytes").read().strip() == str(150 * MiB)
    cg.update({"pids": {"limit": 50}, "cpu": {"shares": 512}})
    assert cg.stats()["pids_stats"]["limit"] == 50
    assert open(layout.controllers["cpu"] + f"/{parent}/upd/cpu.shares").read().strip() == "512"
    with pytest.raises(CgroupError, match=r"^memory.limit_in_bytes: cannot set 209715200 \(invalid argument: "
                                          r"memory\+swap limit is 157286400"):
        cg.update({"memory": {"limit": 200 * MiB}})  # above memsw, without raising swap
    cg.update({"memory": {"limit": -1, "swap": -1}})
    assert cg.stats()["memory_stats"]["limit"] == os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def test_memory_limit_below_usage_is_refused(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/busy")
    cg.create({"memory": {"limit": 200 * MiB}})
    p = start(procs, cg, PY, "-c", "b = bytearray(60 << 20)\nb[::4096] = b'x' * len(range(0, len(b), 4096))\n"
                                   "print('ready', flush=True)\nimport time\ntime.sleep(60)")
    assert p.stdout.readline() == b"ready\n"
    with pytest.raises(CgroupError, match=r"^memory.limit_in_bytes: cannot set 10485760 \(device or resource "
                                          r"busy: the limit is below current usage of \d+ bytes\)$") as ei:
        cg.update({"memory": {"limit": 10 * MiB}})
    assert ei.value.errno == 16 and p.poll() is None


def test_destroy_kills_members_and_child_cgroups(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/box")
    cg.create({})
    p = start(procs, cg, "sh", "-c", "sleep 100 & sleep 100 & wait")
    inner = Cgroup(layout, f"{parent}/box/inner")
    inner.create({"pids": {"limit": 10}})
    q = start(procs, inner, "sleep", "100")
    wait_for(lambda: len(cg.pids()) == 4, what="sh, two sleeps and the inner sleep")
    members = cg.pids()
    assert members[-1] == q.pid and members[0] == p.pid  # this cgroup's own first
    cg.freeze()  # a frozen cgroup must still be killable
    cg.destroy()
    assert not cg.exists() and not inner.exists() and cg.pids() == []
    assert p.wait(5) == -signal.SIGKILL and q.wait(5) == -signal.SIGKILL
    wait_for(lambda: not any(alive(pid) for pid in members), timeout=5, what="the sleeps to die")
    cg.destroy()  # already gone: fine


def test_kill_all_with_another_signal(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/term")
    cg.create({})
    p = start(procs, cg, "sleep", "100")
    cg.freeze()
    cg.kill_all(signal.SIGTERM)  # thaws first so the signal is handled
    assert p.wait(5) == -signal.SIGTERM and not cg.frozen()


def test_failing_create_leaves_nothing(layout, parent):
    ncpu = open(layout.controllers["cpuset"] + "/cpuset.effective_cpus").read().strip()
    with pytest.raises(CgroupError, match=rf"^cpuset.cpus: cannot set 5-70 \(only CPUs {ncpu} exist\)$"):
        Cgroup(layout, f"{parent}/bad").create({"memory": {"limit": 64 * MiB}, "cpu": {"cpus": "5-70"}})
    assert leftovers(layout, parent) == []  # both levels were made by that call, and removed
    with pytest.raises(CgroupError, match=r"^blkio.throttle.read_bps_device: cannot set 250:250 1 \(no such device"):
        Cgroup(layout, f"{parent}/bad").create(
            {"pids": {"limit": 3}, "blockIO": {"throttleReadBpsDevice": [{"major": 250, "minor": 250, "rate": 1}]}})
    assert leftovers(layout, parent) == []


DEVICE_CHECK = ("echo x > /dev/null && echo null-ok; head -c1 /dev/zero > /dev/null && echo zero-read-ok; "
                "echo x > /dev/zero 2>/dev/null || echo zero-write-denied; "
                "head -c1 /dev/urandom > /dev/null 2>&1 || echo urandom-denied")
DEVICES = [{"allow": False, "type": "a"},
           {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
           {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"},
           {"allow": True, "type": "c", "major": 136, "minor": None, "access": "rwm"}]
DEVICE_RESULT = b"null-ok\nzero-read-ok\nzero-write-denied\nurandom-denied\n"


def test_v1_device_rules(layout, parent, procs):
    cg = Cgroup(layout, f"{parent}/dev")
    cg.create({"devices": DEVICES})
    assert open(layout.controllers["devices"] + f"/{parent}/dev/devices.list").read().split("\n")[:3] == [
        "c 1:3 rwm", "c 1:5 r", "c 136:* rwm"]
    p = start(procs, cg, "sh", "-c", DEVICE_CHECK)
    assert p.communicate(timeout=10)[0] == DEVICE_RESULT
    with pytest.raises(CgroupError, match=r"^devices.allow: cannot set c 1:8 rwm \(operation not permitted: the "
                                          r"parent cgroup does not allow it\)$"):
        Cgroup(layout, f"{parent}/dev/child").create(
            {"devices": [{"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"}]})
    assert not Cgroup(layout, f"{parent}/dev/child").exists()


def test_v2_core_on_the_hybrid_unified_mount(layout, parent, procs, tmp_path):
    """The v2 manager on this host's cgroup2 mount, for real: making levels, eBPF
    device rules, joining, pids, cgroup.freeze/cgroup.events, cgroup.kill, removal."""
    if not layout.unified:
        pytest.skip("no cgroup2 mount on this host")
    v2 = Layout.for_v2(layout.unified)
    cg = Cgroup(v2, f"{parent}/c1")
    cg.create({"devices": DEVICES})
    p = start(procs, cg, "sh", "-c", DEVICE_CHECK)
    assert p.communicate(timeout=10)[0] == DEVICE_RESULT
    cg.update({"devices": [{"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})  # replaces
    p = start(procs, cg, "sh", "-c", "echo x > /dev/null || echo null-denied; cat /dev/null && echo null-read-ok;"
                                     "head -c1 /dev/urandom | wc -c")
    assert p.communicate(timeout=10)[0] == b"null-denied\nnull-read-ok\n1\n"

    counter = tmp_path / "count"
    counter.write_bytes(b"0".rjust(20))
    code = ("import os, sys\nfd = os.open(sys.argv[1], os.O_WRONLY)\ni = 0\n"
            "while True:\n    i += 1\n    os.pwrite(fd, str(i).rjust(20).encode(), 0)\n")
    p = start(procs, cg, PY, "-c", code, str(counter))
    count = lambda: int(counter.read_bytes())
    wait_for(lambda: count() > 0, what="the counter to start")
    assert cg.pids() == [p.pid]
    cg.freeze()
    assert cg.frozen()
    a = count()
    time.sleep(0.3)
    assert count() == a
    cg.thaw()
    wait_for(lambda: count() > a, timeout=5, what="the counter to resume")
    cg.freeze()
    cg.destroy()  # cgroup.kill, frozen or not
    assert p.wait(5) == -signal.SIGKILL and not cg.exists()
