"""A daemon killed mid-operation, and a full disk (issue 13, holes 6 and 7).

Crash consistency: a daemon SIGKILLed while it loads an image or commits a
container (a large layer being written), or while it starts a container, must
leave only what the next start recognises and removes: afterwards the storage
driver's tree holds exactly the layers the records own, ``system check`` is
clean, and the container holds no mount, network namespace, veth or address.
``system check`` reports a layer nobody owns.  The kills that must land in the
middle of a start are made deterministic by a test-only extension
(``crashpoint``, a real ``dockyard.plugins`` entry point on ``PYTHONPATH``) that
stops a driver call until the daemon is killed.

Resource exhaustion: on a data root that is a small tmpfs, a filled disk makes
load, import, commit, build and a tag answer "<operation>: no space left on
device under <data root>" (507, or the stream's error), change nothing on
disk or in the database, and the daemon serves as before once there is room.
"""

import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

from dockyard.testing.daemon import Daemon, http, mounts_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starts daemons, mounts a tmpfs")

MB = 1 << 20
CRASHPOINT = '''
import os, time
from dockyard.hookspecs import hookimpl

class Crashpoint:
    """Stops the ``hook`` call (after the driver did its part) while ``arm`` exists."""

    def __init__(self, hook, arm, reached):
        self.hook, self.arm, self.reached = hook, arm, reached

    def _hang(self, name):
        if name == self.hook and os.path.exists(self.arm):
            open(self.reached, "w").close()
            time.sleep(600)

    @hookimpl(wrapper=True)
    def network_attach(self, network, endpoint, netns):
        result = yield
        self._hang("network_attach")
        return result

    @hookimpl(wrapper=True)
    def exec_start(self, id):
        result = yield
        self._hang("exec_start")
        return result
'''


# helpers ------------------------------------------------------------------------------
def records(data_root, sql):
    con = sqlite3.connect(str(Path(data_root) / "dockyard.db"), timeout=30)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        table = sql.split(" FROM ")[1].split()[0]
        return [r[0] for r in con.execute(sql)] if table in tables else []
    finally:
        con.close()


def owned(data_root):
    """Driver ids a record owns: a layer, a container, a build step, a staged write."""
    return set(records(data_root, "SELECT driver_id FROM layers") + records(data_root, "SELECT id FROM containers")
               + records(data_root, "SELECT id FROM scratch_layers")
               + records(data_root, "SELECT id FROM staged_layers"))


def overlay_tree(d):
    """The layer ids in the overlay driver's tree (``l/`` and ``.tmp-*`` are its scratch)."""
    home = d.data_root / "storage" / "overlay"
    return {n for n in os.listdir(home) if n != "l" and not n.startswith(".")}


def layer_archive(path, size):
    """A docker-archive of one image with one layer of ``size`` random bytes."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        ti = tarfile.TarInfo("big")
        ti.size = size
        t.addfile(ti, io.BytesIO(os.urandom(size)))
    data = layer.getvalue()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["true"]},
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(data).hexdigest()]}
                         }).encode()
    name = f"big-{uuid.uuid4().hex[:8]}:1"
    with tarfile.open(path, "w") as t:
        for member, blob in (("layer.tar", data), ("config.json", config),
                             ("manifest.json", json.dumps([{"Config": "config.json", "RepoTags": [name],
                                                             "Layers": ["layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(member)
            ti.size = len(blob)
            t.addfile(ti, io.BytesIO(blob))
    return path


def private_subnet():
    """``--bip`` of a /24 of its own: daemons of parallel runs picking the same
    free pool at once would refuse each other's bridge route."""
    n = uuid.uuid4().int
    return ["--bip", f"10.{200 + n % 50}.{(n >> 8) % 256}.1/24"]


def in_background(d, method, path, body=b""):
    def send():
        try:
            http(d.sock, method, path, body)
        except (OSError, IndexError):
            pass  # the daemon was killed under it: no answer, or half of one
    t = threading.Thread(target=send, daemon=True)
    t.start()
    return t


