"""import/export of plain rootfs tarballs, commit of containers, and
``dockyard system check`` over the content store."""

import gzip
import json
import lzma
import os
import re
import time

import pytest

from images_common import out, raw, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.mark.parametrize("kind", ["plain", "gzip", "xz"])
def test_import_compressed_tarballs_with_changes(daemon, imgs, tmp_path, kind):
    data = imgs.busybox_tar.read_bytes()
    tar = tmp_path / f"rootfs.{kind}"
    tar.write_bytes({"plain": lambda b: b, "gzip": gzip.compress, "xz": lzma.compress}[kind](data))
    ref = uniq("imp") + ":" + kind
    res = daemon.docker("import", "-m", f"msg {kind}", "-c", 'CMD ["sh", "-c", "echo $GREETING; pwd"]',
                        "-c", "ENV GREETING=hi-" + kind, "-c", "WORKDIR /tmp", str(tar), ref)
    image_id = out(res).strip()
    imgs.keep(image_id)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", image_id)
    attrs = imgs.client.images.get(ref).attrs
    assert attrs["Comment"] == f"msg {kind}" and attrs["Config"]["WorkingDir"] == "/tmp"
    assert attrs["Config"]["Env"] == [f"GREETING=hi-{kind}"]
    assert imgs.client.containers.run(ref, remove=True) == f"hi-{kind}\n/tmp\n".encode()
    # same content, any compression: the same layer
    assert attrs["RootFS"]["Layers"] == imgs.client.images.get("busybox").attrs["RootFS"]["Layers"]


