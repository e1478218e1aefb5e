"""Conformance kit for storage drivers.

Subclass :class:`StorageConformance` in a pytest module and provide a ``storage``
fixture returning the hook relay of an initialised driver that has the core's
naive diff fallback registered (:func:`load_storage` does exactly that)::

    import pytest
    from dockyard.testing.storage import StorageConformance, load_storage

    class TestMyDriver(StorageConformance):
        @pytest.fixture
        def storage(self, tmp_path):
            hook = load_storage(MyDriver(), tmp_path / "home")
            yield hook
            hook.storage_cleanup()

Every test removes the layers it made.  Tests that need root are skipped without it.
"""

import hashlib
import io
import os
import secrets
import stat
import tarfile
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pluggy
import pytest

from dockyard.engine.naivediff import NaiveDiff
from dockyard.errors import DriverUnsupported, StorageError
from dockyard.hookspecs import PROJECT
from dockyard.hookspecs import storage as storage_specs

T0, T1 = 1_600_000_000, 1_700_000_000
MODIFIED, ADDED, DELETED = 0, 1, 2


def load_storage(driver, home, options=None, name="driver"):
    """Register ``driver`` like the core does, check support, init it in ``home``,
    add the naive fallback; return ``pm.hook`` (``DriverUnsupported`` if unusable)."""
    home = Path(home)
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(storage_specs)
    pm.register(driver, name=name)
    pm.check_pending()
    reason = pm.hook.storage_supported(home=home, options=dict(options or {}))
    if reason is not None:
        raise DriverUnsupported("storage", name, reason)
    home.mkdir(parents=True, exist_ok=True)
    pm.hook.storage_init(home=home, options=dict(options or {}))
    pm.register(NaiveDiff(pm.hook), name="naive-diff")
    return pm.hook


def new_id():
    return secrets.token_hex(32)


def make_tar(entries, compress=""):
    """A layer tar from ``(name, kind, data, **attrs)`` tuples; kind is one of
    ``d`` (dir), ``f`` (file, data bytes), ``l`` (symlink to data), ``h`` (hard
    link to data), ``p`` (fifo), ``w`` (a whiteout/opaque marker file)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compress if compress else "w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, *extra in entries:
            attrs = extra[0] if extra else {}
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = attrs.get("mtime", T0), attrs.get("mode", 0o755 if kind == "d" else 0o644)
            ti.uid, ti.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            ti.type = {"d": tarfile.DIRTYPE, "f": tarfile.REGTYPE, "w": tarfile.REGTYPE, "l": tarfile.SYMTYPE,
                       "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE}[kind]
            if kind in "lh":
                ti.linkname = data
            if kind == "f":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    buf.seek(0)
    return buf


def snapshot(root):
    """``{rel: description}`` of a tree, comparable across drivers (no dir mtimes;
    hard-linked files name the first path of their group)."""
    out, groups = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            desc = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    desc += [st.st_size, st.st_mtime_ns // 10**9, hashlib.sha256(f.read()).hexdigest()]
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                desc.append((st.st_dev, st.st_ino))
            elif stat.S_ISLNK(st.st_mode):
                desc.append(os.readlink(path))
            out[rel] = desc
    for desc in out.values():
        if isinstance(desc[-1], tuple):
            desc[-1] = min(groups[desc[-1]])
    return out


def tar_entries(fileobj):
    """``{name: TarInfo}`` of a tar (names without ``./`` or trailing ``/``)."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as t:
        return {ti.name.strip("/").removeprefix("./"): ti for ti in t}


def effective_deletions(entries, parent_root):
    """Paths a diff deletes from the tree at ``parent_root``."""
    gone = set()
    for name in entries:
        parent, _, base = name.rpartition("/")
        if base == ".wh..wh..opq":
            for child in os.listdir(os.path.join(parent_root, parent)):
                if f"{parent}/{child}".lstrip("/") not in entries:
                    gone.add(f"{parent}/{child}".lstrip("/"))
        elif base.startswith(".wh."):
            gone.add(f"{parent}/{base[4:]}".lstrip("/"))
    return gone


