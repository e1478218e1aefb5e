"""Pull and push against a real registry (Debian's docker-registry 2.8), seen
through a recording proxy: manifest negotiation (Docker schema 2, OCI, manifest
lists and OCI indexes with platform selection), gzip/zstd/plain layers, layers in
parallel and unpacked while they download, present layers skipped; pushes that
skip blobs the registry has, mount across repositories, upload monolithic or in
chunks, and pull back byte-identical into a fresh daemon.

Faults, auth and other clients have their own modules (test_registry_*.py).
"""

import os
import threading
import time

import pytest
from dockyard.testing.registry import Fault
from dockyard.testing.registry_content import (
    get_manifest,
    make_image,
    make_index,
    push_image,
    put_manifest,
    registry_daemon,
    snapshot,
    stop_daemon,
    system_check,
    tar_layer,
)

from registry_common import uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.fixture
def fresh(session_root, reg, proxy):
    """A daemon with no images at all: everything it pulls really downloads."""
    d = registry_daemon(session_root / uniq("fresh-"), [reg.host, proxy.host])
    yield d
    assert stop_daemon(d) == []


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def inspect(d, ref):
    client = d.sdk()
    try:
        return client.api.inspect_image(ref)
    finally:
        client.close()


def layer_gets(proxy, repo):
    return [r for r in proxy.seen("GET", f"/v2/{repo}/blobs/sha256:") if r["status"] in (200, 206)]


# --- push ----------------------------------------------------------------------------------------
def test_push_then_pull_into_a_fresh_daemon_is_byte_identical(dy, fresh, reg, proxy):
    repo = f"{uniq()}/bb"
    ref = f"{proxy.host}/{repo}:v1"
    ok(dy.cli("tag", "busybox", ref))
    proxy.reset()
    out = ok(dy.cli("push", ref))
    assert "Pushed" in out and "v1: digest: sha256:" in out
    digest = out.split("digest: ")[1].split()[0]
    manifest, ctype = get_manifest(reg.url, repo, "v1")
    assert ctype == "application/vnd.docker.distribution.manifest.v2+json"
    import hashlib
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == digest
    # monolithic: one PUT with the whole blob, no PATCH (the default chunk is 16 MiB)
    assert proxy.seen("PATCH") == []
    puts = [r for r in proxy.seen("PUT", "/blobs/uploads/") if r["status"] == 201]
    assert len(puts) == 2 and max(r["length"] for r in puts) > 500_000
    pushed = inspect(dy, ref)
    assert f"{proxy.host}/{repo}@{digest}" in pushed["RepoDigests"]

    proxy.reset()
    out = ok(fresh.cli("pull", ref))
    assert "Pull complete" in out and f"Digest: {digest}" in out
    pulled = inspect(fresh, ref)
    wanted = {pulled["Id"]} | {layer["digest"] for layer in _layers(reg, repo, "v1")}
    assert {r["path"].rsplit("/", 1)[1] for r in layer_gets(proxy, repo)} == wanted  # really downloaded
    assert pulled["Id"] == pushed["Id"]  # the config digest
    assert pulled["RootFS"]["Layers"] == pushed["RootFS"]["Layers"]
    assert pulled["RepoDigests"] == [f"{proxy.host}/{repo}@{digest}"]
    assert system_check(fresh) == []


def test_push_skips_blobs_the_registry_has(dy, proxy):
    ref = f"{proxy.host}/{uniq()}/bb:one"
    ok(dy.cli("tag", "busybox", ref))
    ok(dy.cli("push", ref))
    proxy.reset()
    out = ok(dy.cli("push", ref))
    assert "Layer already exists" in out
    heads = proxy.seen("HEAD", "/blobs/sha256:")
    assert len(heads) == 2 and all(r["status"] == 200 for r in heads)
    assert proxy.seen("POST") == [] and proxy.seen("PATCH") == []
    assert [r["method"] for r in proxy.seen("PUT")] == ["PUT"]  # the manifest only


