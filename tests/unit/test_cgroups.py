"""dockyard.driverkit.cgroups without a kernel: layout detection from mountinfo text, the v2
backend against a fake cgroup2 tree, OCI resource checks, stats parsing, and the
v2 device program run by a small BPF interpreter.

This machine has no pure cgroup v2 host (its cgroups are hybrid), so the v2 paths
are checked against :func:`fake_v2`, a real directory layout in ``tmp_path`` that
stands in for a v2 host's /sys/fs/cgroup: the interface files the kernel would
show, pre-populated with plausible content.  The tests assert what was written.
The real kernel is exercised in tests/integration/test_cgroups_kernel.py.
"""

import errno
import os
from pathlib import Path

import pytest

import dockyard.driverkit.cgroups.v1 as v1mod
from dockyard.driverkit.cgroups import Cgroup, CgroupError, Layout, detect, ebpf, stats
from dockyard.driverkit.cgroups._fs import format_list, parse_list
from dockyard.driverkit.cgroups._oci import normalise
from dockyard.driverkit.cgroups.v2 import blkio_to_io_weight, shares_to_weight

HOST_MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def put(d, **files):
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name.replace("__", ".")).write_text(text)


def v2_leaf_files(d):
    """What the kernel shows in a new cgroup with cpuset cpu io memory pids enabled."""
    put(d, **{
        "cgroup.procs": "", "cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": "",
        "cgroup.freeze": "0\n", "cgroup.events": "populated 1\nfrozen 0\n", "cgroup.kill": "",
        "memory.max": "max\n", "memory.high": "max\n", "memory.low": "0\n", "memory.swap.max": "max\n", "memory.current": "20971520\n",
        "memory.peak": "31457280\n", "memory.events": "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n",
        "memory.stat": "anon 10485760\nfile 10485760\nkernel 0\ninactive_file 4096000\nactive_file 6389760\n",
        "cpu.weight": "100\n", "cpu.max": "max 100000\n", "cpu.max.burst": "0\n", "cpu.idle": "0\n",
        "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\n"
                    "throttled_usec 250\nnr_bursts 0\nburst_usec 0\n",
        "cpuset.cpus": "\n", "cpuset.mems": "\n", "cpuset.cpus.effective": "0-3\n", "cpuset.mems.effective": "0\n",
        "pids.max": "max\n", "pids.current": "3\n",
        "io.weight": "default 100\n", "io.max": "", "io.stat": "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 "
                                                              "dbytes=0 dios=0\n",
    })


def fake_v2(tmp_path, cpus="0-3", bfq=False):
    """Stands in for a pure cgroup v2 host: /sys/fs/cgroup as a directory tree plus
    the /proc/self/mountinfo line that mounts it.  Returns (root, mountinfo)."""
    root = tmp_path / "sys/fs/cgroup"
    put(root, **{"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n",
                 "cgroup.subtree_control": "memory pids\n", "cgroup.procs": "1\n",
                 "cpuset.cpus.effective": f"{cpus}\n", "cpuset.mems.effective": "0\n"})
    mi = tmp_path / "mountinfo"
    mi.write_text(f"25 1 0:24 / {tmp_path}/proc rw - proc proc rw\n"
                  f"30 23 0:26 / {root} rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 "
                  "rw,nsdelegate,memory_recursiveprot\n")
    if bfq:
        (root / "io.bfq.weight").write_text("default 100\n")
    return root, mi


@pytest.fixture
def v2(tmp_path):
    """A fake v2 host with dockyard/c1 already made by the 'kernel'."""
    root, mi = fake_v2(tmp_path)
    put(root / "dockyard", **{"cgroup.controllers": "cpuset cpu io memory pids\n",
                              "cgroup.subtree_control": "cpuset cpu io memory pids\n",
                              "cpuset.cpus.effective": "0-3\n", "cpuset.mems.effective": "0\n"})
    v2_leaf_files(root / "dockyard/c1")
    return root, Cgroup(detect(str(root), str(mi)), "dockyard/c1")


