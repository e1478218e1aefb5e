"""Container operations through the real ``docker`` CLI and the docker SDK:
cp (both ways, symlinks kept inside the container), top, rename, update (the
cgroup really changes), diff, export, port, pause, container prune."""

import io
import os
import shutil
import tarfile
import uuid

import docker
import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def _name():
    return f"ops-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def running(daemon):
    name = _name()
    res = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
    assert res.returncode == 0, res.stderr.decode()
    yield name
    daemon.docker("rm", "-f", name)


def _ok(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout.decode()


def _tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode, ti.uid, ti.gid = len(data), 0o640, 1234, 4321
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_docker_cp_both_ways_running_and_stopped(daemon, running, tmp_path):
    payload = os.urandom(300_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(payload)
    _ok(daemon.docker("exec", running, "mkdir", "-p", "/data"))
    _ok(daemon.docker("cp", str(src), f"{running}:/data/"))                 # into a directory
    _ok(daemon.docker("cp", str(src), f"{running}:/data/renamed.bin"))      # file -> new file name
    out = tmp_path / "back.bin"
    _ok(daemon.docker("cp", f"{running}:/data/renamed.bin", str(out)))
    assert out.read_bytes() == payload
    res = daemon.docker("exec", running, "md5sum", "/data/blob.bin")
    import hashlib
    assert res.stdout.split()[0].decode() == hashlib.md5(payload).hexdigest()
    # a directory, and `-` (a tar on stdout / stdin)
    _ok(daemon.docker("cp", f"{running}:/data", str(tmp_path / "datadir")))
    assert sorted(os.listdir(tmp_path / "datadir")) == ["blob.bin", "renamed.bin"]
    res = daemon.docker("cp", f"{running}:/data/blob.bin", "-")
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        assert tar.getnames() == ["blob.bin"] and tar.extractfile("blob.bin").read() == payload
    _ok(daemon.docker("cp", "-", f"{running}:/tmp", input=_tar({"fromstdin.txt": b"stdin bytes"})))
    assert _ok(daemon.docker("exec", running, "cat", "/tmp/fromstdin.txt")) == "stdin bytes"
    # missing paths: Docker's messages
    res = daemon.docker("cp", f"{running}:/no/such/file", str(tmp_path))
    assert res.returncode != 0 and b"Could not find the file /no/such/file" in res.stderr
    # stopped: the container's layer is mounted for the copy
    _ok(daemon.docker("stop", "-t", "1", running))
    _ok(daemon.docker("cp", str(src), f"{running}:/data/while-stopped.bin"))
    back = tmp_path / "stopped.bin"
    _ok(daemon.docker("cp", f"{running}:/data/while-stopped.bin", str(back)))
    assert back.read_bytes() == payload
    _ok(daemon.docker("start", running))
    assert _ok(daemon.docker("exec", running, "ls", "/data")).split() == ["blob.bin", "renamed.bin",
                                                                           "while-stopped.bin"]


def test_cp_symlinks_stay_inside_the_container(daemon, running, tmp_path):
    marker = tmp_path / "host-secret"
    marker.write_text("host only")
    _ok(daemon.docker("exec", running, "sh", "-c",
                      f"mkdir /x && ln -s ../../../../../../ /x/up && ln -s {tmp_path} /x/abs && "
                      "echo inside > /tmp/host-secret"))
    # reading through the links reads the container's files, never the host's
    res = daemon.docker("cp", f"{running}:/x/up/etc/passwd", "-")
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        assert b"root:x:0:0" in tar.extractfile("passwd").read()
    res = daemon.docker("cp", f"{running}:/x/abs/host-secret", "-")
    assert res.returncode != 0 and b"Could not find the file" in res.stderr
    res = daemon.docker("cp", f"{running}:/x/abs/", str(tmp_path / "nope"))  # no such directory in there
    assert res.returncode != 0 and not (tmp_path / "nope").exists()
    _ok(daemon.docker("exec", running, "mkdir", "-p", str(tmp_path)))
    # a link itself is copied as a link
    res = daemon.docker("cp", f"{running}:/x/up", "-")
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        ti = tar.getmember("up")
        assert ti.issym() and ti.linkname == "../../../../../../"
    # writing through them lands inside the container
    src = tmp_path / "through-link.txt"
    src.write_text("via link")
    _ok(daemon.docker("cp", str(src), f"{running}:/x/abs/"))
    assert sorted(os.listdir(tmp_path)) == ["host-secret", "through-link.txt"]
    assert _ok(daemon.docker("exec", running, "cat", f"{tmp_path}/through-link.txt")) == "via link"
    _ok(daemon.docker("cp", str(src), f"{running}:/x/up/tmp/"))
    assert _ok(daemon.docker("exec", running, "cat", "/tmp/through-link.txt")) == "via link"
    # a tar whose entries climb out is refused (SDK: no client-side checks)
    client = daemon.sdk()
    try:
        evil = io.BytesIO()
        with tarfile.open(fileobj=evil, mode="w") as tar:
            ti = tarfile.TarInfo("../../../../escaped.txt")
            ti.size = 3
            tar.addfile(ti, io.BytesIO(b"bad"))
        import docker.errors
        with pytest.raises(docker.errors.APIError) as err:
            client.containers.get(running).put_archive("/tmp", evil.getvalue())
        assert err.value.status_code == 400
        assert not os.path.exists("/escaped.txt")
    finally:
        client.close()


def test_sdk_archive_stat_and_put_options(daemon, running):
    import docker.errors

    client = daemon.sdk()
    try:
        c = client.containers.get(running)
        assert c.put_archive("/tmp", _tar({"dir": None, "dir/a.txt": b"A" * 10}))
        stream, stat = c.get_archive("/tmp/dir/a.txt")
        assert stat["name"] == "a.txt" and stat["size"] == 10 and stat["mode"] & 0o777 == 0o640
        data = b"".join(stream)
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            ti = tar.getmember("a.txt")
            assert tar.extractfile(ti).read() == b"A" * 10 and (ti.uid, ti.gid) == (1234, 4321)
        _, stat = c.get_archive("/tmp/dir")
        assert stat["mode"] & (1 << 31)  # Go's os.ModeDir
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/tmp/nope")
        with pytest.raises(docker.errors.NotFound):
            c.put_archive("/tmp/nope", _tar({"x": b"x"}))
        with pytest.raises(docker.errors.APIError) as err:  # not a directory
            c.put_archive("/tmp/dir/a.txt", _tar({"x": b"x"}))
        assert err.value.status_code == 400 and "not a directory" in str(err.value)
        # noOverwriteDirNonDir: a file may not replace a directory (nothing is written)
        res = client.api._put(client.api._url("/containers/{0}/archive", running),
                              params={"path": "/tmp", "noOverwriteDirNonDir": "1"},
                              data=_tar({"fresh.txt": b"f", "dir": b"not a dir"}))
        assert res.status_code == 400 and "cannot overwrite directory" in res.json()["message"]
        assert "fresh.txt" not in _ok(daemon.docker("exec", running, "ls", "/tmp"))
    finally:
        client.close()


def test_cp_read_only_rootfs_and_bind_mounts(daemon, tmp_path):
    name = _name()
    bind = tmp_path / "bound"
    bind.mkdir()
    src = tmp_path / "in.txt"
    src.write_text("to the bind")
    _ok(daemon.docker("run", "-d", "--name", name, "--read-only", "-v", f"{bind}:/mnt/b", "busybox", "sleep", "300"))
    try:
        res = daemon.docker("cp", str(src), f"{name}:/tmp/")
        assert res.returncode != 0 and b"read-only" in res.stderr
        _ok(daemon.docker("cp", str(src), f"{name}:/mnt/b/"))        # a writable bind in a read-only root
        assert (bind / "in.txt").read_text() == "to the bind"
        _ok(daemon.docker("stop", "-t", "1", name))
        # stopped: its binds are reached in their sources, as dockerd mounts them for the copy
        res = daemon.docker("cp", f"{name}:/mnt/b/in.txt", "-")
        assert res.returncode == 0, res.stderr
        with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
            assert tar.extractfile("in.txt").read() == b"to the bind"
        _ok(daemon.docker("cp", str(src), f"{name}:/mnt/b/again.txt"))
        assert (bind / "again.txt").read_text() == "to the bind"
        res = daemon.docker("cp", str(src), f"{name}:/tmp/")
        assert res.returncode != 0 and b"read-only" in res.stderr
    finally:
        daemon.docker("rm", "-f", name)


def test_cp_of_a_stopped_containers_read_only_bind_and_tmpfs(daemon, tmp_path):
    name = _name()
    bind = tmp_path / "bound"
    bind.mkdir()
    (bind / "there.txt").write_text("kept")
    src = tmp_path / "in.txt"
    src.write_text("x")
    _ok(daemon.docker("create", "--name", name, "-v", f"{bind}:/mnt/ro:ro", "--tmpfs", "/mnt/t", "busybox", "true"))
    try:
        res = daemon.docker("cp", f"{name}:/mnt/ro/there.txt", "-")
        assert res.returncode == 0, res.stderr
        res = daemon.docker("cp", str(src), f"{name}:/mnt/ro/")
        assert res.returncode != 0 and b"read-only" in res.stderr
        assert sorted(p.name for p in bind.iterdir()) == ["there.txt"]
        # a tmpfs is not there while stopped: the layer below it is (as dockerd reads it)
        client = daemon.sdk()
        try:
            with pytest.raises(docker.errors.NotFound):
                client.api.get_archive(name, "/mnt/t/x")
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", name)


def test_top_lists_the_containers_processes(daemon, running):
    _ok(daemon.docker("exec", "-d", running, "sleep", "123"))
    import time
    for _ in range(50):
        out = _ok(daemon.docker("top", running))
        if "sleep 123" in out:
            break
        time.sleep(0.1)
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["UID", "PID", "PPID"]
    cmds = [line.split(None, 7)[-1] for line in lines[1:]]
    assert sorted(cmds) == ["sleep 123", "sleep 300"], out
    client = daemon.sdk()
    try:
        top = client.containers.get(running).top(ps_args="-o pid,comm")
        assert top["Titles"] == ["PID", "COMMAND"] and sorted(p[1] for p in top["Processes"]) == ["sleep", "sleep"]
        pid = int(client.api.inspect_container(running)["State"]["Pid"])
        assert pid in [int(p[0]) for p in top["Processes"]]
    finally:
        client.close()
    stopped = _name()
    _ok(daemon.docker("create", "--name", stopped, "busybox", "true"))
    try:
        res = daemon.docker("top", stopped)
        assert res.returncode != 0 and b"is not running" in res.stderr
    finally:
        daemon.docker("rm", stopped)


def test_rename(daemon, running):
    new, other = _name(), _name()
    _ok(daemon.docker("rename", running, new))
    assert _ok(daemon.docker("inspect", "-f", "{{.Name}}", new)).strip() == "/" + new
    assert daemon.docker("inspect", running).returncode != 0
    _ok(daemon.docker("create", "--name", other, "busybox", "true"))
    try:
        res = daemon.docker("rename", new, other)
        assert res.returncode != 0 and b"is already in use" in res.stderr
        res = daemon.docker("rename", new, "bad name!")
        assert res.returncode != 0 and b"Invalid container name" in res.stderr
        client = daemon.sdk()
        try:
            c = client.containers.get(new)
            c.rename(running)  # back, so the fixture removes it
            assert client.containers.get(running).id == c.id
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", other)


def _cgroup_file(daemon, cid, controller, name):
    return open(f"/sys/fs/cgroup/{controller}/{daemon.cgroup_parent}/{cid}/{name}").read().strip()


@pytest.mark.skipif(not os.path.isdir("/sys/fs/cgroup/memory"), reason="cgroup v1 file names")
def test_update_changes_the_cgroup_live(daemon, running):
    cid = _ok(daemon.docker("inspect", "-f", "{{.Id}}", running)).strip()
    _ok(daemon.docker("update", "--memory", "48m", "--memory-swap", "96m", "--cpus", "0.5", "--pids-limit", "42",
                      "--cpu-shares", "512", "--restart", "on-failure:2", running))
    assert _cgroup_file(daemon, cid, "memory", "memory.limit_in_bytes") == str(48 << 20)
    assert _cgroup_file(daemon, cid, "pids", "pids.max") == "42"
    assert _cgroup_file(daemon, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _cgroup_file(daemon, cid, "cpu", "cpu.shares") == "512"
    fmt = "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}"
    assert _ok(daemon.docker("inspect", "-f", fmt, running)).split() == [str(48 << 20), "500000000", "42",
                                                                          "on-failure"]
    client = daemon.sdk()
    try:
        out = client.containers.get(running).update(mem_limit="40m", memswap_limit="80m")
        assert out == {"Warnings": []}
    finally:
        client.close()
    assert _cgroup_file(daemon, cid, "memory", "memory.limit_in_bytes") == str(40 << 20)
    _ok(daemon.docker("update", "--pids-limit", "-1", running))
    assert _cgroup_file(daemon, cid, "pids", "pids.max") == "max"
    # what cannot change is refused with Docker's message
    res = daemon.docker("update", "--cpu-quota", "20000", running)
    assert res.returncode != 0 and b"NanoCPUs has already been set" in res.stderr
    res = daemon.docker("update", "--memory", "200m", running)
    assert res.returncode != 0 and b"Memory limit should be smaller than already set memoryswap" in res.stderr
    # the limits survive a restart of the container (they were persisted)
    _ok(daemon.docker("stop", "-t", "1", running))
    _ok(daemon.docker("start", running))
    assert _cgroup_file(daemon, cid, "memory", "memory.limit_in_bytes") == str(40 << 20)


def test_update_refuses_restart_policy_with_auto_remove(daemon):
    name = _name()
    _ok(daemon.docker("create", "--rm", "--name", name, "busybox", "sleep", "60"))
    try:
        res = daemon.docker("update", "--restart", "always", name)
        assert res.returncode != 0 and b"AutoRemove is enabled" in res.stderr
        client = daemon.sdk()
        try:
            with pytest.raises(docker.errors.APIError) as err:
                client.api.update_container(name, restart_policy={"Name": "always"})
            assert err.value.status_code == 409  # dockerd's: a conflict with the container's settings
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", name)


def test_inspect_shows_the_settings_the_daemon_chose(daemon):
    """What dockerd fills in of an unset HostConfig, each as the daemon applies it."""
    name, privileged = _name(), _name()
    _ok(daemon.docker("create", "--name", name, "busybox", "true"))
    _ok(daemon.docker("create", "--name", privileged, "--privileged", "--log-driver", "none",
                      "--memory-swappiness", "10", "--cgroupns", "host", "busybox", "true"))
    client = daemon.sdk()
    try:
        host = client.api.inspect_container(name)["HostConfig"]
        assert host["MemorySwappiness"] is None
        assert host["LogConfig"] == {"Type": "json-file", "Config": {}}
        assert host["CgroupnsMode"] == "private"  # the exec drivers always make one (dockerd: "host" on cgroup v1)
        assert "/proc/timer_list" in host["MaskedPaths"] and "/sys/firmware" in host["MaskedPaths"]
        assert host["ReadonlyPaths"] == ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        other = client.api.inspect_container(privileged)["HostConfig"]
        assert (other["MemorySwappiness"], other["LogConfig"]["Type"], other["CgroupnsMode"]) == (10, "none", "host")
        assert other["MaskedPaths"] is None and other["ReadonlyPaths"] is None  # privileged: nothing masked
        # what inspect says is masked is what the container finds masked
        out = _ok(daemon.docker("run", "--rm", "busybox", "sh", "-c",
                                "grep -c ' /proc/timer_list ' /proc/mounts; grep ' /proc/sys ' /proc/mounts; "
                                "readlink /proc/self/ns/cgroup"))
        masked, sys_mount, cgroupns = out.split("\n")[:3]
        assert masked == "1" and " ro," in sys_mount
        assert cgroupns != os.readlink("/proc/self/ns/cgroup")
    finally:
        client.close()
        daemon.docker("rm", "-f", name, privileged)


def test_graph_driver_data_names_the_layer_directories(daemon):
    name = _name()
    _ok(daemon.docker("create", "--name", name, "busybox", "true"))
    client = daemon.sdk()
    try:
        graph = client.api.inspect_container(name)["GraphDriver"]
        image = client.api.inspect_image("busybox")["GraphDriver"]
        if graph["Name"] != "overlay":
            pytest.skip(f"the {graph['Name']} driver's keys are checked in its storage tests")
        data = graph["Data"]
        assert sorted(data) == ["LowerDir", "MergedDir", "UpperDir", "WorkDir"]
        assert os.path.isdir(data["UpperDir"]) and os.path.isdir(data["WorkDir"])
        assert data["UpperDir"] == data["MergedDir"].rsplit("/", 1)[0] + "/diff"
        assert image["Data"]["UpperDir"] in data["LowerDir"].split(":")  # on the image's top layer
        assert all(os.path.isdir(d) for d in data["LowerDir"].split(":"))
        assert client.api.put_archive(name, "/", _tar({"marker": b"here"}))
        with open(os.path.join(data["UpperDir"], "marker"), "rb") as f:  # its writable layer's content
            assert f.read() == b"here"
    finally:
        client.close()
        daemon.docker("rm", "-f", name)


def test_diff_lists_added_changed_deleted(daemon, running):
    assert _ok(daemon.docker("diff", running)) == ""  # the runtime's mount points are not changes
    _ok(daemon.docker("exec", running, "sh", "-c", "rm /bin/ls; echo x >> /etc/passwd; mkdir /newdir"))
    lines = _ok(daemon.docker("diff", running)).splitlines()
    for want in ("D /bin/ls", "C /etc/passwd", "A /newdir", "C /etc", "C /bin"):
        assert want in lines, lines
    client = daemon.sdk()
    try:
        changes = {c["Path"]: c["Kind"] for c in client.containers.get(running).diff()}
        assert changes["/bin/ls"] == 2 and changes["/etc/passwd"] == 0 and changes["/newdir"] == 1
    finally:
        client.close()


def test_export_port_pause(daemon, tmp_path):
    name = _name()
    _ok(daemon.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sleep", "300"))
    try:
        _ok(daemon.docker("exec", name, "sh", "-c", "echo exported > /exported.txt"))
        out = tmp_path / "fs.tar"
        _ok(daemon.docker("export", "-o", str(out), name))
        with tarfile.open(out) as tar:
            assert tar.extractfile("exported.txt").read() == b"exported\n"
            assert "bin/busybox" in tar.getnames()
        port = _ok(daemon.docker("port", name)).strip()
        assert port.startswith("80/tcp -> 127.0.0.1:"), port
        assert _ok(daemon.docker("port", name, "80")).strip().startswith("127.0.0.1:")
        _ok(daemon.docker("pause", name))
        assert _ok(daemon.docker("inspect", "-f", "{{.State.Status}}", name)).strip() == "paused"
        res = daemon.docker("cp", f"{name}:/exported.txt", "-")  # a paused container's files are readable
        assert res.returncode == 0
        _ok(daemon.docker("unpause", name))
        assert _ok(daemon.docker("inspect", "-f", "{{.State.Status}}", name)).strip() == "running"
    finally:
        daemon.docker("rm", "-f", name)


def test_container_prune_removes_only_stopped(daemon, running):
    label = f"prune={uuid.uuid4().hex[:6]}"
    stopped, other = _name(), _name()
    _ok(daemon.docker("run", "--name", stopped, "--label", label, "busybox", "sh", "-c", "echo x > /f"))
    _ok(daemon.docker("run", "--name", other, "busybox", "true"))
    live = _name()
    _ok(daemon.docker("run", "-d", "--name", live, "--label", label, "busybox", "sleep", "60"))
    try:
        out = _ok(daemon.docker("container", "prune", "-f", "--filter", f"label={label}"))
        ids = [line for line in out.splitlines() if len(line) == 64]
        stopped_id = _ok(daemon.docker("inspect", "-f", "{{.Id}}", other))  # still there
        assert len(ids) == 1 and "Total reclaimed space" in out and stopped_id
        names = _ok(daemon.docker("ps", "-a", "--format", "{{.Names}}")).split()
        assert stopped not in names and other in names and live in names and running in names
        client = daemon.sdk()
        try:
            report = client.containers.prune(filters={"until": "1970-01-02T00:00:00Z"})
            assert report["ContainersDeleted"] is None and report["SpaceReclaimed"] == 0
            other_id = stopped_id.strip()
            report = client.containers.prune()
            assert other_id in report["ContainersDeleted"]
        finally:
            client.close()
        names = _ok(daemon.docker("ps", "-a", "--format", "{{.Names}}")).split()
        assert other not in names and live in names and running in names
    finally:
        daemon.docker("rm", "-f", live, other, stopped)


def test_dockyard_cli_cp_top_rename_update_diff_prune(daemon, running, tmp_path):
    src = tmp_path / "dy.txt"
    src.write_bytes(b"dockyard cli\n")
    assert daemon.cli("cp", str(src), f"{running}:/tmp/").returncode == 0
    assert daemon.cli("cp", str(src), f"{running}:/tmp/other.txt").returncode == 0
    res = daemon.cli("cp", f"{running}:/tmp/other.txt", str(tmp_path / "back.txt"))
    assert res.returncode == 0, res.stderr and (tmp_path / "back.txt").read_bytes() == b"dockyard cli\n"
    res = daemon.cli("cp", f"{running}:/tmp/dy.txt", "-")
    with tarfile.open(fileobj=io.BytesIO(res.stdout)) as tar:
        assert tar.extractfile("dy.txt").read() == b"dockyard cli\n"
    res = daemon.cli("top", running)
    assert res.returncode == 0 and "sleep 300" in res.stdout.decode()
    assert "A /tmp/dy.txt" in daemon.cli("diff", running).stdout.decode().splitlines()
    res = daemon.cli("update", "--pids-limit", "77", running)
    assert res.returncode == 0, res.stderr
    assert _ok(daemon.docker("inspect", "-f", "{{.HostConfig.PidsLimit}}", running)).strip() == "77"
    new = _name()
    assert daemon.cli("rename", running, new).returncode == 0
    assert daemon.cli("container", "rename", new, running).returncode == 0
    dead = _name()
    _ok(daemon.docker("create", "--name", dead, "busybox", "true"))
    res = daemon.cli("container", "prune", "-f")
    assert res.returncode == 0 and "Total reclaimed space" in res.stdout.decode()
    assert daemon.docker("inspect", dead).returncode != 0
    res = daemon.cli("system", "df")
    assert res.returncode == 0 and res.stdout.decode().split()[:5] == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]


def test_add_host_and_dns_flags_shape_etc_files(daemon):
    """--add-host lines in /etc/hosts (host-gateway is the default bridge's gateway),
    --dns/--dns-search/--dns-option in resolv.conf; a bad --add-host is refused at create."""
    for cli in (daemon.docker, daemon.cli):
        res = cli("run", "--rm", "--add-host", "db.example:10.1.2.3", "--add-host", "gw.example:host-gateway",
                  "--dns", "192.0.2.53", "--dns-search", "corp.example", "--dns-option", "ndots:2",
                  "busybox", "sh", "-c", "cat /etc/hosts /etc/resolv.conf")
        out = res.stdout.decode()
        assert res.returncode == 0, res.stderr
        assert "10.1.2.3\tdb.example" in out
        gw = daemon.sdk().networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
        assert f"{gw}\tgw.example" in out
        assert "nameserver 192.0.2.53" in out and "search corp.example" in out and "options ndots:2" in out
        assert "nameserver 127." not in out
    res = daemon.docker("create", "--add-host", "bad.example:not-an-ip", "busybox")
    assert res.returncode != 0 and b"invalid IP address in add-host" in res.stderr


def test_resize_as_the_terminal_ends_is_a_conflict(daemon):
    """``docker run -t`` of a short command resizes the terminal as the command
    ends: dockerd answers 409 (not running), never a failure of its own."""
    from dockyard.testing.daemon import http

    client = daemon.sdk()
    box = client.containers.create("busybox", ["true"], tty=True, name=_name())
    try:
        seen = []
        for _ in range(10):
            box.start()
            while True:
                status, _, body = http(daemon.sock, "POST", f"/containers/{box.id}/resize?h=20&w=80")
                seen.append((status, body))
                if status != 200:
                    break
            box.wait()
        assert {status for status, _ in seen} <= {200, 409}, [s for s in seen if s[0] not in (200, 409)][:3]
        assert seen[-1][0] == 409 and b"is not running" in seen[-1][1]
    finally:
        box.remove(force=True)
        client.close()