def test_push_to_a_second_repository_mounts_the_layer(dy, reg, proxy):
    first, second = f"{uniq()}/bb", f"{uniq()}/bb"
    for repo in (first, second):
        ok(dy.cli("tag", "busybox", f"{proxy.host}/{repo}:m"))
    ok(dy.cli("push", f"{proxy.host}/{first}:m"))
    proxy.reset()
    out = ok(dy.cli("push", f"{proxy.host}/{second}:m"))
    assert "Mounted from " in out  # from `first` or any repository pushed earlier in this module
    source = out.split("Mounted from ")[1].split()[0]
    mounts = proxy.seen("POST", f"/v2/{second}/blobs/uploads/?mount=")
    assert len(mounts) == 1 and mounts[0]["status"] == 201 and "from=" + source.replace("/", "%2F") in mounts[0]["path"]
    layer = inspect(dy, f"{proxy.host}/{first}:m")
    big = [r for r in proxy.seen("PUT", "/blobs/uploads/") + proxy.seen("PATCH", "/blobs/uploads/")
           if r["length"] > 10_000]
    assert big == [], "the layer was uploaded again instead of mounted"
    assert get_manifest(reg.url, second, "m")[0] == get_manifest(reg.url, first, "m")[0]
    assert layer["RepoDigests"]


def test_chunked_upload_pulls_back_identical(session_root, busybox_tar, reg, proxy, fresh):
    chunky = registry_daemon(session_root / uniq("chunky-"), [proxy.host], busybox_tar,
                             ["--registry-upload-chunk", str(256 << 10)])
    try:
        repo = f"{uniq()}/bb"
        ref = f"{proxy.host}/{repo}:c"
        ok(chunky.cli("tag", "busybox", ref))
        proxy.reset()
        out = ok(chunky.cli("push", ref))
        digest = out.split("digest: ")[1].split()[0]
        patches = proxy.seen("PATCH", f"/v2/{repo}/blobs/uploads/")
        assert len(patches) >= 4 and all(r["status"] == 202 for r in patches)
        ranges = [r["headers"].get("Content-Range") for r in patches]
        assert ranges[0] == f"0-{(256 << 10) - 1}" and all(ranges)
        assert sum(r["length"] for r in patches) == sum(layer["size"] for layer in _layers(reg, repo, "c"))
        out = ok(fresh.cli("pull", ref))
        assert f"Digest: {digest}" in out
        assert inspect(fresh, ref)["Id"] == inspect(chunky, ref)["Id"]
    finally:
        assert stop_daemon(chunky) == []


def test_upload_broken_while_compressing_is_sent_again_whole(session_root, busybox_tar, reg, proxy, fresh,
                                                              tmp_path):
    """A new layer uploads while it is compressed; a 500 on its first chunk drops that
    upload and sends the finished blob again (chunked, with the usual retries)."""
    chunky = registry_daemon(session_root / uniq("stream-"), [proxy.host], busybox_tar,
                             ["--registry-upload-chunk", str(256 << 10)])
    try:
        repo = f"{uniq()}/new"
        ref = f"{proxy.host}/{repo}:s"
        layer = tmp_path / "layer.tar"
        layer.write_bytes(tar_layer({"random": os.urandom(1 << 20)}))  # ~1 MiB of gzip: four chunks
        ok(chunky.cli("import", str(layer), ref))
        proxy.reset()
        fault = proxy.add(Fault(f"/v2/{repo}/blobs/uploads/", "status", method="PATCH", times=1, status=500))
        out = ok(chunky.cli("push", ref))
        assert fault.hits == 1 and "Pushed" in out
        starts = [r for r in proxy.seen("POST", f"/v2/{repo}/blobs/uploads/") if r["status"] == 202]
        dropped = proxy.seen("DELETE", f"/v2/{repo}/blobs/uploads/")
        assert len(starts) == 3 and len(dropped) == 1  # the layer twice (one dropped), the config
        patches = [r for r in proxy.seen("PATCH", f"/v2/{repo}/blobs/uploads/") if r["status"] == 202]
        blob = _layers(reg, repo, "s")[0]
        assert sum(r["length"] for r in patches) == blob["size"]  # the second upload sent it all
        out = ok(fresh.cli("pull", ref))
        assert inspect(fresh, ref)["Id"] == inspect(chunky, ref)["Id"]
        assert system_check(chunky) == [] and snapshot(chunky)["ingest"] == []
    finally:
        assert stop_daemon(chunky) == []