BASE = [
    ("etc", "d", None), ("etc/conf", "f", b"old conf\n"), ("etc/keep", "f", b"keep\n"),
    ("gone", "f", b"to be deleted\n"), ("gonedir", "d", None), ("gonedir/x", "f", b"x"),
    ("opq", "d", None), ("opq/old1", "f", b"old1"), ("opq/sub", "d", None), ("opq/sub/old2", "f", b"old2"),
    ("usr", "d", None), ("usr/bin", "d", None), ("usr/bin/tool", "f", b"#!/bin/sh\n", {"mode": 0o755}),
]
CHILD = [
    ("etc", "d", None), ("etc/conf", "f", b"new conf, longer\n", {"mtime": T1}),
    ("etc/newdir", "d", None), ("etc/newdir/file", "f", b"nested\n"),
    (".wh.gone", "w", None), (".wh.gonedir", "w", None),
    ("hard", "h", "etc/conf"), ("lnk", "l", "/etc/conf"),
    ("opq", "d", None), ("opq/.wh..wh..opq", "w", None), ("opq/new", "f", b"fresh"),
    ("pipe", "p", None), ("rel", "l", "etc/keep"),
    ("usr", "d", None), ("usr/bin", "d", None), ("usr/bin/tool", "f", b"#!/bin/sh\n", {"mode": 0o700}),
]
CHILD_CHANGES = [
    ("/etc", MODIFIED), ("/etc/conf", MODIFIED), ("/etc/newdir", ADDED), ("/etc/newdir/file", ADDED),
    ("/gone", DELETED), ("/gonedir", DELETED), ("/hard", ADDED), ("/lnk", ADDED),
    ("/opq", MODIFIED), ("/opq/new", ADDED), ("/opq/old1", DELETED), ("/opq/sub", DELETED),
    ("/pipe", ADDED), ("/rel", ADDED), ("/usr", MODIFIED), ("/usr/bin", MODIFIED), ("/usr/bin/tool", MODIFIED),
]
CHILD_APPLIED = len(b"new conf, longer\n") + len(b"nested\n") + len(b"fresh") + len(b"#!/bin/sh\n")
CHILD_SIZE = CHILD_APPLIED + len("/etc/conf") + len("etc/keep")


