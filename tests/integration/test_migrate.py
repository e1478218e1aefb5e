"""``dockyard storage migrate``: vfs -> overlay offline and through the daemon,
resuming after SIGKILL and after an injected fault, abort, and the refusals."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from dockyard.model.image import ImageConfig
from dockyard.testing.daemon import PY, Daemon, mounts_under

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

KEEPER = ("if [ -f /data.txt ]; then cat /data.txt; ls /etc/group 2>&1 || true; "
          "else echo hello > /data.txt; rm /etc/group; echo created; fi")


def migrate_cli(*args, host=None, timeout=300):
    cmd = [PY, "-m", "dockyard.cli.main"] + (["-H", host] if host else []) + ["storage", "migrate", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def finish(base):
    """Remove every container with a live daemon, stop it, check nothing is mounted."""
    d = Daemon(base).start()
    try:
        client = d.sdk()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()
    finally:
        d.stop()
    assert mounts_under(base) == []


@pytest.fixture
def vfs_store(session_root, busybox_tar):
    """A stopped vfs daemon's roots: two images sharing their layer, a stopped
    container that wrote a file and deleted one, a created (never started) one."""
    base = session_root / f"migrate-{time.monotonic_ns()}"
    d = Daemon(base, storage_driver="vfs").start()
    try:
        d.cli("import", str(busybox_tar), "busybox", check=True)
        d.cli("import", "--change", "ENV MIGRATED=yes", str(busybox_tar), "second", check=True)
        res = d.cli("run", "--name", "keeper", "busybox", "sh", "-c", KEEPER, check=True)
        assert res.stdout == b"created\n"
        d.cli("create", "--name", "fresh", "second", "sh", "-c", "echo $MIGRATED", check=True)
        ids = {img["RepoTags"][0]: img["Id"] for img in d.sdk().api.images()}
        assert len(ids) == 2 and len(set(ids.values())) == 2
    finally:
        d.stop()
    yield base, ids
    finish(base)


def test_offline_migration_vfs_to_overlay(vfs_store):
    base, ids = vfs_store
    data = base / "data"
    res = migrate_cli("--to", "overlay", "--data-root", str(data))
    assert res.returncode == 0, res.stderr
    assert "1 image layers, 2 containers" in res.stdout  # the shared layer is moved once
    assert "layer" in res.stdout and "diff ID verified" in res.stdout and "tree verified" in res.stdout
    assert not (data / "storage" / "vfs").exists() and (data / "storage" / "overlay").is_dir()
    # the data root is pinned to overlay: naming vfs is refused, the default picks overlay
    with pytest.raises(RuntimeError, match="keeps its layers with storage driver 'overlay'"):
        Daemon(base, storage_driver="vfs").start()
    d = Daemon(base).start()
    try:
        client = d.sdk()
        info = client.info()
        assert info["Driver"] == "overlay" and ["Layers", "3"] in info["DriverStatus"]
        assert {img["RepoTags"][0]: img["Id"] for img in client.api.images()} == ids
        assert d.cli("run", "--rm", "busybox", "cat", "/etc/passwd", check=True).stdout.startswith(b"root:x:0:0")
        assert d.cli("run", "--rm", "second", "sh", "-c", "echo $MIGRATED", check=True).stdout == b"yes\n"
        res = d.cli("start", "-a", "keeper", check=True)
        assert res.stdout.decode().splitlines()[0] == "hello" and "No such file" in res.stdout.decode()
        assert d.cli("start", "-a", "fresh", check=True).stdout == b"yes\n"
        assert client.api.inspect_container("keeper")["GraphDriver"]["Name"] == "overlay"
        client.close()
    finally:
        d.stop()


def test_migration_through_the_daemon(vfs_store):
    base, ids = vfs_store
    d = Daemon(base, storage_driver="vfs").start()
    try:
        res = migrate_cli("--to", "overlay", host=d.host)
        assert res.returncode == 0, res.stderr
        assert "Switched to storage driver overlay" in res.stdout
        client = d.sdk()
        assert client.info()["Driver"] == "overlay"  # at once, no restart
        assert d.cli("start", "-a", "keeper", check=True).stdout.decode().startswith("hello\n")
        assert d.cli("run", "--rm", "second", "sh", "-c", "echo $MIGRATED", check=True).stdout == b"yes\n"
        assert not (base / "data" / "storage" / "vfs").exists()
        res = migrate_cli("--to", "overlay", host=d.host)
        assert res.returncode == 1 and "already kept by storage driver overlay" in res.stderr
        res = migrate_cli("--to", "nosuch", host=d.host)
        assert res.returncode == 1 and "unknown storage driver 'nosuch'" in res.stderr
        client.close()
    finally:
        d.stop()
    d = Daemon(base).start()  # a restart keeps the new driver
    try:
        assert d.sdk().info()["Driver"] == "overlay"
        assert {img["RepoTags"][0]: img["Id"] for img in d.sdk().api.images()} == ids
    finally:
        d.stop()


def test_refused_while_a_container_runs(vfs_store):
    base, _ = vfs_store
    data = base / "data"
    d = Daemon(base, storage_driver="vfs").start()
    try:
        d.cli("run", "-d", "--name", "sleeper", "busybox", "sleep", "120", check=True)
        res = migrate_cli("--to", "overlay", host=d.host)
        assert res.returncode == 1 and "containers are running: sleeper" in res.stderr
        res = migrate_cli("--to", "overlay", "--data-root", str(data))
        assert res.returncode == 1 and "a daemon (pid" in res.stderr
    finally:
        d.stop()  # the container keeps running without its daemon
    res = migrate_cli("--to", "overlay", "--data-root", str(data))
    assert res.returncode == 1 and "containers are running: sleeper" in res.stderr
    assert not (data / "storage" / "overlay").exists()
    d = Daemon(base, storage_driver="vfs").start()
    try:
        assert d.sdk().info()["Driver"] == "vfs"
        d.cli("rm", "-f", "sleeper", check=True)
    finally:
        d.stop()


# ---------------------------------------------------------------- a bigger store, built in-process


def build_store(data, chains=3, depth=4, files=120, size=16384):
    """A vfs store: ``chains`` images branching from one shared base layer, each
    ``depth`` layers deep (files added, one deleted per layer), and a stopped
    container whose layer holds changes.  Returns ``{driver id: kind}``."""
    import hashlib
    import secrets

    from dockyard.engine.images.store import ImageStore
    from dockyard.engine.layers.store import LayerStore
    from dockyard.plugins import load_driver
    from dockyard.store import Store
    from dockyard.testing.storage import make_tar

    slot = load_driver("storage", "vfs", data / "storage" / "vfs")
    slot.init()
    (data / "tmp").mkdir(parents=True, exist_ok=True)
    store = Store(data / "dockyard.db")
    layers = LayerStore(slot, store)
    images = ImageStore(store, layers, str(data / "tmp"))

    def register(name, entries, parent):
        path = data / "tmp" / f"{name}.tar"
        path.write_bytes(make_tar(entries).getvalue())
        diff_id = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        chain = layers.register(path, diff_id, parent)
        path.unlink()
        return chain, diff_id

    base, base_diff = register("base", [("shared", "d", None)] + [
        (f"shared/f{i}", "f", os.urandom(size)) for i in range(files)], None)
    tops = []
    for c in range(chains):
        top, diffs = base, [base_diff]
        for level in range(1, depth):
            entries = [(f"c{c}", "d", None)] + [(f"c{c}/l{level}-{i}", "f", os.urandom(size)) for i in range(files)]
            entries += [("shared", "d", None), (f"shared/.wh.f{c * depth + level}", "w", None)]
            top, diff_id = register(f"{c}-{level}", entries, top)
            diffs.append(diff_id)
        images.add(ImageConfig.from_json({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]},
                                          "created": f"2024-01-0{c + 1}", "rootfs": {"type": "layers", "diff_ids": diffs}}),
                   top)
        tops.append(top)
    cid = secrets.token_hex(32)
    layers.create_rw(cid, tops[0])
    root = Path(layers.mount(cid))
    (root / "work").mkdir()
    (root / "work/out").write_bytes(os.urandom(size))
    (root / "shared/f0").unlink()
    layers.unmount(cid)
    image_id = store.one("SELECT id FROM images WHERE top_layer=?", tops[0])["id"]
    rec = {"Id": cid, "Name": "/worker", "Driver": "vfs", "State": {"Running": False, "Paused": False,
                                                                    "Status": "exited"}}
    with store.tx() as db:
        db.execute("INSERT INTO containers(id, name, image_id, data) VALUES (?,?,?,?)",
                   (cid, "worker", image_id, json.dumps(rec)))
    kinds = {r["driver_id"]: "layer" for r in store.query("SELECT driver_id FROM layers")} | {cid: "container"}
    store.close()
    slot.hook.storage_cleanup()
    return kinds


def trees(data, driver, ids):
    """``{driver id: snapshot}`` of layers ``ids`` under ``driver``."""
    from dockyard.plugins import load_driver
    from dockyard.testing.storage import snapshot

    slot = load_driver("storage", driver, data / "storage" / driver)
    slot.init()
    out = {}
    try:
        for id in ids:
            root = slot.hook.storage_mount(id=id)
            try:
                out[id] = snapshot(root)
            finally:
                slot.hook.storage_unmount(id=id)
    finally:
        slot.hook.storage_cleanup()
    return out


def meta(data, key):
    from dockyard.store import Store

    store = Store(data / "dockyard.db")
    try:
        return store.get_meta(key)
    finally:
        store.close()


def test_killed_migration_is_resumed(session_root):
    base = session_root / f"migrate-kill-{time.monotonic_ns()}"
    data = base / "data"
    kinds = build_store(data)
    assert list(kinds.values()).count("layer") == 10
    before = trees(data, "vfs", kinds)
    cmd = [PY, "-m", "dockyard.cli.main", "storage", "migrate", "--to", "overlay", "--data-root", str(data)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    copied = 0
    for line in proc.stdout:
        if line.startswith("[") and "copied" in line:
            copied += 1
            if copied == 3:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(60)
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    state = json.loads(meta(data, "storage_migration"))
    assert state["phase"] == "copy" and meta(data, "storage_driver") == "vfs"  # still on the old driver
    assert trees(data, "vfs", kinds) == before  # untouched
    res = migrate_cli("--to", "overlay", "--data-root", str(data))
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("already copied") >= 3 and "Done: the storage driver is overlay" in res.stdout
    assert meta(data, "storage_migration") is None and meta(data, "storage_driver") == "overlay"
    assert not (data / "storage" / "vfs").exists()
    assert trees(data, "overlay", kinds) == before
    assert mounts_under(base) == []


def test_fault_resume_abort_and_keep_old(tmp_path):
    from dockyard.engine.layers.service import migrate_offline
    from dockyard.errors import Conflict, StorageError

    data = tmp_path / "data"
    kinds = build_store(data, chains=2, depth=3, files=8, size=1000)
    before = trees(data, "vfs", kinds)
    seen = []

    def fault(point, id):
        seen.append(id)
        if len(seen) == 3:
            raise StorageError("injected fault")

    messages = []
    with pytest.raises(StorageError, match="injected fault"):
        migrate_offline(data, "overlay", fault=fault, progress=messages.append)
    assert sum("copied," in m["status"] for m in messages) == 2
    with pytest.raises(Conflict, match="unfinished"):
        migrate_offline(data, "btrfs")
    # abort: the overlay layers go, the pin goes back to what it was (none)
    migrate_offline(data, abort=True, progress=messages.append)
    assert not (data / "storage" / "overlay").exists() and meta(data, "storage_driver") is None
    assert meta(data, "storage_migration") is None and trees(data, "vfs", kinds) == before
    # again, interrupted, then resumed, keeping the old layers
    seen.clear()
    with pytest.raises(StorageError):
        migrate_offline(data, "overlay", keep_old=True, fault=fault)
    messages.clear()
    assert migrate_offline(data, "overlay", progress=messages.append) == "overlay"
    statuses = [m["status"] for m in messages]
    assert sum("already copied" in s for s in statuses) == 2 and any("Kept the vfs layers" in s for s in statuses)
    assert meta(data, "storage_driver") == "overlay"
    assert trees(data, "overlay", kinds) == before and trees(data, "vfs", kinds) == before
    with pytest.raises(Conflict, match="already holds data"):  # back to vfs: its home still holds the old layers
        migrate_offline(data, "vfs")
    assert mounts_under(tmp_path) == []


def test_cli_usage_errors(tmp_path):
    res = migrate_cli()
    assert res.returncode == 2 and "--to NAME" in res.stderr
    res = migrate_cli("--to", "overlay", "--data-root", str(tmp_path))
    assert res.returncode == 1 and "no Dockyard data in" in res.stderr
    res = migrate_cli("--to", "overlay", host=f"unix://{tmp_path}/none.sock")
    assert res.returncode == 1 and "--data-root" in res.stderr


def test_resume_after_the_store_changed_and_after_an_interrupted_cleanup(tmp_path):
    import hashlib

    from dockyard.engine.images.remove import delete_image
    from dockyard.engine.images.store import ImageStore
    from dockyard.engine.layers.store import LayerStore
    from dockyard.engine.layers.service import migrate_offline
    from dockyard.errors import StorageError
    from dockyard.plugins import load_driver
    from dockyard.store import Store
    from dockyard.testing.storage import make_tar

    data = tmp_path / "data"
    kinds = build_store(data, chains=2, depth=2, files=4, size=500)
    cid = next(id for id, kind in kinds.items() if kind == "container")

    def stop_at(point):
        def fault(where, id):
            if where == point:
                raise StorageError(f"stopped at {point}")
        return fault

    with pytest.raises(StorageError, match="stopped at switching"):  # everything copied, not switched
        migrate_offline(data, "overlay", fault=stop_at("switching"))
    # meanwhile (a daemon on vfs would do this): the container writes, an image goes, one comes
    slot = load_driver("storage", "vfs", data / "storage" / "vfs")
    slot.init()
    store = Store(data / "dockyard.db")
    layers = LayerStore(slot, store)
    images = ImageStore(store, layers, str(data / "tmp"))
    root = Path(layers.mount(cid))
    (root / "work/later").write_bytes(b"written after the copy")
    layers.unmount(cid)
    gone = store.one("SELECT id, top_layer FROM images WHERE id != (SELECT image_id FROM containers)")
    gone_layer = layers.driver_id(gone["top_layer"])
    delete_image(images, gone["id"], [])
    path = data / "tmp" / "new.tar"
    path.write_bytes(make_tar([("new", "f", b"new layer")]).getvalue())
    diff_id = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    new_top = layers.register(path, diff_id)
    images.add(ImageConfig.from_json({"architecture": "amd64", "os": "linux", "created": "2024-02-01",
                                      "rootfs": {"type": "layers", "diff_ids": [diff_id]}}), new_top)
    kinds = {r["driver_id"]: "layer" for r in store.query("SELECT driver_id FROM layers")} | {cid: "container"}
    store.close()
    slot.hook.storage_cleanup()
    before = trees(data, "vfs", kinds)
    assert (data / "storage" / "overlay" / gone_layer).exists()  # copied before it went
    messages = []
    with pytest.raises(StorageError, match="stopped at removing"):  # switched, old layers partly removed
        migrate_offline(data, "overlay", fault=stop_at("removing"), progress=messages.append)
    statuses = [m["status"] for m in messages]
    assert any("container worker: copied" in s for s in statuses)  # its digest changed: copied again
    assert sum("already copied" in s for s in statuses) == len(kinds) - 2  # all but the container and the new one
    assert not (data / "storage" / "overlay" / gone_layer).exists()  # its copy went with it
    assert meta(data, "storage_driver") == "overlay"
    assert json.loads(meta(data, "storage_migration"))["phase"] == "cleanup"
    assert (data / "storage" / "vfs").exists()
    assert migrate_offline(data, "overlay") == "overlay"  # finishes the cleanup
    assert not (data / "storage" / "vfs").exists() and meta(data, "storage_migration") is None
    assert trees(data, "overlay", kinds) == before
    assert mounts_under(tmp_path) == []


def test_storage_gate_drains_and_holds_off_storage_requests():
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from dockyard.daemon import gate as storage_api
    from dockyard.daemon.middleware import docker_errors
    from dockyard.errors import Conflict

    async def main():
        release = asyncio.Event()

        async def slow(request):
            await release.wait()
            return web.json_response({"ok": True})

        async def quick(request):
            return web.json_response({"ok": True})

        app = web.Application(middlewares=[docker_errors])
        storage_api.install(app)
        app.router.add_route("POST", "/containers/create", slow)
        app.router.add_route("POST", "/v1.41/containers/{id}/start", quick)
        app.router.add_route("GET", "/v1.41/containers/json", quick)
        async with TestClient(TestServer(app)) as client:
            gate = app[storage_api.GATE]
            in_flight = asyncio.ensure_future(client.post("/containers/create"))
            while gate.busy == 0:
                await asyncio.sleep(0.01)
            closing = asyncio.ensure_future(gate.close("test"))
            await asyncio.sleep(0.2)
            assert not closing.done()  # waits for the request in flight
            resp = await client.post("/v1.41/containers/abc/start")
            assert resp.status == 503 and "storage maintenance" in (await resp.json())["message"]
            assert (await client.get("/v1.41/containers/json")).status == 200  # reads go on
            release.set()
            assert (await in_flight).status == 200
            await closing
            try:
                await gate.close("again")
                raise AssertionError("a second close must be refused")
            except Conflict:
                pass
            gate.open()
            assert (await client.post("/v1.41/containers/abc/start")).status == 200

    asyncio.run(main())