def text(path):
    return path.read_text().strip()


# ------------------------------------------------------------------ layout
HYBRID = """\
31 23 0:28 / {r} rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / {r}/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / {r}/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / {r}/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / {r}/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / {r}/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / {r}/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / {r}/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / {r}/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / {r}/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / {r}/unified rw,relatime - cgroup2 cgroup2 rw
"""

JOINT = """\
24 18 0:21 / {r} ro,nosuid,nodev,noexec shared:7 - tmpfs tmpfs ro,mode=755
25 24 0:22 / {r}/unified rw,nosuid,nodev,noexec,relatime shared:8 - cgroup2 cgroup2 rw,nsdelegate
26 24 0:23 / {r}/systemd rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,xattr,name=systemd
29 24 0:26 / {r}/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
30 24 0:27 / {r}/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,net_cls,net_prio
31 24 0:28 / {r}/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
32 24 0:29 / {r}/pids rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,pids
900 800 0:28 /docker/abc /var/lib/x/rootfs/sys/fs/cgroup/memory ro - cgroup cgroup rw,memory
"""


def write_mountinfo(tmp_path, template, root):
    mi = tmp_path / "mountinfo"
    mi.write_text(template.format(r=root))
    return str(mi)


def test_detect_hybrid_uses_v1_when_cgroup2_has_only_hugetlb(tmp_path):
    root = tmp_path / "cg"
    put(root / "unified", **{"cgroup.controllers": "hugetlb\n"})
    lay = detect(str(root), write_mountinfo(tmp_path, HYBRID, root))
    assert lay.version == "v1"
    assert lay.controllers["cpu"] == f"{root}/cpu" and lay.controllers["cpuacct"] == f"{root}/cpuacct"
    assert set(lay.controllers) == {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
    assert f"{root}/systemd" in lay.hierarchies and len(lay.hierarchies) == 9
    assert lay.unified == f"{root}/unified"
    cg = Cgroup(lay, "/dockyard/abc")
    assert cg.path == "dockyard/abc"
    assert cg.procs_files()[0] == f"{root}/cpu/dockyard/abc/cgroup.procs"
    assert f"{root}/systemd/dockyard/abc/cgroup.procs" in cg.procs_files()


def test_detect_joint_cpu_cpuacct_mount_and_foreign_mounts_ignored(tmp_path):
    root = tmp_path / "cg"
    put(root / "unified", **{"cgroup.controllers": ""})
    lay = detect(str(root), write_mountinfo(tmp_path, JOINT, root))
    assert lay.version == "v1"
    assert lay.controllers["cpu"] == lay.controllers["cpuacct"] == f"{root}/cpu,cpuacct"
    assert lay.controllers["net_prio"] == f"{root}/net_cls,net_prio"
    assert lay.controllers["memory"] == f"{root}/memory"  # not the container's bind mount
    assert len(lay.hierarchies) == 5  # one cgroup.procs per hierarchy, joint mount once
    assert len(Cgroup(lay, "x").procs_files()) == 5


def test_detect_pure_v2(tmp_path):
    root, mi = fake_v2(tmp_path)
    lay = detect(str(root), str(mi))
    assert lay.version == "v2" and lay.hierarchies == (str(root),) and lay.unified == str(root)
    assert {"cpu", "memory", "io", "pids", "cpuset"} <= set(lay.controllers)
    assert Cgroup(lay, "dockyard/x").procs_files() == [f"{root}/dockyard/x/cgroup.procs"]


def test_detect_escaped_mount_point_and_nothing_usable(tmp_path):
    root = tmp_path / "c g"
    put(root, **{"cgroup.controllers": "memory pids\n"})
    mi = tmp_path / "mi"
    mi.write_text(f"30 23 0:26 / {str(root).replace(' ', chr(92) + '040')} rw - cgroup2 cgroup2 rw\n")
    assert detect(str(root), str(mi)).hierarchies == (str(root),)
    (root / "cgroup.controllers").write_text("hugetlb\n")
    with pytest.raises(CgroupError, match="no usable cgroup hierarchy"):
        detect(str(root), str(mi))


@pytest.mark.parametrize("path", ["", "/", "a/../b", "./a"])
def test_cgroup_path_must_be_below_root(tmp_path, path):
    with pytest.raises(CgroupError, match="below the root"):
        Cgroup(Layout("v2", {}, (str(tmp_path),), str(tmp_path)), path)


# ------------------------------------------------------------ v2 creation
def test_v2_create_makes_levels_and_delegates_controllers(tmp_path, monkeypatch):
    root, mi = fake_v2(tmp_path)
    cg = Cgroup(detect(str(root), str(mi)), "dockyard/c1")
    orig_mkdir = os.mkdir

    def kernel_mkdir(path, *a, **kw):  # the kernel fills a new cgroup with its files
        orig_mkdir(path, *a, **kw)
        put(Path(path), **{"cgroup.controllers": "cpuset cpu io memory pids\n", "cgroup.subtree_control": "",
                           "cgroup.procs": ""})
    monkeypatch.setattr(os, "mkdir", kernel_mkdir)
    cg.create({})
    assert (root / "dockyard/c1").is_dir() and cg.exists()
    # the root delegates what it has and had not yet enabled; the middle level all five
    assert text(root / "cgroup.subtree_control") == "+cpuset +cpu +io +hugetlb"
    assert text(root / "dockyard/cgroup.subtree_control") == "+cpuset +cpu +io +memory +pids"
    # idempotent: with the controllers enabled (as the kernel lists them) nothing is written again
    (root / "cgroup.subtree_control").write_text("cpuset cpu io memory hugetlb pids\n")
    (root / "dockyard/cgroup.subtree_control").write_text("cpuset cpu io memory pids\n")
    cg.create(None)
    assert text(root / "cgroup.subtree_control") == "cpuset cpu io memory hugetlb pids"
    assert text(root / "dockyard/cgroup.subtree_control") == "cpuset cpu io memory pids"
    assert text(root / "dockyard/c1/cgroup.subtree_control") == ""  # the leaf holds processes


def test_v2_resources_written(v2):
    root, cg = v2
    cg.create({
        "memory": {"limit": 256 << 20, "swap": 384 << 20, "reservation": 128 << 20, "kernel": 1 << 20},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "1-2", "mems": "0"},
        "pids": {"limit": 64},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]},
        "unified": {"memory.high": "200000000"},
    })
    c = root / "dockyard/c1"
    assert text(c / "memory.max") == str(256 << 20)
    assert text(c / "memory.swap.max") == str(128 << 20)  # OCI swap is memory+swap
    assert text(c / "memory.low") == str(128 << 20)
    assert text(c / "cpu.weight") == "39"
    assert text(c / "cpu.max") == "50000 100000"
    assert text(c / "cpuset.cpus") == "1-2" and text(c / "cpuset.mems") == "0"
    assert text(c / "pids.max") == "64"
    assert text(c / "io.weight") == "8:0 10000"  # the last write; the default went first
    assert text(c / "io.max") == "8:0 wiops=max"
    assert text(c / "memory.high") == "200000000"