def assert_consistent(d):
    """The tree holds exactly what the records own, nothing is staged, check is clean."""
    assert records(d.data_root, "SELECT id FROM staged_layers") == []
    assert overlay_tree(d) == owned(d.data_root)
    res = d.cli("system", "check")
    assert res.returncode == 0 and b"no problems" in res.stdout, res.stdout + res.stderr


@pytest.fixture
def crashing(session_root, busybox_tar, monkeypatch):
    """A private overlay daemon with busybox, which loads the ``crashpoint``
    extension (disarmed until its ``arm`` file exists): ``(daemon, arm, reached)``."""
    base = session_root / f"crash-{uuid.uuid4().hex[:8]}"
    ext = base / "ext"
    (ext / "crashpoint-0.dist-info").mkdir(parents=True)
    (ext / "crashpoint_ext.py").write_text(CRASHPOINT)
    (ext / "crashpoint-0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: crashpoint\nVersion: 0\n")
    (ext / "crashpoint-0.dist-info" / "entry_points.txt").write_text(
        "[dockyard.plugins]\ncrashpoint = crashpoint_ext:Crashpoint\n")
    arm, reached = base / "arm", base / "reached"
    config = base / "plugins.toml"
    config.write_text(Path(__file__).resolve().parents[2].joinpath("plugins.toml").read_text()
                      .replace("enable = []", 'enable = ["crashpoint"]')
                      + f'\n[plugins.options.crashpoint]\nhook = "exec_start"\narm = "{arm}"\nreached = "{reached}"\n')
    monkeypatch.setenv("PYTHONPATH", str(ext))
    d = Daemon(base, storage_driver="overlay", config=config, extra_args=private_subnet()).start()
    d.config_file = config
    assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
    yield d, arm, reached
    arm.unlink(missing_ok=True)
    if d.proc.poll() is not None:
        d.start()
    client = d.sdk()
    for c in client.containers.list(all=True):
        c.remove(force=True)
    client.close()
    d.stop()
    d.remove_network_objects()
    assert d.leaks() == []


def kill_mid_register(d, start, tries=5):
    """Start a request that registers a large layer (``start()``), SIGKILL the
    daemon as soon as the new layer's directory appears, and restart it.  Returns
    the ids that were in the tree but in no layer record when it died."""
    for _ in range(tries):
        before = overlay_tree(d)
        layers = set(records(d.data_root, "SELECT driver_id FROM layers"))
        start()
        deadline = time.monotonic() + 120
        while not (overlay_tree(d) - before) and time.monotonic() < deadline:
            time.sleep(0.002)
        d.stop(signal.SIGKILL)
        caught = overlay_tree(d) - before - layers - set(records(d.data_root, "SELECT driver_id FROM layers"))
        d.start()
        if caught:
            return caught
    pytest.fail(f"no kill landed while a layer was written, in {tries} tries")


# crash consistency ---------------------------------------------------------------------
def test_kill_during_load_leaves_no_layer_nobody_owns(crashing, tmp_path):
    """Crash consistency: SIGKILL while ``load`` writes a 64 MB layer; the next
    start removes the half-written layer (before: it stayed, owned by no record,
    and ``system check`` said "no problems")."""
    d, _, _ = crashing
    archive = layer_archive(tmp_path / "big.tar", 64 * MB).read_bytes()
    caught = kill_mid_register(d, lambda: in_background(d, "POST", "/images/load", archive))
    assert not caught & overlay_tree(d)
    assert_consistent(d)
    status, _, body = http(d.sock, "POST", "/images/load", archive)  # and the same load works now
    assert status == 200 and b"Loaded image: big-" in body, body


def test_kill_during_commit_leaves_no_layer_nobody_owns(crashing):
    """Crash consistency: SIGKILL while ``commit`` writes a container's 64 MB diff as a layer."""
    d, _, _ = crashing
    client = d.sdk()
    c = client.containers.run("busybox", ["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=64"], detach=True)
    assert c.wait(timeout=120)["StatusCode"] == 0
    caught = kill_mid_register(d, lambda: in_background(d, "POST", f"/commit?container={c.id}&repo=crash", b"{}"))
    assert not caught & overlay_tree(d)
    assert_consistent(d)
    status, _, body = http(d.sock, "POST", f"/commit?container={c.id}&repo=crash", b"{}")
    assert status == 201, body


