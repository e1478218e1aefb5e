"""The storage conformance kit against vfs and overlay, plus overlay specifics."""

import os
import subprocess
from pathlib import Path

import pytest

from dockyard.driverkit.mounts import CWD_RUNNER, mountinfo, mounts_under
from dockyard.drivers.storage.overlay import OverlayDriver
from dockyard.drivers.storage.vfs import VfsDriver
from dockyard.errors import DriverUnsupported, LayerNotFound, StorageError
from dockyard.testing.storage import StorageConformance, load_storage, make_tar, new_id

DRIVERS = {"vfs": VfsDriver, "overlay": OverlayDriver}
PARAMS = [pytest.param("overlay", marks=pytest.mark.root), "vfs"]


def _load(name, home, options=None):
    try:
        return load_storage(DRIVERS[name](), home, options, name=name)
    except DriverUnsupported as exc:
        pytest.skip(str(exc))


@pytest.fixture
def no_leftover_mounts(tmp_path):
    yield
    assert mounts_under(tmp_path) == [], "mounts left under tmp_path"


@pytest.mark.parametrize("driver", PARAMS)
class TestConformance(StorageConformance):
    @pytest.fixture
    def storage(self, driver, tmp_path, no_leftover_mounts):
        hook = _load(driver, tmp_path / "home")
        yield hook
        hook.storage_cleanup()


@pytest.fixture
def overlay(tmp_path, no_leftover_mounts):
    hook = _load("overlay", tmp_path / "home")
    yield hook
    hook.storage_cleanup()


def _mount_count(path):
    return sum(1 for mp, _ in mountinfo() if mp == str(path))


@pytest.mark.root
def test_overlay_chain_of_130_layers(overlay):
    parent, ids = None, []
    for i in range(130):
        id = new_id()
        overlay.storage_create(id=id, parent=parent)
        overlay.storage_apply_diff(id=id, parent=parent, stream=make_tar([(f"file{i:03}", "f", b"%d" % i)]))
        ids.append(id)
        parent = id
    root = overlay.storage_mount(id=ids[-1])
    try:
        names = sorted(os.listdir(root))
        assert names == [f"file{i:03}" for i in range(130)]
        assert Path(root, "file000").read_bytes() == b"0"
        Path(root, "top").write_text("written at the top")
    finally:
        overlay.storage_unmount(id=ids[-1])
    assert overlay.storage_changes(id=ids[-1], parent=ids[-2]) == [("/file129", 1), ("/top", 1)]
    for id in reversed(ids):
        overlay.storage_remove(id=id)


@pytest.mark.root
def test_overlay_layout_and_mount(overlay, tmp_path):
    home = tmp_path / "home"
    base, child = new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_create(id=child, parent=base)
    short = (home / base / "link").read_text()
    assert len(short) == 26 and os.readlink(home / "l" / short) == f"../{base}/diff"
    assert (home / child / "lower").read_text() == f"l/{short}"
    assert overlay.storage_mount(id=base) == str(home / base / "diff")
    cwd = os.getcwd()
    path = overlay.storage_mount(id=child)
    assert os.getcwd() == cwd and CWD_RUNNER.private  # the mount's chdir stayed in its own thread
    assert path == str(home / child / "merged") and _mount_count(path) == 1
    assert overlay.storage_mount(id=child) == path and _mount_count(path) == 1
    assert (home / child / "mounts").read_text().strip() == "2"
    overlay.storage_unmount(id=child)
    overlay.storage_unmount(id=child)
    assert _mount_count(path) == 0 and not (home / child / "mounts").exists()
    overlay.storage_unmount(id=base)
    overlay.storage_remove(id=child)
    overlay.storage_remove(id=base)
    assert os.listdir(home / "l") == []
    status = dict(overlay.storage_status())
    assert status["Backing Filesystem"] and status["Supports d_type"] == "true"