def _layers(reg, repo, tag):
    import json
    return json.loads(get_manifest(reg.url, repo, tag)[0])["layers"]


# --- pull: negotiation and formats ---------------------------------------------------------------
@pytest.mark.parametrize("oci,compression", [(False, "gzip"), (True, "gzip"), (True, "zstd"), (True, None)],
                         ids=["docker-gzip", "oci-gzip", "oci-zstd", "oci-plain"])
def test_pull_manifest_kinds_and_layer_compressions(dy, reg, proxy, base_tar, oci, compression):
    repo = f"{uniq()}/img"
    top = tar_layer({"etc/flavour": f"{oci}-{compression}\n".encode()})
    img = make_image([base_tar, top], oci=oci, compression=compression)
    push_image(reg.url, repo, "v1", img)
    before = snapshot(dy)
    ok(dy.cli("pull", f"{proxy.host}/{repo}:v1"))
    got = inspect(dy, f"{proxy.host}/{repo}:v1")
    assert got["Id"] == img.config_digest
    assert got["RootFS"]["Layers"] == img.diff_ids
    assert got["RepoDigests"] == [f"{proxy.host}/{repo}@{img.digest}"]
    assert snapshot(dy)["tmp"] == before["tmp"] and snapshot(dy)["ingest"] == before["ingest"]
    res = dy.docker("run", "--rm", f"{proxy.host}/{repo}:v1", "cat", "/etc/flavour")
    assert res.stdout.decode() == f"{oci}-{compression}\n", res.stderr.decode()


@pytest.mark.parametrize("oci", [True, False], ids=["oci-index", "docker-list"])
def test_pull_index_selects_the_platform(dy, reg, proxy, base_tar, oci):
    repo = f"{uniq()}/multi"
    images = {}
    for arch in ("amd64", "arm64"):
        img = make_image([base_tar, tar_layer({"arch": arch.encode()})], oci=oci, arch=arch, labels={"arch": arch})
        push_image(reg.url, repo, f"only-{arch}", img)
        images[arch] = img
    idx = make_index([(images["arm64"], {"os": "linux", "architecture": "arm64", "variant": "v8"}),
                      (images["amd64"], {"os": "linux", "architecture": "amd64"})], oci=oci)
    assert put_manifest(reg.url, repo, "multi", idx.manifest, idx.media_type) == idx.digest
    ref = f"{proxy.host}/{repo}:multi"
    out = ok(dy.cli("pull", ref))
    assert f"Digest: {idx.digest}" in out
    got = inspect(dy, ref)
    assert got["Id"] == images["amd64"].config_digest  # this machine's platform
    assert f"{proxy.host}/{repo}@{idx.digest}" in got["RepoDigests"]
    ok(dy.cli("pull", "--platform", "linux/arm64", ref))
    assert inspect(dy, ref)["Id"] == images["arm64"].config_digest
    assert inspect(dy, ref)["Architecture"] == "arm64"
    before = snapshot(dy)
    res = dy.cli("pull", "--platform", "linux/s390x", ref)
    assert res.returncode != 0
    err = res.stderr.decode()
    assert "no matching manifest for linux/s390x" in err and "linux/amd64" in err and "linux/arm64/v8" in err
    assert snapshot(dy) == before


# --- pull: parallel, streaming, skipping -----------------------------------------------------------
def _big_layers(n, size):
    return [tar_layer({f"data/blob{i}": os.urandom(size)}) for i in range(n)]


