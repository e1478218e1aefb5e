"""The storage conformance kit against aufs, plus aufs specifics on real mounts.

Needs root and a kernel with aufs; everything is skipped with the driver's own
reason (``storage_supported``, e.g. "kernel has no aufs") otherwise.
"""

import io
import os
from pathlib import Path

import pytest

from dockyard.driverkit.mounts import mountinfo, mounts_under
from dockyard.drivers.storage import aufs as aufs_module
from dockyard.drivers.storage.aufs import AufsDriver, mount_plan
from dockyard.testing.storage import BASE, StorageConformance, load_storage, make_tar, new_id, tar_entries


@pytest.fixture(scope="module")
def aufs_here(tmp_path_factory):
    """Skips the module's tests, with the driver's reason, where aufs cannot run."""
    reason = AufsDriver().storage_supported(home=tmp_path_factory.mktemp("aufs-probe") / "home", options={})
    if reason is not None:
        pytest.skip(reason)


def _load(home):
    return load_storage(AufsDriver(), home, name="aufs")


@pytest.fixture
def aufs(aufs_here, tmp_path):
    hook = _load(tmp_path / "home")
    yield hook
    hook.storage_cleanup()
    assert mounts_under(tmp_path) == [], "mounts left under tmp_path"


@pytest.mark.root
class TestConformance(StorageConformance):
    @pytest.fixture
    def storage(self, aufs):
        return aufs


# ------------------------------------------------------------ aufs specifics
def _fstype(path):
    found = [fs for mp, fs in mountinfo() if mp == str(path)]
    return found[-1] if found else None


@pytest.mark.root
def test_layout_and_native_whiteouts(aufs, tmp_path):
    home = (tmp_path / "home").resolve()
    base, child = new_id(), new_id()
    aufs.storage_create(id=base, parent=None)
    aufs.storage_apply_diff(id=base, parent=None, stream=make_tar(BASE))
    aufs.storage_create(id=child, parent=base)
    assert (home / "layers" / child).read_text().split() == [base]
    assert aufs.storage_mount(id=base) == str(home / "diff" / base)  # no parent: the branch itself
    aufs.storage_unmount(id=base)
    root = aufs.storage_mount(id=child)
    try:
        assert root == str(home / "mnt" / child) and _fstype(root) == "aufs"
        os.unlink(os.path.join(root, "gone"))
        for rel in ("opq/sub/old2", "opq/old1"):
            os.unlink(os.path.join(root, rel))
        os.rmdir(os.path.join(root, "opq/sub"))
        os.rmdir(os.path.join(root, "opq"))
        os.mkdir(os.path.join(root, "opq"))
        Path(root, "opq/fresh").write_text("fresh")
    finally:
        aufs.storage_unmount(id=child)
    assert _fstype(home / "mnt" / child) is None
    branch = home / "diff" / child
    assert (branch / ".wh.gone").is_file()  # aufs' own whiteouts: the OCI names
    assert (branch / "opq" / ".wh..wh..opq").is_file()
    assert not os.path.lexists(branch / "gone")
    assert aufs.storage_changes(id=child, parent=base) == [
        ("/gone", 2), ("/opq", 0), ("/opq/fresh", 1), ("/opq/old1", 2), ("/opq/sub", 2)]
    with aufs.storage_diff(id=child, parent=base) as diff:
        data = diff.read()
    names = set(tar_entries(io.BytesIO(data)))
    assert {".wh.gone", "opq", "opq/.wh..wh..opq", "opq/fresh"} <= names
    assert not any(n.startswith(".wh..wh.") for n in names)  # aufs metadata stays out
    copy = new_id()
    aufs.storage_create(id=copy, parent=base)
    aufs.storage_apply_diff(id=copy, parent=base, stream=io.BytesIO(data))
    with_copy = aufs.storage_mount(id=copy)
    try:
        assert not os.path.exists(os.path.join(with_copy, "gone"))
        assert os.listdir(os.path.join(with_copy, "opq")) == ["fresh"]
    finally:
        aufs.storage_unmount(id=copy)
    for id in (copy, child, base):
        aufs.storage_remove(id=id)
    for sub in ("diff", "layers", "mnt"):
        assert os.listdir(home / sub) == []


@pytest.mark.root
def test_long_chain_with_long_paths_appends_branches(aufs_here, tmp_path):
    """Like Docker's TestMountMoreThan42LayersMatchingPathLength: 126 layers
    (aufs is commonly built for at most 127 branches) under a long home, so the
    options need the remount/append batches."""
    home = tmp_path / ("h" * 120) / ("o" * 120) / "home"
    hook = _load(home)
    ids, parent = [], None
    try:
        for i in range(126):
            id = new_id()
            hook.storage_create(id=id, parent=parent)
            hook.storage_apply_diff(id=id, parent=parent, stream=make_tar([(f"file{i:03}", "f", b"%d" % i)]))
            ids.append(id)
            parent = id
        diff = home.resolve() / "diff"
        plan = mount_plan(diff / ids[-1], [diff / id for id in reversed(ids[:-1])])
        assert len(plan) > 1
        root = hook.storage_mount(id=ids[-1])
        try:
            assert sorted(os.listdir(root)) == [f"file{i:03}" for i in range(126)]
            assert Path(root, "file000").read_bytes() == b"0"
            Path(root, "top").write_text("written at the top")
        finally:
            hook.storage_unmount(id=ids[-1])
        assert hook.storage_changes(id=ids[-1], parent=ids[-2]) == [("/file125", 1), ("/top", 1)]
    finally:
        for id in reversed(ids):
            hook.storage_remove(id=id)
        hook.storage_cleanup()
    assert mounts_under(tmp_path) == []


def test_loads_through_the_core(tmp_path):
    from dockyard.plugins import load_driver

    slot = load_driver("storage", "aufs", tmp_path / "aufs")
    reason = slot.supported()
    if reason is not None:
        if not aufs_module.has_aufs():
            assert reason == "kernel has no aufs"
        pytest.skip(reason)
    slot.init()
    slot.hook.storage_cleanup()
