"""The aufs storage driver without an aufs kernel: mount options, native whiteouts
in the diff directories, native diff/changes/size/apply_diff, layout, support check.

Everything here works on ``home/diff/<id>`` directly (no mount); the mount path
is checked against a fake mount table.  The real mounts are in
``tests/integration/test_storage_aufs.py``.
"""

import io
import os
import shutil
import stat

import pytest

from dockyard.driverkit.naivediff import tree_changes
from dockyard.drivers.storage import aufs as aufs_module
from dockyard.drivers.storage.aufs import MS_REMOUNT, AufsDriver, BranchView, mount_plan
from dockyard.errors import LayerNotFound, StorageError
from dockyard.testing.storage import (BASE, CHILD, CHILD_APPLIED, CHILD_CHANGES, CHILD_SIZE, make_tar, new_id,
                                      snapshot, tar_entries)

PAGE = os.sysconf("SC_PAGE_SIZE")
OPTS = "dio,xino=/dev/shm/aufs.xino"


# ------------------------------------------------------------ helpers
@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


@pytest.fixture
def driver(home):
    home.mkdir()
    d = AufsDriver()
    d.storage_init(home=home, options={})
    yield d
    d.storage_cleanup()


def layer(driver, parent=None, entries=None):
    id = new_id()
    driver.storage_create(id=id, parent=parent)
    if entries is not None:
        driver.storage_apply_diff(id=id, parent=parent, stream=make_tar(entries))
    return id


def branch(driver, id):
    return driver.home / "diff" / id


def files(root):
    """``{rel: kind}`` of everything in a directory tree (``d``, ``f``, ``l``, ``p``, ``?``)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            kind = ("d" if stat.S_ISDIR(mode) else "f" if stat.S_ISREG(mode) else "l" if stat.S_ISLNK(mode)
                    else "p" if stat.S_ISFIFO(mode) else "?")
            out[os.path.relpath(path, root)] = kind
    return out


def materialize(driver, id, dest):
    """Copy the union aufs would show for layer ``id`` to ``dest`` (no mount)."""
    tops = [branch(driver, id)] + [branch(driver, a) for a in driver._ancestors(id)]
    view = BranchView(tops)
    os.mkdir(dest)

    def copy(rel):
        for name, st in sorted(view.listdir(rel).items()):
            crel = f"{rel}/{name}" if rel else name
            src, _ = view.find(crel)
            dst = os.path.join(dest, crel)
            if stat.S_ISDIR(st.st_mode):
                os.mkdir(dst)
                copy(crel)
                shutil.copystat(src, dst, follow_symlinks=False)
            elif stat.S_ISLNK(st.st_mode):
                os.symlink(os.readlink(src), dst)
            elif stat.S_ISFIFO(st.st_mode):
                os.mkfifo(dst, stat.S_IMODE(st.st_mode))
            else:
                shutil.copy2(src, dst)
            if os.geteuid() == 0:
                os.chown(dst, st.st_uid, st.st_gid, follow_symlinks=False)
            if not stat.S_ISLNK(st.st_mode):
                os.chmod(dst, stat.S_IMODE(st.st_mode))
            os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)

    copy("")
    return dest


def naive_changes(driver, id, parent, tmp_path):
    """What the core's naive fallback would report on the real union."""
    tag = new_id()[:8]
    new = materialize(driver, id, tmp_path / f"new-{tag}")
    old = materialize(driver, parent, tmp_path / f"old-{tag}") if parent else None
    return [("/" + rel, kind) for rel, kind in tree_changes(str(new), str(old) if old else None)]


def parse_plan(plan, options=OPTS):
    """``[(path, mode)]`` of all branches a plan mounts, top first."""
    flags, data = plan[0]
    assert flags == 0 and data.startswith("br:")
    spec, _, rest = data[3:].partition(",")
    assert rest == options
    out = [tuple(b.rsplit("=", 1)) for b in spec.split(":")]
    for flags, data in plan[1:]:
        assert flags == MS_REMOUNT and data.startswith("append:") and "," not in data
        out.append(tuple(data[len("append:"):].rsplit("=", 1)))
    return out


