"""The CRI's ImageService in a real daemon, through the generated stubs and
crictl: the images the Docker API made are the CRI's (named as Kubernetes names
them), their status by every kind of reference, the image's user, removal (all
names at once; a missing image is no error), the image file system's use, and
pulls from Debian's docker-registry — by tag, without a tag, by digest, with the
request's credentials, and of a ``registry.k8s.io/...`` name through a mirror
(``--registry-mirror registry.k8s.io=http://...``).
"""

import base64
import json
import os
import socket
import time
import uuid

import grpc
import pytest
from dockyard.cri.api import api_pb2 as pb
from dockyard.cri.api import api_pb2_grpc
from dockyard.testing.daemon import Daemon, ping
from dockyard.testing.registry import RegistryServer
from dockyard.testing.registry_content import stop_daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

USER, PASSWORD = "kubelet", "pull-secret-1"


def uniq(prefix="cri-"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def mirror(session_root):
    """The registry that stands in for registry.k8s.io."""
    r = RegistryServer(session_root / uniq("k8sreg-")).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def private(session_root):
    """A registry that wants credentials."""
    r = RegistryServer(session_root / uniq("privreg-"), auth="htpasswd", users={USER: PASSWORD}).start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def d(session_root, busybox_tar, mirror):
    dm = Daemon(session_root / uniq(), extra_args=["--registry-mirror", f"registry.k8s.io=http://{mirror.host}"])
    dm.start()
    try:
        ok(dm.cli("import", str(busybox_tar), "busybox"))
        yield dm
    finally:
        assert stop_daemon(dm) == []


@pytest.fixture(scope="module")
def images(d):
    with grpc.insecure_channel(f"unix://{d.cri_sock}") as channel:
        yield api_pb2_grpc.ImageServiceStub(channel)


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def status(images, ref, verbose=False):
    return images.ImageStatus(pb.ImageStatusRequest(image=pb.ImageSpec(image=ref), verbose=verbose))


def docker_id(d, ref):
    return d.sdk().api.inspect_image(ref)["Id"]


def test_the_docker_apis_images_are_listed_with_full_names(d, images):
    busybox = docker_id(d, "busybox")
    listed = {i.id: i for i in images.ListImages(pb.ListImagesRequest()).images}
    img = listed[busybox]
    assert busybox.startswith("sha256:") and list(img.repo_tags) == ["docker.io/library/busybox:latest"]
    assert img.size > 0 and img.size == d.sdk().api.inspect_image(busybox)["Size"]
    only = images.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="busybox"))))
    assert [i.id for i in only.images] == [busybox]
    none = images.ListImages(pb.ListImagesRequest(filter=pb.ImageFilter(image=pb.ImageSpec(image="no/such:x"))))
    assert list(none.images) == []
    out = ok(d.crictl("images"))
    assert any(line.split()[:3] == ["docker.io/library/busybox", "latest", busybox[7:20]]
               for line in out.splitlines()), out


def test_status_by_every_reference(d, images):
    busybox = docker_id(d, "busybox")
    by_tag = status(images, "busybox").image
    assert by_tag.id == busybox
    for ref in ("busybox:latest", "docker.io/library/busybox", "docker.io/library/busybox:latest", busybox,
                busybox[7:19]):
        assert status(images, ref).image == by_tag, ref
    verbose = status(images, "busybox", verbose=True)
    spec = json.loads(verbose.info["info"])["imageSpec"]
    assert spec["rootfs"]["diff_ids"] and spec["os"] == "linux"
    assert status(images, "busybox").info == {}
    assert not status(images, "docker.io/library/nothing:here").HasField("image")
    inspected = json.loads(ok(d.crictl("inspecti", "busybox")))
    assert inspected["status"]["id"] == busybox


@pytest.mark.parametrize("user, uid, username", [
    ("1002", 1002, ""), ("www-data", None, "www-data"), ("1003:1004", 1003, ""), ("www-data:1004", None, "www-data"),
    ("", None, ""),
])
def test_the_images_user(d, images, busybox_tar, user, uid, username):
    ref = f"user-{uniq('')}:1"
    ok(d.docker("import", "--change", f"USER {user}" if user else "LABEL nouser=1", str(busybox_tar), ref))
    try:
        img = status(images, ref).image
        assert img.HasField("uid") == (uid is not None)
        assert (img.uid.value if uid is not None else None, img.username) == (uid, username)
    finally:
        ok(d.docker("rmi", ref))


def test_remove_takes_every_name_and_a_missing_image_is_no_error(d, images, busybox_tar):
    names = [f"rm-{uniq('')}:a", f"rm-{uniq('')}:b"]
    ok(d.docker("import", "--change", f"LABEL rm={uniq('')}", str(busybox_tar), names[0]))
    ok(d.docker("tag", names[0], names[1]))
    own = docker_id(d, names[0])
    user = uniq("user-")
    ok(d.docker("run", "--name", user, names[0], "true"))  # a stopped container doesn't hold it
    img = status(images, names[1]).image
    assert img.id == own and sorted(img.repo_tags) == sorted(f"docker.io/library/{n}" for n in names)
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=own)))
    assert not status(images, names[0]).HasField("image") and not status(images, names[1]).HasField("image")
    assert d.docker("image", "inspect", own).returncode != 0
    assert own not in [i.id for i in images.ListImages(pb.ListImagesRequest()).images]
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=own)))  # again: not an error
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image="docker.io/library/gone:never")))
    ok(d.docker("rm", user))
    # by one of its names, the image goes with the others
    ok(d.docker("tag", "busybox", names[0]))
    copy = f"rm-{uniq('')}:c"
    ok(d.docker("import", str(busybox_tar), copy))
    ok(d.docker("tag", copy, names[1]))
    ok(d.crictl("rmi", names[1]))
    assert d.docker("image", "inspect", copy).returncode != 0
    assert status(images, "busybox").HasField("image")
    ok(d.docker("rmi", names[0]))