class StorageConformance:
    """Contract tests; needs a ``storage`` fixture (see the module doc)."""

    # ------------------------------------------------------------ helpers
    @contextmanager
    def layers(self, storage):
        made = []

        def create(parent=None, tar=None):
            id = new_id()
            storage.storage_create(id=id, parent=parent)
            made.append(id)
            if tar is not None:
                storage.storage_apply_diff(id=id, parent=parent, stream=tar)
            return id

        try:
            yield create
        finally:
            for id in reversed(made):
                storage.storage_remove(id=id)

    @contextmanager
    def mounted(self, storage, id):
        path = storage.storage_mount(id=id)
        try:
            yield path
        finally:
            storage.storage_unmount(id=id)

    # ------------------------------------------------------------ lifecycle
    def test_create_exists_remove(self, storage):
        id = new_id()
        assert storage.storage_exists(id=id) is False
        storage.storage_create(id=id, parent=None)
        assert storage.storage_exists(id=id) is True
        with pytest.raises(StorageError):
            storage.storage_create(id=id, parent=None)
        storage.storage_remove(id=id)
        assert storage.storage_exists(id=id) is False
        storage.storage_remove(id=id)  # idempotent
        orphan = new_id()
        with pytest.raises(StorageError):
            storage.storage_create(id=orphan, parent=new_id())
        assert storage.storage_exists(id=orphan) is False

    def test_child_sees_parent_and_does_not_leak(self, storage):
        with self.layers(storage) as create:
            base = create()
            with self.mounted(storage, base) as root:
                Path(root, "dir").mkdir()
                Path(root, "dir/file").write_text("parent")
                os.symlink("dir/file", os.path.join(root, "link"))
            child = create(base)
            with self.mounted(storage, child) as root:
                assert Path(root, "dir/file").read_text() == "parent"
                assert os.readlink(os.path.join(root, "link")) == "dir/file"
                Path(root, "dir/file").write_text("child")
                Path(root, "only-child").write_text("x")
                os.unlink(os.path.join(root, "link"))
            with self.mounted(storage, base) as root:
                assert Path(root, "dir/file").read_text() == "parent"
                assert not Path(root, "only-child").exists()
                assert os.path.islink(os.path.join(root, "link"))
            with self.mounted(storage, child) as root:
                assert Path(root, "dir/file").read_text() == "child"

    def test_mount_refcount(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"base")]))
            child = create(base)
            for id in (base, child):
                first = storage.storage_mount(id=id)
                second = storage.storage_mount(id=id)
                assert first == second and os.path.isabs(first)
                storage.storage_unmount(id=id)
                assert Path(first, "f").read_bytes() == b"base"  # one reference left
                storage.storage_unmount(id=id)
                storage.storage_unmount(id=id)  # not mounted: not an error
                with self.mounted(storage, id) as again:
                    assert Path(again, "f").read_bytes() == b"base"

    def test_concurrent_layers(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"base")]))
            ids = [create(base) for _ in range(8)]
            errors = []

            def work(id):
                try:
                    for _ in range(3):
                        with self.mounted(storage, id) as root:
                            Path(root, id).write_text(id)
                            assert Path(root, "f").read_bytes() == b"base"
                except Exception as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(id,)) for id in ids]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            for id in ids:
                assert storage.storage_changes(id=id, parent=base) == [("/" + id, ADDED)]

    # ------------------------------------------------------------ diffs
    def test_apply_diff_and_diff_round_trip(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar(BASE))
            child = create(base)
            assert storage.storage_apply_diff(id=child, parent=base, stream=make_tar(CHILD)) == CHILD_APPLIED
            with self.mounted(storage, child) as root:
                assert sorted(os.listdir(root)) == ["etc", "hard", "lnk", "opq", "pipe", "rel", "usr"]
                assert os.listdir(os.path.join(root, "opq")) == ["new"]
                assert os.readlink(os.path.join(root, "lnk")) == "/etc/conf"
                assert os.path.samefile(os.path.join(root, "hard"), os.path.join(root, "etc/conf"))
                assert stat.S_ISFIFO(os.lstat(os.path.join(root, "pipe")).st_mode)
                st = os.lstat(os.path.join(root, "etc/conf"))
                assert (st.st_mtime, stat.S_IMODE(st.st_mode)) == (T1, 0o644)
                assert stat.S_IMODE(os.lstat(os.path.join(root, "usr/bin/tool")).st_mode) == 0o700
            with self.mounted(storage, base) as root:
                assert Path(root, "gone").exists() and Path(root, "opq/sub/old2").exists()
                assert Path(root, "etc/conf").read_bytes() == b"old conf\n"
            assert storage.storage_changes(id=child, parent=base) == CHILD_CHANGES
            assert storage.storage_size(id=child, parent=base) == CHILD_SIZE
            self._check_diff(storage, create, base, child, CHILD)

    def _check_diff(self, storage, create, base, child, source):
        with storage.storage_diff(id=child, parent=base) as diff:
            data = diff.read()
        entries = tar_entries(io.BytesIO(data))
        wanted = {e[0] for e in source if not e[0].rpartition("/")[2].startswith(".wh.")}
        assert {n for n in entries if not n.rpartition("/")[2].startswith(".wh.")} == wanted
        assert entries["lnk"].issym() and entries["lnk"].linkname == "/etc/conf"
        assert entries["hard"].islnk() or entries["hard"].isreg()
        with self.mounted(storage, base) as root:
            assert effective_deletions(entries, root) == {"gone", "gonedir", "opq/old1", "opq/sub"}
        copy = create(base, io.BytesIO(data))
        with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
            assert snapshot(a) == snapshot(b)

    def test_diff_without_parent_is_whole_layer(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar(BASE))
            with storage.storage_diff(id=base, parent=None) as diff:
                assert set(tar_entries(diff)) == {e[0] for e in BASE}
            assert storage.storage_changes(id=base, parent=None) == sorted(("/" + e[0], ADDED) for e in BASE)
            assert storage.storage_size(id=base, parent=None) == sum(len(e[2]) for e in BASE if e[1] == "f")

    def test_changes_of_writes(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar(BASE + [("dir", "d", None), ("dir/a", "f", b"aaaa")]))
            child = create(base)
            with self.mounted(storage, child) as root:
                Path(root, "new.txt").write_bytes(b"new")
                with open(os.path.join(root, "etc/conf"), "ab") as f:
                    f.write(b"more\n")
                os.unlink(os.path.join(root, "gone"))
                for rel in ("opq/sub/old2", "opq/old1"):
                    os.unlink(os.path.join(root, rel))
                os.rmdir(os.path.join(root, "opq/sub"))
                os.rmdir(os.path.join(root, "opq"))
                os.mkdir(os.path.join(root, "opq"))
                os.chmod(os.path.join(root, "opq"), 0o755)
                Path(root, "opq/fresh").write_bytes(b"fresh")
                os.chmod(os.path.join(root, "dir/a"), 0o600)
            assert storage.storage_changes(id=child, parent=base) == [
                ("/dir", MODIFIED), ("/dir/a", MODIFIED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED),
                ("/gone", DELETED), ("/new.txt", ADDED), ("/opq", MODIFIED), ("/opq/fresh", ADDED),
                ("/opq/old1", DELETED), ("/opq/sub", DELETED)]
            assert storage.storage_size(id=child, parent=base) == 3 + len(b"old conf\nmore\n") + 4 + 5
            with storage.storage_diff(id=child, parent=base) as diff:
                data = diff.read()
            copy = create(base, io.BytesIO(data))
            with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
                assert snapshot(a) == snapshot(b)

    def test_compressed_layer(self, storage):
        with self.layers(storage) as create:
            for compress in ("gz", "bz2", "xz"):
                id = create(None, make_tar([("d", "d", None), ("d/f", "f", b"z" * 1000)], compress))
                with self.mounted(storage, id) as root:
                    assert Path(root, "d/f").read_bytes() == b"z" * 1000

    # ------------------------------------------------------------ hostile tars
    def test_unsafe_tars_are_refused(self, storage):
        outside = tempfile.mkdtemp(prefix="dockyard-outside-")
        Path(outside, "victim").write_text("safe")
        up = "../" * 40 + outside.lstrip("/")
        hostile = [
            [("../evil", "f", b"evil")],
            [("a", "d", None), ("a/../../evil", "f", b"evil")],
            [(f"{outside}/abs-evil", "f", b"evil")],
            [("esc", "l", outside), ("esc/pwned", "f", b"evil")],
            [("up", "l", up), ("up/pwned", "f", b"evil")],
            [("esc", "l", outside), ("esc/.wh.victim", "w", None)],
            [("hl", "h", "../../../../../../../../etc/passwd")],
            [("hl", "h", "/etc/passwd")],
        ]
        try:
            with self.layers(storage) as create:
                for entries in hostile:
                    id = create()
                    with pytest.raises(StorageError):
                        storage.storage_apply_diff(id=id, parent=None, stream=make_tar(entries))
                    with self.mounted(storage, id) as root:
                        for up_dir in (os.path.dirname(root), os.path.dirname(os.path.dirname(root))):
                            assert "evil" not in os.listdir(up_dir)
                    assert sorted(os.listdir(outside)) == ["victim"], entries
                # a symlink in the parent layer is never followed either
                base = create(None, make_tar([("esc", "l", outside)]))
                child = create(base)
                try:
                    storage.storage_apply_diff(id=child, parent=base, stream=make_tar([("esc/pwned", "f", b"x")]))
                except StorageError:
                    pass
                assert sorted(os.listdir(outside)) == ["victim"]
                assert Path(outside, "victim").read_text() == "safe"
        finally:
            for name in os.listdir(outside):
                os.unlink(os.path.join(outside, name))
            os.rmdir(outside)

    def test_corrupt_tars_are_refused(self, storage):
        good = make_tar([("big", "f", os.urandom(100_000)), ("after", "f", b"x")]).getvalue()
        with tarfile.open(fileobj=io.BytesIO(good)) as t:
            header = t.getmember("after").offset
        with self.layers(storage) as create:
            for data in (good[:50_000], good[:header + 100], b"this is not a tar archive" * 40):
                id = create()
                with pytest.raises(StorageError):
                    storage.storage_apply_diff(id=id, parent=None, stream=io.BytesIO(data))

    # ------------------------------------------------------------ misc
    def test_status_and_cleanup(self, storage):
        status = storage.storage_status()
        assert isinstance(status, list)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in status)
        with self.layers(storage) as create:
            base = create()
            child = create(base)
            storage.storage_mount(id=child)
            storage.storage_cleanup()
            storage.storage_cleanup()
            with self.mounted(storage, child) as root:
                assert os.path.isdir(root)