def test_v2_update_only_given_keys(v2):
    root, cg = v2
    c = root / "dockyard/c1"
    (c / "cpu.max").write_text("20000 50000\n")
    cg.update({"cpu": {"quota": -1}})
    assert text(c / "cpu.max") == "max 50000"
    cg.update({"cpu": {"period": 200000}})
    assert text(c / "cpu.max") == "max 200000"
    cg.update({"pids": {"limit": 0}})
    assert text(c / "pids.max") == "max"
    (c / "memory.max").write_text("104857600\n")
    cg.update({"memory": {"swap": 209715200}})  # swap alone: against the current memory.max
    assert text(c / "memory.swap.max") == "104857600"
    assert text(c / "memory.max") == "104857600"
    cg.update({"memory": {"limit": -1, "swap": -1}})
    assert text(c / "memory.max") == "max" and text(c / "memory.swap.max") == "max"


def test_v2_bfq_weight_is_not_converted(tmp_path):
    root, mi = fake_v2(tmp_path)
    v2_leaf_files(root / "c")
    (root / "c/io.bfq.weight").write_text("default 100\n")
    Cgroup(detect(str(root), str(mi)), "c").update({"blockIO": {"weight": 500}})
    assert text(root / "c/io.bfq.weight") == "default 500"
    assert text(root / "c/io.weight") == "default 100"


