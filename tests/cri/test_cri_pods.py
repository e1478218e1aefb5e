"""Pod sandboxes through a real daemon's CRI socket (the generated stubs, and crictl):
a pod is an infra container (catatonit from the locally made pause image) that
holds its own network, IPC and UTS namespaces with the pod's hostname, DNS
config and sysctls, or the host's for NODE namespaces; it is READY while the
infra runs, NOTREADY once stopped; stop and remove are idempotent and leave no
container, mount, veth, network namespace or cgroup behind.

The pods' network is ``cri-pods``: the daemon makes it with the ``cni`` driver
(from this module's CNI configuration) when that driver is enabled; otherwise
the module makes it with the bridge driver, which the pods use the same way.
"""

import json
import os
import subprocess
import uuid

import grpc
import pytest
from dockyard.cri import sandbox_config
from dockyard.cri.api import api_pb2 as pb
from dockyard.cri.api import api_pb2_grpc
from dockyard.cri.config import PAUSE_IMAGE, POD_NETWORK
from dockyard.testing import leaks
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry_content import stop_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

CNI_BRIDGE = f"{leaks.LINK_PREFIX}pod"  # the session's prefix: its leak checks see it
CONFLIST = {"cniVersion": "1.0.0", "name": "dockyard-pods-test", "plugins": [
    {"type": "bridge", "bridge": CNI_BRIDGE, "isGateway": True, "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "10.233.7.0/24"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": True}}]}
NS_KINDS = ("net", "ipc", "uts", "pid")


def uniq(prefix="pod-"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cri_daemon(session_root, busybox_tar):
    base = session_root / uniq("cripods-")
    cni_dir = base / "cni"
    cni_dir.mkdir(parents=True)
    conf = json.loads(json.dumps(CONFLIST))
    conf["plugins"][0]["ipam"]["dataDir"] = str(base / "ipam")  # not the host's /var/lib/cni
    (cni_dir / "10-pods.conflist").write_text(json.dumps(conf))
    d = Daemon(base, extra_args=["--cni-conf-dir", str(cni_dir)]).start()
    client = d.sdk()
    made = not client.networks.list(names=[POD_NETWORK])
    if made:  # no cni driver here: the default driver stands in
        client.networks.create(POD_NETWORK, driver="bridge")
    assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
    yield d
    for c in client.containers.list(all=True):
        c.remove(force=True)
    if made:
        client.networks.get(POD_NETWORK).remove()
    client.close()
    assert stop_daemon(d) == []
    subprocess.run(["ip", "link", "del", CNI_BRIDGE], capture_output=True)  # the bridge plugin keeps it


@pytest.fixture(scope="module")
def runtime(cri_daemon):
    with grpc.insecure_channel(f"unix://{cri_daemon.cri_sock}") as channel:
        yield api_pb2_grpc.RuntimeServiceStub(channel)


def pod_config(**kw):
    name = kw.pop("name", None) or uniq()
    return pb.PodSandboxConfig(metadata=pb.PodSandboxMetadata(name=name, uid=uniq("uid-"), namespace="testns",
                                                              attempt=kw.pop("attempt", 1)), **kw)


def run(runtime, config):
    return runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=config)).pod_sandbox_id


def status(runtime, pod_id, verbose=False):
    return runtime.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=verbose))


def infra_pid(runtime, pod_id):
    return json.loads(status(runtime, pod_id, verbose=True).info["info"])["pid"]


def ns_of(pid):
    return {kind: os.readlink(f"/proc/{pid}/ns/{kind}") for kind in NS_KINDS}


def host_ns():
    return ns_of("self")  # the test's own: the host's, as the daemon's


