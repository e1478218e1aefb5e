"""save/load: Docker's archive format (manifest.json, repositories, legacy
layer directories) and the OCI layout in the same tar; archives that move both
ways with skopeo and podman; corrupt archives leave the store as it was."""

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import docker
import pytest

from images_common import out, raw, rootfs_with, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
SKOPEO = shutil.which("skopeo")
PODMAN = shutil.which("podman")


def members(path):
    with tarfile.open(path) as tar:
        return {m.name.rstrip("/"): m for m in tar.getmembers()}


def read(path, name):
    with tarfile.open(path) as tar:
        m = tar.getmember(name)
        while m.issym():
            m = tar.getmember(os.path.normpath(os.path.join(os.path.dirname(m.name), m.linkname)))
        return tar.extractfile(m).read()


def store_state(daemon):
    """What a failed load must not change: images, tags, layers, blobs."""
    c = daemon.sdk()
    try:
        images = sorted((i.id, tuple(sorted(i.tags))) for i in c.images.list(all=True))
    finally:
        c.close()
    blobs = sorted(os.listdir(daemon.data_root / "content" / "blobs" / "sha256"))
    status, check = raw(daemon, "GET", "/dockyard/system/check")
    assert status == 200 and check["Problems"] == [], check
    return images, blobs, check["Checked"]  # counts of blobs, images, layers


def assert_clean(daemon):
    res = daemon.cli("system", "check")
    assert res.returncode == 0 and b"no problems" in res.stdout, res.stdout
    assert not os.listdir(daemon.data_root / "tmp")


@pytest.fixture
def two_images(imgs, tmp_path):
    """Two images of their own layers, three tags over two repositories."""
    base = uniq("arc")
    a = imgs.new(f"{base}/a:1", ['CMD ["cat", "/marker"]'],
                 tar=rootfs_with(imgs.busybox_tar, tmp_path / "a.tar", {"marker": b"from a\n"}))
    b = imgs.new(f"{base}/b:1", ['CMD ["cat", "/marker"]'],
                 tar=rootfs_with(imgs.busybox_tar, tmp_path / "b.tar", {"marker": b"from b\n"}))
    imgs.client.images.get(a).tag(f"{base}/a", "2")
    return base, a, b


def test_save_writes_docker_and_oci_layouts(daemon, imgs, two_images, tmp_path):
    base, a, b = two_images
    arc = tmp_path / "s.tar"
    out(daemon.docker("save", "-o", str(arc), f"{base}/a", f"{base}/b:1"))
    names = members(arc)
    manifest = json.loads(read(arc, "manifest.json"))
    assert len(manifest) == 2
    by_config = {m["Config"]: m for m in manifest}
    ma, mb = by_config[f"blobs/sha256/{a[7:]}"], by_config[f"blobs/sha256/{b[7:]}"]
    assert sorted(ma["RepoTags"]) == [f"{base}/a:1", f"{base}/a:2"] and mb["RepoTags"] == [f"{base}/b:1"]
    assert json.loads(read(arc, ma["Config"]))["rootfs"]["diff_ids"] == \
        imgs.client.images.get(a).attrs["RootFS"]["Layers"]
    assert f"{a[7:]}.json" in names  # the 20.10 name of the config too
    repositories = json.loads(read(arc, "repositories"))
    assert set(repositories) == {f"{base}/a", f"{base}/b"} and set(repositories[f"{base}/a"]) == {"1", "2"}
    top = repositories[f"{base}/b"]["1"]
    assert {f"{top}/VERSION", f"{top}/json", f"{top}/layer.tar"} <= set(names)
    assert read(arc, f"{top}/VERSION") == b"1.0" and json.loads(read(arc, f"{top}/json"))["id"] == top
    layer = read(arc, mb["Layers"][-1])
    import hashlib
    assert "sha256:" + hashlib.sha256(layer).hexdigest() == json.loads(read(arc, mb["Config"]))["rootfs"]["diff_ids"][-1]
    # the OCI layout in the same tar
    assert json.loads(read(arc, "oci-layout")) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(read(arc, "index.json"))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    named = {d["annotations"]["io.containerd.image.name"]: d for d in index["manifests"]}
    assert set(named) == {f"docker.io/{base}/a:1", f"docker.io/{base}/a:2", f"docker.io/{base}/b:1"}
    for d in index["manifests"]:
        blob = read(arc, f"blobs/sha256/{d['digest'][7:]}")
        assert len(blob) == d["size"] and "sha256:" + hashlib.sha256(blob).hexdigest() == d["digest"]
    # the same images save to the same bytes
    again = tmp_path / "again.tar"
    out(daemon.cli("save", "-o", str(again), f"{base}/a", f"{base}/b:1"))
    assert again.read_bytes() == arc.read_bytes()
    # an image named by id is saved without names
    by_id = tmp_path / "id.tar"
    out(daemon.docker("save", "-o", str(by_id), b[7:19]))
    assert json.loads(read(by_id, "manifest.json"))[0]["RepoTags"] is None


