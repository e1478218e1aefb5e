"""A pull reads each layer once: the download streams into the storage driver's
staged layer while the blob digest, the diff ID and the tar-split record are
computed, and the layer is recorded only when both digests verified.

Through a real registry (Debian's docker-registry) and the docker SDK: the pulled
layers hold the right files and diff IDs, ``docker save`` gives back the very
tars that were pushed (so the tar-split records made in passing are right, also
for a tar whose record needs the second read), and a blob with a wrong digest, a
truncated gzip stream, a hostile tar or a download cut for good leave no layer,
no blob, no staged layer and no image behind (an interrupted download keeps its
ingest, and the rerun resumes).
"""

import hashlib
import io
import json
import os
import tarfile

import pytest
from dockyard.testing.registry import Fault
from dockyard.testing.registry_content import (
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


def _tar(entries):
    """A layer tar of ``[(name, kind, data_or_target)]`` (kind: f, d, l (symlink), h (hard link))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, value in entries:
            info = tarfile.TarInfo(name)
            info.mtime, info.mode = 1_600_000_000, 0o755 if kind == "d" else 0o644
            if kind == "d":
                info.type = tarfile.DIRTYPE
            elif kind in ("l", "h"):
                info.type, info.linkname = (tarfile.SYMTYPE if kind == "l" else tarfile.LNKTYPE), value
            else:
                info.size = len(value)
            tar.addfile(info, io.BytesIO(value) if kind == "f" else None)
    return buf.getvalue()


def _state(d):
    """What a failed pull must leave as it was: images, tmp/ and ingest/ names,
    the content store's blobs, the storage driver's layers, the staged ids."""
    blobs = d.data_root / "content" / "blobs" / "sha256"
    storage = sorted(p for p in (d.data_root / "storage").iterdir() if p.is_dir())
    driver_dirs = {p.name: sorted(x.name for x in p.iterdir()) for p in storage}
    return {**snapshot(d), "blobs": sorted(os.listdir(blobs)) if blobs.is_dir() else [],
            "layers": driver_dirs}


def _fails(d, ref, *words):
    before = _state(d)
    res = d.cli("pull", ref, timeout=180)
    err = res.stderr.decode() + res.stdout.decode()
    assert res.returncode != 0, err
    for word in words:
        assert word in err, err
    assert _state(d) == before
    assert system_check(d) == []
    return err


def _saved_layers(d, ref):
    """The layer tars of ``docker save ref`` (bytes, base first)."""
    client = d.sdk()
    try:
        data = b"".join(client.images.get(ref).save())
    finally:
        client.close()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        return [tar.extractfile(name).read() for name in manifest[0]["Layers"]]


def _cat(d, ref, path):
    res = d.cli("run", "--rm", "--network", "none", ref, "cat", path, timeout=60)
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout


def test_pulled_layers_have_their_files_diff_ids_and_save_round_trips(dy, reg, base_tar):
    repo = f"{uniq()}/one"
    big = os.urandom(3 << 20)
    first = _tar([("etc", "d", b""), ("etc/motd", "f", b"hello\n"), ("data", "d", b""), ("data/big", "f", big),
                  ("data/link", "l", "big"), ("data/hard", "h", "data/big"), ("data/gone", "f", b"x"),
                  ("d/" + "n" * 150, "f", b"long name\n"), ("empty", "f", b"")])
    second = _tar([("data/.wh.gone", "f", b""), ("etc/motd", "f", b"bye\n")])
    img = make_image([base_tar, first, second])
    push_image(reg.url, repo, "v1", img)
    ref = f"{reg.host}/{repo}:v1"
    res = dy.cli("pull", ref, timeout=180)
    assert res.returncode == 0, res.stderr.decode()
    client = dy.sdk()
    try:
        assert client.images.get(ref).attrs["RootFS"]["Layers"] == [digest(t) for t in (base_tar, first, second)]
    finally:
        client.close()
    assert _saved_layers(dy, ref) == [base_tar, first, second]  # byte for byte: tar-split made in passing
    assert _cat(dy, ref, "/etc/motd") == b"bye\n"
    sums = dy.cli("run", "--rm", "--network", "none", ref, "sha256sum", "/data/big", "/data/hard", timeout=60)
    assert [line.split()[0] for line in sums.stdout.decode().splitlines()] == [hashlib.sha256(big).hexdigest()] * 2
    res = dy.cli("run", "--rm", "--network", "none", ref, "ls", "/data", timeout=60)
    assert res.stdout.decode().split() == ["big", "hard", "link"]  # the whiteout hid data/gone
    assert dy.cli("rmi", ref).returncode == 0
    assert system_check(dy) == []


def test_a_layer_whose_record_needs_a_second_read_round_trips(dy, reg, base_tar):
    repo = f"{uniq()}/dup"
    dup = _tar([("a", "f", b"first version"), ("a", "f", b"second, replacing it")])  # content kept inline
    img = make_image([base_tar, dup], oci=True, compression="gzip")
    push_image(reg.url, repo, "v1", img)
    ref = f"{reg.host}/{repo}:v1"
    assert dy.cli("pull", ref, timeout=180).returncode == 0
    assert _saved_layers(dy, ref) == [base_tar, dup]
    assert _cat(dy, ref, "/a") == b"second, replacing it"
    assert dy.cli("rmi", ref).returncode == 0
    assert snapshot(dy)["tmp"] == []  # the second read's spool is gone


def test_a_blob_with_a_wrong_digest_leaves_nothing(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/bad"
    img = make_image([base_tar, tar_layer({"data/big": os.urandom(3 << 20)})])
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]
    proxy.add(Fault(f"/blobs/{layer['digest']}", "corrupt", method="GET", at=layer["size"] // 2))
    err = _fails(dy, f"{proxy.host}/{repo}:v1", f"layer {layer['digest']}")
    assert "digest mismatch" in err or "corrupt" in err


def test_a_truncated_gzip_layer_leaves_nothing(dy, reg, base_tar):
    repo = f"{uniq()}/cut"
    good = make_image([base_tar, tar_layer({"data/big": os.urandom(3 << 20)})])
    whole = good.blobs[good.layers[-1]["digest"]]
    cut = whole[:len(whole) // 2]  # its digest is right: the stream itself ends early
    for blob in (good.blobs[good.layers[0]["digest"]], cut, good.config):
        put_blob(reg.url, repo, blob)
    doc = json.loads(good.manifest)
    doc["layers"][-1].update(digest=digest(cut), size=len(cut))
    put_manifest(reg.url, repo, "v1", json.dumps(doc).encode(), good.media_type)
    _fails(dy, f"{reg.host}/{repo}:v1", f"layer {digest(cut)}", "truncated")


def test_a_hostile_layer_leaves_nothing(dy, reg, base_tar):
    repo = f"{uniq()}/evil"
    evil = _tar([("ok", "f", b"fine"), ("../../../../escaped-by-pull", "f", b"pwned")])
    img = make_image([base_tar, evil])
    push_image(reg.url, repo, "v1", img)
    _fails(dy, f"{reg.host}/{repo}:v1", "unsafe layer tar entry")
    assert not list(dy.data_root.parent.rglob("escaped-by-pull"))


def test_a_download_cut_for_good_keeps_only_its_ingest_and_the_rerun_resumes(dy, reg, proxy, base_tar):
    repo = f"{uniq()}/resume"
    layer_tar = tar_layer({"data/big": os.urandom(4 << 20)})
    img = make_image([layer_tar], oci=True, compression="gzip")
    push_image(reg.url, repo, "v1", img)
    layer = img.layers[-1]
    ref = f"{proxy.host}/{repo}:v1"
    proxy.add(Fault(f"/blobs/{layer['digest']}", "cut", method="GET", at=layer["size"] // 2, times=1))
    proxy.add(Fault(f"/blobs/{layer['digest']}", "status", method="GET", status=503))
    before = _state(dy)
    res = dy.cli("pull", ref, timeout=180)
    assert res.returncode != 0
    after = _state(dy)
    assert after["layers"] == before["layers"] and after["blobs"] == before["blobs"]  # the staged layer went
    assert after["images"] == before["images"] and after["tmp"] == before["tmp"] and system_check(dy) == []
    kept = sorted(set(after["ingest"]) - set(before["ingest"]))
    assert kept == [f"pull-{layer['digest'][7:]}"]
    have = (dy.data_root / "content" / "ingest" / kept[0]).stat().st_size
    assert 0 < have <= layer["size"] // 2
    proxy.reset()
    res = dy.cli("pull", ref, timeout=180)
    assert res.returncode == 0, res.stderr.decode()
    gets = proxy.seen("GET", layer["digest"])
    assert len(gets) == 1 and gets[0]["headers"]["Range"] == f"bytes={have}-"  # the ingest's bytes, then the rest
    assert _saved_layers(dy, ref) == [layer_tar]
    assert dy.cli("rmi", ref).returncode == 0
    assert system_check(dy) == []


def test_zstd_and_plain_layers_stream_too(dy, reg, base_tar):
    pytest.importorskip("zstandard")
    repo = f"{uniq()}/z"
    one, two = tar_layer({"z": os.urandom(1 << 20)}), tar_layer({"p": b"plain"})
    img = make_image([base_tar, one], oci=True, compression="zstd")
    push_image(reg.url, repo, "z", img)
    plain = make_image([base_tar, two], oci=True, compression=None)
    push_image(reg.url, repo, "p", plain)
    for tag, tars in (("z", [base_tar, one]), ("p", [base_tar, two])):
        ref = f"{reg.host}/{repo}:{tag}"
        assert dy.cli("pull", ref, timeout=180).returncode == 0
        assert _saved_layers(dy, ref) == tars
        assert dy.cli("rmi", ref).returncode == 0
