"""Pulls that go wrong, through a fault-injecting proxy in front of a real registry:
each ends with a clear error naming the problem, leaves no image, no dangling
image and no stray file in the data root's tmp/ and ingest/ (but the bytes of an
interrupted download, kept for the rerun), and ``system check`` stays clean.
Also: retries with backoff, resuming within a pull and by rerunning it.
"""

import json
import os

import pytest
from dockyard.testing.registry import Fault
from dockyard.testing.registry_content import (
    compress,
    digest,
    make_image,
    push_image,
    put_blob,
    put_manifest,
    snapshot,
    system_check,
    tar_layer,
)

from registry_common import uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")


@pytest.fixture(autouse=True)
def clean_proxy(proxy):
    proxy.reset()
    yield
    proxy.reset()


def big_image(base_tar, **kw):
    return make_image([base_tar, tar_layer({"data/big": os.urandom(3 << 20)})], **kw)


def fails(d, ref, *words):
    """Pull ``ref``, expect a failure whose message has every one of ``words``; the
    daemon's images, tmp/ and ingest/ are as before and ``system check`` is clean."""
    before = snapshot(d)
    res = d.cli("pull", ref, timeout=120)
    err = res.stderr.decode() + res.stdout.decode()
    assert res.returncode != 0, err
    for word in words:
        assert word in err, err
    assert snapshot(d) == before
    assert system_check(d) == []
    return err


def test_manifest_whose_digest_does_not_match(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/m"
    img = make_image([base_tar], labels={"k": "some value"})
    push_image(reg.url, repo, "v1", img)
    at = img.manifest.index(b"sha256:") + 10  # a hex digit: the JSON still parses
    proxy.add(Fault(f"/v2/{repo}/manifests/", "corrupt", method="GET", at=at))
    fails(dy, f"{proxy.host}/{repo}:v1", "digest mismatch", f"manifest for {proxy.host}/{repo}:v1")
    proxy.add(Fault(f"/v2/{repo}/manifests/", "corrupt", method="GET", at=at))
    fails(dy, f"{proxy.host}/{repo}@{img.digest}", "digest mismatch", img.digest)


@pytest.mark.parametrize("compression", [None, "gzip"], ids=["plain", "gzip"])
def test_layer_whose_digest_does_not_match(dy, reg, proxy, base_tar, compression):
    repo = f"{uniq()}/b"
    img = big_image(base_tar, oci=True, compression=compression)
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]["digest"]
    proxy.add(Fault(f"/blobs/{layer}", "corrupt", method="GET", at=img.layers[-1]["size"] - 30))
    err = fails(dy, f"{proxy.host}/{repo}:v1", f"layer {layer}")
    assert "digest mismatch" in err or "corrupt gzip stream" in err