def in_ns(pid, flags, *cmd):
    res = subprocess.run(["nsenter", "-t", str(pid), *flags, *cmd], capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def remove(runtime, pod_id):
    runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


# --- run, status, list ----------------------------------------------------------------------------
def test_a_pod_has_its_hostname_dns_sysctls_and_own_namespaces(runtime, cri_daemon):
    config = pod_config(hostname="pod-host", labels={"app": "web", "tier": "front"}, annotations={"note": "x y"},
                        dns_config=pb.DNSConfig(servers=["10.96.0.10", "10.96.0.11"],
                                                searches=["testns.svc.cluster.local", "svc.cluster.local"],
                                                options=["ndots:5", "timeout:2"]),
                        linux=pb.LinuxPodSandboxConfig(sysctls={"kernel.shm_rmid_forced": "1",
                                                                "net.ipv4.ip_unprivileged_port_start": "80"}))
    pod_id = run(runtime, config)
    try:
        s = status(runtime, pod_id).status
        assert (s.id, s.state, s.metadata) == (pod_id, pb.SANDBOX_READY, config.metadata)
        assert dict(s.labels) == {"app": "web", "tier": "front"}  # the request's own, exactly
        assert dict(s.annotations) == {"note": "x y"}
        assert s.network.ip and s.network.ip != "127.0.0.1"
        assert s.linux.namespaces.options == pb.NamespaceOption()  # POD for all
        pid = infra_pid(runtime, pod_id)
        assert open(f"/proc/{pid}/cmdline").read().split("\0")[:2] == ["/catatonit", "-P"]
        own = ns_of(pid)
        assert all(own[k] != host_ns()[k] for k in NS_KINDS), own
        assert in_ns(pid, ["-u"], "hostname").strip() == "pod-host"
        with open(f"/proc/{pid}/root/etc/resolv.conf") as fh:
            assert fh.read() == ("search testns.svc.cluster.local svc.cluster.local\n"
                                 "nameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5 timeout:2\n")
        with open(f"/proc/{pid}/root/etc/hostname") as fh:
            assert fh.read().strip() == "pod-host"
        assert in_ns(pid, ["-i"], "cat", "/proc/sys/kernel/shm_rmid_forced").strip() == "1"
        assert in_ns(pid, ["-n"], "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start").strip() == "80"
        assert s.network.ip in in_ns(pid, ["-n"], "ip", "-4", "addr", "show", "eth0")
        # the Docker API sees the infra container, named and labelled as the kubelet's runtimes do
        c = cri_daemon.sdk().containers.get(pod_id)
        assert c.name == f"k8s_POD_{config.metadata.name}_testns_{config.metadata.uid}_1"
        assert c.labels["io.kubernetes.pod.name"] == config.metadata.name
        assert c.labels["io.kubernetes.pod.uid"] == config.metadata.uid
        assert c.labels["io.kubernetes.pod.namespace"] == "testns"
        assert c.labels["io.dockyard.cri.kind"] == "sandbox" and c.labels["app"] == "web"
    finally:
        remove(runtime, pod_id)


def test_the_pause_image_is_made_locally(runtime, cri_daemon):
    pod_id = run(runtime, pod_config())
    remove(runtime, pod_id)
    image = cri_daemon.sdk().images.get(PAUSE_IMAGE)
    assert image.attrs["Config"]["Cmd"] == ["/catatonit", "-P"]
    assert len(image.attrs["RootFS"]["Layers"]) == 1


def test_host_namespaces_of_a_node_pod(runtime):
    node = pb.NamespaceOption(network=pb.NODE, pid=pb.NODE, ipc=pb.NODE)
    config = pod_config(linux=pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
        namespace_options=node)))
    pod_id = run(runtime, config)
    try:
        s = status(runtime, pod_id).status
        assert s.state == pb.SANDBOX_READY and s.network.ip == ""  # the host's network: no pod IP
        assert s.linux.namespaces.options == node
        own = ns_of(infra_pid(runtime, pod_id))
        assert own == host_ns()
    finally:
        remove(runtime, pod_id)


def test_a_host_network_pod_may_not_set_a_net_sysctl(runtime, cri_daemon):
    config = pod_config(linux=pb.LinuxPodSandboxConfig(
        sysctls={"net.ipv4.ip_forward": "1"}, security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE))))
    with pytest.raises(grpc.RpcError) as info:
        run(runtime, config)
    assert "net.ipv4.ip_forward" in info.value.details()
    name = sandbox_config.sandbox_name(config.metadata)
    assert not cri_daemon.sdk().containers.list(all=True, filters={"name": name})  # nothing kept