@pytest.mark.root
def test_overlay_metadata_is_dockers_graph_driver_data(overlay, tmp_path):
    home = tmp_path / "home"
    base, mid, top = new_id(), new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_create(id=mid, parent=base)
    overlay.storage_create(id=top, parent=mid)
    try:
        assert overlay.storage_metadata(id=base) == {  # no parent: no LowerDir, as overlay2's
            "MergedDir": str(home / base / "merged"), "UpperDir": str(home / base / "diff"),
            "WorkDir": str(home / base / "work")}
        data = overlay.storage_metadata(id=top)
        assert data["UpperDir"] == str(home / top / "diff")
        assert data["LowerDir"] == f"{home / mid / 'diff'}:{home / base / 'diff'}"  # topmost first
        with pytest.raises(LayerNotFound):
            overlay.storage_metadata(id=new_id())
    finally:
        for id in (top, mid, base):
            overlay.storage_remove(id=id)


def test_vfs_says_nothing_of_its_layers(tmp_path):
    vfs = _load("vfs", tmp_path / "home")
    base = new_id()
    vfs.storage_create(id=base, parent=None)
    assert vfs.storage_metadata(id=base) is None  # GraphDriver.Data null, as dockerd's vfs
    vfs.storage_remove(id=base)


@pytest.mark.root
def test_overlay_restart_adopts_mounts(overlay, tmp_path):
    home = tmp_path / "home"
    base, child = new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_create(id=child, parent=base)
    path = overlay.storage_mount(id=child)
    # a second daemon on the same home: the mount is adopted, not doubled
    again = load_storage(OverlayDriver(), home)
    assert again.storage_mount(id=child) == path and _mount_count(path) == 1
    again.storage_unmount(id=child)
    assert _mount_count(path) == 1  # the first daemon's reference remains
    again.storage_unmount(id=child)
    assert _mount_count(path) == 0
    again.storage_unmount(id=child)  # idempotent


@pytest.mark.root
def test_overlay_whiteouts_on_disk(overlay, tmp_path):
    home = tmp_path / "home"
    base, child = new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_apply_diff(id=base, parent=None, stream=make_tar(
        [("d", "d", None), ("d/x", "f", b"x"), ("f", "f", b"f")]))
    overlay.storage_create(id=child, parent=base)
    overlay.storage_apply_diff(id=child, parent=base, stream=make_tar(
        [("d", "d", None), ("d/.wh..wh..opq", "w", None), (".wh.f", "w", None)]))
    upper = home / child / "diff"
    st = os.lstat(upper / "f")
    assert (st.st_mode & 0o170000, st.st_rdev) == (0o020000, 0)
    assert os.getxattr(upper / "d", "trusted.overlay.opaque") == b"y"
    root = overlay.storage_mount(id=child)
    try:
        assert os.listdir(root) == ["d"] and os.listdir(os.path.join(root, "d")) == []
    finally:
        overlay.storage_unmount(id=child)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_overlay_unsupported_on_overlay(tmp_path):
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    opts = f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,workdir={tmp_path}/work"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(tmp_path / "merged")], check=True)
    try:
        reason = OverlayDriver().storage_supported(home=tmp_path / "merged" / "home", options={})
        assert reason and "overlay" in reason
    finally:
        subprocess.run(["umount", str(tmp_path / "merged")], check=True)


@pytest.mark.parametrize("driver", PARAMS)
def test_loads_through_the_core(driver, tmp_path):
    from dockyard.plugins import load_driver

    slot = load_driver("storage", driver, tmp_path / driver)
    if slot.supported() is not None:
        pytest.skip(slot.supported())
    slot.init()
    slot.hook.storage_cleanup()


@pytest.mark.parametrize("driver", PARAMS)
def test_bad_options_are_refused(driver, tmp_path):
    with pytest.raises(StorageError, match="bogus"):
        _load(driver, tmp_path / "home", {"bogus": 1})


def test_vfs_reflink_option(tmp_path):
    hook = load_storage(VfsDriver(), tmp_path / "home", {"reflink": "never"})
    assert ["Reflink", "never"] in hook.storage_status()
    with pytest.raises(StorageError, match="reflink"):
        load_storage(VfsDriver(), tmp_path / "home2", {"reflink": "sometimes"})