def test_system_check_reports_a_layer_nobody_owns(crashing):
    """Crash consistency: a layer in the driver's tree that no record owns (as an
    older daemon's crash left them) is a problem ``system check`` names; the
    half-written blobs a killed daemon left go at start, a pull's resumable
    download stays."""
    from dockyard import plugins

    d, _, _ = crashing
    d.stop(signal.SIGKILL)
    slot = plugins.load_driver("storage", "overlay", str(d.data_root / "storage" / "overlay"))
    slot.init()
    orphan = uuid.uuid4().hex * 2
    slot.hook.storage_create(id=orphan, parent=None)
    ingest = d.data_root / "content" / "ingest"
    ingest.mkdir(exist_ok=True)
    for name in ("put-" + "a" * 64, "push-" + "b" * 64, "pull-" + "c" * 64):
        (ingest / name).write_bytes(b"half a blob")
    d.start()
    assert os.listdir(ingest) == ["pull-" + "c" * 64]
    (ingest / ("pull-" + "c" * 64)).unlink()
    res = d.cli("system", "check")
    assert res.returncode == 1, res.stdout
    assert f"PROBLEM  storage driver layer {orphan}: the storage driver (overlay) holds it, but no layer, " \
           "container or build step owns it" in res.stdout.decode(), res.stdout
    slot.hook.storage_remove(id=orphan)
    assert_consistent(d)


def test_check_says_when_the_driver_cannot_list_its_layers(tmp_path):
    """Crash consistency: a driver without the optional ``storage_layers`` hook
    cannot show orphans; the check says it cannot tell rather than "no problems"."""
    import types

    import pluggy
    from dockyard.drivers.storage.vfs import VfsDriver
    from dockyard.engine.images.check import _check_unowned
    from dockyard.engine.layers.store import LayerStore
    from dockyard.hookspecs import PROJECT
    from dockyard.hookspecs import storage as specs
    from dockyard.store import Store

    class Unlisting(VfsDriver):
        storage_layers = None  # a third-party driver written before the hook

    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(specs)
    pm.register(Unlisting(), name="unlisting")
    (tmp_path / "home").mkdir()
    pm.hook.storage_init(home=tmp_path / "home", options={})
    layers = LayerStore(types.SimpleNamespace(pm=pm, hook=pm.hook, name="unlisting"), Store(tmp_path / "db"))
    problems, skipped = [], []
    _check_unowned(layers, lambda obj, problem: problems.append((obj, problem)), skipped)
    assert problems == [] and skipped == [
        "storage driver unlisting: it cannot list its layers, so layers that no record owns cannot be found"]


@pytest.mark.parametrize("hook", ["network_attach", "exec_start"])
def test_container_caught_mid_start_is_cleaned_at_restart(crashing, hook):
    """Crash consistency: SIGKILL while a container starts, once its network is
    attached (before its record names the address) or once its process runs
    (before its record says so).  The next start, not the user's next ``rm``,
    releases the rootfs mount, the netns pin, the veth, the address and the
    process; the record says "created" and the container starts afterwards."""
    d, arm, reached = crashing
    d.config_file.write_text(d.config_file.read_text().replace('hook = "exec_start"', f'hook = "{hook}"'))
    d.stop()
    d.start()
    client = d.sdk()
    token = str(10000 + uuid.uuid4().int % 80000)
    c = client.containers.create("busybox", ["sleep", token])
    arm.touch()
    in_background(d, "POST", f"/containers/{c.id}/start")
    deadline = time.monotonic() + 60
    while not reached.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reached.exists(), "the start never reached the crash point"
    d.stop(signal.SIGKILL)
    arm.unlink()
    merged = str(d.data_root / "storage" / "overlay" / c.id / "merged")
    pin = d.exec_root / "netns" / c.id
    bridge_ports = Path("/sys/class/net") / d.bridge / "brif"
    # what the kill left: proof that it landed mid-start
    assert merged in mounts_under(d.data_root) and pin.exists() and os.listdir(bridge_ports)
    assert records(d.data_root, f"SELECT address FROM ip_allocations WHERE owner='{c.id}'")
    if hook == "exec_start":
        assert sleepers(token)
    d.start()
    deadline = time.monotonic() + 10  # a namespace and its veths go asynchronously in the kernel
    while os.listdir(bridge_ports) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert merged not in mounts_under(d.data_root) and not pin.exists() and os.listdir(bridge_ports) == []
    assert records(d.data_root, f"SELECT address FROM ip_allocations WHERE owner='{c.id}'") == []
    assert sleepers(token) == []
    client = d.sdk()
    state = client.api.inspect_container(c.id)
    assert state["State"]["Status"] == "created" and not state["State"]["Running"]
    assert state["NetworkSettings"]["IPAddress"] == ""
    assert client.containers.run("busybox", ["echo", "fine"], remove=True) == b"fine\n"
    c.start()
    c.reload()
    assert c.status == "running"
    c.remove(force=True)
    assert_consistent(d)


