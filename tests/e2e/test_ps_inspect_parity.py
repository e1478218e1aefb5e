"""``docker ps``, ``inspect``, ``kill``, ``rm -f`` and ``commit`` as dockerd 20.10
answers them, through the real docker CLI and the docker SDK: sizes (``ps -s``,
``inspect --size``), every ps filter dockerd has with its refusals, legacy link
names, kill that returns once the container stopped, dockerd's events and
defaults, and exit codes kept across a daemon's shutdown."""

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid

import docker
import pytest

from dockyard.testing.daemon import Daemon

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def _name(prefix="par"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    return res.stdout.decode()


@pytest.fixture
def client(daemon):
    c = docker.DockerClient(base_url=daemon.host, version="1.41", timeout=60)
    made = []
    yield c, made
    for name in made:
        try:
            c.api.remove_container(name, force=True, v=True)
        except docker.errors.NotFound:
            pass
    c.close()


def test_ps_size_and_inspect_size_as_dockerd(daemon, client):
    c, made = client
    name = _name()
    made.append(name)
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                      "dd if=/dev/zero of=/blob bs=1024 count=100 && sleep 300"))
    deadline = time.monotonic() + 20
    while _ok(daemon.docker("exec", name, "ls", "-l", "/blob")).split()[4] != "102400":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    image_size = c.images.get("busybox").attrs["Size"]
    [listed] = c.api.containers(filters={"name": name}, size=True)
    assert 102400 <= listed["SizeRw"] < 102400 + 64 * 1024  # the file, and little else
    assert listed["SizeRootFs"] == listed["SizeRw"] + image_size  # everything it sees
    shown = c.api.inspect_container(name)
    assert "SizeRw" not in shown and "SizeRootFs" not in shown  # only when asked, as dockerd
    sized = _ok(daemon.docker("inspect", "--size", "-f", "{{.SizeRw}} {{.SizeRootFs}}", name)).split()
    assert [int(x) for x in sized] == [listed["SizeRw"], listed["SizeRootFs"]]
    column = _ok(daemon.docker("ps", "-s", "--filter", f"name={name}", "--format", "{{.Size}}")).strip()
    assert column.startswith("10") and "(virtual " in column, column  # "102kB (virtual 2.1MB)"


def test_ps_filters_ancestor_volume_network_ports_and_task(daemon, client, tmp_path):
    c, made = client
    child = f"{_name('child')}:latest"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nLABEL parity=child\n")
    _ok(daemon.docker("build", "-q", "-t", child, str(tmp_path)))
    grandchild = f"{_name('grand')}:latest"
    (tmp_path / "Dockerfile").write_text(f"FROM {child}\nLABEL parity=grandchild\n")
    _ok(daemon.docker("build", "-q", "-t", grandchild, str(tmp_path)))
    net = _name("net")
    c.networks.create(net)
    try:
        base, kid, grand = _name(), _name(), _name()
        made += [base, kid, grand]
        vol = _name("vol")
        _ok(daemon.docker("run", "-d", "--name", base, "--network", net, "-p", "127.0.0.1::80", "--expose", "9000",
                          "-v", f"{vol}:/data", "busybox", "sleep", "300"))
        _ok(daemon.docker("create", "--name", kid, "-v", "/anon", child, "true"))
        _ok(daemon.docker("create", "--name", grand, "--expose", "9000", grandchild, "true"))

        def ps(*filters):
            args = [a for f in filters for a in ("--filter", f)]
            return set(_ok(daemon.docker("ps", "-a", *args, "--format", "{{.Names}}")).split()) & {base, kid, grand}

        busybox_id = c.images.get("busybox").id
        assert ps("ancestor=busybox") == {base, kid, grand}  # the image, and every image built from it
        assert ps(f"ancestor={busybox_id}") == ps(f"ancestor={busybox_id[7:19]}") == {base, kid, grand}
        assert ps(f"ancestor={child}") == {kid, grand}
        assert ps(f"ancestor={grandchild}") == {grand}
        assert ps("ancestor=no-such-image") == set()
        assert ps(f"volume={vol}") == ps("volume=/data") == {base}
        assert ps("volume=/anon") == {kid}
        net_id = c.networks.get(net).id
        assert ps(f"network={net}") == ps(f"network={net_id[:12]}") == {base}
        assert ps("network=bridge") == {kid, grand}  # never started: connected all the same
        host_port = c.api.port(base, 80)[0]["HostPort"]
        assert ps(f"publish={host_port}") == ps(f"publish={host_port}/tcp") == {base}
        assert ps(f"publish={int(host_port) - 1}-{int(host_port) + 1}") == {base}
        assert ps("publish=80", f"publish={host_port}/udp") == set()  # the host's port, and its protocol
        assert ps("expose=80") == ps("expose=9000") == ps("expose=8999-9001/tcp") == {base}  # running only
        assert ps("expose=9000/udp") == set()
        assert ps("is-task=false") == {base, kid, grand}
        assert ps("is-task=true") == set()
        assert ps(f"before={grand}") == {base, kid}
        assert ps(f"since={base}") == {kid, grand}
        for bad, message in [("publish=80:80", "filter for 'publish' should not contain ':': 80:80"),
                             ("expose=abc", 'error while looking up for expose abc: strconv.ParseUint: '
                                            'parsing "abc": invalid syntax'),
                             ("publish=90-80", "Invalid range specified for the Port: 90-80"),
                             ("is-task=maybe", "Invalid filter 'is-task=[maybe]'"),
                             ("before=no-such-container", "no such container no-such-container")]:
            res = daemon.docker("ps", "-a", "--filter", bad)
            assert res.returncode != 0 and message in res.stderr.decode(), (bad, res.stderr)
    finally:
        for name in list(made):
            c.api.remove_container(name, force=True, v=True)
            made.remove(name)
        c.networks.get(net).remove()
        c.volumes.get(vol).remove()
        for image in (grandchild, child):
            c.images.remove(image)