def test_save_rmi_load_round_trip_and_run(daemon, imgs, two_images, tmp_path):
    base, a, b = two_images
    arc = tmp_path / "s.tar"
    out(daemon.docker("save", "-o", str(arc), f"{base}/a", f"{base}/b"))
    out(daemon.docker("rmi", f"{base}/a:1", f"{base}/a:2", f"{base}/b:1"))
    with pytest.raises(docker.errors.ImageNotFound):
        imgs.client.images.get(a)
    lines = out(daemon.docker("load", "-i", str(arc))).splitlines()
    assert sorted(lines) == sorted([f"Loaded image: {base}/a:1", f"Loaded image: {base}/a:2",
                                    f"Loaded image: {base}/b:1"])
    assert imgs.client.images.get(f"{base}/a:2").id == a and imgs.client.images.get(f"{base}/b:1").id == b
    assert imgs.client.containers.run(f"{base}/b:1", remove=True) == b"from b\n"
    # from stdin, with the SDK, and our CLI; loading again changes nothing
    assert b"Loaded image" in daemon.docker("load", input=arc.read_bytes()).stdout
    loaded = imgs.client.images.load(arc.read_bytes())
    assert {i.id for i in loaded} == {a, b}
    assert f"Loaded image: {base}/b:1" in out(daemon.cli("load", "-i", str(arc)))
    assert out(daemon.cli("load", "-q", "-i", str(arc)))  # quiet still says what it loaded, as Docker does
    # a tag that moves is reported like Docker does
    other = imgs.new(f"{base}/b:1")
    res = out(daemon.docker("load", "-i", str(arc)))
    assert f"The image {base}/b:1 already exists, renaming the old one with ID {other} to empty string" in res
    assert imgs.client.images.get(f"{base}/b:1").id == b
    assert_clean(daemon)


@pytest.mark.skipif(not SKOPEO, reason="skopeo is not installed")
def test_archives_move_both_ways_with_skopeo(daemon, imgs, two_images, tmp_path):
    base, a, b = two_images
    arc = tmp_path / "s.tar"
    out(daemon.docker("save", "-o", str(arc), f"{base}/b:1"))
    info = json.loads(subprocess.run([SKOPEO, "inspect", f"docker-archive:{arc}"], capture_output=True,
                                     check=True).stdout)
    assert info["Layers"] == imgs.client.images.get(b).attrs["RootFS"]["Layers"]
    info = json.loads(subprocess.run([SKOPEO, "inspect", f"docker-archive:{arc}:{base}/b:1"], capture_output=True,
                                     check=True).stdout)
    assert info["Name"] == f"docker.io/{base}/b"
    raw_cfg = subprocess.run([SKOPEO, "inspect", "--config", "--raw", f"docker-archive:{arc}"],
                             capture_output=True, check=True).stdout
    import hashlib
    assert "sha256:" + hashlib.sha256(raw_cfg).hexdigest() == b  # the config byte for byte
    # our archive read as an OCI layout, through skopeo
    oci = tmp_path / "oci"
    subprocess.run([SKOPEO, "copy", "-q", f"docker-archive:{arc}", f"oci:{oci}:v1"], check=True)
    assert (oci / "index.json").exists()
    s_oci, s_dock = tmp_path / "sk-oci.tar", tmp_path / "sk-docker.tar"
    subprocess.run([SKOPEO, "copy", "-q", f"oci:{oci}:v1", f"oci-archive:{s_oci}:{base}/skoci:1"], check=True)
    subprocess.run([SKOPEO, "copy", "-q", f"oci:{oci}:v1", f"docker-archive:{s_dock}:{base}/skdock:1"], check=True)
    assert "manifest.json" not in members(s_oci)  # an OCI layout only, gzip layers
    assert "oci-layout" not in members(s_dock)  # a Docker archive only
    assert f"Loaded image: {base}/skoci:1" in out(daemon.docker("load", "-i", str(s_oci)))
    assert f"Loaded image: {base}/skdock:1" in out(daemon.cli("load", "-i", str(s_dock)))
    for ref in (f"{base}/skoci:1", f"{base}/skdock:1"):
        imgs.keep(imgs.client.images.get(ref).id)
        assert imgs.client.containers.run(ref, remove=True) == b"from b\n"
        assert imgs.client.images.get(ref).attrs["RootFS"]["Layers"] == \
            imgs.client.images.get(b).attrs["RootFS"]["Layers"]
    # an OCI layout whose index names the image by a tag only: loaded by id, as Docker does
    s_bare = tmp_path / "bare.tar"
    subprocess.run([SKOPEO, "copy", "-q", f"oci:{oci}:v1", f"oci-archive:{s_bare}"], check=True)
    assert "Loaded image ID: sha256:" in out(daemon.docker("load", "-i", str(s_bare)))
    assert_clean(daemon)