@pytest.mark.root
def test_overlay_concurrent_mounts_leave_no_mount(overlay, tmp_path):
    import threading

    base, child = new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_create(id=child, parent=base)
    merged = tmp_path / "home" / child / "merged"
    barrier = threading.Barrier(6)
    errors = []

    def work():
        try:
            barrier.wait()
            for _ in range(30):
                path = overlay.storage_mount(id=child)
                assert _mount_count(path) == 1
                overlay.storage_unmount(id=child)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert _mount_count(merged) == 0 and not (tmp_path / "home" / child / "mounts").exists()
    overlay.storage_remove(id=child)
    overlay.storage_remove(id=base)


@pytest.mark.root
def test_overlay_mount_during_a_removal_finds_no_layer_and_leaves_no_mount(overlay, tmp_path, monkeypatch):
    """A ``cp`` whose stream starts while its container is removed mounts the
    layer at that moment: it must wait for the removal and find no layer, not
    mount it again between the removal's unmount and its move (the mount would
    then be carried into the trash and make the removal fail EBUSY)."""
    import threading

    from dockyard.drivers.storage import overlay as module
    from dockyard.errors import NotFound

    base, child = new_id(), new_id()
    overlay.storage_create(id=base, parent=None)
    overlay.storage_create(id=child, parent=base)
    overlay.storage_mount(id=child)
    outcome = []

    def late_cp():
        try:
            outcome.append(overlay.storage_mount(id=child))
        except NotFound as exc:
            outcome.append(exc)

    real_rename, started = os.rename, []

    def rename(src, dst):  # the removal is between its unmount and its move
        if not started:
            t = threading.Thread(target=late_cp)
            started.append(t)
            t.start()
            t.join(0.3)  # gives the mount the time to happen, were it not kept out
        return real_rename(src, dst)

    monkeypatch.setattr(module.os, "rename", rename)
    overlay.storage_remove(id=child)
    monkeypatch.undo()
    started[0].join()
    assert len(outcome) == 1 and isinstance(outcome[0], NotFound), outcome
    assert mounts_under(tmp_path / "home") == []
    assert not (tmp_path / "home" / child).exists()
    overlay.storage_remove(id=base)


# ------------------------------------------------------------ the core's layer store


@pytest.fixture(params=PARAMS)
def layer_store(request, tmp_path, no_leftover_mounts):
    from dockyard.engine.layers.store import LayerStore
    from dockyard.plugins import load_driver
    from dockyard.store import Store

    slot = load_driver("storage", request.param, tmp_path / "storage" / request.param)
    if slot.supported() is not None:
        pytest.skip(slot.supported())
    slot.init()
    store = Store(tmp_path / "dockyard.db")
    yield LayerStore(slot, store)
    slot.hook.storage_cleanup()
    store.close()


def _layer_tar(tmp_path, name, entries):
    import hashlib

    path = tmp_path / name
    path.write_bytes(make_tar(entries).getvalue())
    return path, "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_layer_store_refuses_to_remove_a_layer_with_children(layer_store, tmp_path):
    from dockyard.errors import Conflict

    layers = layer_store
    base_tar, base_diff = _layer_tar(tmp_path, "base.tar", [("f", "f", b"base")])
    child_tar, child_diff = _layer_tar(tmp_path, "child.tar", [("g", "f", b"child")])
    base = layers.register(base_tar, base_diff)
    child = layers.register(child_tar, child_diff, base)
    with pytest.raises(Conflict, match="child layer"):
        layers.remove(base)
    assert layers.hook.storage_exists(id=layers.driver_id(base)) and layers.get(base) is not None
    with layers.store.tx() as db:
        db.execute("INSERT INTO images(id, config, top_layer, created) VALUES ('sha256:img', '{}', ?, 'now')",
                   (child,))
    with pytest.raises(Conflict, match="image img"):
        layers.remove(child)
    layers.release(child)  # the image still uses it: release keeps everything
    assert layers.count() == 2
    with layers.store.tx() as db:
        db.execute("DELETE FROM images")
    child_id = layers.driver_id(child)
    layers.remove(child)
    assert not layers.hook.storage_exists(id=child_id) and layers.get(child) is None
    assert layers.tar_split(child) is None  # its tar-split went with it
    layers.remove(base)
    assert layers.count() == 0