def test_port_mappings_are_published_and_a_container_port_alone_is_not(runtime, cri_daemon):
    config = pod_config(port_mappings=[pb.PortMapping(container_port=80, host_port=18090, host_ip="127.0.0.1"),
                                       pb.PortMapping(container_port=53, host_port=18053, protocol=pb.UDP),
                                       pb.PortMapping(container_port=8080)])
    pod_id = run(runtime, config)
    try:
        attrs = cri_daemon.sdk().api.inspect_container(pod_id)
        assert attrs["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18090"}],
                                                       "53/udp": [{"HostIp": "", "HostPort": "18053"}]}
        assert set(attrs["Config"]["ExposedPorts"]) == {"80/tcp", "53/udp", "8080/tcp"}
    finally:
        remove(runtime, pod_id)


def test_an_unknown_runtime_handler_is_refused(runtime):
    with pytest.raises(grpc.RpcError) as info:
        runtime.RunPodSandbox(pb.RunPodSandboxRequest(config=pod_config(), runtime_handler="kata"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "kata" in info.value.details()


def test_without_the_pod_network_only_host_network_pods_run(runtime, cri_daemon):
    client = cri_daemon.sdk()
    net = client.networks.get(POD_NETWORK)
    driver, options, labels = net.attrs["Driver"], net.attrs["Options"], net.attrs["Labels"]
    net.remove()
    try:
        with pytest.raises(grpc.RpcError) as info:
            run(runtime, pod_config())
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"pod network '{POD_NETWORK}' does not exist" in info.value.details()
        node = pb.LinuxPodSandboxConfig(security_context=pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE)))
        remove(runtime, run(runtime, pod_config(linux=node)))
    finally:  # as the daemon (cni) or the fixture (bridge) made it
        client.networks.create(POD_NETWORK, driver=driver, options=options, labels=labels)


def test_a_pod_name_is_taken_once(runtime):
    config = pod_config()
    pod_id = run(runtime, config)
    try:
        with pytest.raises(grpc.RpcError) as info:
            run(runtime, config)
        assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS
    finally:
        remove(runtime, pod_id)


def test_list_filters_by_id_state_and_labels(runtime):
    a = run(runtime, pod_config(labels={"group": "one", "x": "1"}))
    b = run(runtime, pod_config(labels={"group": "one", "x": "2"}))
    try:
        runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=b))

        def listed(**kw):
            return {p.id: p.state for p in runtime.ListPodSandbox(
                pb.ListPodSandboxRequest(filter=pb.PodSandboxFilter(**kw))).items}

        assert listed(label_selector={"group": "one"}) == {a: pb.SANDBOX_READY, b: pb.SANDBOX_NOTREADY}
        assert listed(label_selector={"group": "one", "x": "2"}) == {b: pb.SANDBOX_NOTREADY}
        assert listed(label_selector={"io.kubernetes.pod.name": "anything"}) == {}  # only the request's labels
        assert listed(id=a[:10]) == {a: pb.SANDBOX_READY}
        ready = listed(state=pb.PodSandboxStateValue(state=pb.SANDBOX_READY))
        assert a in ready and b not in ready
        assert b in listed(state=pb.PodSandboxStateValue(state=pb.SANDBOX_NOTREADY))
    finally:
        remove(runtime, a)
        remove(runtime, b)


def test_a_missing_pod(runtime):
    missing = "0" * 64
    with pytest.raises(grpc.RpcError) as info:
        status(runtime, missing)
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=missing))  # both idempotent
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=missing))


