"""A pod's containers through the CRI of a real daemon (the generated gRPC
stubs, as a kubelet calls them): a container that runs and exits with its
code, its log in the CRI format at the kubelet's path (and reopened after a
rotation), ExecSync's output and timeout, the security context (user, group,
supplemental groups, capabilities, read-only rootfs, masked and read-only
paths, seccomp), listing, status, stats, and ``docker rm`` refusing a pod's
container without ``-f``.

The pods run on the host's network (NamespaceOption NODE): what is tested here
is the containers, not the CNI network (tests of the cni driver do that).
"""

import json
import os
import re
import time
import uuid

import grpc
import pytest
from dockyard.cri.api import api_pb2 as pb
from dockyard.cri.api import api_pb2_grpc
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry_content import stop_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

CRI_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (stdout|stderr) ([FP]) (.*)$")


def uniq(prefix=""):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cri_daemon(session_root, busybox_tar):
    cni = session_root / uniq("cni-")
    cni.mkdir()
    d = Daemon(session_root / uniq("crictr-"), extra_args=["--cni-conf-dir", str(cni)]).start()
    try:
        res = d.cli("import", str(busybox_tar), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        yield d
    finally:
        assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def rt(cri_daemon):
    with grpc.insecure_channel(f"unix://{cri_daemon.cri_sock}") as channel:
        yield api_pb2_grpc.RuntimeServiceStub(channel)


@pytest.fixture
def pod(rt, tmp_path):
    """A running pod on the host's network with a log directory: (id, config)."""
    name = uniq("pod-")
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=name, uid=uniq("uid-"), namespace="default", attempt=0),
        log_directory=str(tmp_path / "logs"),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id
    yield pod_id, config
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def create(rt, pod, command, name=None, sc=None, log=True, **fields):
    pod_id, pod_config = pod
    name = name or uniq("c-")
    config = pb.ContainerConfig(
        metadata=pb.ContainerMetadata(name=name, attempt=1), image=pb.ImageSpec(image="busybox"),
        command=command, log_path=f"{name}.log" if log else "",
        linux=pb.LinuxContainerConfig(security_context=sc or pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))), **fields)
    return rt.CreateContainer(pb.CreateContainerRequest(pod_sandbox_id=pod_id, config=config,
                                                        sandbox_config=pod_config)).container_id


def status(rt, cid, verbose=False):
    return rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid, verbose=verbose))


def wait_state(rt, cid, state, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = status(rt, cid).status
        if st.state == state:
            return st
        time.sleep(0.1)
    raise AssertionError(f"{cid} never reached {pb.ContainerState.Name(state)}: {st}")


def log_lines(path, want=1, timeout=20):
    deadline = time.monotonic() + timeout
    while True:
        text = open(path).read() if os.path.exists(path) else ""
        got = [CRI_LINE.match(line).groups() for line in text.splitlines()]
        if len(got) >= want or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def run_to_exit(rt, pod, command, **kw):
    """Create, start and wait for the end of a container: (id, status, its log lines)."""
    cid = create(rt, pod, command, **kw)
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    st = wait_state(rt, cid, pb.CONTAINER_EXITED)
    return cid, st, log_lines(st.log_path)


def exec_sync(rt, cid, cmd, timeout=20):
    return rt.ExecSync(pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout))


def running(rt, pod, sc=None, **kw):
    cid = create(rt, pod, ["sleep", "600"], sc=sc, **kw)
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    wait_state(rt, cid, pb.CONTAINER_RUNNING)
    return cid


def host_ns(**kw):
    return pb.LinuxContainerSecurityContext(namespace_options=pb.NamespaceOption(network=pb.NODE), **kw)