def test_layer_truncated_in_the_registry(dy, reg, base_tar):
    repo = f"{uniq()}/t"
    good = big_image(base_tar)
    whole = good.blobs[good.layers[-1]["digest"]]
    cut = whole[:len(whole) // 2]
    put_blob(reg.url, repo, good.blobs[good.layers[0]["digest"]])
    put_blob(reg.url, repo, cut)
    doc = json.loads(good.manifest)
    doc["layers"][-1].update(digest=digest(cut), size=len(cut))
    put_blob(reg.url, repo, good.config)
    put_manifest(reg.url, repo, "v1", json.dumps(doc).encode(), good.media_type)
    fails(dy, f"{reg.host}/{repo}:v1", f"layer {digest(cut)}", "truncated")


def test_layer_whose_diff_id_does_not_match(dy, reg, base_tar):
    repo = f"{uniq()}/d"
    wrong = "sha256:" + "ab" * 32
    img = make_image([base_tar, tar_layer({"x": b"y"})], diff_ids=[digest(base_tar), wrong])
    push_image(reg.url, repo, "v1", img)
    fails(dy, f"{reg.host}/{repo}:v1", img.layers[1]["digest"], wrong, "diff ID")


def test_registry_answering_500_mid_pull(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/e"
    img = big_image(base_tar)
    push_image(reg.url, repo, "v1", img)
    proxy.add(Fault(f"/blobs/{img.layers[-1]['digest']}", "status", method="GET", status=500))
    fails(dy, f"{proxy.host}/{repo}:v1", "500", "after retries", img.layers[-1]["digest"])
    assert len(proxy.seen("GET", img.layers[-1]["digest"])) == 5  # the first try and 4 retries


def test_transient_500s_are_retried_with_backoff(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/r"
    img = big_image(base_tar)
    push_image(reg.url, repo, "v1", img)
    proxy.add(Fault(f"/blobs/{img.layers[-1]['digest']}", "status", method="GET", status=503, times=2))
    proxy.add(Fault(f"/v2/{repo}/manifests/", "status", method="GET", status=502, times=1))
    res = dy.cli("pull", f"{proxy.host}/{repo}:v1", timeout=120)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode()
    assert "Retrying in 1 second" in out and "Pull complete" in out
    gets = proxy.seen("GET", img.layers[-1]["digest"])
    assert [r["status"] for r in gets] == [503, 503, 200]
    assert gets[2]["start"] - gets[0]["start"] > 1.0  # 0.5 s, then 1 s (with jitter)
    assert system_check(dy) == []


def test_retry_after_is_honoured_by_pull_and_push(dy, reg, proxy, base_tar):
    """A registry that says how long to wait (429/503 with Retry-After) is waited
    for that long, not the 0.5 s our own backoff starts with, by a pull and a push
    alike (they share the one backoff policy)."""
    repo = f"{uniq()}/ra"
    img = big_image(base_tar)
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]["digest"]
    proxy.add(Fault(f"/blobs/{layer}", "status", method="GET", status=503, times=1, headers={"Retry-After": "2"}))
    res = dy.cli("pull", f"{proxy.host}/{repo}:v1", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert "Retrying in 2 seconds" in res.stdout.decode()
    gets = proxy.seen("GET", layer)
    assert [r["status"] for r in gets] == [503, 200]
    assert gets[1]["start"] - gets[0]["start"] >= 1.9

    proxy.reset()
    ref = f"{proxy.host}/{uniq()}/ra:pushed"
    assert dy.cli("tag", f"{proxy.host}/{repo}:v1", ref).returncode == 0
    proxy.add(Fault(r"/blobs/uploads/$", "status", method="POST", status=429, times=1, headers={"Retry-After": "1"}))
    res = dy.cli("push", ref, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    posts = [r for r in proxy.seen("POST", "/blobs/uploads/") if "mount=" not in r["path"]]
    assert posts[0]["status"] == 429 and posts[1]["start"] - posts[0]["start"] >= 0.95
    assert system_check(dy) == []


def test_connection_lost_mid_layer_resumes_with_a_range_request(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/c"
    img = big_image(base_tar)
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]
    proxy.add(Fault(f"/blobs/{layer['digest']}", "cut", method="GET", times=1, at=layer["size"] // 3))
    res = dy.cli("pull", f"{proxy.host}/{repo}:v1", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    gets = proxy.seen("GET", layer["digest"])
    assert len(gets) == 2 and gets[1]["status"] == 206
    start = int(gets[1]["headers"]["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= layer["size"] // 3
    assert dy.sdk().api.inspect_image(f"{proxy.host}/{repo}:v1")["Id"] == img.config_digest


@pytest.mark.slow
def test_interrupted_pull_resumes_when_rerun(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/i"
    img = big_image(base_tar)
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]
    proxy.add(Fault(f"/blobs/{layer['digest']}", "cut", method="GET", times=1, at=layer["size"] // 2))
    proxy.add(Fault(f"/blobs/{layer['digest']}", "status", method="GET", status=500))
    before = snapshot(dy)
    res = dy.cli("pull", f"{proxy.host}/{repo}:v1", timeout=120)
    assert res.returncode != 0
    after = snapshot(dy)
    assert after["images"] == before["images"] and after["tmp"] == before["tmp"]
    kept = sorted(set(after["ingest"]) - set(before["ingest"]))
    assert kept == [f"pull-{layer['digest'][7:]}"]
    have = (dy.data_root / "content" / "ingest" / kept[0]).stat().st_size
    assert 0 < have <= layer["size"] // 2
    assert system_check(dy) == []

    proxy.reset()
    res = dy.cli("pull", f"{proxy.host}/{repo}:v1", timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    gets = proxy.seen("GET", layer["digest"])
    assert len(gets) == 1 and gets[0]["status"] == 206 and gets[0]["headers"]["Range"] == f"bytes={have}-"
    assert snapshot(dy)["ingest"] == before["ingest"]
    assert dy.sdk().api.inspect_image(f"{proxy.host}/{repo}:v1")["RootFS"]["Layers"] == img.diff_ids


def test_unknown_media_types(dy, reg, base_tar):
    repo = f"{uniq()}/u"
    odd_layer = make_image([base_tar], oci=True, layer_type="application/x-weird-layer")
    push_image(reg.url, repo, "layer", odd_layer)
    fails(dy, f"{reg.host}/{repo}:layer", "unknown media type 'application/x-weird-layer'")
    artifact = make_image([base_tar], oci=True)
    doc = json.loads(artifact.manifest)
    doc["config"]["mediaType"] = "application/vnd.example.artifact.config+json"
    push_image(reg.url, repo, "artifact", artifact)
    put_manifest(reg.url, repo, "artifact", json.dumps(doc).encode(), artifact.media_type)
    fails(dy, f"{reg.host}/{repo}:artifact", "application/vnd.example.artifact.config+json")


def test_unknown_manifest_and_repository_are_404(dy, reg):
    repo = f"{uniq()}/nothing"
    err = fails(dy, f"{reg.host}/{repo}:nope", "manifest unknown", f"{reg.host}/{repo}:nope")
    assert "Traceback" not in err
    import docker

    client = dy.sdk()
    try:
        with pytest.raises(docker.errors.NotFound) as info:
            client.images.pull(f"{reg.host}/{repo}", tag="nope")
    finally:
        client.close()
    assert "manifest unknown" in str(info.value)
    res = dy.docker("pull", f"{reg.host}/{repo}:nope")
    assert res.returncode != 0 and b"manifest unknown" in res.stderr


@pytest.mark.parametrize("ref", ["Not/Lower:case", "bad name", "a/b:tag:tag", "x@sha256:1234"])
def test_reference_that_does_not_parse(dy, ref):
    err = fails(dy, ref, "invalid reference format")
    assert "Traceback" not in err


def test_compressions_in_one_image_each_verified(dy, reg, base_tar):
    repo = f"{uniq()}/mix"
    plain, zst = tar_layer({"p": b"plain\n"}), tar_layer({"z": b"zstd\n"})
    img = make_image([base_tar, plain], oci=True, compression="gzip")
    blob = compress(zst, "zstd")
    doc = json.loads(img.manifest)
    doc["layers"].append({"mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "size": len(blob),
                          "digest": digest(blob)})
    cfg = json.loads(img.config)
    cfg["rootfs"]["diff_ids"].append(digest(zst))
    cfg_bytes = json.dumps(cfg).encode()
    doc["config"].update(digest=digest(cfg_bytes), size=len(cfg_bytes))
    for data in [*img.blobs.values(), blob, cfg_bytes]:
        put_blob(reg.url, repo, data)
    put_manifest(reg.url, repo, "v1", json.dumps(doc).encode(), img.media_type)
    res = dy.cli("pull", f"{reg.host}/{repo}:v1")
    assert res.returncode == 0, res.stderr.decode()
    res = dy.docker("run", "--rm", f"{reg.host}/{repo}:v1", "cat", "/p", "/z")
    assert res.stdout == b"plain\nzstd\n", res.stderr