def test_a_plain_container_is_no_pod(runtime, cri_daemon):
    c = cri_daemon.sdk().containers.create("busybox", ["true"])
    try:
        with pytest.raises(grpc.RpcError) as info:
            status(runtime, c.id)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        assert c.id not in {p.id for p in runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    finally:
        c.remove(force=True)


# --- stop and remove ---------------------------------------------------------------------------
def test_stop_and_remove_leave_nothing_behind(runtime, cri_daemon):
    d = cri_daemon
    config = pod_config(port_mappings=[pb.PortMapping(container_port=80, host_port=18080, host_ip="127.0.0.1")])
    pod_id = run(runtime, config)
    pid = infra_pid(runtime, pod_id)
    netns_dir = d.exec_root / "netns"
    assert os.listdir(netns_dir) == [pod_id]  # the engine's pinned netns of the infra
    assert d.veths(), "the pod has a veth while it runs"
    member = d.sdk().containers.run("busybox", ["sleep", "300"], detach=True, network_mode=f"container:{pod_id}",
                                    labels={"io.dockyard.cri.sandbox-id": pod_id})
    runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    s = status(runtime, pod_id).status
    assert (s.state, s.network.ip) == (pb.SANDBOX_NOTREADY, "")
    member.reload()
    assert member.status == "exited"  # the pod's containers stop with it
    assert not os.path.exists(f"/proc/{pid}")
    assert os.listdir(netns_dir) == [] and d.veths() == []
    runtime.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))  # again: no error
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert pod_id not in {p.id for p in runtime.ListPodSandbox(pb.ListPodSandboxRequest()).items}
    assert [c.id for c in d.sdk().containers.list(all=True) if c.id in (pod_id, member.id)] == []
    assert leaks.mounts_under(d.base) == []
    assert leaks.cgroups_under(d.cgroup_parent, remove_empty=False) == []
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))  # again: no error


def test_remove_of_a_running_pod_takes_its_containers(runtime, cri_daemon):
    pod_id = run(runtime, pod_config())
    member = cri_daemon.sdk().containers.run("busybox", ["sleep", "300"], detach=True,
                                             network_mode=f"container:{pod_id}",
                                             labels={"io.dockyard.cri.sandbox-id": pod_id})
    runtime.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    left = {c.id for c in cri_daemon.sdk().containers.list(all=True)}
    assert pod_id not in left and member.id not in left
    assert cri_daemon.veths() == []


# --- what pods add to the engine -----------------------------------------------------------------
def test_a_pod_container_joins_the_sandbox_uts_namespace(runtime, cri_daemon):
    pod_id = run(runtime, pod_config(hostname="shared-name"))
    client = cri_daemon.sdk()
    try:
        member = client.containers.run("busybox", ["sleep", "300"], detach=True, network_mode=f"container:{pod_id}",
                                       labels={"io.dockyard.cri.sandbox-id": pod_id})
        other = client.containers.run("busybox", ["sleep", "300"], detach=True, network_mode=f"container:{pod_id}")
        infra = ns_of(infra_pid(runtime, pod_id))
        mine = ns_of(client.api.inspect_container(member.id)["State"]["Pid"])
        docker = ns_of(client.api.inspect_container(other.id)["State"]["Pid"])
        assert mine["uts"] == infra["uts"] and mine["net"] == infra["net"]
        assert docker["uts"] != infra["uts"] and docker["net"] == infra["net"]  # Docker's container: mode unchanged
        assert member.exec_run("hostname").output.decode().strip() == "shared-name"
        other.remove(force=True)
    finally:
        remove(runtime, pod_id)


def test_a_kubelet_cgroup_parent(runtime, cri_daemon):
    d = cri_daemon
    parent = f"/{d.cgroup_parent}/kubepods/besteffort/pod{uuid.uuid4().hex[:8]}"
    pod_id = run(runtime, pod_config(linux=pb.LinuxPodSandboxConfig(cgroup_parent=parent)))
    try:
        with open(f"/proc/{infra_pid(runtime, pod_id)}/cgroup") as fh:
            memory = next(line.split(":", 2)[2].strip() for line in fh if ":memory:" in line)
        assert memory == f"{parent}/{pod_id}"
    finally:
        remove(runtime, pod_id)
        for hier in os.listdir(leaks.CGROUP_ROOT):  # the kubelet's pod cgroup is the kubelet's to remove
            for rel in (parent, os.path.dirname(parent), os.path.dirname(os.path.dirname(parent))):
                path = os.path.join(leaks.CGROUP_ROOT, hier, rel.strip("/"))
                if os.path.isdir(path):
                    os.rmdir(path)


