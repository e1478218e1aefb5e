"""HostConfig -> OCI ``config.json``: Docker's default spec and every HostConfig field
make_config honours or refuses, checked on the exact values written to the bundle."""

import json
import os
import socket
import stat

import pytest
from dockyard.engine import bundle
from dockyard.engine.bundle import ocispec
from dockyard.model.container import ContainerRecord
from dockyard.testing.busybox import make_busybox_rootfs

CID = "c0ffee" * 10 + "abcd"
NCPU = len(os.sched_getaffinity(0))
LAST_CAP = int(open("/proc/sys/kernel/cap_last_cap").read())

# What the docker 20.10 CLI sends for a plain `docker run busybox`: every field, zero-valued.
DOCKER_CLI_HOST = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "", "Config": {}}, "NetworkMode": "default",
    "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False,
    "VolumeDriver": "", "VolumesFrom": None, "CapAdd": None, "CapDrop": None, "CgroupnsMode": "",
    "Dns": [], "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "",
    "Cgroup": "", "Links": None, "OomScoreAdj": 0, "PidMode": "", "Privileged": False,
    "PublishAllPorts": False, "ReadonlyRootfs": False, "SecurityOpt": None, "UTSMode": "", "UsernsMode": "",
    "ShmSize": 0, "ConsoleSize": [0, 0], "Isolation": "", "CpuShares": 0, "Memory": 0, "NanoCpus": 0,
    "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [], "BlkioDeviceReadBps": None,
    "BlkioDeviceWriteBps": None, "BlkioDeviceReadIOps": None, "BlkioDeviceWriteIOps": None, "CpuPeriod": 0,
    "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": -1, "OomKillDisable": False,
    "PidsLimit": None, "Ulimits": None, "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
    "IOMaximumBandwidth": 0, "MaskedPaths": None, "ReadonlyPaths": None,
}
DEFAULT_MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
]
DEFAULT_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "access": "m"}, {"allow": True, "type": "b", "access": "m"},
    *({"allow": True, "type": "c", "major": ma, "minor": mi, "access": "rwm"}
      for ma, mi in ((1, 3), (1, 5), (1, 7), (5, 0), (5, 1), (5, 2), (1, 8), (1, 9))),
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    root = make_busybox_rootfs(tmp_path_factory.mktemp("rootfs"))
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\naudio:x:29:app\nstaff:x:50:\napp:x:1000:\n")
    return str(root)


@pytest.fixture(autouse=True)
def no_seccomp(monkeypatch):
    """Record what make_config asks of the seccomp module (tested for real below)."""
    from dockyard.engine.bundle import seccomp
    calls = []
    monkeypatch.setattr(seccomp, "linux_seccomp", lambda profile, caps: calls.append((profile, list(caps))) or
                        {"defaultAction": "SCMP_ACT_ERRNO", "profile": profile})
    return calls


def record(host=None, **config):
    """A container record shaped like Containers.create() stores it."""
    cfg = {"Hostname": CID[:12], "Domainname": "", "User": "", "Env": ["A=1"], "Cmd": ["sh"], "Entrypoint": None,
           "Image": "busybox", "WorkingDir": "", "Labels": {}, "Tty": False, "OpenStdin": False, **config}
    hc = {"NetworkMode": "default", "AutoRemove": False, "LogConfig": {"Type": "json-file", "Config": {}},
          **(host or {})}
    return ContainerRecord(id=CID, name="web", created="2024-01-01T00:00:00Z", path="sh", args=[],
                           image_id="sha256:1", config=cfg, host_config=hc, network_mode=hc["NetworkMode"],
                           driver="vfs", log_path="", hostname_path="", hosts_path="", resolv_conf_path="")


def make(rootfs, tmp_path, host=None, ns_paths=None, init_path=None, shm_path=None, **config):
    paths = bundle.write_etc_files(str(tmp_path / "ctr"), CID[:12], "private")
    return bundle.make_config(record(host, **config), rootfs, paths, ns_paths or {}, init_path=init_path,
                              shm_path=shm_path)


def refused(rootfs, tmp_path, host, message, **kw):
    with pytest.raises(ValueError) as info:
        make(rootfs, tmp_path, host, **kw)
    assert str(info.value) == message
    return info.value


def by_dest(config, dest):
    return [m for m in config["mounts"] if m["destination"] == dest]


# --- the default spec --------------------------------------------------------------------

