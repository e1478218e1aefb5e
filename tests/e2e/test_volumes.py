"""Volumes through the real ``docker`` CLI and SDK: the ``local`` driver, the
``/volumes`` API, containers' ``-v``/``--mount``/``--volumes-from``, ``rm -v``,
image content copied into new volumes, and persistence across daemon restarts."""

import json
import os
import shutil
import uuid

import pytest

from dockyard.testing.daemon import Daemon, mounts_under

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def uid(prefix="v"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def mounts_json(d, name):
    return json.loads(ok(d.docker("inspect", "-f", "{{json .Mounts}}", name)))


def test_create_inspect_ls_rm(daemon):
    name = uid()
    assert ok(daemon.docker("volume", "create", "--label", "team=db", "--label", "tier", name)).strip() == name
    [vol] = json.loads(ok(daemon.docker("volume", "inspect", name)))
    assert vol["Name"] == name and vol["Driver"] == "local" and vol["Scope"] == "local"
    assert vol["Labels"] == {"team": "db", "tier": ""} and vol["Options"] == {}
    assert vol["Mountpoint"] == str(daemon.data_root / "volumes" / name / "_data")
    assert os.path.isdir(vol["Mountpoint"]) and vol["CreatedAt"].endswith("Z")
    assert ok(daemon.docker("volume", "create", name)).strip() == name  # idempotent
    listed = ok(daemon.docker("volume", "ls", "-q", "--filter", "label=team=db")).split()
    assert name in listed
    assert name not in ok(daemon.docker("volume", "ls", "-q", "--filter", "label=team=web")).split()
    assert name in ok(daemon.docker("volume", "ls", "-q", "--filter", f"name={name[2:]}")).split()
    assert name in ok(daemon.docker("volume", "ls", "-q", "--filter", "dangling=true")).split()
    assert name in ok(daemon.docker("volume", "ls", "-q", "--filter", "driver=local")).split()
    table = ok(daemon.docker("volume", "ls")).splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME"] and f"local     {name}" in table
    assert ok(daemon.docker("volume", "inspect", "-f", "{{.Driver}}:{{.Name}}", name)).strip() == f"local:{name}"
    assert ok(daemon.docker("volume", "rm", name)).strip() == name
    assert not os.path.exists(vol["Mountpoint"])
    res = daemon.docker("volume", "inspect", name)
    assert res.returncode == 1 and b"no such volume" in res.stderr
    assert daemon.docker("volume", "rm", "-f", name).returncode == 0  # force: a missing one is fine


def test_bad_requests_are_refused(daemon):
    res = daemon.docker("volume", "create", "-o", "colour=red", uid())
    assert res.returncode == 1 and b"invalid option key: 'colour'" in res.stderr
    res = daemon.docker("volume", "create", "-o", "type=tmpfs", uid())
    assert res.returncode == 1 and b'missing required option: "device"' in res.stderr
    res = daemon.docker("volume", "create", "bad/name")
    assert res.returncode == 1 and b"includes invalid characters" in res.stderr
    res = daemon.docker("volume", "create", "-d", "nosuch", uid())
    assert res.returncode == 1 and b'plugin "nosuch" not found' in res.stderr
    res = daemon.docker("run", "--rm", "-v", "x/y:/data", "busybox", "true")
    assert res.returncode == 125 and b"includes invalid characters" in res.stderr
    assert daemon.docker("volume", "ls", "-q").stdout.decode().split().count("bad") == 0


def test_data_persists_across_containers_and_ro_is_enforced(daemon):
    name = uid()
    ok(daemon.docker("run", "--rm", "-v", f"{name}:/data", "busybox", "sh", "-c", "echo kept > /data/f"))
    assert ok(daemon.docker("volume", "inspect", "-f", "{{.Name}}", name)).strip() == name  # made on demand
    assert ok(daemon.docker("run", "--rm", "-v", f"{name}:/x", "busybox", "cat", "/x/f")) == "kept\n"
    res = daemon.docker("run", "--rm", "-v", f"{name}:/x:ro", "busybox", "sh", "-c", "cat /x/f; touch /x/g")
    assert res.returncode == 1 and res.stdout == b"kept\n" and b"Read-only file system" in res.stderr
    res = daemon.docker("run", "--rm", "--mount", f"type=volume,src={name},dst=/m,readonly", "busybox",
                        "touch", "/m/g")
    assert res.returncode == 1 and b"Read-only file system" in res.stderr
    ok(daemon.docker("volume", "rm", name))


def test_in_use_volume_is_refused_with_409(daemon):
    client = daemon.sdk()
    name, cname = uid(), uid("c")
    import docker

    vol = client.volumes.create(name, labels={"k": "v"})
    assert vol.attrs["Labels"] == {"k": "v"} and vol.attrs["UsageData"] is None
    c = client.containers.create("busybox", "true", name=cname, volumes={name: {"bind": "/data", "mode": "rw"}})
    with pytest.raises(docker.errors.APIError) as info:
        vol.remove()
    assert info.value.status_code == 409
    assert info.value.explanation == f"remove {name}: volume is in use - [{c.id}]"
    with pytest.raises(docker.errors.APIError):
        vol.remove(force=True)  # force does not bypass the in-use check
    res = daemon.docker("volume", "rm", name)
    assert res.returncode == 1 and b"volume is in use" in res.stderr
    assert name not in [v.name for v in client.volumes.list(filters={"dangling": True})]
    assert name in [v.name for v in client.volumes.list(filters={"dangling": False})]
    c.remove()
    vol.remove()
    assert name not in [v.name for v in client.volumes.list()]
    client.close()


def test_image_volume_content_is_copied_into_a_new_volume(daemon):
    src, image, c1 = uid("c"), f"volimg-{uuid.uuid4().hex[:8]}", uid("c")
    ok(daemon.docker("run", "--name", src, "busybox", "sh", "-c",
                     "mkdir -p /data/sub && echo seed > /data/sub/f && chown -R 1234:5678 /data && "
                     "chmod 0750 /data && chmod 0604 /data/sub/f"))
    ok(daemon.docker("commit", "--change", "VOLUME /data", src, image))
    ok(daemon.docker("rm", src))
    try:
        out = ok(daemon.docker("run", "--name", c1, image, "sh", "-c",
                               "stat -c '%u:%g %a' /data /data/sub/f; cat /data/sub/f; grep ' /data ' /proc/mounts"))
        lines = out.splitlines()
        assert lines[:3] == ["1234:5678 750", "1234:5678 604", "seed"]
        assert len(lines) == 4  # /data is a mount: the anonymous volume
        [m] = mounts_json(daemon, c1)
        assert m["Type"] == "volume" and m["Destination"] == "/data" and m["RW"] is True
        assert len(m["Name"]) == 64 and all(ch in "0123456789abcdef" for ch in m["Name"])
        anon = m["Name"]
        st = os.stat(os.path.join(m["Source"], "sub", "f"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (1234, 5678, 0o604)
        # a named volume gets the image's content too, unless nocopy
        named, empty = uid(), uid()
        assert ok(daemon.docker("run", "--rm", "-v", f"{named}:/data", image, "cat", "/data/sub/f")) == "seed\n"
        assert ok(daemon.docker("run", "--rm", "-v", f"{empty}:/data:nocopy", image, "ls", "-A", "/data")) == ""
        assert ok(daemon.docker("run", "--rm", "--mount", "type=volume,dst=/data,volume-nocopy", image,
                                "ls", "-A", "/data")) == ""
        # a volume that has data is not overwritten
        ok(daemon.docker("run", "--rm", "-v", f"{named}:/data", "busybox", "sh", "-c", "echo mine > /data/sub/f"))
        assert ok(daemon.docker("run", "--rm", "-v", f"{named}:/data", image, "cat", "/data/sub/f")) == "mine\n"
        # rm -v: the anonymous volume goes, named ones stay
        ok(daemon.docker("rm", "-v", c1))
        names = ok(daemon.docker("volume", "ls", "-q")).split()
        assert anon not in names and named in names and empty in names
        ok(daemon.docker("volume", "rm", named, empty))
    finally:
        daemon.docker("rm", "-f", c1)
        daemon.docker("rmi", image)


def test_rm_without_v_keeps_anonymous_volumes_and_run_rm_removes_them(daemon):
    c1 = uid("c")
    ok(daemon.docker("create", "--name", c1, "-v", "/scratch", "busybox", "true"))
    [m] = mounts_json(daemon, c1)
    assert m["Type"] == "volume" and m["Mode"] == "" and m["Driver"] == "local"
    ok(daemon.docker("rm", c1))
    assert m["Name"] in ok(daemon.docker("volume", "ls", "-q")).split()
    ok(daemon.docker("volume", "rm", m["Name"]))
    before = set(ok(daemon.docker("volume", "ls", "-q")).split())
    ok(daemon.docker("run", "--rm", "-v", "/scratch", "busybox", "touch", "/scratch/x"))
    assert set(ok(daemon.docker("volume", "ls", "-q")).split()) == before


def test_tmpfs_volume_is_really_tmpfs_and_unmounted_after_use(daemon):
    name, cname = uid(), uid("c")
    ok(daemon.docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                     "--opt", "o=size=64m,uid=1000", name))
    mountpoint = ok(daemon.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name)).strip()
    assert json.loads(ok(daemon.docker("volume", "inspect", "-f", "{{json .Options}}", name))) == {
        "type": "tmpfs", "device": "tmpfs", "o": "size=64m,uid=1000"}
    ok(daemon.docker("run", "-d", "--name", cname, "-v", f"{name}:/t", "busybox", "sleep", "300"))
    try:
        line = ok(daemon.docker("exec", cname, "grep", " /t ", "/proc/mounts"))
        assert line.split()[2] == "tmpfs" and "size=65536k" in line and "uid=1000" in line
        assert mountpoint in mounts_under(mountpoint)  # mounted on the host at first use
        ok(daemon.docker("exec", cname, "sh", "-c", "echo x > /t/f"))
    finally:
        ok(daemon.docker("rm", "-f", cname))
    assert mounts_under(mountpoint) == []  # the last user is gone: unmounted
    assert ok(daemon.docker("run", "--rm", "-v", f"{name}:/t", "busybox", "ls", "-A", "/t")) == ""  # tmpfs: fresh
    ok(daemon.docker("volume", "rm", name))


def test_local_bind_volume_and_mount_flags(daemon, tmp_path):
    host_dir = tmp_path / "shared"
    host_dir.mkdir()
    (host_dir / "hello").write_text("from host\n")
    name = uid()
    ok(daemon.docker("volume", "create", "-o", "type=none", "-o", f"device={host_dir}", "-o", "o=bind", name))
    assert ok(daemon.docker("run", "--rm", "-v", f"{name}:/h", "busybox", "cat", "/h/hello")) == "from host\n"
    ok(daemon.docker("volume", "rm", name))
    assert (host_dir / "hello").exists()  # removing the volume never deletes the bound host data
    # --mount type=volume with driver options makes the volume on demand
    opt = uid()
    out = ok(daemon.docker("run", "--rm", "--mount",
                           f"type=volume,src={opt},dst=/o,volume-opt=type=tmpfs,volume-opt=device=tmpfs,"
                           "volume-opt=o=size=8m", "busybox", "grep", " /o ", "/proc/mounts"))
    assert out.split()[2] == "tmpfs" and "size=8192k" in out
    ok(daemon.docker("volume", "rm", opt))
    # --mount type=bind (readonly, propagation) and type=tmpfs
    cname = uid("c")
    ok(daemon.docker("create", "--name", cname, "--mount", f"type=bind,src={host_dir},dst=/b,readonly,"
                     "bind-propagation=rslave", "--mount", "type=tmpfs,dst=/tm,tmpfs-size=16m,tmpfs-mode=1770",
                     "busybox", "sh", "-c", "cat /b/hello; touch /b/x 2>/dev/null || echo ro; "
                     "stat -c %a /tm; grep ' /tm ' /proc/mounts"))
    mounts = {m["Destination"]: m for m in mounts_json(daemon, cname)}
    assert mounts["/b"] == {"Type": "bind", "Source": str(host_dir), "Destination": "/b", "Mode": "", "RW": False,
                            "Propagation": "rslave"}
    assert mounts["/tm"]["Type"] == "tmpfs" and mounts["/tm"]["RW"] is True
    ok(daemon.docker("start", cname))
    assert ok(daemon.docker("wait", cname)).strip() == "0"
    logs = ok(daemon.docker("logs", cname)).splitlines()
    assert logs[:3] == ["from host", "ro", "1770"] and "size=16384k" in logs[3]
    ok(daemon.docker("rm", cname))


def test_volumes_from(daemon, tmp_path):
    src, c2, c3 = uid("c"), uid("c"), uid("c")
    name = uid()
    (tmp_path / "b").mkdir()
    ok(daemon.docker("create", "--name", src, "-v", f"{name}:/named", "-v", "/anon", "-v", f"{tmp_path}/b:/bnd",
                     "busybox", "true"))
    try:
        ok(daemon.docker("run", "--name", c2, "--volumes-from", src, "busybox", "sh", "-c",
                         "echo n > /named/f; echo a > /anon/f; echo b > /bnd/f"))
        dests = {m["Destination"]: m for m in mounts_json(daemon, c2)}
        assert set(dests) == {"/named", "/anon", "/bnd"} and dests["/named"]["Name"] == name
        assert (tmp_path / "b" / "f").read_text() == "b\n"
        res = daemon.docker("run", "--name", c3, "--volumes-from", f"{src}:ro", "busybox", "sh", "-c",
                            "cat /named/f /anon/f; touch /anon/g")
        assert res.returncode == 1 and res.stdout == b"n\na\n" and b"Read-only" in res.stderr
        assert all(m["RW"] is False for m in mounts_json(daemon, c3))
        import docker

        with pytest.raises(docker.errors.NotFound, match="No such container: no-such-container"):
            daemon.sdk().containers.create("busybox", "true", volumes_from=["no-such-container"])
        anon = next(m["Name"] for m in mounts_json(daemon, src) if m["Destination"] == "/anon")
        ok(daemon.docker("rm", "-v", c2))  # the anonymous volume is still src's and c3's: kept
        assert anon in ok(daemon.docker("volume", "ls", "-q")).split()
    finally:
        daemon.docker("rm", "-f", "-v", c2)
        daemon.docker("rm", "-f", "-v", c3)
        daemon.docker("rm", "-f", "-v", src)
    names = ok(daemon.docker("volume", "ls", "-q")).split()
    assert anon not in names and name in names
    ok(daemon.docker("volume", "rm", name))


def test_prune(daemon):
    client = daemon.sdk()
    keep, gone, used, cname = uid(), uid(), uid(), uid("c")
    client.volumes.create(keep, labels={"keep": "yes"})
    client.volumes.create(gone, labels={"keep": "no"})
    client.volumes.create(used)
    ok(daemon.docker("run", "--rm", "-v", f"{gone}:/d", "busybox", "sh", "-c", "head -c 5000 /dev/zero > /d/z"))
    c = client.containers.create("busybox", "true", name=cname, volumes=[f"{used}:/u"])
    try:
        report = client.volumes.prune(filters={"label": "keep=no"})
        assert report["VolumesDeleted"] == [gone] and report["SpaceReclaimed"] == 5000
        out = ok(daemon.docker("volume", "prune", "-f", "--filter", "label!=keep=yes"))
        names = ok(daemon.docker("volume", "ls", "-q")).split()
        assert keep in names and used in names
        assert "Total reclaimed space" in out
    finally:
        c.remove()
    report = client.volumes.prune(filters={"label": "keep"})
    assert report["VolumesDeleted"] == [keep]
    client.volumes.get(used).remove()
    client.close()


def test_volumes_survive_a_daemon_restart(session_root, busybox_tar):
    d = Daemon(session_root / f"vol-restart-{uuid.uuid4().hex[:6]}").start()
    try:
        ok(d.cli("import", str(busybox_tar), "busybox"))
        ok(d.docker("volume", "create", "--label", "a=1", "keep"))
        ok(d.docker("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "mem"))
        ok(d.docker("run", "--rm", "-v", "keep:/k", "busybox", "sh", "-c", "echo persisted > /k/f"))
        ok(d.docker("run", "-d", "--name", "runner", "-v", "mem:/m", "busybox", "sleep", "300"))
        mem_path = ok(d.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "mem")).strip()
        d.stop()
        d.start()
        vols = {v["Name"]: v for v in json.loads(ok(d.docker("volume", "inspect", "keep", "mem")))}
        assert vols["keep"]["Labels"] == {"a": "1"} and vols["mem"]["Options"]["type"] == "tmpfs"
        assert ok(d.docker("run", "--rm", "-v", "keep:/k", "busybox", "cat", "/k/f")) == "persisted\n"
        res = d.docker("volume", "rm", "mem")
        assert res.returncode == 1 and b"volume is in use" in res.stderr
        ok(d.docker("exec", "runner", "sh", "-c", "echo y > /m/y"))
        assert mounts_under(mem_path) == [mem_path]  # the running container kept its tmpfs
        ok(d.docker("rm", "-f", "runner"))
        assert mounts_under(mem_path) == []  # the restored use was counted: the last user unmounts
        ok(d.docker("volume", "rm", "keep", "mem"))
    finally:
        for c in d.sdk().containers.list(all=True):
            c.remove(force=True)
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []


def test_dockyard_volume_cli(daemon):
    name = uid()
    assert ok(daemon.cli("volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs",
                         "--label", "x=1", name)).strip() == name
    anon = ok(daemon.cli("volume", "create")).strip()
    assert len(anon) == 64
    assert ok(daemon.cli("volume", "ls", "-q", "-f", "label=x=1")).split() == [name]
    assert ok(daemon.cli("volume", "ls", "--format", "{{.Name}} {{.Driver}}", "-f", f"name={name}")) == f"{name} local\n"
    assert ok(daemon.cli("volume", "inspect", "--format", "{{.Options.type}}", name)).strip() == "tmpfs"
    [vol] = json.loads(ok(daemon.cli("volume", "inspect", name)))
    assert vol["Labels"] == {"x": "1"}
    res = daemon.cli("volume", "create", "-o", "bogus=1", uid())
    assert res.returncode == 1 and b"invalid option key" in res.stderr
    cname = uid("c")
    ok(daemon.cli("create", "--name", cname, "-v", f"{name}:/t", "busybox", "true"))
    res = daemon.cli("volume", "rm", name)
    assert res.returncode == 1 and b"volume is in use" in res.stderr
    ok(daemon.cli("rm", cname))
    out = ok(daemon.cli("volume", "prune", "-f", "--filter", "label=x=1"))
    assert out.startswith(f"Deleted Volumes:\n{name}\n") and "Total reclaimed space" in out
    assert ok(daemon.cli("volume", "rm", anon)).strip() == anon
    res = daemon.cli("volume", "inspect", anon)
    assert res.returncode == 1 and b"no such volume" in res.stderr
