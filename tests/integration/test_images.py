"""The local image store through the docker CLI, the docker SDK and our CLI:
images (filters, --digests, -q, -a), inspect, history, tag, rmi, image prune,
and Docker's answers to bad input."""

import io
import json
import os
import re
import tarfile
import time

import docker
import pytest

from images_common import out, q, raw, rootfs_with, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def ids_listed(daemon, *args):
    return out(daemon.docker("images", "-q", "--no-trunc", *args)).split()


# listing -------------------------------------------------------------------------
def test_images_table_quiet_digests_and_format(daemon, imgs):
    ref = uniq("list") + ":v1"
    image_id = imgs.new(ref)
    repo, tag = ref.split(":")
    table = out(daemon.docker("images", repo)).splitlines()
    assert re.split(r"\s{2,}", table[0]) == ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"]
    assert len(table) == 2
    row = re.split(r"\s{2,}", table[1])
    assert row[:3] == [repo, tag, image_id[7:19]] and row[4].endswith("MB")
    digests = out(daemon.docker("images", "--digests", repo)).splitlines()
    assert "DIGEST" in digests[0] and re.split(r"\s{2,}", digests[1])[2] == "<none>"
    assert out(daemon.docker("images", "-q", repo)).split() == [image_id[7:19]]
    assert out(daemon.docker("images", "--no-trunc", "-q", repo)).split() == [image_id]
    fmt = out(daemon.docker("images", "--format", "{{.Repository}}|{{.Tag}}|{{.ID}}", ref)).strip()
    assert fmt == f"{repo}|{tag}|{image_id[7:19]}"
    ours = out(daemon.cli("images", repo)).splitlines()
    assert re.split(r"\s{2,}", ours[1])[:3] == [repo, tag, image_id[7:19]]
    assert out(daemon.cli("images", "-q", repo)).split() == [image_id[7:19]]
    sdk = imgs.client.images.list(name=repo)
    assert [i.id for i in sdk] == [image_id] and sdk[0].tags == [ref]


def test_list_filters_dangling_label_reference_before_since(daemon, imgs):
    base = uniq("flt")
    a = imgs.new(f"{base}/a:1", ["LABEL tier=one"])
    b = imgs.new(f"{base}/b:1", ["LABEL tier=two"])
    c = imgs.new(f"{base}/c:1", ["LABEL tier=two", "LABEL extra=yes"])
    d = imgs.new(f"{base}/d:1")
    out(daemon.docker("tag", f"{base}/c:1", f"{base}/d:1"))  # the tag moves: d is dangling now
    lbl = f"label=suite={imgs.label}"
    mine = {a, b, c, d}
    # Docker lists dangling images without -a too (only intermediate ones are hidden)
    assert set(ids_listed(daemon, "-f", lbl)) == mine
    assert d in ids_listed(daemon, "-a") and d in ids_listed(daemon)
    table = out(daemon.docker("images", "-f", lbl, "-f", "dangling=true")).splitlines()
    assert re.split(r"\s{2,}", table[1])[:3] == ["<none>", "<none>", d[7:19]]
    assert ids_listed(daemon, "-f", lbl, "-f", "dangling=true") == [d]
    assert d not in ids_listed(daemon, "-f", "dangling=false")
    assert set(ids_listed(daemon, "-f", "label=tier=two")) >= {b, c}
    assert set(ids_listed(daemon, "-f", "label=tier=two")) & mine == {b, c}
    assert set(ids_listed(daemon, "-f", "label=tier=two", "-f", "label=extra")) & mine == {c}
    assert set(ids_listed(daemon, "-f", "label=tier")) & mine == {a, b, c}
    assert set(ids_listed(daemon, "-f", f"reference={base}/*")) == {a, b, c}  # never a dangling one
    assert set(ids_listed(daemon, "-f", f"reference={base}/b")) == {b}
    assert set(ids_listed(daemon, "-f", f"reference={base}/*:1")) == {a, b, c}
    assert ids_listed(daemon, "-f", f"reference={base}/*:2") == []
    assert set(ids_listed(daemon, "-f", lbl, "-f", f"since={base}/a:1")) == {b, c, d}
    assert set(ids_listed(daemon, "-f", lbl, "-f", f"before={base}/d:1")) == {a, b}  # d:1 is c now
    assert set(ids_listed(daemon, "-f", lbl, "-f", f"since={a}", "-f", f"before={c[7:19]}")) == {b}
    # the SDK's spelling of the same filters
    assert {i.id for i in imgs.client.images.list(filters={"label": f"suite={imgs.label}", "dangling": True})} == {d}
    assert {i.id for i in imgs.client.images.list(name=f"{base}/c")} == {c}
    bad = daemon.docker("images", "-f", "nosuch=1")
    assert bad.returncode != 0 and b"invalid filter 'nosuch'" in bad.stderr
    bad = daemon.docker("images", "-f", "dangling=maybe")
    assert bad.returncode != 0 and b"dangling" in bad.stderr
    bad = daemon.docker("images", "-f", "since=nosuch-image:1")
    assert bad.returncode != 0 and b"No such image: nosuch-image:1" in bad.stderr