def test_layers_download_in_parallel_and_unpack_while_downloading(fresh, reg, proxy, base_tar):
    repo = f"{uniq()}/par"
    img = make_image([base_tar] + _big_layers(3, 3 << 20))
    push_image(reg.url, repo, "v1", img)
    proxy.reset()
    proxy.add(Fault(f"/v2/{repo}/blobs/", "slow", method="GET", delay=0.05, chunk=128 << 10))
    seen_partial = []

    def watch():  # a layer's file grows in the storage driver while a blob is still an incomplete ingest
        storage, ingest = fresh.data_root / "storage", fresh.data_root / "content" / "ingest"
        while not done.is_set():
            try:
                tars = [p for p in storage.rglob("blob*") if p.is_file() and p.stat().st_size > 0]
                partial = [p for p in ingest.glob("pull-*") if 0 < p.stat().st_size] if ingest.is_dir() else []
            except FileNotFoundError:  # a staged layer or an ingest renamed while we walked it: look again
                continue
            if tars and partial:
                seen_partial.append((len(tars), len(partial)))
            time.sleep(0.05)

    done = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = ok(fresh.cli("pull", f"{proxy.host}/{repo}:v1", timeout=300))
    finally:
        done.set()
        watcher.join()
    assert "Pull complete" in out
    gets = [r for r in layer_gets(proxy, repo) if r["length"] == 0 and r["path"].split("/")[-1] != img.config_digest]
    assert len(gets) == 4
    overlap = max(sum(1 for o in gets if o["start"] < g["end"] and g["start"] < o["end"]) for g in gets)
    assert overlap >= 2, "layers were downloaded one after the other"
    assert seen_partial, "no layer was being unpacked while its download was still running"
    assert inspect(fresh, f"{proxy.host}/{repo}:v1")["RootFS"]["Layers"] == img.diff_ids
    assert list((fresh.data_root / "tmp").glob("pull-*")) == []


def test_layers_already_present_are_not_downloaded(fresh, reg, proxy, base_tar):
    repo = f"{uniq()}/share"
    shared = _big_layers(2, 200 << 10)
    first = make_image([base_tar] + shared)
    second = make_image([base_tar] + shared + [tar_layer({"new": b"layer"})])
    push_image(reg.url, repo, "one", first)
    push_image(reg.url, repo, "two", second)
    ok(fresh.cli("pull", f"{proxy.host}/{repo}:one"))
    proxy.reset()
    out = ok(fresh.cli("pull", f"{proxy.host}/{repo}:two"))
    assert out.count("Already exists") == 3
    fetched = {r["path"].rsplit("/", 1)[1] for r in layer_gets(proxy, repo)}
    assert fetched == {second.layers[-1]["digest"], second.config_digest}
    proxy.reset()
    out = ok(fresh.cli("pull", f"{proxy.host}/{repo}:two"))
    assert "Image is up to date" in out and layer_gets(proxy, repo) == []


def test_the_event_loop_answers_during_a_large_pull(fresh, reg, proxy, base_tar):
    repo = f"{uniq()}/slow"
    img = make_image([base_tar] + _big_layers(2, 4 << 20))
    push_image(reg.url, repo, "v1", img)
    proxy.add(Fault(f"/v2/{repo}/blobs/", "slow", method="GET", delay=0.05, chunk=64 << 10))
    result = {}
    puller = threading.Thread(target=lambda: result.setdefault("res", fresh.cli("pull", f"{proxy.host}/{repo}:v1",
                                                                               timeout=300)))
    puller.start()
    client = fresh.sdk()
    worst, pings = 0.0, 0
    try:
        while puller.is_alive():
            t0 = time.monotonic()
            assert client.ping()
            worst, pings = max(worst, time.monotonic() - t0), pings + 1
            time.sleep(0.1)
    finally:
        client.close()
        puller.join()
    ok(result["res"])
    assert pings >= 5
    assert worst < 5.0, f"/_ping took {worst:.1f}s while a pull ran"
