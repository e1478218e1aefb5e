"""Hostile tars through the API, end to end, so that they keep failing (issue 13).

Every endpoint that unpacks a client's tar on the host: ``POST /images/load``
(a docker-save archive whose layer is hostile, and a manifest naming a file
outside the archive), ``POST /images/create?fromSrc=-`` (import), ``POST /build``
(the context) and ``PUT /containers/{id}/archive``.  Each tar carries one of the
classic escapes (the CVE-2018-15664 / CVE-2019-14271 / Zip Slip family): a
``../`` climb, an absolute name, a symlink and then a file through it (absolute
and relative), a hard link to a host file and then a write through it.

The victim is a directory of the host with one file in it; after each request
(refused or not) nothing may have appeared in it, its file must be unchanged
and have no second link, and the daemon must still answer.  How dockyard.driverkit.safetar
decides is unit-tested in tests/unit/test_safetar.py; this is the API's word.
"""

import hashlib
import io
import json
import os
import tarfile
import uuid

import docker.errors
import pytest

from dockyard.testing.daemon import ping

pytestmark = pytest.mark.root

CLIMB = "../" * 40


@pytest.fixture
def victim(tmp_path):
    d = tmp_path / "victim"
    d.mkdir()
    (d / "target").write_text("original")
    return d


def untouched(victim):
    """Nothing appeared in ``victim`` and its file is as it was."""
    target = victim / "target"
    return sorted(os.listdir(victim)) == ["target"] and target.read_text() == "original" \
        and os.stat(target).st_nlink == 1


def _add(tar, name, kind="f", data=b"pwned", link=""):
    ti = tarfile.TarInfo(name)
    ti.mode = 0o755 if kind == "d" else 0o644
    if kind == "f":
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
        return
    ti.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE}[kind]
    ti.linkname = link
    tar.addfile(ti)


def attack_entries(kind, victim):
    """``(name, kind, link)`` entries of one attack aimed at ``victim``."""
    v = str(victim).lstrip("/")
    return {
        "dotdot": [(f"{CLIMB}{v}/dotdot", "f", "")],
        "absolute": [(f"/{v}/absolute", "f", "")],
        "symlink": [("lnk", "l", f"/{v}"), ("lnk/through-symlink", "f", "")],
        "relative_symlink": [("rel", "l", f"{CLIMB}{v}"), ("rel/through-relative-symlink", "f", "")],
        "hardlink": [("hard", "h", f"{CLIMB}{v}/target"), ("hard", "f", ""),
                     ("hard2", "h", f"/{v}/target"), ("hard2", "f", "")],
    }[kind]


def hostile_tar(kind, victim, extra=()):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in extra:
            _add(tar, name, data=data)
        _add(tar, "ok.txt", data=b"fine")
        for name, k, link in attack_entries(kind, victim):
            _add(tar, name, k, link=link)
    return buf.getvalue()


def docker_archive(layer, tag, layer_name="layer/layer.tar"):
    """A ``docker save`` archive of one image with ``layer`` as its only layer
    (``layer_name`` is what the manifest names: it need not be in the archive)."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]}},
                        sort_keys=True).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": [layer_name]}]).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (("manifest.json", manifest), (config_name, config), ("layer/layer.tar", layer)):
            _add(tar, name, data=data)
    return buf.getvalue()


@pytest.fixture(scope="module")
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


@pytest.fixture
def tag(client):
    name = f"hostile-{uuid.uuid4().hex[:8]}:latest"
    yield name
    try:
        client.images.remove(name, force=True)
    except docker.errors.NotFound:
        pass


KINDS = ["dotdot", "absolute", "symlink", "relative_symlink", "hardlink"]
#: how a refusal reaches the SDK: an HTTP error, or an error in the streamed answer (load)
REFUSED = (docker.errors.APIError, docker.errors.ImageLoadError)


def refusal(exc):
    """A refusal that says why (400: the input is refused),
    not a crash of the daemon's."""
    status = getattr(exc, "status_code", None)
    return status in (None, 400) and "internal error" not in str(exc).lower()


@pytest.mark.parametrize("kind", KINDS)
def test_image_load(daemon, client, victim, tag, kind):
    """``docker load`` of an image whose layer is hostile."""
    try:
        client.images.load(docker_archive(hostile_tar(kind, victim), tag))
    except REFUSED as e:
        assert refusal(e), e
    assert untouched(victim) and ping(daemon.sock)


def test_image_load_reads_no_layer_from_outside_the_archive(daemon, client, victim, tag):
    """A manifest whose layer is a path climbing out of the archive, to a valid
    layer tar on the host: the name resolves inside the archive only (where
    there is no such member), never to the host's file."""
    host_layer = hostile_tar("dotdot", victim, extra=[("from-the-host", b"host")])
    (victim / "layer.tar").write_bytes(host_layer)
    archive = docker_archive(host_layer, tag, layer_name=f"{CLIMB}{str(victim).lstrip('/')}/layer.tar")
    with pytest.raises(REFUSED) as err:
        client.images.load(archive)
    assert refusal(err.value) and "outside the archive" in str(err.value)
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(tag)
    os.unlink(victim / "layer.tar")
    assert untouched(victim) and ping(daemon.sock)


@pytest.mark.parametrize("kind", KINDS)
def test_image_import(daemon, client, victim, tag, kind):
    """``docker import -`` (``POST /images/create?fromSrc=-``) of a hostile rootfs."""
    repo, _, version = tag.partition(":")
    try:
        client.api.import_image_from_data(hostile_tar(kind, victim), repository=repo, tag=version)
    except REFUSED as e:
        assert refusal(e), e
    assert untouched(victim) and ping(daemon.sock)


@pytest.mark.parametrize("kind", KINDS)
def test_build_context(daemon, client, victim, tag, kind):
    """``docker build`` with a hostile context that a ``COPY . /ctx/`` reads."""
    context = hostile_tar(kind, victim, extra=[("Dockerfile", b"FROM busybox\nCOPY . /ctx/\n")])
    try:
        for _ in client.api.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True,
                                  decode=True):
            pass
    except REFUSED as e:
        assert refusal(e), e
    assert untouched(victim) and ping(daemon.sock)


@pytest.fixture(scope="module")
def containers(client):
    """A running container and one only created (its root is mounted for the copy)."""
    made = {"running": client.containers.run("busybox", ["sleep", "300"], detach=True),
            "created": client.containers.create("busybox", ["true"])}
    yield made
    for c in made.values():
        c.remove(force=True)


@pytest.mark.parametrize("state", ["running", "created"])
@pytest.mark.parametrize("kind", KINDS)
def test_container_archive_put(daemon, containers, victim, kind, state):
    """``docker cp - CONTAINER:/tmp`` (``PUT /containers/{id}/archive``) of a
    hostile tar."""
    try:
        containers[state].put_archive("/tmp", hostile_tar(kind, victim))
    except REFUSED as e:
        assert refusal(e), e
    assert untouched(victim) and ping(daemon.sock)