def test_default_spec_is_dockers(rootfs, tmp_path, no_seccomp):
    c = make(rootfs, tmp_path)
    etc = tmp_path / "ctr"
    assert c["mounts"] == DEFAULT_MOUNTS + [
        {"destination": f"/etc/{n}", "type": "bind", "source": str(etc / n), "options": ["rbind", "rprivate"]}
        for n in ("hostname", "hosts", "resolv.conf")]
    assert c["process"]["capabilities"] == {"bounding": bundle.DEFAULT_CAPS, "effective": bundle.DEFAULT_CAPS,
                                            "permitted": bundle.DEFAULT_CAPS, "inheritable": [], "ambient": []}
    assert len(bundle.DEFAULT_CAPS) == 14
    assert c["process"]["args"] == ["sh"] and c["process"]["cwd"] == "/"
    assert c["process"]["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "A=1",
                                   f"HOSTNAME={CID[:12]}", "HOME=/root"]
    assert c["process"]["user"] == {"uid": 0, "gid": 0, "additionalGids": []}
    assert c["process"]["noNewPrivileges"] is False and c["process"]["oomScoreAdj"] == 0
    assert "rlimits" not in c["process"] and "consoleSize" not in c["process"]
    assert c["linux"]["namespaces"] == [{"type": t} for t in ("mount", "network", "uts", "pid", "ipc", "cgroup")]
    assert c["linux"]["maskedPaths"] == [
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
        "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"]
    assert c["linux"]["readonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    assert c["linux"]["resources"] == {"devices": DEFAULT_RULES}
    assert c["linux"]["devices"] == [] and c["linux"]["cgroupsPath"] == CID
    assert "sysctl" not in c["linux"] and "rootfsPropagation" not in c["linux"]
    assert c["linux"]["seccomp"] == {"defaultAction": "SCMP_ACT_ERRNO", "profile": None}
    assert no_seccomp == [(None, bundle.DEFAULT_CAPS)]  # Docker's default profile, for these caps
    assert c["root"] == {"path": rootfs, "readonly": False}
    assert c["hostname"] == CID[:12] and c["annotations"] == {"org.dockyard.container.name": "web"}


def test_the_docker_clis_zero_values_change_nothing(rootfs, tmp_path):
    assert make(rootfs, tmp_path, DOCKER_CLI_HOST) == make(rootfs, tmp_path)


def test_real_default_seccomp_profile(rootfs, tmp_path, monkeypatch):
    monkeypatch.undo()  # the real dockyard.engine.bundle.seccomp
    c = make(rootfs, tmp_path)
    assert c["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    allowed = {n for s in c["linux"]["seccomp"]["syscalls"] if s["action"] == "SCMP_ACT_ALLOW" for n in s["names"]}
    assert "read" in allowed and "reboot" not in allowed


def test_write_bundle(tmp_path, rootfs):
    c = make(rootfs, tmp_path)
    d = bundle.write_bundle(str(tmp_path / "b"), c)
    assert json.loads((tmp_path / "b/config.json").read_text()) == c and d == str(tmp_path / "b")
    assert os.listdir(d) == ["config.json"]


# --- namespaces ----------------------------------------------------------------------------

def test_namespace_modes():
    assert bundle.namespace_modes({}) == {"pid": "private", "ipc": "private", "uts": "private",
                                          "cgroup": "private", "network": "private"}
    assert bundle.namespace_modes({"PidMode": "host", "IpcMode": "container:db", "UTSMode": "host",
                                   "CgroupnsMode": "host", "NetworkMode": "container:web"}) == {
        "pid": "host", "ipc": ("container", "db"), "uts": "host", "cgroup": "host", "network": ("container", "web")}
    assert bundle.namespace_modes({"PidMode": "container:x", "IpcMode": "shareable", "CgroupnsMode": "private",
                                   "NetworkMode": "host"})["pid"] == ("container", "x")
    for ipc in ("", "private", "shareable", "none"):
        assert bundle.namespace_modes({"IpcMode": ipc})["ipc"] == "private"
    assert bundle.namespace_modes({"IpcMode": "host"})["ipc"] == "host"
    for net in ("none", "bridge", "default", "mynet", ""):
        assert bundle.namespace_modes({"NetworkMode": net})["network"] == "private"


@pytest.mark.parametrize("host, message", [
    ({"IpcMode": "foo"}, "invalid IPC mode: foo"),
    ({"IpcMode": "container:"}, "invalid IPC mode: container:"),
    ({"PidMode": "private"}, "invalid PID mode: private"),
    ({"PidMode": "container:a:b"}, "invalid PID mode: container:a:b"),
    ({"UTSMode": "container:x"}, "invalid UTS mode: container:x"),
    ({"CgroupnsMode": "shared"}, "invalid cgroup namespace mode: shared"),
    ({"NetworkMode": "container:"}, "Invalid network mode: invalid container format container:<name|id>"),
    ({"PidMode": 3}, "invalid HostConfig.PidMode: 3 is not a string"),
])
def test_namespace_modes_refused(host, message):
    with pytest.raises(ValueError) as info:
        bundle.namespace_modes(host)
    assert str(info.value) == message


def test_namespace_paths_host_and_join(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"PidMode": "container:db", "NetworkMode": "container:db"},
             ns_paths={"pid": "/proc/42/ns/pid", "network": "/proc/42/ns/net", "ipc": "host", "cgroup": "host"})
    assert c["linux"]["namespaces"] == [{"type": "mount"}, {"type": "network", "path": "/proc/42/ns/net"},
                                        {"type": "uts"}, {"type": "pid", "path": "/proc/42/ns/pid"}]
    assert by_dest(c, "/dev/shm") == [{"destination": "/dev/shm", "type": "bind", "source": "/dev/shm",
                                       "options": ["rbind", "rprivate"]}]
    c = make(rootfs, tmp_path, ns_paths={"user": "/proc/42/ns/user"})
    assert c["linux"]["namespaces"][-1] == {"type": "user", "path": "/proc/42/ns/user"}


def test_host_modes_without_paths_share_the_host(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"PidMode": "host", "UTSMode": "host", "CgroupnsMode": "host", "IpcMode": "host"})
    assert c["linux"]["namespaces"] == [{"type": "mount"}, {"type": "network"}]
    assert "hostname" not in c  # no UTS namespace of its own: the host's name stays


def test_network_host_takes_the_hosts_name(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"NetworkMode": "host"}, ns_paths={"network": "host"})
    assert {"type": "network"} not in c["linux"]["namespaces"] and c["hostname"] == socket.gethostname()