def test_weight_conversions_match_runc():
    assert (shares_to_weight(2), shares_to_weight(1024), shares_to_weight(262144)) == (1, 39, 10000)
    assert (blkio_to_io_weight(10), blkio_to_io_weight(500), blkio_to_io_weight(1000)) == (1, 4950, 10000)


def test_v2_bad_cpuset_names_file_and_removes_what_create_made(tmp_path):
    root, mi = fake_v2(tmp_path, cpus="0-1")
    cg = Cgroup(detect(str(root), str(mi)), "dockyard/c1")
    with pytest.raises(CgroupError, match=r"^cpuset.cpus: cannot set 5-7 \(only CPUs 0-1 exist\)$") as ei:
        cg.create({"cpu": {"cpus": "5-7"}})
    assert ei.value.errno == errno.ERANGE
    assert not (root / "dockyard").exists()  # both levels were made by this call


def test_v2_memory_limit_below_usage_refused(v2):
    root, cg = v2  # memory.current 20 MiB, of which 10 MiB page cache
    with pytest.raises(CgroupError, match=r"^memory.max: cannot set 5242880 \(the limit is below current usage "
                                          r"of 10485760 bytes"):
        cg.update({"memory": {"limit": 5 << 20}})
    assert text(root / "dockyard/c1/memory.max") == "max"
    cg.update({"memory": {"limit": 12 << 20}})  # the cache can be reclaimed
    assert text(root / "dockyard/c1/memory.max") == str(12 << 20)


@pytest.mark.parametrize("res, message", [
    ({"memory": {"disableOOMKiller": True}}, "cannot disable the OOM killer"),
    ({"memory": {"swappiness": 10}}, "no per-cgroup swappiness"),
    ({"cpu": {"realtimeRuntime": 1000}}, "cpu.realtimeRuntime: cgroup v2 has no real-time"),
    ({"memory": {"limit": -1, "swap": 1 << 30}}, "memory.swap"),
    ({"blockIO": {"leafWeight": 100}}, "leafWeight"),
])
def test_v2_refuses_what_it_cannot_do(v2, res, message):
    with pytest.raises(CgroupError, match=message):
        v2[1].update(res)


def test_v2_missing_controller_file_names_subtree_control(v2):
    root, cg = v2
    (root / "dockyard/c1/pids.max").unlink()
    with pytest.raises(CgroupError, match=r"^pids.max: cannot set 5 \(no such file or directory: the pids "
                                          r"controller is not enabled in .*/dockyard/cgroup.subtree_control\)"):
        cg.update({"pids": {"limit": 5}})


def test_unwritable_file_is_named(v2):
    root, cg = v2
    (root / "dockyard/c1/cpu.weight").unlink()
    (root / "dockyard/c1/cpu.weight").mkdir()  # root may write anything; a directory it may not
    with pytest.raises(CgroupError, match=r"^cpu.weight: cannot set 39 \(is a directory\)$"):
        cg.update({"cpu": {"shares": 1024}})


def test_v2_devices_on_a_non_cgroup_directory_fail_clearly(v2):
    with pytest.raises(CgroupError, match=r"^devices: "):
        v2[1].update({"devices": [{"allow": False, "type": "a"}]})


