"""Other clients around the same registry and daemon: skopeo pushes what Dockyard
pulls and runs (docker-archive, OCI layouts, zstd layers) and copies back what
Dockyard pushes with equal digests; the real docker CLI and the docker SDK pull
and push through our API's JSON progress stream; the dockyard CLI's progress
(plain lines off a terminal, rich bars on one).
"""

import hashlib
import json
import os
import subprocess

import pytest
from dockyard.testing.registry_content import (
    get_manifest,
    registry_daemon,
    stop_daemon,
    system_check,
    tar_layer,
)
from registry_common import registry_fixture, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")



reg = registry_fixture("creg-")


@pytest.fixture(scope="module")
def dy(session_root, busybox_tar, reg, zreg):
    d = registry_daemon(session_root / uniq("cd-"), [reg.host, zreg.host], busybox_tar)
    yield d
    assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def archive(dy, session_root):
    path = session_root / uniq("bb-archive-") / "bb.tar"
    path.parent.mkdir()
    ok(dy.cli("save", "-o", str(path), "busybox"))
    return path


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def skopeo(*args):
    res = subprocess.run(["skopeo", *args], capture_output=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def run_echo(d, ref):
    res = d.docker("run", "--rm", ref, "echo", "hello from", ref.rsplit("/", 1)[1])
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode().strip()


zreg = registry_fixture("zreg-", "A registry of its own for zstd: skopeo's blob-info cache would reuse the gzip "
                        "layer it pushed to ``reg`` before instead of compressing it again.")


@pytest.mark.parametrize("how", ["docker-archive", "oci-layout", "zstd"])
def test_dockyard_pulls_and_runs_what_skopeo_pushed(dy, reg, zreg, archive, tmp_path, how):
    if how == "zstd":
        reg = zreg
    repo = f"{uniq()}/sk"
    dest = f"docker://{reg.host}/{repo}:v1"
    if how == "docker-archive":
        skopeo("copy", "--dest-tls-verify=false", f"docker-archive:{archive}", dest)
    elif how == "oci-layout":
        skopeo("copy", f"docker-archive:{archive}", f"oci:{tmp_path / 'layout'}:v1")
        skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path / 'layout'}:v1", dest)
    else:
        skopeo("copy", "--dest-tls-verify=false", "--format", "oci", "--dest-compress-format", "zstd",
               f"docker-archive:{archive}", dest)
    manifest, _ = get_manifest(reg.url, repo, "v1")
    if how == "zstd":
        assert json.loads(manifest)["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    ref = f"{reg.host}/{repo}:v1"
    ok(dy.cli("pull", ref))
    got = dy.sdk().api.inspect_image(ref)
    assert f"{reg.host}/{repo}@{sha(manifest)}" in got["RepoDigests"]  # same config as an earlier case: one image
    assert got["RootFS"]["Layers"] == dy.sdk().api.inspect_image("busybox")["RootFS"]["Layers"]
    assert run_echo(dy, ref) == "hello from sk:v1"
    assert system_check(dy) == []


def test_skopeo_copies_back_what_dockyard_pushed(dy, reg, tmp_path):
    repo = f"{uniq()}/back"
    ref = f"{reg.host}/{repo}:v1"
    ok(dy.cli("tag", "busybox", ref))
    out = ok(dy.cli("push", ref))
    digest = out.split("digest: ")[1].split()[0]
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{ref}"))
    assert info["Digest"] == digest and info["Architecture"] and info["Os"] == "linux"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}").encode()
    assert sha(raw) == digest
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"dir:{tmp_path / 'dir'}")
    copied = (tmp_path / "dir" / "manifest.json").read_bytes()
    assert sha(copied) == digest
    doc = json.loads(copied)
    image = dy.sdk().api.inspect_image(ref)
    assert doc["config"]["digest"] == image["Id"]
    for desc in [doc["config"], *doc["layers"]]:
        assert sha((tmp_path / "dir" / desc["digest"][7:]).read_bytes()) == desc["digest"]
    skopeo("copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{tmp_path / 'oci'}:v1")
    index = json.loads((tmp_path / "oci" / "index.json").read_text())
    oci_manifest = json.loads((tmp_path / "oci" / "blobs" / "sha256" /
                               index["manifests"][0]["digest"][7:]).read_text())
    assert [x["digest"] for x in oci_manifest["layers"]] == [x["digest"] for x in doc["layers"]]