def test_unresolved_or_bad_namespace_paths(rootfs, tmp_path):
    refused(rootfs, tmp_path, {"IpcMode": "container:db"},
            "IpcMode container:db: no namespace path was given to join")
    refused(rootfs, tmp_path, {}, "namespace pid: 'proc/1/ns/pid' is not None, \"host\" or an absolute path",
            ns_paths={"pid": "proc/1/ns/pid"})
    refused(rootfs, tmp_path, {}, "a container cannot share the host's mount namespace", ns_paths={"mount": "host"})


def test_ipc_modes_and_dev_shm(rootfs, tmp_path):
    assert by_dest(make(rootfs, tmp_path, {"IpcMode": "none"}), "/dev/shm") == []
    assert by_dest(make(rootfs, tmp_path, {"IpcMode": "container:db"}, ns_paths={"ipc": "/proc/77/ns/ipc"},
                        shm_path="/data/db/shm"),
                   "/dev/shm") == [{"destination": "/dev/shm", "type": "bind", "source": "/data/db/shm",
                                    "options": ["rbind", "rprivate"]}]
    refused(rootfs, tmp_path, {"IpcMode": "container:db"},
            "joining an IPC namespace needs the /dev/shm of its owner (shm_path)", ns_paths={"ipc": "/proc/77/ns/ipc"})
    shm = by_dest(make(rootfs, tmp_path, {"IpcMode": "shareable"}, shm_path="/data/me/shm"), "/dev/shm")
    assert shm[0]["source"] == "/data/me/shm" and shm[0]["type"] == "bind"
    shm = by_dest(make(rootfs, tmp_path, {"ShmSize": 128 * 1024 * 1024}), "/dev/shm")
    assert shm[0]["options"] == ["nosuid", "noexec", "nodev", "mode=1777", "size=134217728"]
    refused(rootfs, tmp_path, {"ShmSize": -1}, "SHM size can not be less than 0")


# --- capabilities and privileged ----------------------------------------------------------

def test_cap_add_and_drop(rootfs, tmp_path, no_seccomp):
    c = make(rootfs, tmp_path, {"CapAdd": ["net_admin", "CAP_SYS_PTRACE", "Kill"], "CapDrop": ["MKNOD", "cap_chown"]})
    caps = c["process"]["capabilities"]["bounding"]
    assert caps == [x for x in bundle.DEFAULT_CAPS if x not in ("CAP_MKNOD", "CAP_CHOWN")] + [
        "CAP_NET_ADMIN", "CAP_SYS_PTRACE"]
    assert c["process"]["capabilities"]["effective"] == caps and no_seccomp[-1] == (None, caps)
    caps = make(rootfs, tmp_path, {"CapDrop": ["ALL"], "CapAdd": ["chown"]})["process"]["capabilities"]["bounding"]
    assert caps == ["CAP_CHOWN"]
    caps = make(rootfs, tmp_path, {"CapAdd": ["all"], "CapDrop": ["SYS_ADMIN"]})["process"]["capabilities"]["permitted"]
    assert caps == [c for c in bundle.all_capabilities() if c != "CAP_SYS_ADMIN"] and "CAP_SYS_MODULE" in caps
    refused(rootfs, tmp_path, {"CapAdd": ["foo"]}, 'unknown capability: "CAP_FOO"')
    refused(rootfs, tmp_path, {"CapDrop": ["CAP_NOPE"]}, 'unknown capability: "CAP_NOPE"')
    refused(rootfs, tmp_path, {"CapAdd": "NET_ADMIN"}, "invalid HostConfig.CapAdd: 'NET_ADMIN' is not a list of str")


def test_privileged(rootfs, tmp_path, no_seccomp):
    c = make(rootfs, tmp_path, {"Privileged": True, "CapDrop": ["CHOWN"]})
    caps = c["process"]["capabilities"]["bounding"]
    assert caps == bundle.all_capabilities() and caps[0] == "CAP_CHOWN"
    assert set(caps) <= set(bundle.kernel_capabilities()) and len(bundle.kernel_capabilities()) == LAST_CAP + 1
    assert c["linux"]["maskedPaths"] == [] and c["linux"]["readonlyPaths"] == []
    assert by_dest(c, "/sys")[0]["options"] == ["nosuid", "noexec", "nodev"]
    assert by_dest(c, "/sys/fs/cgroup")[0]["options"] == ["nosuid", "noexec", "nodev"]
    assert c["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    null = [d for d in c["linux"]["devices"] if d["path"] == "/dev/null"]
    assert null == [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0}]
    assert not any(d["path"].startswith(("/dev/pts/", "/dev/shm/")) or d["path"] == "/dev/console"
                   for d in c["linux"]["devices"])
    assert "seccomp" not in c["linux"] and no_seccomp == []


# --- devices ------------------------------------------------------------------------------

def test_devices_and_cgroup_rules(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rw"},
                    {"PathOnHost": "/dev/zero", "PathInContainer": "", "CgroupPermissions": ""}],
        "DeviceCgroupRules": ["c 42:* rmw", "b *:* m", "a 7:1 r"]})
    assert c["linux"]["devices"] == [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5, "fileMode": 0o666, "uid": 0, "gid": 0}]
    assert c["linux"]["resources"]["devices"] == DEFAULT_RULES + [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
        {"allow": True, "type": "c", "major": 42, "access": "rmw"},
        {"allow": True, "type": "b", "access": "m"},
        {"allow": True, "type": "a", "major": 7, "minor": 1, "access": "r"}]


