"""The storage conformance kit against btrfs, plus btrfs specifics.

A module-scoped fixture makes a btrfs file system on a sparse file (loop device)
in a temporary directory and tears it down completely -- unmount, ``losetup -d``,
file removed -- even when tests fail; its teardown fails if a mount or a loop
device is left.  Needs root, the kernel's btrfs, ``btrfs-progs`` (mkfs.btrfs) and
PyPI ``btrfsutil<=6.13``; skipped with the reason otherwise.
"""

import errno
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from dockyard.driverkit.mounts import backing_fs, mountinfo
from dockyard.drivers.storage import btrfs as btrfs_module
from dockyard.drivers.storage.btrfs import BtrfsDriver
from dockyard.errors import LayerNotFound, StorageError
from dockyard.testing.storage import StorageConformance, load_storage, make_tar, new_id


def _has_btrfs():
    with open("/proc/filesystems") as f:
        return any(line.split()[-1:] == ["btrfs"] for line in f)


def _why_not():
    """``None`` if a btrfs file system can be made and driven here, else why not."""
    if os.geteuid() != 0:
        return "needs root (losetup, mount, subvolume deletion)"
    for tool in ("truncate", "mkfs.btrfs", "losetup", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install btrfs-progs util-linux)"
    if not _has_btrfs():
        subprocess.run(["modprobe", "btrfs"], capture_output=True)
        if not _has_btrfs():
            return "the kernel has no btrfs"
    try:
        import btrfsutil  # noqa: F401
    except ImportError as exc:
        return f"btrfsutil cannot be imported ({exc}): pip install 'btrfsutil<=6.13'"
    return None


def _run(*cmd):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True).stdout.strip()


def leftovers(base):
    """Mounts below ``base`` and loop devices backed by files below it."""
    prefix = str(base).rstrip("/") + "/"
    found = [f"mount {mp}" for mp, _ in mountinfo() if mp.startswith(prefix)]
    for line in _run("losetup", "-l", "-n", "-O", "NAME,BACK-FILE").splitlines():
        name, _, back = line.strip().partition(" ")
        if back.strip().startswith(prefix):
            found.append(f"loop device {name} ({back.strip()})")
    return found


@contextmanager
def btrfs_filesystem(base, size="1G"):
    """A fresh btrfs mounted at ``base/mnt`` (from ``base/btrfs.img`` on a loop
    device); everything is undone on exit, whatever happened inside."""
    base = Path(base)
    img, mnt = base / "btrfs.img", base / "mnt"
    loop, mounted = None, False
    try:
        _run("truncate", "-s", size, img)
        _run("mkfs.btrfs", "-q", img)
        loop = _run("losetup", "--find", "--show", img)
        mnt.mkdir()
        _run("mount", "-t", "btrfs", loop, mnt)
        mounted = True
        yield mnt
    finally:
        if mounted:
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        if loop:
            subprocess.run(["losetup", "-d", loop], capture_output=True)
            # after a lazy unmount the kernel frees the device (autoclear) only when the
            # file system's last reference goes: give it that moment
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and str(img) in _run("losetup", "-l", "-n", "-O", "BACK-FILE"):
                time.sleep(0.1)
        img.unlink(missing_ok=True)
        if mnt.is_dir() and not any(mp == str(mnt) for mp, _ in mountinfo()):
            mnt.rmdir()


needs_btrfs = pytest.mark.root


@pytest.fixture(scope="module")
def btrfs_root(tmp_path_factory):
    """The mount point of the module's btrfs file system."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("btrfs")
    with btrfs_filesystem(base) as mnt:
        yield mnt
    left = leftovers(base)
    assert not left, f"left behind by the btrfs fixture: {left}"


def subvolumes(path):
    """Relative paths of the subvolumes below directory ``path``, parents first."""
    import btrfsutil

    found = []
    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub) and btrfsutil.is_subvolume(sub):
                found.append(os.path.relpath(sub, path))
    return sorted(found)


@pytest.fixture
def home(btrfs_root):
    """A fresh driver home on the module's btrfs; checks every layer was removed."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=btrfs_root))
    yield home
    import btrfsutil

    subs = subvolumes(home)
    leaked = subs + [f"{d}/{n}" for d in ("subvolumes", "tmp") if (home / d).is_dir() for n in os.listdir(home / d)]
    for rel in subs:  # clean up, so the module's file system can be unmounted
        btrfsutil.set_subvolume_read_only(home / rel, False)
    for rel in reversed(subs):
        if os.path.lexists(home / rel):
            btrfsutil.delete_subvolume(home / rel, recursive=True)
    shutil.rmtree(home)
    assert not leaked, f"layers left behind: {leaked}"


def _load(home, options=None):
    return load_storage(BtrfsDriver(), home, options, name="btrfs")