def test_docker_cli_pull_and_push_through_our_daemon(dy, reg):
    repo = f"{reg.host}/{uniq()}/dk"
    assert dy.docker("tag", "busybox", f"{repo}:v1").returncode == 0
    res = dy.docker("push", f"{repo}:v1")
    assert res.returncode == 0, res.stderr.decode()
    out = res.stdout.decode()
    assert f"The push refers to repository [{repo}]" in out and "v1: digest: sha256:" in out
    assert dy.docker("rmi", f"{repo}:v1").returncode == 0
    res = dy.docker("pull", f"{repo}:v1")
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "Pulling from" in out and "Digest: sha256:" in out and f"Downloaded newer image for {repo}:v1" in out
    assert out.strip().endswith(f"{repo}:v1")  # docker pull prints the reference last
    # on a terminal the docker CLI draws its bars from our progress messages
    fresh = f"{reg.host}/{uniq()}/dk2"
    assert dy.docker("tag", "busybox", f"{fresh}:v1").returncode == 0
    cmd = f"docker -H {dy.host} push {fresh}:v1"
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120, check=False,
                         env={**os.environ, "DOCKER_CONFIG": str(dy.base / "docker-config")})
    assert res.returncode == 0, res.stdout.decode(errors="replace")
    assert b"digest: sha256:" in res.stdout and b"\x1b[1A" in res.stdout  # cursor moves: lines redrawn


def test_docker_sdk_pull_and_push(dy, reg, tmp_path):
    client = dy.sdk()
    try:
        repo = f"{reg.host}/{uniq()}/sdk"
        layer = tmp_path / "layer.tar"
        layer.write_bytes(tar_layer({"random": os.urandom(1 << 20)}))  # a layer the registry has not seen
        ok(dy.cli("import", str(layer), f"{repo}:v1"))
        messages = list(client.images.push(repo, tag="v1", stream=True, decode=True))
        assert not [m for m in messages if "error" in m], messages
        aux = [m["aux"] for m in messages if "aux" in m]
        assert aux and aux[0]["Tag"] == "v1" and aux[0]["Digest"].startswith("sha256:")
        bars = [m for m in messages if m.get("status") == "Pushing"]
        assert bars and all(m["progressDetail"]["total"] > 0 and m["progress"].startswith("[") for m in bars)
        client.images.remove(f"{repo}:v1")
        stream = list(client.api.pull(repo, tag="v1", stream=True, decode=True))
        assert stream[0] == {"status": "Pulling from " + repo.split("/", 1)[1], "id": "v1"}
        assert any(m.get("status", "").startswith("Digest: sha256:") for m in stream)
        client.images.remove(f"{repo}:v1")
        image = client.images.pull(repo, tag="v1")
        assert f"{repo}@{aux[0]['Digest']}" in image.attrs["RepoDigests"]
        assert image.attrs["RootFS"]["Layers"] == [sha(layer.read_bytes())]
    finally:
        client.close()


def test_dockyard_cli_progress_off_and_on_a_terminal(dy, reg, session_root):
    fresh = registry_daemon(session_root / uniq("prog-"), [reg.host])
    try:
        repo = f"{reg.host}/{uniq()}/prog"
        ok(dy.cli("tag", "busybox", f"{repo}:v1"))
        ok(dy.cli("push", f"{repo}:v1"))
        out = ok(fresh.cli("pull", f"{repo}:v1"))
        lines = out.splitlines()
        layer = dy.sdk().api.inspect_image("busybox")["RootFS"]["Layers"][0]
        assert lines[0] == f"v1: Pulling from {repo.split('/', 1)[1]}"
        steps = [line.split(": ", 1)[1] for line in lines if ": " in line and len(line.split(":")[0]) == 12]
        assert steps[0] == "Pulling fs layer" and "Download complete" in steps and steps[-1] == "Pull complete"
        assert not any("[=" in line for line in lines)  # no bars off a terminal
        assert lines[-1] == f"{repo}:v1" and layer
        ok(fresh.cli("rmi", f"{repo}:v1"))
        cmd = " ".join([*map(str, fresh.cli.__self__.args[:1]), "-m", "dockyard.cli.main", "-H", fresh.host,
                        "pull", f"{repo}:v1"])
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120, check=False,
                             env={**os.environ, "COLUMNS": "120"})
        text = res.stdout.decode(errors="replace")
        assert res.returncode == 0, text
        assert "Pull complete" in text and "━" in text  # rich's bar
    finally:
        assert stop_daemon(fresh) == []