# --- lifecycle, status, logs ---------------------------------------------------------------
def test_a_container_runs_exits_and_logs_in_the_cri_format(rt, pod, cri_daemon):
    pod_id, pod_config = pod
    name = uniq("exit-")
    cid, st, lines = run_to_exit(rt, pod, ["sh", "-c", "echo hello World; echo oops >&2; printf part; exit 3"],
                                 name=name, labels={"app": "t"}, annotations={"note": "x"})
    assert st.exit_code == 3 and st.reason == "Error"
    assert st.log_path == os.path.join(pod_config.log_directory, f"{name}.log")
    assert oct(os.stat(st.log_path).st_mode & 0o777) == "0o640"
    assert ("stdout", "F", "hello World") in lines and ("stderr", "F", "oops") in lines
    assert ("stdout", "P", "part") in lines
    assert st.started_at >= st.created_at > 0 and st.finished_at >= st.started_at
    assert st.metadata.name == name and st.metadata.attempt == 1 and st.image.image == "busybox"
    assert st.image_ref.startswith("sha256:")
    assert dict(st.labels) == {"app": "t"} and dict(st.annotations) == {"note": "x"}
    # listing: by id prefix, sandbox, state and label selector, the request's own labels only
    listed = rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        pod_sandbox_id=pod_id, label_selector={"app": "t"},
        state=pb.ContainerStateValue(state=pb.CONTAINER_EXITED)))).containers
    assert [c.id for c in listed] == [cid] and dict(listed[0].labels) == {"app": "t"}
    assert rt.ListContainers(pb.ListContainersRequest(filter=pb.ContainerFilter(
        id=cid[:12], state=pb.ContainerStateValue(state=pb.CONTAINER_RUNNING)))).containers == []
    # docker ps shows it with the kubelet's labels and dockershim's name
    res = cri_daemon.docker("ps", "-a", "--filter", f"id={cid}", "--format", "{{.Names}} {{.Labels}}")
    out = res.stdout.decode()
    assert out.startswith(f"k8s_{name}_{pod_config.metadata.name}_default_{pod_config.metadata.uid}_1 ")
    assert "io.kubernetes.pod.name=" + pod_config.metadata.name in out
    # docker rm without -f is refused, naming Kubernetes; with -f it goes
    res = cri_daemon.docker("rm", cid)
    assert res.returncode != 0 and "Kubernetes" in res.stderr.decode()
    assert status(rt, cid).status.id == cid
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))
    rt.RemoveContainer(pb.RemoveContainerRequest(container_id=cid))  # gone already: no error
    with pytest.raises(grpc.RpcError) as err:
        status(rt, cid)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_start_stop_verbose_status_and_reopened_log(rt, pod, cri_daemon):
    cid = create(rt, pod, ["sh", "-c", "while true; do echo tick; sleep 0.2; done"])
    assert status(rt, cid).status.state == pb.CONTAINER_CREATED
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    st = wait_state(rt, cid, pb.CONTAINER_RUNNING)
    info = json.loads(status(rt, cid, verbose=True).info["info"])
    assert info["pid"] > 0 and info["sandboxID"] == pod[0]
    with pytest.raises(grpc.RpcError) as err:  # started once only
        rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert log_lines(st.log_path, 2)[0] == ("stdout", "F", "tick")
    os.rename(st.log_path, st.log_path + ".1")  # the kubelet rotates...
    rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))  # ...and asks for a new file
    assert os.path.exists(st.log_path)
    assert log_lines(st.log_path, 1)[0] == ("stdout", "F", "tick")
    old = open(st.log_path + ".1").read()
    time.sleep(0.6)
    assert open(st.log_path + ".1").read() == old  # nothing more goes to the old one
    # docker logs reads the CRI file back
    res = cri_daemon.docker("logs", "--tail", "1", cid)
    assert res.stdout.decode() == "tick\n", res.stderr.decode()
    stats = rt.ContainerStats(pb.ContainerStatsRequest(container_id=cid)).stats
    assert stats.attributes.id == cid and stats.cpu.timestamp > 0 and stats.memory.timestamp > 0
    assert stats.cpu.usage_core_nano_seconds.value > 0 and stats.memory.working_set_bytes.value > 0
    listed = rt.ListContainerStats(pb.ListContainerStatsRequest(filter=pb.ContainerStatsFilter(
        pod_sandbox_id=pod[0]))).stats
    assert [s.attributes.id for s in listed] == [cid]
    rt.UpdateContainerResources(pb.UpdateContainerResourcesRequest(container_id=cid, linux=pb.LinuxContainerResources(
        cpu_shares=512, memory_limit_in_bytes=64 << 20)))
    host = json.loads(cri_daemon.docker("inspect", cid).stdout)[0]["HostConfig"]
    assert (host["CpuShares"], host["Memory"], host["MemorySwap"]) == (512, 64 << 20, 64 << 20)
    start = time.monotonic()
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=10))
    assert time.monotonic() - start < 8  # sh ignores nothing: SIGTERM ends it
    st = wait_state(rt, cid, pb.CONTAINER_EXITED)
    assert st.reason in ("Error", "Completed")
    rt.StopContainer(pb.StopContainerRequest(container_id=cid, timeout=1))  # stopped already: no error
    with pytest.raises(grpc.RpcError) as err:
        rt.ReopenContainerLog(pb.ReopenContainerLogRequest(container_id=cid))
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


