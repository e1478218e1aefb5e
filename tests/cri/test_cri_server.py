"""The CRI's gRPC server in a real daemon: its socket (where, which mode, refused
when another process serves it, replaced when stale, gone at shutdown, absent
with ``--no-cri``), and the RuntimeService's own RPCs — Version, Status (with a
CNI configuration and without), UpdateRuntimeConfig, and the two answered
UNIMPLEMENTED — through the generated stubs and through crictl.
"""

import json
import os
import socket
import stat
import uuid

import grpc
import pytest
from dockyard import __version__
from dockyard.cri.api import api_pb2 as pb
from dockyard.cri.api import api_pb2_grpc
from dockyard.testing.daemon import Daemon, ping
from dockyard.testing.registry_content import stop_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

CONFLIST = {"cniVersion": "1.0.0", "name": "dockyard-test", "plugins": [
    {"type": "bridge", "bridge": "dytestcni0", "isGateway": False, "ipam": {
        "type": "host-local", "ranges": [[{"subnet": "10.231.0.0/24"}]]}}]}


def uniq(prefix="cri-"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cni_dir(session_root):
    d = session_root / uniq("cni-")
    d.mkdir()
    return d


@pytest.fixture(scope="module")
def cri_daemon(session_root, cni_dir):
    d = Daemon(session_root / uniq(), extra_args=["--cni-conf-dir", str(cni_dir)]).start()
    yield d
    assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def runtime(cri_daemon):
    with grpc.insecure_channel(f"unix://{cri_daemon.cri_sock}") as channel:
        yield api_pb2_grpc.RuntimeServiceStub(channel)


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def conditions(runtime):
    return {c.type: c for c in runtime.Status(pb.StatusRequest()).status.conditions}


def test_the_socket_is_root_only_in_the_exec_root(cri_daemon):
    st = os.stat(cri_daemon.cri_sock)
    assert stat.S_ISSOCK(st.st_mode)
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, 0)
    assert os.path.dirname(cri_daemon.cri_sock) == str(cri_daemon.exec_root)
    assert cri_daemon.args[cri_daemon.args.index("--cri-socket") + 1] == cri_daemon.cri_sock


def test_version(runtime, cri_daemon):
    v = runtime.Version(pb.VersionRequest(version="v1"))
    assert (v.version, v.runtime_name, v.runtime_version, v.runtime_api_version) == \
        ("0.1.0", "dockyard", __version__, "v1")
    out = ok(cri_daemon.crictl("version"))
    assert "RuntimeName:  dockyard" in out and f"RuntimeVersion:  {__version__}" in out
    assert "RuntimeApiVersion:  v1" in out


def test_status_without_and_with_a_cni_configuration(runtime, cri_daemon, cni_dir):
    c = conditions(runtime)
    assert c["RuntimeReady"].status is True
    assert c["NetworkReady"].status is False
    assert c["NetworkReady"].reason == "NetworkPluginNotReady"
    assert str(cni_dir) in c["NetworkReady"].message
    conf = cni_dir / "10-test.conflist"
    conf.write_text(json.dumps(CONFLIST))
    try:
        ready = conditions(runtime)["NetworkReady"]
        # the configuration is found; ready once the pod network (driver cni) is there too
        assert str(cni_dir) not in ready.message
        if "cni" in cri_daemon.sdk().info()["Plugins"]["Network"]:
            assert ready.status is True, ready
        else:
            assert not ready.status and "cri-pods" in ready.message, ready
        info = json.loads(ok(cri_daemon.crictl("info")))
        assert info["cniconfig"]["files"] == ["10-test.conflist"]
        assert info["config"]["socket"] == cri_daemon.cri_sock
        assert {c["type"] for c in info["status"]["conditions"]} == {"RuntimeReady", "NetworkReady"}
    finally:
        conf.unlink()


def test_update_runtime_config_keeps_the_pod_cidr(runtime):
    cfg = pb.RuntimeConfig(network_config=pb.NetworkConfig(pod_cidr="10.88.0.0/16"))
    runtime.UpdateRuntimeConfig(pb.UpdateRuntimeConfigRequest(runtime_config=cfg))
    info = runtime.Status(pb.StatusRequest(verbose=True)).info
    assert json.loads(info["config"])["podCIDR"] == "10.88.0.0/16"
    assert runtime.Status(pb.StatusRequest()).info == {}  # only verbose calls get the info


def test_checkpoint_and_container_events_are_unimplemented(runtime):
    with pytest.raises(grpc.RpcError) as err:
        runtime.CheckpointContainer(pb.CheckpointContainerRequest(container_id="x", location="/tmp/x"))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with pytest.raises(grpc.RpcError) as err:
        list(runtime.GetContainerEvents(pb.GetEventsRequest()))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_a_served_cri_socket_is_refused(session_root, cri_daemon):
    other = Daemon(session_root / uniq(), extra_args=["--cri-socket", cri_daemon.cri_sock])
    with pytest.raises(RuntimeError, match="another process is serving on the CRI socket"):
        other.start()
    assert other.proc.returncode == 1
    assert not other.data_root.exists()  # refused before anything was made
    other.remove_network_objects()
    assert runtime_answers(cri_daemon.cri_sock)  # the first daemon still serves


def runtime_answers(path):
    with grpc.insecure_channel(f"unix://{path}") as channel:
        return api_pb2_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest(), timeout=10).runtime_name


def test_a_stale_socket_is_replaced_and_removed_at_shutdown(session_root):
    base = session_root / uniq()
    path = base / "run" / "cri.sock"
    path.parent.mkdir(parents=True)
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # bound, never listening: nobody answers
    dead.close()
    d = Daemon(base, extra_args=["--cri-socket", str(path)]).start()
    try:
        assert runtime_answers(str(path)) == "dockyard"
    finally:
        assert stop_daemon(d) == []
    assert not path.exists()


def test_a_missing_socket_directory_is_made(session_root):
    base = session_root / uniq()
    path = base / "new" / "dir" / "cri.sock"
    d = Daemon(base, extra_args=["--cri-socket", str(path)]).start()
    try:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o755
        assert runtime_answers(str(path)) == "dockyard"
    finally:
        assert stop_daemon(d) == []


def test_no_cri(session_root):
    d = Daemon(session_root / uniq(), cri=False).start()
    try:
        assert "--no-cri" in d.args and d.cri_sock is None
        assert ping(d.sock)
        assert not [p for p in os.listdir(d.exec_root) if p.endswith(".sock")]
    finally:
        assert stop_daemon(d) == []