def test_update_of_missing_cgroup(tmp_path):
    root, mi = fake_v2(tmp_path)
    with pytest.raises(CgroupError, match="does not exist"):
        Cgroup(detect(str(root), str(mi)), "nope").update({"pids": {"limit": 3}})


# --------------------------------------------------- v2 freezer, events, stats
def test_v2_freeze_waits_for_the_kernel(v2):
    root, cg = v2
    c = root / "dockyard/c1"
    with pytest.raises(CgroupError, match=r"^cgroup.freeze: cannot set 1 \(not done after 0.05 s; thawed again\)"):
        cg.freeze(timeout=0.05)  # cgroup.events never says "frozen 1"
    assert text(c / "cgroup.freeze") == "0" and not cg.frozen()
    (c / "cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze(timeout=0.05)
    assert text(c / "cgroup.freeze") == "1" and cg.frozen()


def test_v2_oom_kills_pids_and_stats(v2):
    root, cg = v2
    (root / "dockyard/c1/cgroup.procs").write_text("40\n41\n")
    put(root / "dockyard/c1/sub", **{"cgroup.procs": "42\n41\n"})
    assert cg.pids() == [40, 41, 42]
    assert cg.oom_kills() == 2
    s = cg.stats()
    cpu = s["cpu_stats"]
    assert cpu["cpu_usage"] == {"total_usage": 1500000, "percpu_usage": [], "usage_in_kernelmode": 500000,
                                "usage_in_usermode": 1000000}
    assert cpu["throttling_data"] == {"periods": 10, "throttled_periods": 4, "throttled_time": 250000}
    assert cpu["online_cpus"] == os.sysconf("SC_NPROCESSORS_ONLN") and cpu["system_cpu_usage"] > 0
    mem = s["memory_stats"]
    assert mem["usage"] == 20971520 and mem["max_usage"] == 31457280 and mem["failcnt"] == 7
    assert mem["limit"] == HOST_MEMORY  # "max" shows as the host's memory, as dockerd does
    assert mem["stats"]["inactive_file"] == 4096000
    assert s["pids_stats"] == {"current": 3, "limit": 0}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 254, "minor": 0, "op": "read", "value": 4096}, {"major": 254, "minor": 0, "op": "write", "value": 8192}]
    assert [e["value"] for e in s["blkio_stats"]["io_serviced_recursive"]] == [1, 2]


# ---------------------------------------------------------------- v1 parsing
def test_v1_stats_parsing(tmp_path):
    lay = Layout("v1", {c: str(tmp_path / c) for c in ("cpu", "cpuacct", "memory", "pids", "blkio")},
                 tuple(str(tmp_path / c) for c in ("cpu", "cpuacct", "memory", "pids", "blkio")))
    put(tmp_path / "cpuacct/c", **{"cpuacct.usage": "3000000000\n", "cpuacct.usage_percpu": "1000000000 2000000000 \n",
                                   "cpuacct.stat": f"user {2 * stats.CLK_TCK}\nsystem {stats.CLK_TCK}\n"})
    put(tmp_path / "cpu/c", **{"cpu.stat": "nr_periods 5\nnr_throttled 2\nthrottled_time 777\nnr_bursts 0\n"})
    put(tmp_path / "memory/c", **{"memory.usage_in_bytes": "1000\n", "memory.max_usage_in_bytes": "2000\n",
                                  "memory.limit_in_bytes": "52428800\n", "memory.failcnt": "3\n",
                                  "memory.stat": "cache 10\nrss 20\ntotal_inactive_file 5\n",
                                  "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n"})
    put(tmp_path / "pids/c", **{"pids.current": "2\n", "pids.max": "5\n", "cgroup.procs": "7\n8\n"})
    put(tmp_path / "blkio/c", **{"blkio.throttle.io_service_bytes_recursive":
                                 "254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n",
                                 "blkio.throttle.io_serviced_recursive": "254:0 Read 1\nTotal 1\n"})
    cg = Cgroup(lay, "c")
    s = cg.stats()
    assert s["cpu_stats"]["cpu_usage"] == {"total_usage": 3000000000, "percpu_usage": [1000000000, 2000000000],
                                           "usage_in_kernelmode": 1000000000, "usage_in_usermode": 2000000000}
    assert s["cpu_stats"]["throttling_data"] == {"periods": 5, "throttled_periods": 2, "throttled_time": 777}
    assert s["memory_stats"] == {"usage": 1000, "max_usage": 2000, "limit": 52428800, "failcnt": 3,
                                 "stats": {"cache": 10, "rss": 20, "total_inactive_file": 5}}
    assert s["pids_stats"] == {"current": 2, "limit": 5}
    assert s["blkio_stats"]["io_service_bytes_recursive"] == [
        {"major": 254, "minor": 0, "op": "Read", "value": 4096}, {"major": 254, "minor": 0, "op": "Write", "value": 0},
        {"major": 254, "minor": 0, "op": "Total", "value": 4096}]
    assert cg.oom_kills() == 4 and cg.pids() == [7, 8]
    (tmp_path / "memory/c/memory.limit_in_bytes").write_text("9223372036854771712\n")
    assert cg.stats()["memory_stats"]["limit"] == HOST_MEMORY