def test_ps_names_show_legacy_links(daemon, client):
    c, made = client
    db, app = _name("db"), _name("app")
    made += [app, db]
    _ok(daemon.docker("run", "-d", "--name", db, "busybox", "sleep", "300"))
    _ok(daemon.docker("run", "-d", "--name", app, "--link", f"{db}:store", "busybox", "sleep", "300"))
    [listed] = c.api.containers(filters={"id": c.api.inspect_container(db)["Id"]})
    assert listed["Names"] == [f"/{db}", f"/{app}/store"]  # dockerd's name, then the link's name
    assert _ok(daemon.docker("ps", "--no-trunc", "--filter", f"name={db}", "--format", "{{.Names}}")).split() \
        == [f"{db},{app}/store"]
    [listed] = c.api.containers(filters={"name": app})
    assert listed["Names"] == [f"/{app}"]


def test_kill_returns_once_stopped_and_rm_f_emits_kill(daemon, client):
    c, made = client
    name = _name()
    made.append(name)
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "300"))
    _ok(daemon.docker("kill", name))
    state = c.api.inspect_container(name)["State"]  # at once: dockerd's kill waits for the end
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137)
    _ok(daemon.docker("rm", name))  # not a 409
    made.remove(name)

    name = _name()
    made.append(name)
    cid = _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "300")).strip()
    since = c.api.inspect_container(cid)["State"]["StartedAt"]
    _ok(daemon.docker("rm", "-f", name))
    made.remove(name)
    until = str(time.time() + 1)
    out = _ok(daemon.docker("events", "--since", since, "--until", until, "--filter", f"container={cid}",
                            "--format", "{{.Action}} {{.Actor.Attributes.signal}}"))
    actions = [line.split()[0] for line in out.splitlines()]
    assert actions[actions.index("kill"):] == ["kill", "die", "destroy"], out  # dockerd's sequence
    assert "kill 9" in out


def test_commit_of_a_stopped_container_with_pause(daemon, client):
    c, made = client
    name = _name()
    made.append(name)
    _ok(daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo kept > /made"))
    tag = f"{_name('committed')}:latest"
    image = c.api.commit(name, repository=tag.split(":")[0], tag="latest", pause=True)  # pause: running ones only
    try:
        assert _ok(daemon.docker("run", "--rm", tag, "cat", "/made")) == "kept\n"
    finally:
        c.images.remove(image["Id"], force=True)


def test_memory_swap_defaults_to_twice_memory(daemon, client):
    c, made = client
    name, both = _name(), _name()
    made += [name, both]
    _ok(daemon.docker("create", "--name", name, "-m", "64m", "busybox", "true"))
    _ok(daemon.docker("create", "--name", both, "-m", "64m", "--memory-swap", "100m", "busybox", "true"))
    assert c.api.inspect_container(name)["HostConfig"]["MemorySwap"] == 2 * 64 * 2 ** 20
    assert c.api.inspect_container(both)["HostConfig"]["MemorySwap"] == 100 * 2 ** 20


def test_exit_codes_kept_when_containers_exit_as_the_daemon_shuts_down(session_root, busybox_tar, tmp_path):
    """Containers that end while the daemon is going down: the next daemon shows
    the code each process exited with (dockerd's), never 255 "state lost"."""
    d = Daemon(session_root / f"shutdown-{uuid.uuid4().hex[:6]}").start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        gate = tmp_path / "gate"
        gate.mkdir()
        client = d.sdk()
        ids = [client.containers.run("busybox", ["sh", "-c", f"while [ ! -e /gate/go ]; do usleep 2000; done; "
                                                 f"exit {7 + i}"], detach=True,
                                     volumes={str(gate): {"bind": "/gate"}}).id for i in range(6)]
        client.close()
        for delay in (0, 0.01, 0.02, 0.04, 0.08):  # the exits land at and after the daemon's SIGTERM
            (gate / "go").touch()
            time.sleep(delay)
            d.stop(signal.SIGTERM)
            (gate / "go").unlink()
            d.start()
            client = d.sdk()
            for i, cid in enumerate(ids):
                state = client.api.inspect_container(cid)["State"]
                assert (state["Status"], state["ExitCode"], state["Error"]) == ("exited", 7 + i, ""), (delay, state)
                client.api.start(cid)
            client.close()
        client = d.sdk()
        for cid in ids:
            client.api.remove_container(cid, force=True)
        client.close()
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []


def test_runtime_in_inspect_is_the_one_info_lists(daemon, client):
    c, made = client
    name = _name()
    made.append(name)
    _ok(daemon.docker("create", "--name", name, "busybox", "true"))
    runtime = c.api.inspect_container(name)["HostConfig"]["Runtime"]
    info = c.info()
    assert runtime == info["DefaultRuntime"] and runtime in info["Runtimes"]
    explicit = _name()
    made.append(explicit)
    _ok(daemon.docker("create", "--name", explicit, "--runtime", "runc", "busybox", "true"))  # Docker's default name
    assert c.api.inspect_container(explicit)["HostConfig"]["Runtime"] == runtime
    res = daemon.docker("create", "--runtime", "nosuch", "busybox", "true")
    assert res.returncode != 0 and "Unknown runtime specified nosuch" in res.stderr.decode()


@pytest.fixture
def shared_source(tmp_path):
    """A tmpfs made a shared mount: what ``rshared``/``rslave`` binds need of their source."""
    src = tmp_path / "shared"
    src.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src)], check=True)
    try:
        subprocess.run(["mount", "--make-shared", str(src)], check=True)
        yield src
    finally:
        subprocess.run(["umount", "-R", "-l", str(src)], check=True)