@pytest.fixture
def btrfs(home):
    hook = _load(home)
    yield hook
    hook.storage_cleanup()


@needs_btrfs
class TestConformance(StorageConformance):
    @pytest.fixture
    def storage(self, btrfs):
        return btrfs


# ------------------------------------------------------------ btrfs specifics
def _info(path):
    import btrfsutil

    return btrfsutil.subvolume_info(path)


@needs_btrfs
def test_child_is_a_snapshot_of_its_parent(btrfs, home):
    import btrfsutil

    base, child, grandchild = new_id(), new_id(), new_id()
    btrfs.storage_create(id=base, parent=None)
    btrfs.storage_apply_diff(id=base, parent=None, stream=make_tar([("big", "f", os.urandom(4 << 20))]))
    btrfs.storage_create(id=child, parent=base)
    btrfs.storage_create(id=grandchild, parent=child)
    try:
        paths = {id: home / "subvolumes" / id for id in (base, child, grandchild)}
        assert all(btrfsutil.is_subvolume(p) for p in paths.values())
        assert stat_mode(paths[base]) == 0o755
        b, c, g = (_info(paths[id]) for id in (base, child, grandchild))
        assert b.parent_uuid == bytes(16)  # a new subvolume, not a snapshot
        assert c.parent_uuid == b.uuid and g.parent_uuid == c.uuid  # O(1) copy-on-write snapshots
        assert len({b.id, c.id, g.id}) == 3
        assert btrfs.storage_mount(id=child) == str(paths[child])
        assert btrfs.storage_mount(id=child) == str(paths[child])  # refcounted, same path
        btrfs.storage_unmount(id=child)
        btrfs.storage_unmount(id=child)
        assert (paths[grandchild] / "big").read_bytes() == (paths[base] / "big").read_bytes()
        with pytest.raises(LayerNotFound):
            btrfs.storage_mount(id=new_id())
    finally:
        for id in (grandchild, child, base):
            btrfs.storage_remove(id=id)


def stat_mode(path):
    return os.stat(path).st_mode & 0o7777


@needs_btrfs
def test_remove_deletes_nested_subvolumes(btrfs, home):
    import btrfsutil

    base, child = new_id(), new_id()
    btrfs.storage_create(id=base, parent=None)
    btrfs.storage_create(id=child, parent=base)
    root = Path(btrfs.storage_mount(id=child))
    # what a privileged container may do inside its rootfs
    (root / "var/lib/inner").mkdir(parents=True)
    btrfsutil.create_subvolume(root / "var/lib/inner/sv1")
    btrfsutil.create_subvolume(root / "var/lib/inner/sv1/sv2")
    (root / "var/lib/inner/sv1/sv2/data").write_text("x")
    btrfsutil.create_snapshot(root / "var/lib/inner/sv1", root / "snap", read_only=True)
    btrfsutil.set_subvolume_read_only(root / "var/lib/inner/sv1")
    (root / "mnt").mkdir()
    _run("mount", "-t", "tmpfs", "tmpfs", root / "mnt")  # a mount a dead container left behind
    btrfs.storage_unmount(id=child)
    btrfsutil.set_subvolume_read_only(root)  # even the layer itself read-only
    assert subvolumes(root) == ["snap", "var/lib/inner/sv1", "var/lib/inner/sv1/sv2"]

    btrfs.storage_remove(id=child)
    assert btrfs.storage_exists(id=child) is False
    assert not os.path.lexists(root)
    assert not any(mp.startswith(str(root)) for mp, _ in mountinfo())
    assert subvolumes(home) == [f"subvolumes/{base}"]
    assert os.listdir(home / "tmp") == []
    btrfs.storage_remove(id=child)  # idempotent
    btrfs.storage_remove(id=base)


@needs_btrfs
def test_init_finishes_an_interrupted_remove(btrfs, home):
    import btrfsutil

    id = new_id()
    btrfs.storage_create(id=id, parent=None)
    trash = home / "tmp" / f"rm-{id}"
    os.rename(home / "subvolumes" / id, trash)  # as if the daemon died mid-remove
    btrfsutil.create_subvolume(trash / "nested")
    (home / "tmp" / "stray-dir" / "d").mkdir(parents=True)
    btrfsutil.create_subvolume(home / "tmp" / "stray-dir" / "d" / "sv")
    again = _load(home)  # the next daemon start
    assert os.listdir(home / "tmp") == []
    assert again.storage_exists(id=id) is False