# --- exec --------------------------------------------------------------------------------------
def test_exec_sync_output_exit_code_and_timeout(rt, pod):
    cid = running(rt, pod)
    res = exec_sync(rt, cid, ["sh", "-c", "echo hello; echo err >&2; exit 5"])
    assert (res.stdout, res.stderr, res.exit_code) == (b"hello\n", b"err\n", 5)
    start = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        exec_sync(rt, cid, ["sleep", "4321"], timeout=1)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - start < 6
    res = exec_sync(rt, cid, ["sh", "-c", "ps | grep 'sleep 4321' | grep -v grep || true"])
    assert res.stdout == b"" and res.exit_code == 0  # the timed-out command was killed


# --- security context --------------------------------------------------------------------------
def test_run_as_user_group_and_supplemental_groups(rt, pod):
    _, st, lines = run_to_exit(rt, pod, ["sh", "-c", "echo $(id -u):$(id -g) $(id -G)"],
                               sc=host_ns(run_as_user=pb.Int64Value(value=1001),
                                          run_as_group=pb.Int64Value(value=1002), supplemental_groups=[1234, 5678]))
    assert st.exit_code == 0
    uid_gid, *groups = lines[0][2].split()
    assert uid_gid == "1001:1002" and {"1234", "5678"} <= set(groups)
    with pytest.raises(grpc.RpcError) as err:  # a group without a user: refused
        create(rt, pod, ["true"], sc=host_ns(run_as_group=pb.Int64Value(value=1002)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_capabilities_added_dropped_and_all(rt, pod):
    def cap_bnd(sc):
        _, _, lines = run_to_exit(rt, pod, ["sh", "-c", "grep CapBnd /proc/self/status"], sc=sc)
        return int(lines[0][2].split()[1], 16)

    default = cap_bnd(host_ns())
    net_admin, net_raw = 1 << 12, 1 << 13
    assert not default & net_admin and default & net_raw
    added = cap_bnd(host_ns(capabilities=pb.Capability(add_capabilities=["NET_ADMIN"],
                                                       drop_capabilities=["CAP_NET_RAW"])))
    assert added & net_admin and not added & net_raw
    assert cap_bnd(host_ns(capabilities=pb.Capability(drop_capabilities=["ALL"]))) == 0
    assert cap_bnd(host_ns(capabilities=pb.Capability(add_capabilities=["ALL"]))) & net_admin


def test_read_only_rootfs(rt, pod):
    _, st, lines = run_to_exit(rt, pod, ["sh", "-c", "touch /test.go && echo Found"],
                               sc=host_ns(readonly_rootfs=True))
    assert st.exit_code != 0 and any("Read-only file system" in t for s, _, t in lines if s == "stderr")
    _, st, lines = run_to_exit(rt, pod, ["sh", "-c", "touch /test.go && echo Found"], sc=host_ns())
    assert st.exit_code == 0 and ("stdout", "F", "Found") in lines


def test_masked_and_read_only_paths(rt, pod):
    cid = running(rt, pod, sc=host_ns(masked_paths=["/proc/cpuinfo"], readonly_paths=["/tmp"]))
    res = exec_sync(rt, cid, ["cat", "/proc/cpuinfo"])
    assert (res.exit_code, res.stdout) == (0, b"")  # /dev/null over it
    res = exec_sync(rt, cid, ["touch", "/tmp/test"])
    assert res.exit_code != 0 and b"Read-only file system" in res.stderr
    # none asked: the engine's defaults (protobuf has no "empty list")
    plain = running(rt, pod)
    assert exec_sync(rt, plain, ["cat", "/proc/cpuinfo"]).stdout != b""
    assert exec_sync(rt, plain, ["cat", "/proc/timer_list"]).stdout == b""
    assert exec_sync(rt, cid, ["cat", "/proc/timer_list"]).stdout != b""  # not in this one's list


def test_seccomp_profiles(rt, pod, tmp_path):
    def seccomp_mode(profile, privileged=False):
        cid = running(rt, pod, sc=host_ns(seccomp_profile_path=profile, privileged=privileged))
        return exec_sync(rt, cid, ["grep", "Seccomp:", "/proc/self/status"]).stdout.split()[1]

    block = tmp_path / "block-chmod.json"
    block.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW",
                                 "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}))
    assert seccomp_mode("") == b"0" and seccomp_mode("unconfined") == b"0"
    assert seccomp_mode("runtime/default") == b"2" and seccomp_mode("docker/default") == b"2"
    assert seccomp_mode(f"localhost/{block}", privileged=True) == b"0"  # privileged: no filter
    cid = running(rt, pod, sc=host_ns(seccomp_profile_path=f"localhost/{block}"))
    res = exec_sync(rt, cid, ["chmod", "400", "/"])
    assert res.exit_code != 0 and b"Operation not permitted" in res.stderr
    with pytest.raises(grpc.RpcError) as err:  # a profile without localhost/: refused
        create(rt, pod, ["true"], sc=host_ns(seccomp_profile_path=str(block)))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_mounts_with_a_symlinked_host_path(rt, pod, tmp_path):
    src = tmp_path / "vol"
    src.mkdir()
    (src / "flag").write_text("x")
    link = tmp_path / "vol-link"
    link.symlink_to(src)
    cid = running(rt, pod, mounts=[pb.Mount(host_path=str(link), container_path="/data", readonly=True,
                                            propagation=pb.PROPAGATION_HOST_TO_CONTAINER)])
    assert exec_sync(rt, cid, ["ls", "/data"]).stdout == b"flag\n"
    assert exec_sync(rt, cid, ["touch", "/data/new"]).exit_code != 0
    mount, = status(rt, cid).status.mounts
    assert (mount.host_path, mount.container_path, mount.readonly, mount.propagation) == (
        str(link), "/data", True, pb.PROPAGATION_HOST_TO_CONTAINER)


def test_containers_join_the_pods_namespaces(rt, cri_daemon, tmp_path):
    """PID per NamespaceOption (POD: the infra's, CONTAINER: its own), IPC the pod's."""
    config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=uniq("pidpod-"), uid=uniq("uid-"), namespace="default"),
        log_directory=str(tmp_path / "logs"),
        linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.POD))))
    pod_id = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id
    try:
        pod = (pod_id, config)
        infra_pid = json.loads(cri_daemon.docker("inspect", pod_id).stdout)[0]["State"]["Pid"]
        shared = running(rt, pod, sc=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.POD)))
        own = running(rt, pod, sc=pb.LinuxContainerSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER)))
        ipc = os.readlink(f"/proc/{infra_pid}/ns/ipc").encode()
        pidns = os.readlink(f"/proc/{infra_pid}/ns/pid").encode()
        assert exec_sync(rt, shared, ["readlink", "/proc/self/ns/ipc"]).stdout.strip() == ipc
        assert exec_sync(rt, shared, ["readlink", "/proc/self/ns/pid"]).stdout.strip() == pidns
        assert exec_sync(rt, own, ["readlink", "/proc/self/ns/ipc"]).stdout.strip() == ipc
        assert exec_sync(rt, own, ["readlink", "/proc/self/ns/pid"]).stdout.strip() != pidns
        assert exec_sync(rt, own, ["cat", "/proc/1/cmdline"]).stdout.startswith(b"sleep")
    finally:
        rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