def test_kubelet_cgroup_parents_in_both_formats():
    assert sandbox_config.cgroup_parent("/kubepods/burstable/pod1") == "/kubepods/burstable/pod1"
    assert sandbox_config.cgroup_parent("kubepods-burstable-pod1.slice") == \
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
    assert sandbox_config.cgroup_parent("") == ""


def test_oom_score_adj_is_clamped_to_the_daemons_own():
    with open("/proc/self/oom_score_adj") as fh:
        own = int(fh.read())
    with open("/proc/self/status") as fh:
        may_lower = int(next(x for x in fh if x.startswith("CapEff:")).split()[1], 16) >> 24 & 1
    assert sandbox_config.clamp_oom_score_adj(own + 5) == own + 5
    assert sandbox_config.clamp_oom_score_adj(-998) == (-998 if may_lower else max(own, -998))


# --- stats ------------------------------------------------------------------------------------------
def test_pod_stats(runtime, cri_daemon):
    config = pod_config(labels={"stats": "yes"})
    pod_id = run(runtime, config)
    member = cri_daemon.sdk().containers.run("busybox", ["sleep", "300"], detach=True,
                                             network_mode=f"container:{pod_id}",
                                             labels={"io.dockyard.cri.sandbox-id": pod_id,
                                                     "io.dockyard.cri.metadata": '{"name": "app", "attempt": 2}'})
    try:
        s = runtime.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
        assert (s.attributes.id, s.attributes.metadata, dict(s.attributes.labels)) == \
            (pod_id, config.metadata, {"stats": "yes"})
        linux = s.linux
        assert linux.cpu.usage_core_nano_seconds.value > 0 and linux.cpu.timestamp > 0
        assert linux.memory.working_set_bytes.value > 0
        assert linux.process.process_count.value == 2  # catatonit and sleep
        assert linux.network.default_interface.name == "eth0"
        assert [(c.attributes.id, c.attributes.metadata.name, c.attributes.metadata.attempt)
                for c in linux.containers] == [(member.id, "app", 2)]
        again = runtime.PodSandboxStats(pb.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
        assert again.linux.cpu.HasField("usage_nano_cores")  # a rate, from two samples
        listed = runtime.ListPodSandboxStats(pb.ListPodSandboxStatsRequest(
            filter=pb.PodSandboxStatsFilter(label_selector={"stats": "yes"}))).stats
        assert [x.attributes.id for x in listed] == [pod_id]
    finally:
        remove(runtime, pod_id)


# --- crictl --------------------------------------------------------------------------------------------
def test_crictl_runp_pods_inspectp_stopp_rmp(cri_daemon, tmp_path):
    d = cri_daemon
    name = uniq("crictl-")
    config = tmp_path / "pod.json"
    config.write_text(json.dumps({"metadata": {"name": name, "namespace": "default", "uid": uniq("uid-"),
                                               "attempt": 1},
                                  "hostname": "crictl-pod", "log_directory": str(tmp_path),
                                  "dns_config": {"servers": ["10.96.0.10"]}, "linux": {}}))
    pod_id = ok(d.crictl("runp", str(config))).strip()
    assert len(pod_id) == 64
    assert ok(d.crictl("pods", "-q", "--name", name)).split() == [pod_id]
    out = ok(d.crictl("pods", "--id", pod_id[:12]))
    assert name in out and "Ready" in out
    inspect = json.loads(ok(d.crictl("inspectp", pod_id)))
    assert inspect["status"]["state"] == "SANDBOX_READY" and inspect["status"]["network"]["ip"]
    assert inspect["info"]["pid"] > 0 and inspect["info"]["hostname"] == "crictl-pod"
    ok(d.crictl("stopp", pod_id))
    assert "NotReady" in ok(d.crictl("pods", "--id", pod_id))
    ok(d.crictl("rmp", pod_id))
    assert ok(d.crictl("pods", "-q", "--name", name)).split() == []