def test_image_fs_info(d, images):
    fs = images.ImageFsInfo(pb.ImageFsInfoRequest()).image_filesystems
    assert len(fs) == 1
    usage = fs[0]
    driver = d.sdk().info()["Driver"]
    assert usage.fs_id.mountpoint == str(d.data_root / "storage" / driver)
    assert usage.used_bytes.value > 1 << 20  # busybox's layer at least
    assert usage.inodes_used.value > 100
    assert abs(usage.timestamp - time.time_ns()) < 60 * 10**9
    out = json.loads(ok(d.crictl("imagefsinfo")))
    assert out["status"]["fsId"]["mountpoint"] == usage.fs_id.mountpoint


def push(d, busybox_tar, ref):
    """An image of its own (not busybox's id) pushed as ``ref`` and removed here; its digest."""
    ok(d.docker("import", "--change", f"LABEL pushed={uniq('')}", str(busybox_tar), ref))
    out = ok(d.docker("push", ref))
    image_id = docker_id(d, ref)
    ok(d.docker("rmi", ref))
    return out.rsplit("digest: ", 1)[1].split()[0], image_id


def test_pull_of_registry_k8s_io_through_the_mirror(d, images, mirror, busybox_tar):
    repo = f"e2e-test-images/{uniq('bb')}"
    digest, image_id = push(d, busybox_tar, f"{mirror.host}/{repo}:1.29-2")
    name = f"registry.k8s.io/{repo}"
    got = images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{name}:1.29-2"),
                                               sandbox_config=pb.PodSandboxConfig()))
    assert got.image_ref == image_id
    img = status(images, f"{name}:1.29-2").image
    assert img.id == image_id and list(img.repo_tags) == [f"{name}:1.29-2"]
    assert list(img.repo_digests) == [f"{name}@{digest}"]
    assert status(images, f"{name}@{digest}").image == img
    assert d.docker("image", "inspect", f"{name}:1.29-2").returncode == 0  # the Docker API's image too
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=f"{name}:1.29-2")))
    assert not status(images, image_id).HasField("image")
    # by digest: no tag
    got = images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{name}@{digest}")))
    img = status(images, got.image_ref).image
    assert got.image_ref == image_id
    assert list(img.repo_tags) == [] and list(img.repo_digests) == [f"{name}@{digest}"]
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=image_id)))
    # without a tag: latest (crictl, as a kubelet's image puller calls it)
    latest_digest, latest_id = push(d, busybox_tar, f"{mirror.host}/{repo}:latest")
    out = ok(d.crictl("pull", name))
    assert latest_id in out
    assert list(status(images, name).image.repo_tags) == [f"{name}:latest"]
    ok(d.crictl("rmi", name))
    assert not status(images, latest_id).HasField("image")
    assert mirror.catalog()["repositories"]  # what was pulled came from the mirror


def test_pulling_a_missing_image_fails(images, mirror):
    with pytest.raises(grpc.RpcError) as err:  # (named by the registry itself: no fall-back off this host)
        images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=f"{mirror.host}/{uniq('no')}/x:1")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND, err.value.details()


def test_pull_with_the_requests_credentials(d, images, private, busybox_tar):
    ref = f"{private.host}/team/{uniq('app')}:v1"
    ok(d.docker("import", "--change", f"LABEL private={uniq('')}", str(busybox_tar), ref))
    pushed = d.sdk().api.push(ref.rsplit(":", 1)[0], tag="v1", auth_config={"username": USER, "password": PASSWORD})
    assert "digest: sha256:" in pushed, pushed
    ok(d.docker("rmi", ref))
    with pytest.raises(grpc.RpcError) as err:
        images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref)))
    assert err.value.code() != grpc.StatusCode.OK
    bad = pb.AuthConfig(username=USER, password="wrong")
    with pytest.raises(grpc.RpcError):
        images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=bad))
    by_password = pb.AuthConfig(username=USER, password=PASSWORD, server_address=private.host)
    got = images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=by_password))
    assert got.image_ref == docker_id(d, ref)
    images.RemoveImage(pb.RemoveImageRequest(image=pb.ImageSpec(image=ref)))
    by_auth = pb.AuthConfig(auth=base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
    assert images.PullImage(pb.PullImageRequest(image=pb.ImageSpec(image=ref), auth=by_auth)).image_ref == got.image_ref
    out = ok(d.crictl("pull", "--creds", f"{USER}:{PASSWORD}", ref))
    assert got.image_ref in out
    ok(d.docker("rmi", ref))


def test_a_waiting_pull_holds_up_neither_the_docker_api_nor_other_rpcs(d, images):
    hang = socket.socket()
    hang.bind(("127.0.0.1", 0))
    hang.listen(8)  # a "registry" that takes connections and never answers
    ref = f"127.0.0.1:{hang.getsockname()[1]}/slow/app:1"
    pull = images.PullImage.future(pb.PullImageRequest(image=pb.ImageSpec(image=ref)), timeout=120)
    try:
        time.sleep(0.5)
        assert not pull.done()
        t0 = time.monotonic()
        assert ping(d.sock)
        assert status(images, "busybox").image.repo_tags == ["docker.io/library/busybox:latest"]
        with grpc.insecure_channel(f"unix://{d.cri_sock}") as channel:
            assert api_pb2_grpc.RuntimeServiceStub(channel).Version(pb.VersionRequest()).runtime_name == "dockyard"
        assert time.monotonic() - t0 < 5
        assert not pull.done()
    finally:
        hang.close()  # the waiting pull's connection is reset: it ends
    with pytest.raises(grpc.RpcError):
        pull.result()