# inspect --------------------------------------------------------------------------
def test_inspect_has_dockers_shape(daemon, imgs):
    ref = uniq("insp") + ":1"
    image_id = imgs.new(ref, ['CMD ["sh"]', "ENV A=1", "WORKDIR /srv"], message="my import")
    daemon.docker("tag", ref, ref.split(":")[0] + ":2")
    [doc] = json.loads(out(daemon.docker("image", "inspect", ref)))
    for key in ("Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "Container", "ContainerConfig",
                "DockerVersion", "Author", "Config", "Architecture", "Os", "Size", "VirtualSize", "GraphDriver",
                "RootFS", "Metadata"):
        assert key in doc, key
    assert doc["Id"] == image_id
    assert sorted(doc["RepoTags"]) == sorted([ref, ref.split(":")[0] + ":2"])
    assert doc["RepoDigests"] == [] and doc["Parent"] == "" and doc["Comment"] == "my import"
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Config"]["Env"] == ["A=1"]
    assert doc["Config"]["WorkingDir"] == "/srv" and doc["Config"]["Labels"] == {"suite": imgs.label}
    assert doc["Os"] == "linux" and doc["RootFS"]["Type"] == "layers"
    assert len(doc["RootFS"]["Layers"]) == 1 and doc["RootFS"]["Layers"][0].startswith("sha256:")
    assert doc["Size"] > 1_000_000 and doc["Size"] == doc["VirtualSize"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$", doc["Created"])
    assert doc["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    fmt = out(daemon.docker("inspect", "--type", "image", "-f", "{{.Id}} {{.Config.WorkingDir}}", image_id[7:19]))
    assert fmt.strip() == f"{image_id} /srv"
    assert imgs.client.images.get(ref).attrs == doc
    ours = json.loads(out(daemon.cli("image", "inspect", ref)))[0]
    assert ours == doc
    # every name resolves: full id, short id, id with sha256: prefix, normalised name
    for name in (image_id, image_id[7:19], image_id[:19], "docker.io/library/" + ref):
        assert imgs.client.images.get(name).id == image_id


def test_unknown_and_malformed_names(daemon, imgs, tmp_path):
    res = daemon.docker("image", "inspect", "nosuch-image-x")
    assert res.returncode == 1 and b"No such image: nosuch-image-x" in res.stderr
    for verb in (("rmi",), ("history",), ("tag", "nosuch-image-x", "a:b"), ("save", "-o", str(tmp_path / "s"))):
        args = verb + ("nosuch-image-x",) if verb[0] != "tag" else verb
        res = daemon.docker(*args)
        assert res.returncode != 0 and b"No such image: nosuch-image-x" in res.stderr, (args, res.stderr)
    status, body = raw(daemon, "GET", "/v1.41/images/nosuch-image-x/json")
    assert status == 404 and body == {"message": "No such image: nosuch-image-x:latest"}
    status, body = raw(daemon, "DELETE", "/v1.41/images/nosuch-image-x:3")
    assert status == 404 and body["message"] == "No such image: nosuch-image-x:3"
    # a reference that does not parse is a 400 that names it, not "no such image"
    for bad in ("UPPER", "a:b:c", "x@sha256:123", "a" * 300):
        for method, path in (("GET", f"/images/{q(bad)}/json"), ("DELETE", f"/images/{q(bad)}"),
                             ("GET", f"/images/{q(bad)}/history"), ("POST", f"/images/{q(bad)}/tag?repo=x")):
            status, body = raw(daemon, method, "/v1.41" + path)
            assert status == 400, (bad, method, path, body)
            assert "invalid reference format" in body["message"] and bad[:40] in body["message"]
    with pytest.raises(docker.errors.ImageNotFound):
        imgs.client.images.get("nosuch-image-x")
    with pytest.raises(docker.errors.APIError) as err:
        imgs.client.images.get("NotLower")
    assert err.value.status_code == 400
    res = daemon.cli("image", "inspect", "NotLower")
    assert res.returncode == 1 and b"invalid reference format" in res.stderr


# history ----------------------------------------------------------------------------
def test_history_of_an_import(daemon, imgs):
    ref = uniq("hist") + ":1"
    image_id = imgs.new(ref, message="hello history")
    lines = out(daemon.docker("history", ref)).splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
    assert len(lines) == 2 and lines[1].startswith(image_id[7:19]) and "hello history" in lines[1]
    assert out(daemon.docker("history", "-q", "--no-trunc", ref)).split() == [image_id]
    assert out(daemon.docker("history", "--format", "{{.ID}}:{{.Comment}}", ref)).strip() == \
        f"{image_id[7:19]}:hello history"
    h = imgs.client.images.get(ref).history()
    assert len(h) == 1 and h[0]["Id"] == image_id and h[0]["Tags"] == [ref] and h[0]["Size"] > 1_000_000
    assert out(daemon.cli("history", "-q", ref)).split() == [image_id[7:19]]
    assert "hello history" in out(daemon.cli("history", ref))


# tag -------------------------------------------------------------------------------------
def test_tag_names_and_moves(daemon, imgs):
    base = uniq("tag")
    one = imgs.new(f"{base}:one")
    two = imgs.new()
    for target in (f"localhost:5000/{base}/x:v1", f"docker.io/library/{base}:full", f"index.docker.io/{base}:idx",
                   f"example.com/{base}", f"{base}:UPPER_tag.ok-1"):
        assert daemon.docker("tag", f"{base}:one", target).returncode == 0, target
    tags = set(imgs.client.images.get(one).tags)
    assert tags == {f"{base}:one", f"localhost:5000/{base}/x:v1", f"{base}:full", f"{base}:idx",
                    f"example.com/{base}:latest", f"{base}:UPPER_tag.ok-1"}
    # moving a tag: the image it named keeps its other names
    assert out(daemon.cli("tag", two, f"{base}:one")) == ""
    assert imgs.client.images.get(f"{base}:one").id == two
    assert f"{base}:one" not in imgs.client.images.get(one).tags
    # Docker refuses what does not parse and digest targets
    status, body = raw(daemon, "POST", f"/v1.41/images/{one}/tag?repo={base}&tag=" + q("-bad"))
    assert status == 400 and "invalid reference format" in body["message"]
    status, body = raw(daemon, "POST", f"/v1.41/images/{one}/tag?repo=Upper")
    assert status == 400 and "Upper" in body["message"]
    status, body = raw(daemon, "POST", f"/v1.41/images/{one}/tag?repo=" + q(f"{base}@sha256:" + "a" * 64))
    assert status == 400
    assert imgs.client.images.get(one).tag(f"{base}/sdk", "t1") is True
    assert f"{base}/sdk:t1" in imgs.client.images.get(one).tags


# rmi ---------------------------------------------------------------------------------------
def test_rmi_untags_before_deleting(daemon, imgs):
    base = uniq("rmi")
    image_id = imgs.new(f"{base}:a")
    daemon.docker("tag", f"{base}:a", f"{base}:b")
    daemon.docker("tag", f"{base}:a", f"other-{base}:c")
    assert out(daemon.docker("rmi", f"{base}:a")).splitlines() == [f"Untagged: {base}:a"]
    # by id with tags in two repositories: refused unless forced
    res = daemon.docker("rmi", image_id[7:19])
    assert res.returncode == 1
    assert (f"conflict: unable to delete {image_id[7:19]} (must be forced) - image is referenced in multiple "
            "repositories").encode() in res.stderr
    status, _ = raw(daemon, "DELETE", f"/v1.41/images/{image_id}")
    assert status == 409
    lines = out(daemon.docker("rmi", "-f", image_id[7:19])).splitlines()
    assert sorted(lines[:2]) == sorted([f"Untagged: {base}:b", f"Untagged: other-{base}:c"])
    assert lines[2] == f"Deleted: {image_id}" and all(x.startswith("Deleted: sha256:") for x in lines[3:])
    with pytest.raises(docker.errors.ImageNotFound):
        imgs.client.images.get(image_id)


def test_rmi_by_id_with_one_tag_deletes(daemon, imgs):
    ref = uniq("rmi1") + ":x"
    image_id = imgs.new(ref)
    report = imgs.client.api.remove_image(image_id)
    assert report[0] == {"Untagged": ref} and report[1] == {"Deleted": image_id}
    assert out(daemon.cli("images", "-q", ref.split(":")[0])) == ""


def test_rmi_refused_while_a_container_uses_the_image(daemon, imgs):
    base = uniq("used")
    image_id = imgs.new(f"{base}:1")
    c = imgs.container(f"{base}:1", "true")  # created, never started: a stopped container
    res = daemon.docker("rmi", f"{base}:1")
    assert res.returncode == 1
    assert (f'conflict: unable to remove repository reference "{base}:1" (must force) - container '
            f"{c.id[:12]} is using its referenced image {image_id[7:19]}").encode() in res.stderr
    res = daemon.docker("rmi", image_id)
    assert res.returncode == 1 and b"(must be forced) - image is being used by stopped container" in res.stderr
    res = daemon.cli("rmi", f"{base}:1")
    assert res.returncode == 1 and b"must force" in res.stderr
    with pytest.raises(docker.errors.APIError) as err:
        imgs.client.images.remove(f"{base}:1")
    assert err.value.status_code == 409
    # a second name may go: the image keeps one
    daemon.docker("tag", f"{base}:1", f"{base}:2")
    assert out(daemon.docker("rmi", f"{base}:2")).strip() == f"Untagged: {base}:2"
    # a running container: by id, not even -f
    running = imgs.container(image_id, "sleep", "60")
    running.start()
    res = daemon.docker("rmi", "-f", image_id)
    assert res.returncode == 1 and (f"(cannot be forced) - image is being used by running container "
                                    f"{running.id[:12]}").encode() in res.stderr
    running.remove(force=True)
    c.reload()
    assert c.status == "created"
    # forced past the stopped container: the image goes, the container still runs
    # from its layers (test_rmi_forced_past_a_stopped_container_deletes_the_image)
    assert out(daemon.docker("rmi", "-f", f"{base}:1")).splitlines() == [f"Untagged: {base}:1",
                                                                        f"Deleted: {image_id}"]
    assert imgs.client.images.list(name=base) == []
    c.start()
    assert c.wait()["StatusCode"] == 0
    c.remove()
    with pytest.raises(docker.errors.ImageNotFound):
        imgs.client.images.get(image_id)


def test_rmi_forced_past_a_stopped_container_deletes_the_image(daemon, imgs, tmp_path):
    """dockerd 20.10: the image is gone (images -a, system df, rmi by id), the
    container keeps its image id and runs from the image's layers, which go with
    the container's removal; commit fails as dockerd's does (500: no config)."""
    layers_before = imgs.client.df()["LayersSize"]
    ref = uniq("rmif") + ":1"
    secret = os.urandom(8).hex()
    image_id = imgs.new(ref, tar=rootfs_with(imgs.busybox_tar, tmp_path / "r.tar", {"only-here": secret.encode()}))
    name = uniq("rmifc")
    out(daemon.docker("create", "--name", name, ref, "sh", "-c", "echo hi > /f; cat /only-here"))
    since = str(time.time() - 1)
    assert out(daemon.docker("rmi", "-f", ref)).splitlines() == [f"Untagged: {ref}", f"Deleted: {image_id}"]
    events = imgs.client.events(decode=True, since=since, until=time.time() + 0.5, filters={"type": "image"})
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in events
            if e["Actor"]["ID"] == image_id and e["Action"] in ("untag", "delete")] == \
        [("untag", image_id), ("delete", image_id)]
    assert image_id not in ids_listed(daemon, "-a")
    assert image_id not in [i["Id"] for i in imgs.client.df()["Images"]]
    res = daemon.docker("rmi", image_id)
    assert res.returncode == 1 and f"No such image: {image_id}".encode() in res.stderr
    # the container names the image it was made from, by id where the name is gone
    assert out(daemon.docker("ps", "-a", "--filter", f"name={name}", "--format", "{{.Image}}")).split() == \
        [image_id[7:19]]
    assert [c["Image"] for c in imgs.client.api.containers(all=True, filters={"name": name})] == [image_id]
    assert out(daemon.docker("inspect", "-f", "{{.Image}} {{.Config.Image}}", name)).split() == [image_id, ref]
    assert out(daemon.docker("ps", "-a", "-q", "--filter", f"ancestor={image_id}")) == ""  # dockerd: no image
    # it starts from the image's layers, and its own layer reads against them
    assert out(daemon.docker("start", "-a", name)) == secret
    assert "A /f" in out(daemon.docker("diff", name)).splitlines()
    exported = daemon.docker("export", name)
    assert exported.returncode == 0, exported.stderr
    names = tarfile.open(fileobj=io.BytesIO(exported.stdout)).getnames()
    assert "only-here" in names and "f" in names and "bin/sh" in names
    size_rw, size_root = map(int, out(daemon.docker("inspect", "-s", "-f", "{{.SizeRw}} {{.SizeRootFs}}",
                                                    name)).split())
    assert size_root >= size_rw + (1 << 20)  # the image's layers count (busybox: about 2 MB)
    status, body = raw(daemon, "POST", f"/commit?container={name}&repo={uniq('rmifcommit')}")
    assert status == 500 and body["message"] == f"failed to get digest {image_id}: no such image"
    # its layers went with it: none left over, nothing the storage driver holds unowned
    assert imgs.client.df()["LayersSize"] > layers_before
    out(daemon.docker("rm", name))
    assert imgs.client.df()["LayersSize"] == layers_before
    res = daemon.cli("system", "check")
    assert res.returncode == 0, res.stdout + res.stderr


# prune ---------------------------------------------------------------------------------------
def test_image_prune_dangling_then_all(daemon, imgs, tmp_path):
    base = uniq("prune")
    lbl = f"label=suite={imgs.label}"
    own = rootfs_with(imgs.busybox_tar, tmp_path / "own.tar", {"own": os.urandom(100_000)})
    tagged = imgs.new(f"{base}:keep", tar=own)  # a layer of its own, so its removal reclaims space
    dangling = imgs.new()
    used = imgs.new(f"{base}:used")
    imgs.container(used, "true")
    report = out(daemon.docker("image", "prune", "-f", "--filter", lbl))
    assert f"deleted: {dangling}" in report and "Total reclaimed space:" in report
    assert tagged not in report and used not in report
    assert ids_listed(daemon, "-a", "-f", lbl) and dangling not in ids_listed(daemon, "-a")
    # again: nothing to do
    assert out(daemon.docker("image", "prune", "-f", "--filter", lbl)).strip() == "Total reclaimed space: 0B"
    # -a: every image no container uses
    report = imgs.client.images.prune(filters={"dangling": False, "label": f"suite={imgs.label}"})
    assert {"Untagged": f"{base}:keep"} in report["ImagesDeleted"]
    assert {"Deleted": tagged} in report["ImagesDeleted"]
    assert 100_000 < report["SpaceReclaimed"] < 5_000_000  # its layer only: busybox's is shared
    assert set(ids_listed(daemon, "-a", "-f", lbl)) == {used}
    res = daemon.cli("image", "prune", "-a", "-f", "--filter", lbl)
    assert out(res).strip() == "Total reclaimed space: 0B"
    res = daemon.docker("image", "prune", "-f", "--filter", "bogus=1")
    assert res.returncode == 1 and b"invalid filter 'bogus'" in res.stderr


def test_prune_until_filter(daemon, imgs):
    old = imgs.new()
    res = out(daemon.docker("image", "prune", "-f", "--filter", f"label=suite={imgs.label}",
                            "--filter", "until=10m"))
    assert old not in res  # made just now: not older than 10 minutes
    res = out(daemon.docker("image", "prune", "-f", "--filter", f"label=suite={imgs.label}",
                            "--filter", "until=2100-01-01T00:00:00Z"))
    assert f"deleted: {old}" in res