def test_v1_memory_and_memsw_written_in_an_order_the_kernel_accepts(tmp_path, monkeypatch):
    lay = Layout("v1", {"memory": str(tmp_path)}, (str(tmp_path),))
    put(tmp_path / "c", **{"memory.limit_in_bytes": "100\n", "memory.memsw.limit_in_bytes": "100\n"})
    order = []
    real = v1mod.write
    monkeypatch.setattr(v1mod, "write", lambda p, v, *a: (order.append((os.path.basename(p), v)), real(p, v, *a)))
    cg = Cgroup(lay, "c")
    cg.update({"memory": {"limit": 200, "swap": 300}})  # raising: memsw first
    assert order == [("memory.memsw.limit_in_bytes", 300), ("memory.limit_in_bytes", 200)]
    order.clear()
    cg.update({"memory": {"limit": 50, "swap": 60}})  # lowering: the limit first
    assert order == [("memory.limit_in_bytes", 50), ("memory.memsw.limit_in_bytes", 60)]
    order.clear()
    cg.update({"memory": {"limit": -1, "swap": -1}})
    assert order == [("memory.memsw.limit_in_bytes", -1), ("memory.limit_in_bytes", -1)]


def test_v1_device_lines_and_blkio_weight_file(tmp_path):
    lay = Layout("v1", {"devices": str(tmp_path / "d"), "blkio": str(tmp_path / "b")},
                 (str(tmp_path / "d"), str(tmp_path / "b")))
    put(tmp_path / "d/c", **{"devices.allow": "", "devices.deny": ""})
    put(tmp_path / "b/c", **{"blkio.bfq.weight": "100\n", "blkio.bfq.weight_device": ""})
    cg = Cgroup(lay, "c")
    cg.update({"devices": [{"allow": False, "type": "a", "major": 3}, {"allow": True, "type": "c", "major": 136,
                                                                      "minor": None, "access": "wr"}]})
    assert text(tmp_path / "d/c/devices.deny") == "a"
    assert text(tmp_path / "d/c/devices.allow") == "c 136:* rw"
    cg.update({"blockIO": {"weight": 300, "weightDevice": [{"major": 8, "minor": 16, "weight": 200}]}})
    assert text(tmp_path / "b/c/blkio.bfq.weight") == "300"  # no legacy blkio.weight on this kernel
    assert text(tmp_path / "b/c/blkio.bfq.weight_device") == "8:16 200"