# ------------------------------------------------------------ mount options
def test_mount_plan_few_layers_is_one_mount():
    assert mount_plan("/h/diff/c", ["/h/diff/p", "/h/diff/g"]) == [
        (0, f"br:/h/diff/c=rw:/h/diff/p=ro+wh:/h/diff/g=ro+wh,{OPTS}")]
    assert mount_plan("/h/diff/c", []) == [(0, f"br:/h/diff/c=rw,{OPTS}")]
    assert mount_plan("/r", ["/a"], options="") == [(0, "br:/r=rw:/a=ro+wh")]


@pytest.mark.parametrize("page", sorted({4096, 16384, PAGE}))
@pytest.mark.parametrize("home", ["/var/lib/dockyard/storage/aufs", "/srv/" + "long-name/" * 30 + "aufs"])
def test_mount_plan_130_layers_is_batched_under_the_page_size(page, home):
    ids = [new_id() for _ in range(130)]
    rw, ro = f"{home}/diff/{ids[-1]}", [f"{home}/diff/{id}" for id in reversed(ids[:-1])]
    plan = mount_plan(rw, ro, page=page)
    assert all(len(data.encode()) + 1 <= page for _, data in plan)  # with its NUL
    if page == 4096:
        assert len(plan) > 1  # 130 absolute paths do not fit in one page
    branches = parse_plan(plan)
    assert branches == [(rw, "rw")] + [(d, "ro+wh") for d in ro]  # each once, nearest first
    first = plan[0][1]
    assert len(first.encode()) + 1 + len(f":{ro[0]}=ro+wh") > page or len(plan) == 1  # the first batch is full


def test_mount_plan_refuses_a_path_longer_than_a_page():
    with pytest.raises(StorageError, match="too long"):
        mount_plan("/" + "x" * PAGE, [])
    with pytest.raises(StorageError, match="too long"):
        mount_plan("/rw", ["/a", "/" + "y" * PAGE])


# ------------------------------------------------------------ layout and lifecycle
def test_layout(driver, home):
    base = layer(driver)
    child = layer(driver, base)
    grandchild = layer(driver, child)
    assert (home / "layers" / base).read_text() == ""
    assert (home / "layers" / child).read_text() == f"{base}\n"
    assert (home / "layers" / grandchild).read_text() == f"{child}\n{base}\n"
    for id in (base, child, grandchild):
        assert (home / "diff" / id).is_dir() and (home / "mnt" / id).is_dir()
        assert driver.storage_exists(id=id)
    assert stat.S_IMODE(os.stat(home / "diff" / base).st_mode) == 0o755
    assert os.listdir(home / "tmp") == []
    status = dict(driver.storage_status())
    assert status["Root Dir"] == str(home.resolve()) and status["Dirs"] == "3"
    assert status["Backing Filesystem"] not in ("", "unknown")
    for id in (grandchild, child, base):
        driver.storage_remove(id=id)
        driver.storage_remove(id=id)  # idempotent
        assert not driver.storage_exists(id=id)
    for sub in ("diff", "layers", "mnt", "tmp"):
        assert os.listdir(home / sub) == []


def test_child_root_copies_the_parent_root(driver):
    base = layer(driver, None, [(".", "d", None, {"mode": 0o700, "mtime": 1_600_000_000})])
    child = layer(driver, base)
    a, b = os.stat(branch(driver, base)), os.stat(branch(driver, child))
    assert (a.st_mode, a.st_uid, a.st_gid, a.st_mtime_ns) == (b.st_mode, b.st_uid, b.st_gid, b.st_mtime_ns)


