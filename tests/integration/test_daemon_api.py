"""The daemon's Docker Engine API, driven by the docker SDK and raw HTTP.

Real containers: the session daemon runs them with the configured drivers
(overlay or vfs storage, native exec) in real namespaces.
"""

import gzip
import json
import os
import time
import uuid

import docker
import pytest
from dockyard.testing.daemon import http

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def raw(daemon, method, path, body=None):
    """One HTTP request on the daemon's socket; returns (status, parsed JSON or bytes)."""
    data = json.dumps(body).encode() if body is not None else b""
    status, _, payload = http(daemon.sock, method, path, data, {"Content-Type": "application/json"})
    try:
        return status, json.loads(payload)
    except ValueError:
        return status, payload


@pytest.fixture(scope="module")
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


def name():
    return f"t-{uuid.uuid4().hex[:10]}"


def test_ping_version_info(client):
    assert client.ping() is True
    v = client.version()
    assert v["ApiVersion"] == "1.41" and v["MinAPIVersion"] == "1.24"
    info = client.info()
    assert info["Driver"] in ("overlay", "vfs")
    assert info["Drivers"]["exec"] == "native"
    assert set(info["Drivers"]["network"]) >= {"none", "host"}


def test_versioned_paths_and_docker_errors(daemon):
    assert raw(daemon, "GET", "/v1.41/_ping")[0] == 200
    status, body = raw(daemon, "GET", "/v1.12/version")
    assert status == 400 and "too old" in body["message"]
    status, body = raw(daemon, "GET", "/v1.41/containers/nope-nope/json")
    assert status == 404 and body == {"message": "No such container: nope-nope"}
    status, body = raw(daemon, "POST", "/containers/create?name=bad%20name", {"Image": "busybox", "Cmd": ["true"]})
    assert status == 400 and "Invalid container name" in body["message"]
    status, body = raw(daemon, "POST", "/containers/create", {"Image": "no-such-image", "Cmd": ["true"]})
    assert status == 404 and "No such image" in body["message"]
    status, body = raw(daemon, "POST", "/containers/create", {"Cmd": ["true"]})
    assert status == 400 and "image" in body["message"].lower()
    status, body = raw(daemon, "POST", "/containers/create", b"{not json" and None)
    assert status == 400


def test_images_listed_and_inspected(client):
    img = client.images.get("busybox")
    assert "busybox:latest" in img.tags
    assert img.id.startswith("sha256:") and len(img.id) == 71
    attrs = img.attrs
    assert attrs["RootFS"]["Type"] == "layers" and len(attrs["RootFS"]["Layers"]) == 1
    assert any("busybox:latest" in i.tags for i in client.images.list())


def test_run_prints_output_and_exit_code(client):
    out = client.containers.run("busybox", ["echo", "hi"], remove=True)
    assert out == b"hi\n"
    c = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 3"], detach=True, name=name())
    assert c.wait(timeout=30)["StatusCode"] == 3
    assert c.logs(stdout=True, stderr=False) == b"out\n"
    assert c.logs(stdout=False, stderr=True) == b"err\n"
    c.reload()
    assert c.attrs["State"]["Status"] == "exited" and c.attrs["State"]["ExitCode"] == 3
    c.remove()


def test_isolation_hostname_env_workdir(client):
    script = "echo pid=$$; hostname; echo $FOO; pwd; ls /proc | grep -c '^[0-9]'; cat /proc/net/dev | tail -n +3 | cut -d: -f1"
    out = client.containers.run("busybox", ["sh", "-c", script], hostname="boxy",
                                environment={"FOO": "bar"}, working_dir="/tmp", remove=True,
                                network_mode="none").decode().split()
    assert out[0] == "pid=1"
    assert out[1:4] == ["boxy", "bar", "/tmp"]
    assert int(out[4]) <= 3  # only the container's own processes
    assert out[5:] == ["lo"]