# ------------------------------------------------------------- OCI checks
@pytest.mark.parametrize("res, message", [
    ({"memory": {"limit": "1g"}}, r"linux.resources.memory.limit: cannot use '1g' \(not an integer\)"),
    ({"memory": {"limit": 100, "swap": 50}}, r"memory.swap: cannot use 50 \(memory\+swap must be >= memory.limit"),
    ({"memory": {"limit": -2}}, r"memory.limit: cannot use -2"),
    ({"memory": {"swappiness": 101}}, r"memory.swappiness: cannot use 101 \(must be 0..100\)"),
    ({"memory": {"bogus": 1}}, r"memory.bogus: cannot use 1 \(unknown field\)"),
    ({"cpu": {"shares": 1}}, r"cpu.shares: cannot use 1 \(must be 2..262144\)"),
    ({"cpu": {"quota": 10}}, r"cpu.quota: cannot use 10"),
    ({"cpu": {"cpus": "1-0"}}, r"cpuset.cpus: cannot set 1-0 \(not a list like 0-3,5\)"),
    ({"pids": {"limit": True}}, r"pids.limit: cannot use True \(not an integer\)"),
    ({"blockIO": {"weight": 5}}, r"blockIO.weight: cannot use 5 \(must be 10..1000\)"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, r"throttleReadBpsDevice\[0\]"),
    ({"devices": [{"allow": True, "type": "x"}]}, r"devices\[0\].type: cannot use 'x'"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, r"devices\[0\].access"),
    ({"hugepageLimits": [{"pageSize": "2MB", "limit": 1}]}, r"hugepageLimits: not supported"),
    ({"unified": {"../x": "1"}}, r"unified.../x"),
    ({"bogus": {}}, r"linux.resources.bogus: cannot use {} \(unknown resource\)"),
])
def test_bad_resources_name_the_field(res, message):
    with pytest.raises(CgroupError, match=message):
        normalise(res, "v2")


def test_bad_resources_make_nothing(tmp_path):
    root, mi = fake_v2(tmp_path)
    with pytest.raises(CgroupError):
        Cgroup(detect(str(root), str(mi)), "dockyard/c").create({"memory": {"limit": "lots"}})
    assert not (root / "dockyard").exists()


def test_normalise_defaults_and_unset_spellings():
    res = normalise({"memory": {"limit": None, "swap": 0}, "cpu": {"shares": 0, "quota": 0, "cpus": ""},
                     "pids": {"limit": 0},
                     "devices": [{"allow": False}, {"allow": True, "type": "c", "major": -1, "minor": 3}]}, "v1")
    assert res == {"pids": {"limit": -1},
                   "devices": [{"allow": False, "type": "a", "access": "rwm", "major": None, "minor": None},
                               {"allow": True, "type": "c", "access": "rwm", "major": None, "minor": 3}]}
    with pytest.raises(CgroupError, match="only for cgroup v2"):
        normalise({"unified": {"memory.high": "1"}}, "v1")


def test_cpu_lists():
    assert parse_list("0-3,5, 7-8") == {0, 1, 2, 3, 5, 7, 8}
    assert parse_list("") == set()
    assert format_list({0, 1, 2, 5, 7, 8}) == "0-2,5,7-8"