@pytest.mark.skipif(not PODMAN, reason="podman is not installed")
def test_archives_move_both_ways_with_podman(daemon, imgs, two_images, tmp_path):
    base, a, b = two_images
    import tempfile
    root = tmp_path / "proot"
    run = Path(tempfile.mkdtemp(prefix="dy-prun-"))  # podman wants a runroot under 50 characters
    podman = [PODMAN, "--root", str(root), "--runroot", str(run), "--storage-driver", "vfs"]
    arc = tmp_path / "s.tar"
    out(daemon.docker("save", "-o", str(arc), f"{base}/a", f"{base}/b:1"))
    try:
        res = subprocess.run(podman + ["load", "-i", str(arc)], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        for tag in (f"{base}/a:1", f"{base}/a:2", f"{base}/b:1"):
            assert f"Loaded image: docker.io/{tag}" in res.stdout or f"Loaded image: localhost/{tag}" in res.stdout \
                or tag in res.stdout
        ids = subprocess.run(podman + ["images", "-q", "--no-trunc"], capture_output=True, text=True).stdout.split()
        assert set(ids) == {a, b}
        p_dock, p_oci, p_multi = tmp_path / "pd.tar", tmp_path / "po.tar", tmp_path / "pm.tar"
        subprocess.run(podman + ["save", "-q", "-o", str(p_dock), f"{base}/b:1"], check=True)
        subprocess.run(podman + ["save", "-q", "--format", "oci-archive", "-o", str(p_oci), f"{base}/a:1"],
                       check=True)
        subprocess.run(podman + ["save", "-q", "-m", "-o", str(p_multi), f"{base}/a:2", f"{base}/b:1"], check=True)
    finally:
        # vfs storage has no mounts: removing its directories is all (``system reset`` would also drop
        # the host's podman networks)
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(run, ignore_errors=True)
    out(daemon.docker("rmi", "-f", a, b))
    res = out(daemon.docker("load", "-i", str(p_dock)))
    assert "Loaded image: " in res and f"{base}/b:1" in res
    assert imgs.client.images.get(b).id == b  # podman keeps the config byte for byte
    res = out(daemon.docker("load", "-i", str(p_oci)))
    assert "Loaded image" in res
    res = out(daemon.docker("load", "-i", str(p_multi)))
    assert res.count("Loaded image: ") == 2
    assert imgs.client.images.get(a).id == a
    for image in (a, b):
        assert imgs.client.containers.run(image, remove=True) in (b"from a\n", b"from b\n")
    for i in imgs.client.images.list(all=True):
        if i.id in (a, b):
            for t in i.tags:
                imgs.client.images.remove(t, force=True)
    assert_clean(daemon)


# corrupt archives ---------------------------------------------------------------------------
def _own_archive(daemon, imgs, tmp_path, name):
    """An archive of an image whose layer the store does not have (so a load must read it)."""
    ref = uniq(name) + ":1"
    image_id = imgs.new(ref, tar=rootfs_with(imgs.busybox_tar, tmp_path / f"{name}.tar",
                                            {"payload": os.urandom(300_000)}))
    arc = tmp_path / f"{name}-saved.tar"
    out(daemon.docker("save", "-o", str(arc), ref))
    diff_id = imgs.client.images.get(ref).attrs["RootFS"]["Layers"][-1]
    out(daemon.docker("rmi", ref))
    return ref, image_id, arc, diff_id


def _load_fails(daemon, imgs, arc, *words):
    before = store_state(daemon)
    for run in (lambda: daemon.docker("load", "-i", str(arc)), lambda: daemon.cli("load", "-i", str(arc))):
        res = run()
        assert res.returncode != 0, res.stdout
        for word in words:
            assert word.encode() in res.stderr, res.stderr
    assert store_state(daemon) == before
    assert_clean(daemon)


def test_truncated_and_garbage_archives(daemon, imgs, tmp_path):
    ref, image_id, arc, _ = _own_archive(daemon, imgs, tmp_path, "trunc")
    data = arc.read_bytes()
    with tarfile.open(arc) as tar:
        last = tar.getmember("manifest.json")  # near the end, after every layer
    for n, cut in enumerate((100, len(data) // 3, last.offset_data + 10)):
        bad = tmp_path / f"cut{n}.tar"
        bad.write_bytes(data[:cut])
        _load_fails(daemon, imgs, bad, "truncated or corrupt")
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(5000))
    _load_fails(daemon, imgs, garbage, "corrupt")
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    _load_fails(daemon, imgs, empty, "not an image archive")
    with pytest.raises(docker.errors.ImageNotFound):
        imgs.client.images.get(image_id)


def test_corrupt_layer_and_config_are_refused(daemon, imgs, tmp_path):
    ref, image_id, arc, diff_id = _own_archive(daemon, imgs, tmp_path, "flip")
    # a flipped byte inside the layer: its diff id no longer holds
    data = bytearray(arc.read_bytes())
    with tarfile.open(arc) as tar:
        layer = tar.getmember(f"blobs/sha256/{diff_id[7:]}")
    data[layer.offset_data + layer.size // 2] ^= 0xFF
    bad = tmp_path / "flipped.tar"
    bad.write_bytes(bytes(data))
    _load_fails(daemon, imgs, bad, diff_id)
    # a config that is not the one its name promises
    bad_cfg = tmp_path / "badcfg.tar"
    with tarfile.open(arc) as src, tarfile.open(bad_cfg, "w") as dst:
        for m in src.getmembers():
            body = src.extractfile(m).read() if m.isreg() else None
            if m.name == f"blobs/sha256/{image_id[7:]}":
                body = body.replace(b'"os":"linux"', b'"os":"linux" ')
                m.size = len(body)
            dst.addfile(m, __import__("io").BytesIO(body) if body is not None else None)
    _load_fails(daemon, imgs, bad_cfg, "hashes to")
    # manifest.json naming a layer that is not there
    missing = tmp_path / "missing.tar"
    with tarfile.open(arc) as src, tarfile.open(missing, "w") as dst:
        for m in src.getmembers():
            if m.name != f"blobs/sha256/{diff_id[7:]}":
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    _load_fails(daemon, imgs, missing, "archive has no")
    # the archive itself is fine: it loads
    assert f"Loaded image: {ref}" in out(daemon.docker("load", "-i", str(arc)))
    imgs.keep(image_id)


def test_save_of_unknown_name_is_404_before_any_byte(daemon, tmp_path):
    status, body = raw(daemon, "GET", "/v1.41/images/get?names=nosuch-save-x")
    assert status == 404 and body["message"] == "No such image: nosuch-save-x:latest"
    status, body = raw(daemon, "GET", "/v1.41/images/UPPER/get")
    assert status == 400 and "invalid reference format" in body["message"]
    res = daemon.cli("save", "-o", str(tmp_path / "x.tar"), "nosuch-save-x")
    assert res.returncode == 1 and b"No such image" in res.stderr and not (tmp_path / "x.tar").exists()