def test_import_from_stdin_with_every_client(daemon, imgs):
    data = gzip.compress(imgs.busybox_tar.read_bytes())
    ref = uniq("stdin")
    imgs.keep(out(daemon.docker("import", "-", f"{ref}:docker", input=data)).strip())
    res = daemon.cli("import", "-c", "USER nobody", "-", f"{ref}:ours", input=data)
    assert res.returncode == 0, res.stderr
    imgs.keep(imgs.client.images.get(f"{ref}:ours").id)
    assert imgs.client.images.get(f"{ref}:ours").attrs["Config"]["User"] == "nobody"
    assert imgs.client.images.get(f"{ref}:docker").attrs["Comment"] == "Imported from -"
    status, body = raw(daemon, "POST", f"/v1.41/images/create?fromSrc=-&repo={ref}&tag=raw", data)
    assert status == 200 and b"sha256:" in (body if isinstance(body, bytes) else json.dumps(body).encode())
    imgs.keep(imgs.client.images.get(f"{ref}:raw").id)
    # bad input: no half image, a clear error
    res = daemon.docker("import", "-", f"{ref}:bad", input=data[:len(data) // 2])
    assert res.returncode != 0 and (b"corrupt" in res.stderr or b"truncated" in res.stderr)
    res = daemon.docker("import", "-c", "RUN echo no", "-", f"{ref}:bad", input=data)
    assert res.returncode != 0 and b"RUN is not a valid change command" in res.stderr
    status, body = raw(daemon, "POST", "/v1.41/images/create?fromSrc=-&repo=Bad", data)
    assert status == 400 and "invalid reference format" in body["message"]
    assert imgs.client.images.list(name=ref) and not [i for i in imgs.client.images.list(name=ref)
                                                      if f"{ref}:bad" in i.tags]


def test_export_reimport_run(daemon, imgs, tmp_path):
    c = imgs.container("busybox", "sh", "-c", "echo exported > /etc/exported-file")
    c.start()
    assert c.wait()["StatusCode"] == 0
    tar = tmp_path / "export.tar"
    out(daemon.docker("export", "-o", str(tar), c.id))
    ref = uniq("reimp") + ":1"
    imgs.keep(out(daemon.docker("import", "-c", 'CMD ["cat", "/etc/exported-file"]', str(tar), ref)).strip())
    assert imgs.client.containers.run(ref, remove=True) == b"exported\n"
    sdk_bytes = b"".join(c.export())
    assert len(sdk_bytes) > 1_000_000 and b"etc/exported-file" in sdk_bytes
    ours = tmp_path / "ours.tar"
    out(daemon.cli("export", "-o", str(ours), c.id))
    import tarfile
    with tarfile.open(ours) as t:
        assert t.extractfile("etc/exported-file").read() == b"exported\n"
    res = daemon.docker("export", "-o", str(tmp_path / "x.tar"), "nosuch-container-x")
    assert res.returncode != 0 and b"No such container: nosuch-container-x" in res.stderr


class PausedWatch:
    """Polls the container's state while the block runs: was it ever paused?"""

    def __init__(self, client, cid):
        import threading
        self.client, self.cid, self.states, self.done = client, cid, [], False
        self.thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self):
        while not self.done:
            state = self.client.api.inspect_container(self.cid)["State"]
            self.states.append((state["Status"], state["Paused"]))
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done = True
        self.thread.join(10)

    @property
    def paused(self):
        return ("paused", True) in self.states


def test_commit_with_author_message_changes_and_pause(daemon, imgs):
    c = imgs.container("busybox", "sh", "-c", "echo committed > /data.txt; "
                       "dd if=/dev/zero of=/big bs=1M count=200 2>/dev/null; while true; do sleep 0.1; done")
    c.start()
    for _ in range(100):
        if c.exec_run("sh -c 'test $(stat -c %s /big) = 209715200'").exit_code == 0:
            break
        time.sleep(0.1)
    ref = uniq("commit") + ":1"
    with PausedWatch(imgs.client, c.id) as watch:  # the commit reads 200 MB: it takes a while
        image_id = out(daemon.docker("commit", "-a", "A. Uthor <a@example.com>", "-m", "the message",
                                     "-c", "ENV COMMITTED=yes", "-c", 'CMD ["cat", "/data.txt"]',
                                     "-c", "LABEL stage=committed", c.id, ref)).strip()
    imgs.keep(image_id)
    # paused while its layer was read (--pause defaults to true), running again afterwards
    assert watch.paused and watch.states[-1] == ("running", False), watch.states
    c.reload()
    assert c.status == "running"
    attrs = imgs.client.images.get(ref).attrs
    busybox = imgs.client.images.get("busybox")
    assert attrs["Author"] == "A. Uthor <a@example.com>" and attrs["Comment"] == "the message"
    assert attrs["Parent"] == busybox.id and attrs["Container"] == c.id
    assert "COMMITTED=yes" in attrs["Config"]["Env"] and attrs["Config"]["Cmd"] == ["cat", "/data.txt"]
    assert attrs["Config"]["Labels"]["stage"] == "committed"
    assert attrs["RootFS"]["Layers"][:-1] == busybox.attrs["RootFS"]["Layers"] and len(attrs["RootFS"]["Layers"]) == 2
    assert imgs.client.containers.run(ref, remove=True) == b"committed\n"
    # history: the new layer, then the parent image by id
    lines = out(daemon.docker("history", ref)).splitlines()[1:]
    assert lines[0].startswith(image_id[7:19]) and "the message" in lines[0]
    assert lines[1].startswith(busybox.id[7:19])
    h = imgs.client.images.get(ref).history()
    assert [x["Id"] for x in h] == [image_id, busybox.id] and h[0]["CreatedBy"].startswith("sh -c echo committed")
    # the parent is kept while the child exists; without -a the child is listed, not an intermediate
    res = daemon.docker("rmi", busybox.id)
    assert res.returncode != 0 and b"image has dependent child images" in res.stderr
    # --pause=false: no pause
    with PausedWatch(imgs.client, c.id) as watch:
        image2 = out(daemon.docker("commit", "--pause=false", c.id)).strip()
    imgs.keep(image2)
    assert not watch.paused and len(watch.states) > 2
    assert imgs.client.images.get(image2).tags == []
    # the SDK and our CLI
    sdk = c.commit(repository=ref.split(":")[0], tag="sdk", message="via sdk", changes=["USER nobody"])
    imgs.keep(sdk.id)
    assert sdk.attrs["Config"]["User"] == "nobody" and sdk.attrs["Comment"] == "via sdk"
    ours = out(daemon.cli("commit", "-m", "via cli", "--pause=false", c.id, ref.split(":")[0] + ":cli")).strip()
    imgs.keep(ours)
    assert imgs.client.images.get(ours).attrs["Comment"] == "via cli"
    res = daemon.docker("commit", c.id, "Bad:Name")
    assert res.returncode != 0
    c.remove(force=True)


def test_commit_of_a_dangling_parent_hides_it_without_a(daemon, imgs):
    parent = imgs.new()  # untagged
    c = imgs.container(parent, "sh", "-c", "echo x > /x")
    c.start()
    c.wait()
    child = out(daemon.docker("commit", c.id, uniq("child") + ":1")).strip()
    imgs.keep(child)
    c.remove()
    listed = out(daemon.docker("images", "-q", "--no-trunc")).split()
    assert child in listed and parent not in listed  # an intermediate image
    assert parent in out(daemon.docker("images", "-a", "-q", "--no-trunc")).split()
    assert parent not in out(daemon.docker("images", "-q", "--no-trunc", "-f", "dangling=true")).split()
    imgs.client.images.remove(child)
    assert parent not in [i.id for i in imgs.client.images.list(all=True)]  # went with its child (prune)


def test_commit_unknown_container_is_404(daemon):
    status, body = raw(daemon, "POST", "/v1.41/commit?container=nosuch-c-x", {})
    assert status == 404 and "No such container: nosuch-c-x" in body["message"]


# system check --------------------------------------------------------------------------
def test_system_check_finds_a_corrupt_blob_by_digest(daemon, imgs):
    res = daemon.cli("system", "check")
    assert res.returncode == 0, res.stdout
    assert re.search(rb"checked \d+ blobs, \d+ images, \d+ layers: no problems", res.stdout)
    image_id = imgs.new(uniq("chk") + ":1")
    blob = daemon.data_root / "content" / "blobs" / "sha256" / image_id[7:]
    original = blob.read_bytes()
    mode = blob.stat().st_mode
    try:
        os.chmod(blob, 0o644)
        blob.write_bytes(original.replace(b"}", b" }", 1))
        res = daemon.cli("system", "check")
        assert res.returncode == 1
        assert f"PROBLEM  blob {image_id}: content hashes to sha256:".encode() in res.stdout
        assert b"1 problem" in res.stdout
        status, report = raw(daemon, "GET", "/dockyard/system/check")
        assert status == 200 and {"Object": f"blob {image_id}",
                                  "Problem": report["Problems"][0]["Problem"]} in report["Problems"]
        quiet = daemon.cli("system", "check", "-q")
        assert quiet.returncode == 1 and quiet.stdout.decode().startswith("PROBLEM")
        blob.unlink()  # a missing config blob is a problem of the image
        res = daemon.cli("system", "check")
        assert res.returncode == 1 and f"image {image_id}: its config blob is missing".encode() in res.stdout
    finally:
        blob.write_bytes(original)
        os.chmod(blob, mode)
    assert daemon.cli("system", "check").returncode == 0