# ----------------------------------------------------- v2 device program
class BpfVM:
    """Stands in for the kernel's BPF interpreter (only the opcodes ebpf emits),
    plus the verifier's forward-jump and reachability checks."""

    def __init__(self, insns):
        self.insns = insns
        n = len(insns)
        reach, todo = set(), [0]
        while todo:
            pc = todo.pop()
            if pc in reach:
                continue
            assert 0 <= pc < n, f"jump out of range to {pc}"
            reach.add(pc)
            code, off = insns[pc][0], insns[pc][3]
            if code == ebpf.EXIT:
                continue
            if code in (ebpf.JA, ebpf.JNEK, ebpf.JSETK):
                assert off >= 0, "backward jump"
                todo.append(pc + 1 + off)
            if code != ebpf.JA:
                todo.append(pc + 1)
        assert reach == set(range(n)), f"unreachable instructions {sorted(set(range(n)) - reach)}"

    def run(self, type_, major, minor, access):
        kind = {"c": ebpf.DEV_CHAR, "b": ebpf.DEV_BLOCK}[type_]
        acc = sum(bit for letter, bit in ebpf.ACCESS_BITS if letter in access)
        ctx = {0: (acc << 16) | kind, 4: major, 8: minor}
        r, pc = [0] * 11, 0
        while True:
            code, dst, src, off, imm = self.insns[pc]
            pc += 1
            if code == ebpf.LDXW:
                r[dst] = ctx[r[src] + off] if src != 1 else ctx[off]
            elif code == ebpf.MOV64X:
                r[dst] = r[src]
            elif code == ebpf.MOV64K:
                r[dst] = imm
            elif code == ebpf.RSH32K:
                r[dst] = (r[dst] & 0xFFFFFFFF) >> imm
            elif code == ebpf.AND32K:
                r[dst] = r[dst] & imm & 0xFFFFFFFF
            elif code == ebpf.JNEK:
                pc += off if r[dst] != imm else 0
            elif code == ebpf.JSETK:
                pc += off if r[dst] & imm else 0
            elif code == ebpf.JA:
                pc += off
            elif code == ebpf.EXIT:
                return r[0]
            else:
                raise AssertionError(f"unknown opcode {code:#x}")


DOCKER_DEFAULT = [{"allow": False, "type": "a"}, {"allow": True, "type": "c", "access": "m"},
                  {"allow": True, "type": "b", "access": "m"},
                  *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
                    for ma, mi in ((1, 3), (1, 5), (1, 7), (5, 0), (5, 1), (5, 2), (1, 8), (1, 9), (10, 200))),
                  {"allow": True, "type": "c", "major": 136, "access": "rwm"}]


def vm(rules):
    return BpfVM(ebpf.program(normalise({"devices": rules}, "v2")["devices"]))


def test_device_program_docker_default_list():
    p = vm(DOCKER_DEFAULT)
    assert p.run("c", 1, 3, "rw") == 1  # /dev/null
    assert p.run("c", 136, 4, "rw") == 1  # a pty
    assert p.run("c", 1, 1, "r") == 0  # /dev/mem
    assert p.run("c", 1, 1, "m") == 1  # mknod of any char device
    assert p.run("b", 8, 0, "m") == 1 and p.run("b", 8, 0, "r") == 0
    assert p.run("c", 1, 1, "rm") == 0  # every access asked for must be allowed


def test_device_program_later_rules_win_per_access():
    p = vm([{"allow": True, "type": "c", "major": 1, "minor": 5}, {"allow": False, "type": "c", "major": 1,
                                                                     "minor": 5, "access": "w"}])
    assert p.run("c", 1, 5, "r") == 1 and p.run("c", 1, 5, "w") == 0 and p.run("c", 1, 5, "rw") == 0
    assert p.run("b", 7, 0, "rwm") == 1  # no rule matches: allowed, like an empty v1 devices cgroup
    allow_all_after_deny = vm([{"allow": False, "type": "a"}, {"allow": True, "type": "a"}])
    assert allow_all_after_deny.run("c", 4, 4, "rwm") == 1
    deny_all = vm([{"allow": True, "type": "c", "major": 1, "minor": 3}, {"allow": False, "type": "a"}])
    assert deny_all.run("c", 1, 3, "r") == 0


def test_device_program_encoding():
    insns = ebpf.program(normalise({"devices": DOCKER_DEFAULT}, "v2")["devices"])
    blob = ebpf.encode(insns)
    assert len(blob) == 8 * len(insns)
    assert blob[:8] == bytes([0x61, 0x12, 0, 0, 0, 0, 0, 0])  # r2 = *(u32 *)(r1 + 0)
    assert blob[-8:] == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])  # exit