def sleepers(token):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes() == f"sleep\0{token}\0".encode():
                out.append(pid)
        except OSError:
            pass
    return out


# resource exhaustion --------------------------------------------------------------------
PAYLOAD = 8 * MB


@pytest.fixture(scope="module")
def small(tmp_path_factory, busybox_tar):
    """A vfs daemon whose data root is a 48 MB tmpfs, with busybox and a stopped
    container holding an 8 MB file; ``fill(free)`` leaves ``free`` bytes."""
    base = tmp_path_factory.mktemp("fulldisk")
    (base / "data").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m,mode=0710", "tmpfs", str(base / "data")], check=True)
    d = None
    try:
        d = Daemon(base, storage_driver="vfs", extra_args=private_subnet()).start()
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        client = d.sdk()
        c = client.containers.run("busybox", ["dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=8"], detach=True)
        assert c.wait(timeout=60)["StatusCode"] == 0
        d.big_container = c.id
        filler = d.data_root / "filler"

        def fill(free):
            filler.unlink(missing_ok=True)
            st = os.statvfs(d.data_root)
            size = st.f_bavail * st.f_frsize - free
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, max(size, 1))
                os.lseek(fd, 0, os.SEEK_END)
                while free == 0:  # and the last pages, whatever the rounding left
                    try:
                        os.write(fd, b"\0" * 4096)
                    except OSError:
                        break
            finally:
                os.close(fd)

        d.fill, d.unfill = fill, lambda: filler.unlink(missing_ok=True)
        yield d
    finally:
        if d is not None:
            d.unfill()
            client = d.sdk()
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
            d.stop()
            d.remove_network_objects()
        subprocess.run(["umount", str(base / "data")], check=False)
    assert mounts_under(base) == [] and d.leaks() == []


def tree(d):
    """Every file under the data root with its size, and the rows that matter."""
    skip = {"filler", "dockyard.db", "dockyard.db-wal", "dockyard.db-shm"}
    out = {}
    for dirpath, dirs, files in os.walk(d.data_root):
        for name in dirs + files:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, d.data_root)
            if rel not in skip:
                out[rel] = os.lstat(path).st_size if name in files else "dir"
    for table in ("layers", "images", "tags", "staged_layers"):
        out[f"rows of {table}"] = records(d.data_root, f"SELECT COUNT(*) FROM {table}")
    return out


def answer(d, method, path, body=b""):
    """``(status, message)``: the error of a JSON answer or of a JSON stream's last line."""
    status, _, payload = http(d.sock, method, path, body)
    lines = [json.loads(line) for line in payload.splitlines() if line.strip()]
    last = lines[-1] if lines else {}
    return status, last.get("message") or last.get("error") or ""


def context_tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def plain_rootfs(size):
    return context_tar({"big": os.urandom(size), "etc/hostname": b"full\n"})