def test_create_errors_leave_nothing(driver, home):
    id = layer(driver)
    with pytest.raises(StorageError, match="exists already"):
        driver.storage_create(id=id, parent=None)
    orphan = new_id()
    with pytest.raises(StorageError, match="not found"):
        driver.storage_create(id=orphan, parent=new_id())
    assert not driver.storage_exists(id=orphan)
    for bad in ("../escape", "a/b", "", ".hidden"):
        with pytest.raises(StorageError):
            driver.storage_create(id=bad, parent=None)
        assert driver.storage_exists(id=bad) is False
    assert sorted(os.listdir(home / "diff")) == [id] and os.listdir(home / "tmp") == []
    with pytest.raises(LayerNotFound):
        driver.storage_mount(id=new_id())
    with pytest.raises(LayerNotFound):
        driver.storage_changes(id=new_id(), parent=None)


def test_init_removes_pieces_of_interrupted_operations(driver, home):
    keep = layer(driver, None, [("f", "f", b"kept")])
    half_created, half_removed = new_id(), new_id()
    (home / "diff" / half_created).mkdir()  # died before layers/<id> was written
    (home / "layers" / half_removed).write_text("")  # died after diff/<id> was renamed away
    (home / "mnt" / half_removed).mkdir()
    (home / "tmp" / "x-123" / "diff" / "d").mkdir(parents=True)
    again = AufsDriver()
    again.storage_init(home=home, options={})
    assert os.listdir(home / "diff") == [keep] and os.listdir(home / "layers") == [keep]
    assert os.listdir(home / "mnt") == [keep] and os.listdir(home / "tmp") == []
    assert again.storage_exists(id=keep) and not again.storage_exists(id=half_created)
    assert again.storage_changes(id=keep, parent=None) == [("/f", 1)]


def test_bad_options_are_refused(home):
    home.mkdir()
    with pytest.raises(StorageError, match="bogus"):
        AufsDriver().storage_init(home=home, options={"bogus": 1})
    weird = home / "a:b"
    weird.mkdir()
    with pytest.raises(StorageError, match="mount options"):
        AufsDriver().storage_init(home=weird, options={})


# ------------------------------------------------------------ native whiteouts
def test_apply_diff_stores_whiteouts_as_files(driver):
    base = layer(driver, None, BASE)
    child = layer(driver, base)
    assert driver.storage_apply_diff(id=child, parent=base, stream=make_tar(CHILD)) == CHILD_APPLIED
    diff = branch(driver, child)
    kinds = files(diff)
    for marker in (".wh.gone", ".wh.gonedir", "opq/.wh..wh..opq"):
        st = os.lstat(diff / marker)
        assert stat.S_ISREG(st.st_mode) and st.st_size == 0, marker
        assert not any(x.startswith("trusted.overlay.") for x in os.listxattr(diff / marker))
    assert not any(k == "?" for k in kinds.values())  # no overlay-style character devices
    assert not os.path.lexists(diff / "gone") and not os.path.lexists(diff / "opq/old1")
    assert kinds["pipe"] == "p" and kinds["lnk"] == "l"
    assert os.path.samefile(diff / "hard", diff / "etc/conf")
    assert (branch(driver, base) / "gone").exists()  # the parent is untouched
    assert files(branch(driver, base)) == {e[0]: e[1] for e in BASE}


def test_native_diff_changes_size_of_the_diff_dir(driver, tmp_path):
    base = layer(driver, None, BASE)
    child = layer(driver, base, CHILD)
    assert driver.storage_changes(id=child, parent=base) == CHILD_CHANGES
    assert naive_changes(driver, child, base, tmp_path) == CHILD_CHANGES
    assert driver.storage_size(id=child, parent=base) == CHILD_SIZE
    with driver.storage_diff(id=child, parent=base) as diff:
        data = diff.read()
    entries = tar_entries(io.BytesIO(data))
    assert set(entries) == {e[0] for e in CHILD}  # the same entries, whiteouts with their OCI names
    for marker in (".wh.gone", ".wh.gonedir", "opq/.wh..wh..opq"):
        assert entries[marker].isreg() and entries[marker].size == 0
    assert entries["lnk"].issym() and entries["lnk"].linkname == "/etc/conf"
    assert entries["hard"].islnk() and entries["hard"].linkname == "etc/conf"
    assert entries["usr/bin/tool"].mode == 0o700
    # the diff applied to another child of the same parent gives the same branch and the same union
    copy = layer(driver, base)
    driver.storage_apply_diff(id=copy, parent=base, stream=io.BytesIO(data))
    assert snapshot(branch(driver, copy)) == snapshot(branch(driver, child))
    a, b = materialize(driver, child, tmp_path / "a"), materialize(driver, copy, tmp_path / "b")
    assert snapshot(a) == snapshot(b)
    assert sorted(os.listdir(a)) == ["etc", "hard", "lnk", "opq", "pipe", "rel", "usr"]
    assert os.listdir(a / "opq") == ["new"]