def test_device_directory_maps_every_node(rootfs, tmp_path):
    d = tmp_path / "devs"
    (d / "sub").mkdir(parents=True)
    os.mknod(d / "a", stat.S_IFCHR | 0o640, os.makedev(1, 3))
    os.mknod(d / "sub/b", stat.S_IFBLK | 0o600, os.makedev(7, 9))
    (d / "plain").write_text("x")
    c = make(rootfs, tmp_path, {"Devices": [{"PathOnHost": str(d), "PathInContainer": "/dev/x",
                                             "CgroupPermissions": "r"}]})
    assert [(n["path"], n["type"], n["major"], n["minor"], n["fileMode"]) for n in c["linux"]["devices"]] == [
        ("/dev/x/a", "c", 1, 3, 0o640), ("/dev/x/sub/b", "b", 7, 9, 0o600)]
    assert c["linux"]["resources"]["devices"][-2:] == [
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": True, "type": "b", "major": 7, "minor": 9, "access": "r"}]


def test_devices_refused(rootfs, tmp_path):
    plain = tmp_path / "plain"
    plain.write_text("x")
    refused(rootfs, tmp_path, {"Devices": [{"PathOnHost": "/dev/nope", "PathInContainer": "/dev/nope"}]},
            'error gathering device information while adding custom device "/dev/nope": no such file or directory')
    refused(rootfs, tmp_path, {"Devices": [{"PathOnHost": str(plain), "PathInContainer": "/dev/p"}]},
            f'error gathering device information while adding custom device "{plain}": not a device node')
    refused(rootfs, tmp_path, {"Devices": [{"PathOnHost": "/dev/null", "CgroupPermissions": "rx"}]},
            "invalid device mode 'rx' for device '/dev/null': use letters of rwm (read, write, mknod)")
    refused(rootfs, tmp_path, {"Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "null"}]},
            "null is not an absolute path")
    refused(rootfs, tmp_path, {"DeviceCgroupRules": ["c 1:3"]}, "invalid device cgroup rule format: 'c 1:3'")
    refused(rootfs, tmp_path, {"DeviceCgroupRules": ["c 1:3 rr"]}, "invalid device cgroup rule format: 'c 1:3 rr'")


# --- resources ----------------------------------------------------------------------------

def test_memory(rootfs, tmp_path):
    res = lambda host: make(rootfs, tmp_path, host)["linux"]["resources"]  # noqa: E731
    mib = 1024 * 1024
    assert res({"Memory": 64 * mib, "MemoryReservation": 32 * mib, "MemorySwap": 100 * mib,
                "MemorySwappiness": 10, "OomKillDisable": True, "KernelMemory": 50 * mib})["memory"] == {
        "limit": 64 * mib, "reservation": 32 * mib, "swap": 100 * mib, "swappiness": 10, "disableOOMKiller": True}
    assert res({"Memory": 64 * mib})["memory"] == {"limit": 64 * mib, "swap": 128 * mib}  # swap 0: twice memory
    assert res({"Memory": 64 * mib, "MemorySwap": -1, "MemorySwappiness": -1})["memory"] == {
        "limit": 64 * mib, "swap": -1}
    assert res({"MemorySwappiness": 0})["memory"] == {"swappiness": 0}
    assert "memory" not in res({"KernelMemory": 50 * mib, "OomKillDisable": False})


@pytest.mark.parametrize("host, message", [
    ({"Memory": 1024}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": -5}, "Minimum memory limit allowed is 6MB"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger than memory limit, see usage"),
    ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap limit, see usage"),
    ({"MemorySwappiness": 101}, "Invalid value: 101, valid memory swappiness range is 0-100"),
    ({"MemoryReservation": 1 << 20}, "Minimum memory reservation allowed is 6MB"),
    ({"Memory": 16 << 20, "MemoryReservation": 32 << 20},
     "Minimum memory limit can not be less than memory reservation limit, see usage"),
    ({"Memory": "1g"}, "invalid HostConfig.Memory: '1g' is not an integer"),
    ({"NanoCpus": 10 ** 9, "CpuPeriod": 100000}, "Conflicting options: Nano CPUs and CPU Period cannot both be set"),
    ({"NanoCpus": 10 ** 9, "CpuQuota": 50000}, "Conflicting options: Nano CPUs and CPU Quota cannot both be set"),
    ({"NanoCpus": (NCPU + 1) * 10 ** 9},
     f"Range of CPUs is from 0.01 to {NCPU}.00, as there are only {NCPU} CPUs available"),
    ({"NanoCpus": -1}, f"Range of CPUs is from 0.01 to {NCPU}.00, as there are only {NCPU} CPUs available"),
    ({"CpuPeriod": 999}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({"CpuPeriod": 1000001}, "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"),
    ({"CpuQuota": 999}, "CPU cfs quota can not be less than 1ms (i.e. 1000)"),
    ({"CpuShares": -2}, "invalid CpuShares -2: shares: invalid argument"),
    ({"CpusetCpus": "1-x"}, "Invalid value 1-x for cpuset cpus: invalid format: 1-x"),
    ({"CpusetCpus": "3-1"}, "Invalid value 3-1 for cpuset cpus: invalid format: 3-1"),
    ({"CpusetCpus": f"0-{NCPU + 3}"},
     f"Requested CPUs are not available - requested 0-{NCPU + 3}, available: {ocispec.format_list(os.sched_getaffinity(0))}"),
    ({"CpusetMems": "0,,1"}, "Invalid value 0,,1 for cpuset mems: invalid format: 0,,1"),
    ({"CpusetMems": "63"},
     f"Requested memory nodes are not available - requested 63, available: {ocispec.format_list(ocispec.online_mems())}"),
    ({"BlkioWeight": 5}, "Range of blkio weight is from 10 to 1000"),
    ({"BlkioWeight": 1001}, "Range of blkio weight is from 10 to 1000"),
    ({"BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 5}]}, "invalid weight for device: /dev/null:5"),
    ({"BlkioWeightDevice": [{"Path": "/dev/nope", "Weight": 100}]},
     "invalid BlkioWeightDevice device '/dev/nope': No such file or directory"),
    ({"BlkioDeviceReadBps": [{"Path": "/etc/hostname", "Rate": 1}]},
     "invalid BlkioDeviceReadBps device '/etc/hostname': not a device node"),
    ({"BlkioDeviceWriteIOps": [{"Path": "/dev/null", "Rate": -1}]}, "invalid rate for device: /dev/null:-1"),
])
def test_resources_refused(rootfs, tmp_path, host, message):
    refused(rootfs, tmp_path, host, message)


def test_cpu_pids_blkio(rootfs, tmp_path):
    res = lambda host: make(rootfs, tmp_path, host)["linux"]["resources"]  # noqa: E731
    assert res({"NanoCpus": 1_500_000_000, "CpuShares": 512, "CpusetCpus": "0", "CpusetMems": "0"})["cpu"] == {
        "shares": 512, "period": 100000, "quota": 150000, "cpus": "0", "mems": "0"}
    assert res({"NanoCpus": 10_000_000})["cpu"] == {"period": 100000, "quota": 1000}
    assert res({"CpuPeriod": 50000, "CpuQuota": 25000})["cpu"] == {"period": 50000, "quota": 25000}
    assert res({"CpuQuota": -1})["cpu"] == {"quota": -1}
    assert res({"CpuShares": 1})["cpu"] == {"shares": 2} and res({"CpuShares": 10 ** 6})["cpu"] == {"shares": 262144}
    assert res({"PidsLimit": 100})["pids"] == {"limit": 100}
    assert "pids" not in res({"PidsLimit": 0}) and "pids" not in res({"PidsLimit": -1})
    assert res({"BlkioWeight": 300, "BlkioWeightDevice": [{"Path": "/dev/null", "Weight": 200}],
                "BlkioDeviceReadBps": [{"Path": "/dev/zero", "Rate": 1048576}],
                "BlkioDeviceWriteBps": [{"Path": "/dev/null", "Rate": 2}],
                "BlkioDeviceReadIOps": [{"Path": "/dev/null", "Rate": 3}],
                "BlkioDeviceWriteIOps": [{"Path": "/dev/zero", "Rate": 4}]})["blockIO"] == {
        "weight": 300, "weightDevice": [{"major": 1, "minor": 3, "weight": 200}],
        "throttleReadBpsDevice": [{"major": 1, "minor": 5, "rate": 1048576}],
        "throttleWriteBpsDevice": [{"major": 1, "minor": 3, "rate": 2}],
        "throttleReadIOPSDevice": [{"major": 1, "minor": 3, "rate": 3}],
        "throttleWriteIOPSDevice": [{"major": 1, "minor": 5, "rate": 4}]}


# --- process ------------------------------------------------------------------------------

def test_ulimits_and_oom_score(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"Ulimits": [{"Name": "nofile", "Soft": 1024, "Hard": 2048},
                                            {"Name": "nproc", "Soft": -1, "Hard": -1}], "OomScoreAdj": -500})
    assert c["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048},
                                       {"type": "RLIMIT_NPROC", "soft": 2 ** 64 - 1, "hard": 2 ** 64 - 1}]
    assert c["process"]["oomScoreAdj"] == -500
    refused(rootfs, tmp_path, {"Ulimits": [{"Name": "files", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: files")
    refused(rootfs, tmp_path, {"Ulimits": [{"Name": "nofile", "Soft": 20, "Hard": 10}]},
            "ulimit soft limit must be less than or equal to hard limit: 20 > 10")
    refused(rootfs, tmp_path, {"OomScoreAdj": 1001}, "Invalid value 1001, range for oom score adj is [-1000, 1000]")
    refused(rootfs, tmp_path, {"OomScoreAdj": -1001}, "Invalid value -1001, range for oom score adj is [-1000, 1000]")


def test_group_add(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"GroupAdd": ["staff", "4242", "audio"]}, User="app")
    assert c["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [29, 50, 4242]}
    refused(rootfs, tmp_path, {"GroupAdd": ["wheel"]}, "unable to find group wheel: no matching entries in group file")


def test_init(rootfs, tmp_path):
    tini = tmp_path / "tini-static"
    tini.write_bytes(b"\x7fELF")
    c = make(rootfs, tmp_path, {"Init": True}, init_path=str(tini))
    assert c["process"]["args"] == ["/sbin/docker-init", "--", "sh"]
    assert c["mounts"][-1] == {"destination": "/sbin/docker-init", "type": "bind", "source": str(tini),
                               "options": ["bind", "ro"]}
    assert make(rootfs, tmp_path, {"Init": False}, init_path=str(tini))["process"]["args"] == ["sh"]
    for path in (None, str(tmp_path / "missing")):
        refused(rootfs, tmp_path, {"Init": True}, "--init needs tini-static on the host (apt-get install tini)",
                init_path=path)


def test_console_size(rootfs, tmp_path):
    assert make(rootfs, tmp_path, {"ConsoleSize": [40, 120]}, Tty=True)["process"]["consoleSize"] == {
        "height": 40, "width": 120}
    assert "consoleSize" not in make(rootfs, tmp_path, {"ConsoleSize": [40, 120]})["process"]
    assert "consoleSize" not in make(rootfs, tmp_path, {"ConsoleSize": [0, 0]}, Tty=True)["process"]
    refused(rootfs, tmp_path, {"ConsoleSize": [40]}, "invalid HostConfig.ConsoleSize: [40] is not [height, width]")


def test_cgroup_parent(rootfs, tmp_path):
    assert make(rootfs, tmp_path, {"CgroupParent": "/mygroup"})["linux"]["cgroupsPath"] == f"/mygroup/{CID}"
    assert make(rootfs, tmp_path, {"CgroupParent": "a/b/"})["linux"]["cgroupsPath"] == f"/a/b/{CID}"
    refused(rootfs, tmp_path, {"CgroupParent": "../escape"}, "invalid CgroupParent '../escape': it must not contain '..'")


# --- security options ---------------------------------------------------------------------

def test_no_new_privileges(rootfs, tmp_path):
    nnp = lambda *opts: make(rootfs, tmp_path, {"SecurityOpt": list(opts)})["process"]["noNewPrivileges"]  # noqa: E731
    assert nnp("no-new-privileges") and nnp("no-new-privileges:true") and nnp("no-new-privileges=1")
    assert not nnp("no-new-privileges=false") and not nnp("no-new-privileges", "no-new-privileges=False")
    refused(rootfs, tmp_path, {"SecurityOpt": ["no-new-privileges=maybe"]},
            'invalid --security-opt 2: "no-new-privileges=maybe"')


def test_seccomp_options(rootfs, tmp_path, no_seccomp):
    assert "seccomp" not in make(rootfs, tmp_path, {"SecurityOpt": ["seccomp=unconfined"]})["linux"]
    assert "seccomp" not in make(rootfs, tmp_path, {"SecurityOpt": ["seccomp:unconfined"]})["linux"]
    assert no_seccomp == []
    profile = '{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["a:b=c"],"action":"SCMP_ACT_ERRNO"}]}'
    c = make(rootfs, tmp_path, {"SecurityOpt": ["seccomp=" + profile], "CapAdd": ["SYS_ADMIN"]})
    assert c["linux"]["seccomp"]["profile"] == profile
    assert no_seccomp == [(profile, bundle.DEFAULT_CAPS + ["CAP_SYS_ADMIN"])]
    make(rootfs, tmp_path, {"SecurityOpt": ["seccomp:" + profile]})
    make(rootfs, tmp_path, {"SecurityOpt": ["seccomp=builtin"]})
    assert [p for p, _ in no_seccomp[1:]] == [profile, None]


def test_seccomp_errors_come_from_the_profile_parser(rootfs, tmp_path, monkeypatch):
    monkeypatch.undo()
    with pytest.raises(ValueError, match="^--security-opt seccomp"):
        make(rootfs, tmp_path, {"SecurityOpt": ["seccomp={not json"]})


def test_apparmor_and_selinux(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"SecurityOpt": ["apparmor=unconfined", "label=disable", "label:disable", "disable"]})
    assert c["process"]["noNewPrivileges"] is False
    aa = "AppArmor is not enabled on this host" if not os.path.exists("/sys/module/apparmor") else \
        "Dockyard cannot apply it yet"
    refused(rootfs, tmp_path, {"SecurityOpt": ["apparmor=docker-default"]},
            f'invalid --security-opt "apparmor=docker-default": {aa}')
    se = "SELinux is not enabled on this host" if not os.path.exists("/sys/fs/selinux") and not os.path.exists(
        "/sys/module/selinux") else "Dockyard cannot apply it yet"
    refused(rootfs, tmp_path, {"SecurityOpt": ["label=type:svirt_t"]}, f'invalid --security-opt "label=type:svirt_t": {se}')
    refused(rootfs, tmp_path, {"SecurityOpt": ["foo=bar"]}, 'invalid --security-opt 2: "foo=bar"')
    refused(rootfs, tmp_path, {"SecurityOpt": ["nonsense"]}, 'invalid --security-opt 1: "nonsense"')


def test_sysctls(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": 1000,
                                            "fs.mqueue.msg_max": "20"}})
    assert c["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000", "fs.mqueue.msg_max": "20"}
    refused(rootfs, tmp_path, {"Sysctls": {"kernel.panic": "1"}}, 'sysctl "kernel.panic" is not in a separate kernel namespace')
    refused(rootfs, tmp_path, {"Sysctls": {"vm.swappiness": "1"}}, 'sysctl "vm.swappiness" is not in a separate kernel namespace')
    refused(rootfs, tmp_path, {"NetworkMode": "host", "Sysctls": {"net.core.somaxconn": "1"}},
            'sysctl "net.core.somaxconn" is not allowed in the hosts network namespace', ns_paths={"network": "host"})
    refused(rootfs, tmp_path, {"IpcMode": "host", "Sysctls": {"kernel.msgmax": "1"}},
            'sysctl "kernel.msgmax" is not allowed in the hosts ipc namespace')


def test_masked_and_readonly_paths_from_the_api(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"MaskedPaths": ["/proc/kcore"], "ReadonlyPaths": []})
    assert c["linux"]["maskedPaths"] == ["/proc/kcore"] and c["linux"]["readonlyPaths"] == []


def test_readonly_rootfs(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"ReadonlyRootfs": True})
    assert c["root"]["readonly"] is True
    assert [m["options"] for m in c["mounts"] if m["destination"].startswith("/etc/")] == [
        ["rbind", "rprivate", "ro"], ["rbind", "rprivate", "ro"], ["rbind", "rprivate"]]


def test_unsupported_fields_are_refused(rootfs, tmp_path):
    refused(rootfs, tmp_path, {"DeviceRequests": [{"Count": -1}]},
            "device requests (--gpus) are not supported yet (HostConfig.DeviceRequests: [{'Count': -1}])")
    refused(rootfs, tmp_path, {"UsernsMode": "private"}, "invalid UsernsMode 'private': user namespaces are not supported yet")
    refused(rootfs, tmp_path, {"IOMaximumIOps": 5},
            "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps (HostConfig.IOMaximumIOps: 5)")


# --- mounts -------------------------------------------------------------------------------

def test_binds(rootfs, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    new = tmp_path / "made/by/docker"
    c = make(rootfs, tmp_path, {"Binds": [f"{src}:/data:ro,rshared", f"{src}/:/a/b:z", f"{new}:/new"]})
    assert by_dest(c, "/data") == [{"destination": "/data", "type": "bind", "source": str(src),
                                    "options": ["rbind", "ro", "rshared"]}]
    assert by_dest(c, "/a/b")[0]["options"] == ["rbind", "rprivate"] and by_dest(c, "/a/b")[0]["source"] == str(src)
    assert by_dest(c, "/new")[0]["source"] == str(new) and new.is_dir()  # created, as Docker does for Binds
    assert c["linux"]["rootfsPropagation"] == "rshared"
    user = [m["destination"] for m in c["mounts"][len(DEFAULT_MOUNTS):-3]]
    assert user == ["/data", "/new", "/a/b"]  # parents before children
    assert make(rootfs, tmp_path, {"Binds": [f"{src}:/s:rslave"]})["linux"]["rootfsPropagation"] == "rslave"


@pytest.mark.parametrize("bind, message", [
    ("/a:/b:rw,ro", "invalid mode: rw,ro"),
    ("/a:/b:bogus", "invalid mode: bogus"),
    ("/a:rw", "invalid volume specification: '/a:rw'"),
    (":/b", "invalid volume specification: ':/b'"),
    ("/a:/b:ro:x", "invalid volume specification: '/a:/b:ro:x'"),
    ("/a:b", "invalid volume specification: '/a:b': invalid mount config for type \"bind\": invalid mount path: "
             "'b' mount path must be absolute"),
    ("/a:/", "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: "
             "destination can't be '/'"),
    ("/a:/b:nocopy", "invalid volume specification: '/a:/b:nocopy': invalid mount config for type \"bind\": "
                     "field VolumeOptions must not be specified"),
])
def test_binds_refused(rootfs, tmp_path, bind, message):
    refused(rootfs, tmp_path, {"Binds": [bind]}, message)


def test_volumes_are_left_to_mountpoints(rootfs, tmp_path):
    """Named and anonymous volumes (Binds, Mounts) are mounted by the engine's
    mountpoints module, which hands their binds in as ``volume_mounts``."""
    paths = bundle.write_etc_files(str(tmp_path / "ctr"), CID[:12], "private")
    vol = {"destination": "/data/sub", "type": "bind", "source": str(tmp_path), "options": ["rbind", "rprivate"]}
    c = bundle.make_config(record({"Binds": ["data:/data/sub", "/anon"], "Mounts": [
        {"Type": "volume", "Source": "v", "Target": "/v"}, {"Type": "tmpfs", "Target": "/data"}]}),
        rootfs, paths, {}, volume_mounts=[vol])
    assert [m["destination"] for m in c["mounts"][len(DEFAULT_MOUNTS):-3]] == ["/data", "/data/sub"]
    assert by_dest(c, "/data/sub") == [vol]


def test_refused_config_creates_no_bind_source(rootfs, tmp_path):
    new = tmp_path / "never"
    refused(rootfs, tmp_path, {"Binds": [f"{new}:/x"], "Memory": 1}, "Minimum memory limit allowed is 6MB")
    assert not new.exists()
    with pytest.raises(ValueError):
        bundle.validate_host_config({"Binds": [f"{new}:/x"], "CapAdd": ["bogus"]})
    bundle.validate_host_config({"Binds": [f"{new}:/x"], "Memory": 64 << 20, "PidMode": "host"})
    assert not new.exists()  # validation never changes the host


def test_mounts(rootfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    c = make(rootfs, tmp_path, {"Mounts": [
        {"Type": "bind", "Source": str(src), "Target": "/b", "ReadOnly": True, "BindOptions": {"Propagation": "slave"}},
        {"Type": "bind", "Source": str(src), "Target": "/nr", "BindOptions": {"NonRecursive": True}},
        {"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 << 20, "Mode": 0o1777}},
        {"Type": "tmpfs", "Target": "/u", "ReadOnly": True, "TmpfsOptions": {"SizeBytes": 1000}}]})
    assert by_dest(c, "/b") == [{"destination": "/b", "type": "bind", "source": str(src),
                                 "options": ["rbind", "ro", "slave"]}]
    assert by_dest(c, "/nr")[0]["options"] == ["bind", "rprivate"]
    assert by_dest(c, "/t") == [{"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                 "options": ["noexec", "nosuid", "nodev", "rprivate", "mode=1777", "size=64m"]}]
    assert by_dest(c, "/u")[0]["options"] == ["noexec", "nosuid", "nodev", "rprivate", "ro", "size=1000"]


@pytest.mark.parametrize("mount, message", [
    ({"Type": "bind", "Source": "/no/such/dir", "Target": "/x"},
     'invalid mount config for type "bind": bind source path does not exist: /no/such/dir'),
    ({"Type": "bind", "Target": "/x"}, 'invalid mount config for type "bind": field Source must not be empty'),
    ({"Type": "bind", "Source": "rel", "Target": "/x"},
     "invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute"),
    ({"Type": "bind", "Source": "/", "Target": "/x", "BindOptions": {"Propagation": "weird"}},
     'invalid mount config for type "bind": invalid propagation mode: weird'),
    ({"Type": "bind", "Source": "/"}, 'invalid mount config for type "bind": field Target must not be empty'),
    ({"Type": "tmpfs", "Source": "/x", "Target": "/x"}, 'invalid mount config for type "tmpfs": field Source must not be specified'),
    ({"Type": "tmpfs", "Target": "x"}, "invalid mount config for type \"tmpfs\": invalid mount path: 'x' mount path must be absolute"),
    ({"Type": "npipe", "Source": "/x", "Target": "/x"}, 'invalid mount config for type "npipe": mount type unknown'),
])
def test_mounts_refused(rootfs, tmp_path, mount, message):
    refused(rootfs, tmp_path, {"Mounts": [mount]}, message)


def test_tmpfs(rootfs, tmp_path):
    c = make(rootfs, tmp_path, {"Tmpfs": {"/run": "rw,size=64m", "/exec": "exec,mode=700", "/plain": ""}})
    assert by_dest(c, "/run") == [{"destination": "/run", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["noexec", "nosuid", "nodev", "rprivate", "rw", "size=64m"]}]
    assert by_dest(c, "/exec")[0]["options"] == ["nosuid", "nodev", "rprivate", "exec", "mode=700"]
    assert by_dest(c, "/plain")[0]["options"] == ["noexec", "nosuid", "nodev", "rprivate"]
    refused(rootfs, tmp_path, {"Tmpfs": {"/run": "bogus"}}, 'Invalid tmpfs option ["bogus"]')
    refused(rootfs, tmp_path, {"Tmpfs": {"/run": "color=red"}}, 'Invalid tmpfs option ["color" "red"]')
    refused(rootfs, tmp_path, {"Tmpfs": {"run": ""}}, "invalid mount path: 'run' mount path must be absolute")
    refused(rootfs, tmp_path, {"Tmpfs": {"/": ""}}, "invalid specification: destination can't be '/'")


def test_duplicate_mount_points(rootfs, tmp_path):
    refused(rootfs, tmp_path, {"Binds": ["/tmp:/x"], "Mounts": [{"Type": "bind", "Source": "/tmp", "Target": "/x/"}]},
            "Duplicate mount point: /x")
    refused(rootfs, tmp_path, {"Binds": ["/tmp:/x"], "Tmpfs": {"/x": ""}}, "Duplicate mount point: /x")


def test_user_mounts_replace_defaults_and_etc_files(rootfs, tmp_path):
    hosts = tmp_path / "myhosts"
    hosts.write_text("1.2.3.4 x\n")
    c = make(rootfs, tmp_path, {"Tmpfs": {"/dev/shm": "size=1g"}, "Binds": [f"{hosts}:/etc/hosts:ro"]})
    assert by_dest(c, "/dev/shm") == [{"destination": "/dev/shm", "type": "tmpfs", "source": "tmpfs",
                                       "options": ["noexec", "nosuid", "nodev", "rprivate", "size=1g"]}]
    assert by_dest(c, "/etc/hosts") == [{"destination": "/etc/hosts", "type": "bind", "source": str(hosts),
                                         "options": ["rbind", "ro", "rprivate"]}]
    c = make(rootfs, tmp_path, {"Tmpfs": {"/dev": ""}})
    assert [m["destination"] for m in c["mounts"] if m["destination"].startswith("/dev")] == ["/dev"]


def test_user_database_is_read_inside_the_root_and_only_as_a_regular_file(tmp_path):
    """The container controls its /etc/passwd (exec and cp read a running one's):
    a link to the host's is resolved inside the root, a FIFO is not opened (it
    would block the daemon's thread), and a huge file is read only so far."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "passwd").write_text("evil:x:4242:4242::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").symlink_to(host / "passwd")  # absolute: inside the root it is /tmp/.../passwd, missing
    with pytest.raises(ValueError, match="unable to find user evil"):
        bundle.resolve_user(str(root), "evil")
    (root / "etc/passwd").unlink()
    os.mkfifo(root / "etc/passwd")
    with pytest.raises(ValueError, match="unable to find user app"):
        bundle.resolve_user(str(root), "app")  # returns at once: the FIFO is never opened for reading
    (root / "etc/passwd").unlink()
    with open(root / "etc/passwd", "w") as fh:
        fh.write("app:x:1000:1000::/:/bin/sh\n")
        fh.truncate(bundle.MAX_DB_BYTES * 4)  # sparse: a 64 MiB file of NULs after one line
    assert bundle.resolve_user(str(root), "app")["uid"] == 1000