@pytest.mark.parametrize("mode", ["rslave", "rshared"])
def test_bind_propagation_from_a_shared_source(daemon, client, shared_source, mode):
    c, made = client
    name = _name()
    made.append(name)
    _ok(daemon.docker("run", "-d", "--name", name, "--cap-add", "SYS_ADMIN", "-v", f"{shared_source}:/s:{mode}",
                      "busybox", "sleep", "300"))
    assert c.api.inspect_container(name)["Mounts"][0]["Propagation"] == mode
    sub = shared_source / "from-host"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(sub)], check=True)
    try:
        (sub / "hello").write_text("from the host\n")
        assert _ok(daemon.docker("exec", name, "cat", "/s/from-host/hello")) == "from the host\n"  # host -> container
    finally:
        subprocess.run(["umount", str(sub)], check=True)
    if mode == "rshared":  # and back: a mount made in the container shows on the host
        _ok(daemon.docker("exec", name, "sh", "-c", "mkdir /s/inner && mount -t tmpfs tmpfs /s/inner "
                                                    "&& echo back > /s/inner/x"))
        try:
            assert (shared_source / "inner" / "x").read_text() == "back\n"
        finally:
            subprocess.run(["umount", str(shared_source / "inner")], check=True)
    c.api.remove_container(name, force=True)
    made.remove(name)
    with open("/proc/self/mountinfo") as f:
        assert not [line for line in f if str(shared_source) + "/" in line.split()[4]]  # nothing left behind


def test_cp_to_and_from_file_binds_of_stopped_containers(daemon, client, tmp_path):
    """dockerd mounts a stopped container's binds for ``docker cp``: a bind of a
    file is read and written in its source, a read-only one is refused."""
    c, made = client
    conf, locked = tmp_path / "app.conf", tmp_path / "locked.conf"
    locked.write_text("do not touch\n")
    for started in (False, True):
        conf.write_text("from the host\n")
        name = _name()
        made.append(name)
        _ok(daemon.docker("create", "--name", name, "-v", f"{conf}:/etc/app.conf", "-v", f"{locked}:/etc/locked.conf:ro",
                          "busybox", "true"))
        if started:
            _ok(daemon.docker("start", "-a", name))
        out = tmp_path / f"out-{started}"
        _ok(daemon.docker("cp", f"{name}:/etc/app.conf", str(out)))
        assert out.read_text() == "from the host\n"
        new = tmp_path / "new.conf"
        new.write_text(f"written by cp {started}\n")
        _ok(daemon.docker("cp", str(new), f"{name}:/etc/app.conf"))
        assert conf.read_text() == f"written by cp {started}\n"  # in the bind's source, not the layer
        _ok(daemon.docker("cp", str(new), f"{name}:/etc/other.conf"))  # beside it: the layer, as before
        assert _ok(daemon.docker("run", "--rm", "--volumes-from", name, "busybox", "cat", "/etc/app.conf")) \
            == f"written by cp {started}\n"
        res = daemon.docker("cp", str(new), f"{name}:/etc/locked.conf")
        assert res.returncode != 0 and "read-only" in res.stderr.decode(), res.stderr
        assert locked.read_text() == "do not touch\n"
        stat = c.api.get_archive(name, "/etc/app.conf")[1]
        assert stat["size"] == len(f"written by cp {started}\n") and stat["name"] == "app.conf"
        c.api.remove_container(name, force=True)
        made.remove(name)