def test_diff_without_parent_is_whole_layer(driver):
    base = layer(driver, None, BASE)
    with driver.storage_diff(id=base, parent=None) as diff:
        assert set(tar_entries(diff)) == {e[0] for e in BASE}
    assert driver.storage_changes(id=base, parent=None) == sorted(("/" + e[0], 1) for e in BASE)
    assert driver.storage_size(id=base, parent=None) == sum(len(e[2]) for e in BASE if e[1] == "f")


def test_whiteouts_of_a_layer_without_parent_round_trip(driver):
    entries = [(".wh.x", "w", None), ("d", "d", None), ("d/.wh..wh..opq", "w", None), ("d/f", "f", b"f")]
    base = layer(driver, None, entries)
    assert files(branch(driver, base)) == {".wh.x": "f", "d": "d", "d/.wh..wh..opq": "f", "d/f": "f"}
    with driver.storage_diff(id=base, parent=None) as diff:
        assert set(tar_entries(diff)) == {e[0] for e in entries}
    # nothing below to delete: whiteouts are no changes, and weigh nothing
    assert driver.storage_changes(id=base, parent=None) == [("/d", 1), ("/d/f", 1)]
    assert driver.storage_size(id=base, parent=None) == 1


def test_aufs_metadata_is_no_part_of_a_layer(driver, tmp_path):
    base = layer(driver, None, BASE)
    child = layer(driver, base, CHILD)
    diff = branch(driver, child)
    # what a mounted aufs keeps in its writable branch: the whiteout base (whiteouts
    # are hard links to it), pseudo-links, orphans, a directory being removed
    (diff / ".wh..wh.aufs").write_bytes(b"")
    os.chmod(diff / ".wh..wh.aufs", 0o444)
    os.unlink(diff / ".wh.gone")
    os.link(diff / ".wh..wh.aufs", diff / ".wh.gone")
    (diff / ".wh..wh.plnk").mkdir()
    (diff / ".wh..wh.plnk" / "42.7").write_bytes(b"pseudo link" * 100)
    (diff / ".wh..wh.orph").mkdir()
    (diff / "etc" / ".wh.newdir.1a2b").mkdir()  # aufs' rmdir in progress
    (diff / "etc" / ".wh.newdir.1a2b" / "file").write_bytes(b"x")
    assert driver.storage_changes(id=child, parent=base) == CHILD_CHANGES
    assert driver.storage_size(id=child, parent=base) == CHILD_SIZE
    with driver.storage_diff(id=child, parent=base) as out:
        entries = tar_entries(out)
    assert set(entries) == {e[0] for e in CHILD}
    assert entries[".wh.gone"].isreg()  # a marker, not a hard link to aufs' whiteout base


def test_whiteout_and_entry_of_the_same_name_in_one_tar(driver, tmp_path):
    """OCI: a whiteout hides lower content only, whatever the order in the tar."""
    base = layer(driver, None, [("d", "d", None), ("d/old", "f", b"o"), ("e", "d", None), ("e/old", "f", b"o"),
                                ("g", "f", b"gone"), ("k", "d", None), ("k/old", "f", b"o")])
    child = layer(driver, base, [
        ("d", "d", None), ("d/new", "f", b"n"), (".wh.d", "w", None),  # whiteout after the directory
        (".wh.e", "w", None), ("e", "d", None), ("e/new", "f", b"n"),  # whiteout before it
        (".wh.g", "w", None), ("g", "f", b"again"),  # a file replaced
        ("k/.wh.old", "w", None), ("k/old", "f", b"back"),  # a whiteout of a file then the file
    ])
    assert files(branch(driver, child)) == {"d": "d", "d/new": "f", "d/.wh..wh..opq": "f", "e": "d",
                                            "e/new": "f", "e/.wh..wh..opq": "f", "g": "f", "k": "d", "k/old": "f"}
    expected = naive_changes(driver, child, base, tmp_path)
    assert ("/d/old", 2) in expected and ("/e/old", 2) in expected and ("/g", 0) in expected
    assert driver.storage_changes(id=child, parent=base) == expected