@pytest.mark.parametrize("free,where", [(MB, "spool"), (PAYLOAD * 3 // 2, "layer tar"), (PAYLOAD * 5 // 2, "layer")])
def test_load_on_a_full_disk(small, tmp_path, free, where):
    """Resource exhaustion: ENOSPC while load spools, unpacks or applies a layer
    says so (it said "archive is truncated or corrupt") and leaves nothing."""
    d = small
    archive = layer_archive(tmp_path / "a.tar", PAYLOAD).read_bytes()
    d.fill(free)
    try:
        before = tree(d)
        status, message = answer(d, "POST", "/images/load", archive)
        assert status in (200, 507) and message.endswith(f"no space left on device under {d.data_root}"), message
        assert message.startswith("load: " if status == 200 else "POST /images/load: "), (where, message)
        assert tree(d) == before
        res = d.cli("load", "-i", str(tmp_path / "a.tar"))  # and the CLI shows it
        assert res.returncode == 1 and message in res.stderr.decode(), res.stderr
        assert tree(d) == before
    finally:
        d.unfill()


@pytest.mark.parametrize("free", [PAYLOAD * 3 // 2, PAYLOAD * 5 // 2])
def test_import_on_a_full_disk(small, free):
    """Resource exhaustion: import says "import: no space left..." (507, not 400 "corrupt" or 500)."""
    d = small
    body = plain_rootfs(PAYLOAD)
    d.fill(free)
    try:
        before = tree(d)
        status, message = answer(d, "POST", "/images/create?fromSrc=-&repo=full", body)
        assert (status, message) == (507, f"import: no space left on device under {d.data_root}")
        assert tree(d) == before
    finally:
        d.unfill()


@pytest.mark.parametrize("free", [PAYLOAD // 2, PAYLOAD * 3 // 2])
def test_commit_on_a_full_disk(small, free):
    """Resource exhaustion: commit of an 8 MB diff says "commit: no space left..."
    (507; it said 500 "internal error: OSError [Errno 28]")."""
    d = small
    d.fill(free)
    try:
        before = tree(d)
        status, message = answer(d, "POST", f"/commit?container={d.big_container}&repo=full", b"{}")
        assert (status, message) == (507, f"commit: no space left on device under {d.data_root}")
        assert tree(d) == before
        res = d.cli("commit", d.big_container, "full")  # and the CLI shows it
        assert res.returncode == 1
        assert res.stderr.decode().strip() == f"Error response from daemon: {message}", res.stderr
        assert tree(d) == before
    finally:
        d.unfill()


@pytest.mark.parametrize("free", [PAYLOAD * 3 // 2, PAYLOAD * 5 // 2 + 3 * MB])
def test_build_on_a_full_disk(small, free):
    """Resource exhaustion: build whose context or COPY does not fit says
    "build: no space left..." (as a 507, or as the stream's error)."""
    d = small
    body = context_tar({"Dockerfile": b"FROM busybox\nCOPY big /big\n", "big": os.urandom(PAYLOAD)})
    d.fill(free)
    try:
        before = tree(d)
        status, message = answer(d, "POST", "/build?t=full", body)
        assert status in (200, 507) and message.endswith(f"build: no space left on device under {d.data_root}"), \
            (status, message)
        assert tree(d) == before
    finally:
        d.unfill()


def test_a_full_database_and_the_daemon_afterwards(small, tmp_path):
    """Resource exhaustion: once SQLite cannot write, a tag says "no space left
    on device" (507; it said 500 "OperationalError"); with room again, load,
    import, commit and build work and ``system check`` finds nothing wrong."""
    d = small
    d.fill(0)
    try:
        for n in range(200):  # the write-ahead log has room for a few
            status, message = answer(d, "POST", f"/images/busybox/tag?repo=full&tag=t{n}")
            if status != 201:
                break
        assert (status, message) == (507, f"POST /images/busybox/tag: no space left on device under {d.data_root}")
    finally:
        d.unfill()
    assert answer(d, "POST", "/images/load", layer_archive(tmp_path / "a.tar", MB).read_bytes()) == (200, "")
    assert answer(d, "POST", "/images/create?fromSrc=-&repo=full", plain_rootfs(MB)) == (200, "")
    assert answer(d, "POST", f"/commit?container={d.big_container}&repo=full", b"{}") == (201, "")
    build = context_tar({"Dockerfile": b"FROM busybox\nCOPY big /big\n", "big": b"x"})
    assert answer(d, "POST", "/build?t=full", build) == (200, "")
    res = d.cli("system", "check")
    assert res.returncode == 0 and b"no problems" in res.stdout, res.stdout
    assert records(d.data_root, "SELECT id FROM staged_layers") == []