def _host_ifaces():
    with open("/proc/net/dev") as fh:
        return {line.split(":")[0].strip() for line in fh.read().splitlines()[2:]}


def test_host_network_sees_host_interfaces(client):
    # other test sessions add and remove veths meanwhile: the container must see what the
    # host had throughout
    before = _host_ifaces()
    out = client.containers.run("busybox", ["cat", "/proc/net/dev"], network_mode="host", remove=True).decode()
    after = _host_ifaces()
    seen = {line.split(":")[0].strip() for line in out.splitlines()[2:]}
    assert before & after <= seen, (seen, before, after)
    # anything else came and went in between: another session's container's veth or bridge
    assert all(n.startswith(("veth", "dy", "br-")) for n in seen - (before | after)), (seen, before, after)
    assert "lo" in seen and len(seen) > 1  # the host's, not a namespace of its own


def test_missing_executable_is_a_clear_error(client, daemon):
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.run("busybox", ["no-such-binary"], name=name())
    assert "no-such-binary" in str(err.value) and "not found" in str(err.value)
    for c in client.containers.list(all=True, filters={"status": "created"}):
        c.remove(force=True)


def test_stop_kill_and_force_remove(client, daemon):
    c = client.containers.run("busybox", ["sleep", "100"], detach=True, name=name())
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] > 0
    pid = c.attrs["State"]["Pid"]
    started = time.monotonic()
    c.stop(timeout=1)  # sleep as pid 1 ignores SIGTERM: SIGKILL after 1 s
    assert time.monotonic() - started < 10
    c.reload()
    assert c.attrs["State"]["ExitCode"] == 137 and not os.path.exists(f"/proc/{pid}"), c.attrs["State"]
    c.start()
    c.kill(signal="SIGKILL")
    assert c.wait(timeout=30)["StatusCode"] == 137
    c.start()
    with pytest.raises(docker.errors.APIError) as err:
        c.remove()
    assert err.value.status_code == 409
    c.remove(force=True)
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(c.id)


def test_name_conflict_and_list_filters(client):
    n = name()
    c = client.containers.create("busybox", ["true"], name=n)
    with pytest.raises(docker.errors.APIError) as err:
        client.containers.create("busybox", ["true"], name=n)
    assert err.value.status_code == 409 and "already in use" in str(err.value)
    listed = client.containers.list(all=True, filters={"name": n})
    assert [x.id for x in listed] == [c.id]
    assert c.id not in [x.id for x in client.containers.list()]  # not running
    c.remove()


def test_import_gzip_and_rmi_rules(client, daemon, busybox_tar, tmp_path):
    gz = tmp_path / "bb.tar.gz"
    gz.write_bytes(gzip.compress(busybox_tar.read_bytes()))
    tag = f"imported-{uuid.uuid4().hex[:6]}:v1"
    res = daemon.cli("import", str(gz), tag, "--change", "CMD [\"echo\", \"from-change\"]")
    assert res.returncode == 0, res.stderr
    img = client.images.get(tag)
    assert img.attrs["Config"]["Cmd"] == ["echo", "from-change"]
    assert client.containers.run(tag, remove=True) == b"from-change\n"
    c = client.containers.create(tag, name=name())
    with pytest.raises(docker.errors.APIError) as err:
        client.images.remove(tag)
    assert err.value.status_code == 409
    c.remove()
    client.images.remove(tag)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)


def test_truncated_import_leaves_nothing(daemon, client, busybox_tar, tmp_path):
    before = {i.id for i in client.images.list(all=True)}
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(gzip.compress(busybox_tar.read_bytes())[:5000])
    res = daemon.cli("import", str(bad), "broken:latest")
    assert res.returncode != 0
    assert b"corrupt" in res.stderr or b"truncated" in res.stderr
    assert {i.id for i in client.images.list(all=True)} == before
    assert not os.listdir(daemon.data_root / "tmp")