def test_three_layers_whiteouts_and_opaque_dirs_stack(driver, tmp_path):
    base = layer(driver, None, [("a", "d", None), ("a/x", "f", b"x"), ("a/y", "f", b"y"), ("b", "d", None),
                                ("b/deep", "d", None), ("b/deep/z", "f", b"z"), ("c", "f", b"c")])
    mid = layer(driver, base, [("a/.wh.x", "w", None), ("b", "d", None), ("b/.wh..wh..opq", "w", None),
                               ("b/fresh", "f", b"fresh"), ("c2", "l", "c")])
    top = layer(driver, mid, [("a/x", "f", b"x is back"), ("a/.wh.y", "w", None), ("b/.wh.fresh", "w", None),
                              ("b/deep", "d", None), ("b/deep/new", "f", b"new"), (".wh.c", "w", None)])
    assert files(materialize(driver, mid, tmp_path / "mid")) == {
        "a": "d", "a/y": "f", "b": "d", "b/fresh": "f", "c": "f", "c2": "l"}
    assert files(materialize(driver, top, tmp_path / "top")) == {
        "a": "d", "a/x": "f", "b": "d", "b/deep": "d", "b/deep/new": "f", "c2": "l"}
    for id, parent in ((mid, base), (top, mid)):
        assert driver.storage_changes(id=id, parent=parent) == naive_changes(driver, id, parent, tmp_path)
    # the implied parent "a" of "a/.wh.x" keeps the lower directory's metadata
    assert os.stat(branch(driver, mid) / "a").st_mode == os.stat(branch(driver, base) / "a").st_mode
    # an indirect parent is not native: the core's (mounting) fallback takes over
    assert driver.storage_changes(id=top, parent=base) is None
    assert driver.storage_diff(id=top, parent=None) is None
    assert driver.storage_size(id=top, parent=base) is None
    assert driver.storage_apply_diff(id=top, parent=base, stream=make_tar([])) is None


def test_writes_the_way_aufs_makes_them(driver, tmp_path):
    """A writable branch as the kernel leaves it after the conformance kit's
    ``test_changes_of_writes`` (copy-up, whiteouts, rmdir + mkdir = opaque)."""
    base = layer(driver, None, BASE + [("dir", "d", None), ("dir/a", "f", b"aaaa")])
    child = layer(driver, base)
    up, low = branch(driver, child), branch(driver, base)
    (up / ".wh..wh.aufs").write_bytes(b"")
    (up / ".wh..wh.plnk").mkdir()
    (up / ".wh..wh.orph").mkdir()
    (up / "new.txt").write_bytes(b"new")
    (up / "etc").mkdir()
    shutil.copystat(low / "etc", up / "etc")
    shutil.copy2(low / "etc/conf", up / "etc/conf")
    with open(up / "etc/conf", "ab") as f:
        f.write(b"more\n")
    os.link(up / ".wh..wh.aufs", up / ".wh.gone")
    (up / "opq").mkdir()
    os.chmod(up / "opq", 0o755)
    (up / "opq/.wh..wh..opq").write_bytes(b"")
    (up / "opq/fresh").write_bytes(b"fresh")
    (up / "dir").mkdir()
    shutil.copystat(low / "dir", up / "dir")
    shutil.copy2(low / "dir/a", up / "dir/a")
    os.chmod(up / "dir/a", 0o600)
    expected = [("/dir", 0), ("/dir/a", 0), ("/etc", 0), ("/etc/conf", 0), ("/gone", 2), ("/new.txt", 1),
                ("/opq", 0), ("/opq/fresh", 1), ("/opq/old1", 2), ("/opq/sub", 2)]
    assert naive_changes(driver, child, base, tmp_path) == expected
    assert driver.storage_changes(id=child, parent=base) == expected
    assert driver.storage_size(id=child, parent=base) == 3 + len(b"old conf\nmore\n") + 4 + 5
    with driver.storage_diff(id=child, parent=base) as diff:
        data = diff.read()
    assert {n for n in tar_entries(io.BytesIO(data)) if ".wh." in n} == {".wh.gone", "opq/.wh..wh..opq"}
    copy = layer(driver, base)
    driver.storage_apply_diff(id=copy, parent=base, stream=io.BytesIO(data))
    assert snapshot(materialize(driver, copy, tmp_path / "b")) == snapshot(materialize(driver, child, tmp_path / "a"))