@needs_btrfs
def test_layers_survive_a_restart(btrfs, home):
    base, child = new_id(), new_id()
    btrfs.storage_create(id=base, parent=None)
    btrfs.storage_apply_diff(id=base, parent=None, stream=make_tar([("f", "f", b"kept")]))
    btrfs.storage_create(id=child, parent=base)
    btrfs.storage_cleanup()
    again = _load(home)
    assert again.storage_exists(id=base) and again.storage_exists(id=child)
    with pytest.raises(StorageError, match="exists already"):
        again.storage_create(id=child, parent=base)
    assert Path(again.storage_mount(id=child), "f").read_bytes() == b"kept"
    again.storage_unmount(id=child)
    again.storage_remove(id=child)
    again.storage_remove(id=base)


@needs_btrfs
def test_bad_ids_and_options_are_refused(btrfs, home):
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(StorageError):
            btrfs.storage_create(id=bad, parent=None)
        assert btrfs.storage_exists(id=bad) is False
    with pytest.raises(StorageError, match="bogus"):
        _load(home, {"bogus": 1})
    for size in ("lots", "-1G", 0, True):
        with pytest.raises(StorageError, match="size"):
            _load(home, {"size": size})


@needs_btrfs
def test_status(btrfs):
    status = dict(btrfs.storage_status())
    assert status["Backing Filesystem"] == "btrfs"
    assert status["Build Version"].startswith("btrfsutil ")
    assert status["Library Version"] not in ("", "unknown")
    assert status["Quota"] == "off"


@needs_btrfs
def test_supported_on_btrfs(btrfs_root):
    driver = BtrfsDriver()
    assert driver.storage_supported(home=btrfs_root / "not" / "yet" / "made", options={}) is None


def test_supported_says_not_on_btrfs(tmp_path):
    fs = backing_fs(tmp_path)
    if fs == "btrfs":
        pytest.skip(f"{tmp_path} is on btrfs")
    home = tmp_path / "storage" / "btrfs"  # does not exist: its nearest parent counts
    assert BtrfsDriver().storage_supported(home=home, options={}) == f"{home} is not on btrfs ({fs})"
    assert not home.exists()


@needs_btrfs
def test_supported_without_btrfsutil(btrfs_root, monkeypatch):
    monkeypatch.setattr(btrfs_module, "_module", None)
    monkeypatch.setitem(sys.modules, "btrfsutil", None)  # import fails as if not installed
    reason = BtrfsDriver().storage_supported(home=btrfs_root / "home", options={})
    assert reason == "btrfsutil is not installed (pip install 'btrfsutil<=6.13')"


@needs_btrfs
def test_loads_through_the_core(btrfs_root):
    from dockyard.plugins import load_driver

    home = btrfs_root / "core-home"
    slot = load_driver("storage", "btrfs", home)
    assert slot.supported() is None
    slot.init()
    slot.hook.storage_cleanup()
    shutil.rmtree(home)


@needs_btrfs
def test_quota(btrfs_root, tmp_path):
    """``size`` limits what a layer's tree may hold (qgroup max referenced)."""
    import btrfsutil

    with btrfs_filesystem(tmp_path, size="512M") as mnt:  # its own fs: quotas are fs-wide
        hook = _load(mnt / "home", {"size": "16M"})
        assert ["Quota", "16MiB per layer"] in hook.storage_status()
        base, child = new_id(), new_id()
        hook.storage_create(id=base, parent=None)
        hook.storage_apply_diff(id=base, parent=None, stream=make_tar([("image", "f", os.urandom(6 << 20))]))
        hook.storage_create(id=child, parent=base)
        root = hook.storage_mount(id=child)
        chunk = os.urandom(1 << 20)
        with open(os.path.join(root, "small"), "wb") as f:  # 6 + 4 MiB fits in 16 MiB
            for _ in range(4):
                f.write(chunk)
            os.fsync(f.fileno())
        with pytest.raises(OSError) as caught:
            with open(os.path.join(root, "big"), "wb") as f:  # 6 + 4 + 12 MiB does not
                for _ in range(12):
                    f.write(chunk)
                os.fsync(f.fileno())
        assert caught.value.errno == errno.EDQUOT
        os.unlink(os.path.join(root, "big"))
        hook.storage_unmount(id=child)
        assert btrfsutil.is_subvolume(mnt / "home" / "subvolumes" / child)
        hook.storage_remove(id=child)
        hook.storage_remove(id=base)
        hook.storage_cleanup()
        assert os.listdir(mnt / "home" / "subvolumes") == []
    assert leftovers(tmp_path) == []


@needs_btrfs
def test_filesystem_is_torn_down_after_a_failure(btrfs_root, tmp_path):
    """What the module fixture relies on: nothing is left even when the body fails."""
    with pytest.raises(RuntimeError):
        with btrfs_filesystem(tmp_path, size="256M") as mnt:
            hook = _load(mnt / "home")
            id = new_id()
            hook.storage_create(id=id, parent=None)  # a layer left: the fs is torn down anyway
            raise RuntimeError("a test failed here")
    assert leftovers(tmp_path) == []
    assert not (tmp_path / "btrfs.img").exists()