def test_hostile_whiteouts_are_refused(driver, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("safe")
    for entries in ([("esc", "l", str(outside)), ("esc/.wh.victim", "w", None)],
                    [(".wh..", "w", None)], [("../.wh.x", "w", None)]):
        id = layer(driver)
        with pytest.raises(StorageError):
            driver.storage_apply_diff(id=id, parent=None, stream=make_tar(entries))
        driver.storage_remove(id=id)
    assert os.listdir(outside) == ["victim"]
    assert not any(n.startswith(".wh.") for n in os.listdir(tmp_path))


# ------------------------------------------------------------ mounts (fake mount table)
class FakeMounts:
    def __init__(self, monkeypatch, fail_at=None):
        self.table, self.calls, self.fail_at = set(), [], fail_at
        monkeypatch.setattr(aufs_module, "mount", self.mount)
        monkeypatch.setattr(aufs_module, "umount", self.umount)
        monkeypatch.setattr(aufs_module, "is_mounted", lambda path: str(path) in self.table)
        monkeypatch.setattr(aufs_module, "mounts_under", lambda path: sorted(
            p for p in self.table if p.startswith(str(path) + "/")))

    def mount(self, source, target, fstype, flags=0, data=None):
        self.calls.append(("mount", source, target, fstype, flags, data))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise OSError(22, "Invalid argument", target)
        assert flags == MS_REMOUNT or target not in self.table
        self.table.add(target)

    def umount(self, target, flags=0):
        self.calls.append(("umount", str(target), flags))
        self.table.discard(str(target))


def test_mount_is_refcounted_and_builds_the_branches(driver, home, monkeypatch):
    fake = FakeMounts(monkeypatch)
    base = layer(driver, None, [("f", "f", b"base")])
    child = layer(driver, base)
    home = home.resolve()
    assert driver.storage_mount(id=base) == str(home / "diff" / base)  # no parent: no mount
    driver.storage_unmount(id=base)
    assert fake.calls == []
    first = driver.storage_mount(id=child)
    assert first == str(home / "mnt" / child) == driver.storage_mount(id=child)
    xino = OPTS if os.path.isdir("/dev/shm") else "dio"
    assert fake.calls == [("mount", "none", first, "aufs", 0,
                           f"br:{home}/diff/{child}=rw:{home}/diff/{base}=ro+wh,{xino}")]
    assert (home / "refs" / child).read_text().strip() == "2"
    driver.storage_unmount(id=child)
    assert len(fake.calls) == 1
    driver.storage_unmount(id=child)
    assert fake.calls[-1][:2] == ("umount", first) and not (home / "refs" / child).exists()
    driver.storage_unmount(id=child)  # not mounted: not an error
    assert len(fake.calls) == 2
    # a restarted daemon adopts a mount an earlier one left
    driver.storage_mount(id=child)
    again = AufsDriver()
    again.storage_init(home=home, options={})
    assert again.storage_mount(id=child) == first and len(fake.calls) == 3
    again.storage_cleanup()
    assert fake.table == set() and os.listdir(home / "refs") == []


def test_mount_of_a_130_layer_chain_appends_the_rest(driver, monkeypatch):
    monkeypatch.setattr(aufs_module, "PAGE", 4096)
    fake = FakeMounts(monkeypatch)
    parent, ids = None, []
    for _ in range(130):
        parent = layer(driver, parent)
        ids.append(parent)
    target = driver.storage_mount(id=ids[-1])
    assert all(call[4] == (0 if i == 0 else MS_REMOUNT) for i, call in enumerate(fake.calls))
    assert len(fake.calls) > 1 and all(len(call[5].encode()) < 4096 for call in fake.calls)
    plan = [(call[4], call[5]) for call in fake.calls]
    branches = parse_plan(plan, OPTS if os.path.isdir("/dev/shm") else "dio")
    assert branches == [(str(driver.home / "diff" / ids[-1]), "rw")] + [
        (str(driver.home / "diff" / id), "ro+wh") for id in reversed(ids[:-1])]
    driver.storage_unmount(id=ids[-1])
    assert fake.calls[-1][:2] == ("umount", target)
    for id in reversed(ids):
        driver.storage_remove(id=id)


def test_a_failed_append_unmounts(driver, monkeypatch):
    monkeypatch.setattr(aufs_module, "PAGE", 4096)
    parent, ids = None, []
    for _ in range(130):
        parent = layer(driver, parent)
        ids.append(parent)
    fake = FakeMounts(monkeypatch, fail_at=3)  # the second append fails
    with pytest.raises(StorageError, match=f"mounting layer {ids[-1]} failed: Invalid argument.*BRANCH_MAX"):
        driver.storage_mount(id=ids[-1])
    assert fake.calls[-1][0] == "umount" and fake.table == set()
    assert not (driver.home / "refs" / ids[-1]).exists()


def test_remove_unmounts(driver, monkeypatch):
    fake = FakeMounts(monkeypatch)
    base = layer(driver)
    child = layer(driver, base)
    driver.storage_mount(id=child)
    driver.storage_remove(id=child)
    assert fake.table == set() and not driver.storage_exists(id=child)
    assert not (driver.home / "refs" / child).exists()


# ------------------------------------------------------------ support check
def test_supported_reports_no_aufs_here(tmp_path):
    if aufs_module.has_aufs():
        pytest.skip("this kernel has aufs")
    home = tmp_path / "not" / "yet"
    assert AufsDriver().storage_supported(home=home, options={}) == "kernel has no aufs"
    assert not home.exists()


def test_supported_tries_modprobe_then_checks_the_backing_fs(tmp_path, monkeypatch):
    fs = tmp_path / "filesystems"
    fs.write_text("nodev\tsysfs\nnodev\ttmpfs\n\text4\n")
    monkeypatch.setattr(aufs_module, "FILESYSTEMS", str(fs))
    probes = []
    monkeypatch.setattr(aufs_module, "modprobe", lambda: probes.append(1))
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    driver = AufsDriver()
    assert driver.storage_supported(home=tmp_path / "home", options={}) == "kernel has no aufs"
    assert probes == [1]
    monkeypatch.setattr(aufs_module, "modprobe", lambda: fs.write_text(fs.read_text() + "nodev\taufs\n"))
    monkeypatch.setattr(aufs_module, "backing_fs", lambda path: "ext4")
    assert driver.storage_supported(home=tmp_path / "home", options={}) is None
    monkeypatch.setattr(aufs_module, "backing_fs", lambda path: "btrfs")
    assert "btrfs" in driver.storage_supported(home=tmp_path / "home", options={})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert driver.storage_supported(home=tmp_path / "home", options={}) == "aufs needs root to mount"
    assert not (tmp_path / "home").exists()


def test_modprobe_is_quiet(monkeypatch, capfd):
    monkeypatch.setenv("PATH", "/nonexistent")
    aufs_module.modprobe()  # no modprobe at all: no error
    monkeypatch.undo()
    aufs_module.modprobe()
    out, err = capfd.readouterr()
    assert out == "" and err == ""
