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

What it covers: the layer lifecycle; listing the layers (optional hook); empty
layers; chains of five layers made by diffs and by writes; every file type
(files, dirs, symlinks, hard links, fifos, character and block devices),
permissions with setuid/setgid/sticky, owners, mtimes and ``user.*`` xattrs
through apply_diff, mount and diff; whiteouts and opaque directories
round-tripping through diff; ``changes`` with ``docker diff``'s A/C/D rules;
size accounting; concurrent mounts of one layer; hostile and corrupt tars; and
the same trees and the same *canonical diff* digest when layers move
between this driver and the reference ``vfs`` driver (:func:`check_cross_driver`,
usable for any two drivers).

The canonical diff of a layer is the core's naive diff (:func:`canonical_diff`):
it depends only on the two trees, so equal trees give equal digests on every
driver; a driver's native diff may encode the same change differently (an opaque
directory instead of one whiteout per name) and is compared by the tree it makes.

Every test removes the layers it made.  Tests that need root (owners, devices)
check less without it; a file system that refuses ``user.*`` xattrs skips that
test with the reason.
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

from dockyard.driverkit.naivediff import NaiveDiff
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


_TYPES = {"d": tarfile.DIRTYPE, "f": tarfile.REGTYPE, "w": tarfile.REGTYPE, "l": tarfile.SYMTYPE,
          "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE, "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE}


def make_tar(entries, compress=""):
    """A layer tar from ``(name, kind, data, **attrs)`` tuples; kind is one of
    ``d`` (dir), ``f`` (file, data bytes), ``l`` (symlink to data), ``h`` (hard
    link to data), ``p`` (fifo), ``c``/``b`` (character/block device), ``w`` (a
    whiteout/opaque marker file).  ``attrs``: ``mode``, ``uid``, ``gid``,
    ``mtime``, ``devmajor``, ``devminor``, ``xattrs`` (``{name: bytes}``)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:" + compress if compress else "w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, *extra in entries:
            attrs = extra[0] if extra else {}
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = attrs.get("mtime", T0), attrs.get("mode", 0o755 if kind == "d" else 0o644)
            ti.uid, ti.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            ti.type = _TYPES[kind]
            ti.devmajor, ti.devminor = attrs.get("devmajor", 0), attrs.get("devminor", 0)
            for key, value in sorted(attrs.get("xattrs", {}).items()):
                ti.pax_headers["SCHILY.xattr." + key] = value.decode("utf-8", "surrogateescape")
            if kind in "lh":
                ti.linkname = data
            if kind == "f":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    buf.seek(0)
    return buf


def _xattrs(path):
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in sorted(names)
                 if not n.startswith("trusted.overlay.") and n != "security.selinux")


def snapshot(root):
    """``{rel: description}`` of a tree, comparable across drivers: type, mode,
    owner, xattrs; mtime (seconds) of every non-directory; content digest of files,
    target of symlinks, device numbers; hard-linked files name the first path of
    their group.  Directory mtimes are left out (writes below them change them)."""
    out, groups = {}, {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            desc = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, _xattrs(path)]
            if not stat.S_ISDIR(st.st_mode):
                desc.append(st.st_mtime_ns // 10**9)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                desc.append((os.major(st.st_rdev), os.minor(st.st_rdev)))
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    desc += [st.st_size, hashlib.file_digest(f, "sha256").hexdigest()]
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                desc.append((st.st_dev, st.st_ino))
            elif stat.S_ISLNK(st.st_mode):
                desc.append(os.readlink(path))
            out[rel] = desc
    for desc in out.values():
        if isinstance(desc[-1], tuple) and len(desc[-1]) == 2 and stat.S_ISREG(desc[0]):
            desc[-1] = min(groups[desc[-1]])
    return out


def eq(got, want, what=""):
    """``assert got == want`` with a message naming both (the kit is not a test
    module: pytest does not rewrite its asserts)."""
    if got != want:
        raise AssertionError(f"{what + ': ' if what else ''}got {got!r}, expected {want!r}")


def assert_same_tree(a, b, what=""):
    """Assert that trees ``a`` and ``b`` have equal snapshots, naming what differs
    (the kit is not a test module: pytest does not rewrite its asserts)."""
    sa, sb = snapshot(a), snapshot(b)
    if sa == sb:
        return
    diffs = [f"only in {a}: {k}" for k in sorted(set(sa) - set(sb))]
    diffs += [f"only in {b}: {k}" for k in sorted(set(sb) - set(sa))]
    diffs += [f"{k}: {sa[k]} != {sb[k]}" for k in sorted(set(sa) & set(sb)) if sa[k] != sb[k]]
    raise AssertionError(f"trees differ{' (' + what + ')' if what else ''}: " + "; ".join(diffs[:8])
                         + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""))


def user_xattrs_supported(storage):
    """``None`` if layers of ``storage`` keep ``user.*`` xattrs, else the reason."""
    id = new_id()
    storage.storage_create(id=id, parent=None)
    try:
        with mounted(storage, id) as root:
            try:
                os.setxattr(root, "user.dockyard-probe", b"1")
            except OSError as exc:
                return f"the backing file system refuses user.* xattrs: {exc.strerror}"
    finally:
        storage.storage_remove(id=id)
    return None


def files(root):
    """``{rel: bytes}`` of the regular files of a tree, ``{rel: None}`` for dirs."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


def canonical_diff(storage, id, parent):
    """The canonical diff of layer ``id`` (bytes): the core's naive diff, which
    depends only on the two trees (see the module doc)."""
    with NaiveDiff(storage).storage_diff(id=id, parent=parent) as diff:
        return diff.read()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextmanager
def mounted(storage, id):
    path = storage.storage_mount(id=id)
    try:
        yield path
    finally:
        storage.storage_unmount(id=id)


def check_cross_driver(src, dst, chain):
    """Move a chain of layers from driver ``src`` to driver ``dst`` by diff.

    ``chain`` lists layer tars (bytes, base first; parents of every entry listed,
    as a diff holds them).  Each is applied on ``src``; its native diff is applied
    on ``dst`` as the child of the previous moved layer; the two trees, their
    ``changes`` and their canonical diff digests must be equal; the canonical diff
    itself applied on ``dst`` must give the same tree and digest again.  Returns
    the canonical digests; removes every layer it made, also on failure.
    """
    made, digests = [], []
    try:
        sp = dp = None
        for data in chain:
            sid, did, cid = new_id(), new_id(), new_id()
            src.storage_create(id=sid, parent=sp)
            made.append((src, sid))
            src.storage_apply_diff(id=sid, parent=sp, stream=io.BytesIO(data))
            with src.storage_diff(id=sid, parent=sp) as diff:
                native = diff.read()
            canon = canonical_diff(src, sid, sp)
            eq(canonical_diff(src, sid, sp), canon, "the canonical diff is not deterministic")
            for new, stream in ((did, native), (cid, canon)):
                dst.storage_create(id=new, parent=dp)
                made.append((dst, new))
                dst.storage_apply_diff(id=new, parent=dp, stream=io.BytesIO(stream))
                how = f"layer {len(digests)}, moved by its {'native' if new == did else 'canonical'} diff"
                with mounted(src, sid) as a, mounted(dst, new) as b:
                    assert_same_tree(a, b, how)
                got, want = dst.storage_changes(id=new, parent=dp), src.storage_changes(id=sid, parent=sp)
                assert got == want, f"changes differ ({how}): {got} != {want}"
                got, want = digest(canonical_diff(dst, new, dp)), digest(canon)
                assert got == want, f"canonical diff digests differ ({how}): {got} != {want}"
            digests.append(digest(canon))
            sp, dp = sid, did
    finally:
        for hook, id in reversed(made):
            hook.storage_remove(id=id)
    return digests


def load_reference(home):
    """The reference ``vfs`` driver (loaded by name, as the core does) in ``home``."""
    from dockyard.plugins import load_driver

    return load_storage(load_driver("storage", "vfs", home).driver, home, name="vfs")


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
            where = os.path.join(parent_root, parent)
            for child in os.listdir(where) if os.path.isdir(where) else ():
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


ROOT = os.geteuid() == 0

# A chain of five layers: by diff (tar) or by writes through the mount.
CHAIN_L1 = [("a", "d", None), ("a/new", "f", b"a-new"), ("etc", "d", None),
            ("etc/conf", "f", b"v1", {"mtime": T1}), (".wh.gone", "w", None)]
CHAIN_L3 = [(".wh.a", "w", None), ("gone", "f", b"again"), ("opq", "d", None), ("opq/.wh..wh..opq", "w", None),
            ("opq/back", "f", b"back")]
_L0 = {"etc": None, "etc/conf": b"old conf\n", "etc/keep": b"keep\n", "gone": b"to be deleted\n",
       "gonedir": None, "gonedir/x": b"x", "opq": None, "opq/old1": b"old1", "opq/sub": None,
       "opq/sub/old2": b"old2", "usr": None, "usr/bin": None, "usr/bin/tool": b"#!/bin/sh\n"}
_L1 = {**{k: v for k, v in _L0.items() if k != "gone"}, "etc/conf": b"v1", "a": None, "a/new": b"a-new"}
_L2 = {**{k: v for k, v in _L1.items() if k not in ("etc/keep", "gonedir", "gonedir/x")},
       "a/new": b"a-newmore", "w": None, "w/file": b"w"}
_L3 = {**{k: v for k, v in _L2.items() if not k.startswith(("a", "opq/"))}, "gone": b"again", "opq/back": b"back"}
_L4 = {**_L3, "a": None, "a/again": b"A", "etc/conf": b"v4"}
CHAIN_VIEWS = [_L0, _L1, _L2, _L3, _L4]
CHAIN_CHANGES = [
    None,
    [("/a", ADDED), ("/a/new", ADDED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED), ("/gone", DELETED)],
    [("/a", MODIFIED), ("/a/new", MODIFIED), ("/etc", MODIFIED), ("/etc/keep", DELETED), ("/gonedir", DELETED),
     ("/w", ADDED), ("/w/file", ADDED)],
    [("/a", DELETED), ("/gone", ADDED), ("/opq", MODIFIED), ("/opq/back", ADDED), ("/opq/old1", DELETED),
     ("/opq/sub", DELETED)],
    [("/a", ADDED), ("/a/again", ADDED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED)],
]


def _write_l2(root):
    os.unlink(os.path.join(root, "etc/keep"))
    with open(os.path.join(root, "a/new"), "ab") as f:
        f.write(b"more")
    os.mkdir(os.path.join(root, "w"))
    Path(root, "w/file").write_bytes(b"w")
    os.unlink(os.path.join(root, "gonedir/x"))
    os.rmdir(os.path.join(root, "gonedir"))


def _write_l4(root):
    os.mkdir(os.path.join(root, "a"))
    Path(root, "a/again").write_bytes(b"A")
    Path(root, "etc/conf").write_bytes(b"v4")


LONG = "long/" + "d" * 120 + "/" + "f" * 150
TYPES = [
    ("d", "d", None, {"mode": 0o750, "uid": 1000, "gid": 1001}),
    ("d/setuid", "f", b"#!/bin/sh\n", {"mode": 0o4755, "mtime": T1}),
    ("d/setgid", "f", b"sg", {"mode": 0o2711, "uid": 1, "gid": 2, "mtime": T0 + 1}),
    ("sticky", "d", None, {"mode": 0o1777}),
    ("sgiddir", "d", None, {"mode": 0o2775, "gid": 50}),
    ("owned", "f", b"o", {"uid": 65534, "gid": 65534, "mode": 0o600, "mtime": 1_234_567_890}),
    ("link", "l", "d/setuid", {"mtime": T1}),
    ("abslink", "l", "/nonexistent/target"),
    ("hard", "h", "d/setgid"),
    ("fifo", "p", None, {"mode": 0o640, "mtime": T1}),
    ("null", "c", None, {"devmajor": 1, "devminor": 3, "mode": 0o666}),
    ("loop", "b", None, {"devmajor": 7, "devminor": 200, "mode": 0o660, "mtime": T1}),
    ("empty", "f", b""),
    ("big", "f", bytes(range(256)) * 12_289),  # 3 MiB + 256: several copy chunks
    ("space and \u00fcnicode", "f", b"u"),
    ("long", "d", None), ("long/" + "d" * 120, "d", None), (LONG, "f", b"long name"),
]
XATTRS = [("x", "d", None, {"xattrs": {"user.dir": b"d"}}),
          ("x/f", "f", b"f", {"xattrs": {"user.note": b"hello", "user.bin": b"\x00\xff\x01"}}),
          ("x/plain", "f", b"p")]


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

    def mounted(self, storage, id):
        return mounted(storage, id)

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

    def test_layers_lists_what_it_holds(self, storage):
        """``storage_layers`` (optional) names every layer, and no removed one:
        the core finds the layers no record owns with it."""
        if storage.storage_layers() is None:
            pytest.skip("the driver does not list its layers (the optional storage_layers hook)")
        before = set(storage.storage_layers())
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"base")]))
            child = create(base)
            listed = storage.storage_layers()
            assert isinstance(listed, list) and all(isinstance(id, str) for id in listed), listed
            eq(set(listed) - before, {base, child}, "storage_layers after two creates")
            storage.storage_remove(id=child)
            eq(set(storage.storage_layers()) - before, {base}, "storage_layers after removing the child")
        eq(set(storage.storage_layers()), before, "storage_layers after removing both")

    def test_child_sees_parent_and_does_not_leak(self, storage):
        with self.layers(storage) as create:
            base = create()
            with self.mounted(storage, base) as root:
                Path(root, "dir").mkdir()
                Path(root, "dir/file").write_text("parent")
                os.symlink("dir/file", os.path.join(root, "link"))
            child = create(base)
            with self.mounted(storage, child) as root:
                eq(Path(root, "dir/file").read_text(), "parent")
                eq(os.readlink(os.path.join(root, "link")), "dir/file")
                Path(root, "dir/file").write_text("child")
                Path(root, "only-child").write_text("x")
                os.unlink(os.path.join(root, "link"))
            with self.mounted(storage, base) as root:
                eq(Path(root, "dir/file").read_text(), "parent")
                assert not Path(root, "only-child").exists()
                assert os.path.islink(os.path.join(root, "link"))
            with self.mounted(storage, child) as root:
                eq(Path(root, "dir/file").read_text(), "child")

    def test_mount_refcount(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"base")]))
            child = create(base)
            for id in (base, child):
                first = storage.storage_mount(id=id)
                second = storage.storage_mount(id=id)
                assert first == second and os.path.isabs(first)
                storage.storage_unmount(id=id)
                eq(Path(first, "f").read_bytes(), b"base")  # one reference left
                storage.storage_unmount(id=id)
                storage.storage_unmount(id=id)  # not mounted: not an error
                with self.mounted(storage, id) as again:
                    eq(Path(again, "f").read_bytes(), b"base")

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
                            eq(Path(root, "f").read_bytes(), b"base")
                except Exception as exc:  # reported below
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(id,)) for id in ids]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert not errors
            for id in ids:
                eq(storage.storage_changes(id=id, parent=base), [("/" + id, ADDED)])

    # ------------------------------------------------------------ diffs
    def test_apply_diff_and_diff_round_trip(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar(BASE))
            child = create(base)
            eq(storage.storage_apply_diff(id=child, parent=base, stream=make_tar(CHILD)), CHILD_APPLIED)
            with self.mounted(storage, child) as root:
                eq(sorted(os.listdir(root)), ["etc", "hard", "lnk", "opq", "pipe", "rel", "usr"])
                eq(os.listdir(os.path.join(root, "opq")), ["new"])
                eq(os.readlink(os.path.join(root, "lnk")), "/etc/conf")
                assert os.path.samefile(os.path.join(root, "hard"), os.path.join(root, "etc/conf"))
                assert stat.S_ISFIFO(os.lstat(os.path.join(root, "pipe")).st_mode)
                st = os.lstat(os.path.join(root, "etc/conf"))
                eq((st.st_mtime, stat.S_IMODE(st.st_mode)), (T1, 0o644))
                eq(stat.S_IMODE(os.lstat(os.path.join(root, "usr/bin/tool")).st_mode), 0o700)
            with self.mounted(storage, base) as root:
                assert Path(root, "gone").exists() and Path(root, "opq/sub/old2").exists()
                eq(Path(root, "etc/conf").read_bytes(), b"old conf\n")
            eq(storage.storage_changes(id=child, parent=base), CHILD_CHANGES)
            eq(storage.storage_size(id=child, parent=base), CHILD_SIZE)
            self._check_diff(storage, create, base, child, CHILD)

    def _check_diff(self, storage, create, base, child, source):
        with storage.storage_diff(id=child, parent=base) as diff:
            data = diff.read()
        entries = tar_entries(io.BytesIO(data))
        wanted = {e[0] for e in source if not e[0].rpartition("/")[2].startswith(".wh.")}
        eq({n for n in entries if not n.rpartition("/")[2].startswith(".wh.")}, wanted)
        assert entries["lnk"].issym() and entries["lnk"].linkname == "/etc/conf"
        assert entries["hard"].islnk() or entries["hard"].isreg()
        with self.mounted(storage, base) as root:
            eq(effective_deletions(entries, root), {"gone", "gonedir", "opq/old1", "opq/sub"})
        copy = create(base, io.BytesIO(data))
        with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
            assert_same_tree(a, b)

    def test_diff_without_parent_is_whole_layer(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar(BASE))
            with storage.storage_diff(id=base, parent=None) as diff:
                eq(set(tar_entries(diff)), {e[0] for e in BASE})
            eq(storage.storage_changes(id=base, parent=None), sorted(("/" + e[0], ADDED) for e in BASE))
            eq(storage.storage_size(id=base, parent=None), sum(len(e[2]) for e in BASE if e[1] == "f"))

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
            eq(storage.storage_changes(id=child, parent=base), [
                ("/dir", MODIFIED), ("/dir/a", MODIFIED), ("/etc", MODIFIED), ("/etc/conf", MODIFIED),
                ("/gone", DELETED), ("/new.txt", ADDED), ("/opq", MODIFIED), ("/opq/fresh", ADDED),
                ("/opq/old1", DELETED), ("/opq/sub", DELETED)])
            eq(storage.storage_size(id=child, parent=base), 3 + len(b"old conf\nmore\n") + 4 + 5)
            with storage.storage_diff(id=child, parent=base) as diff:
                data = diff.read()
            copy = create(base, io.BytesIO(data))
            with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
                assert_same_tree(a, b)

    def test_compressed_layer(self, storage):
        with self.layers(storage) as create:
            for compress in ("gz", "bz2", "xz"):
                id = create(None, make_tar([("d", "d", None), ("d/f", "f", b"z" * 1000)], compress))
                with self.mounted(storage, id) as root:
                    eq(Path(root, "d/f").read_bytes(), b"z" * 1000)

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
                    eq(sorted(os.listdir(outside)), ["victim"], entries)
                # a symlink in the parent layer is never followed either
                base = create(None, make_tar([("esc", "l", outside)]))
                child = create(base)
                try:
                    storage.storage_apply_diff(id=child, parent=base, stream=make_tar([("esc/pwned", "f", b"x")]))
                except StorageError:
                    pass
                eq(sorted(os.listdir(outside)), ["victim"])
                eq(Path(outside, "victim").read_text(), "safe")
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

    # ------------------------------------------------------------ empty layers and chains
    def test_empty_layers(self, storage):
        with self.layers(storage) as create:
            for data in (b"", make_tar([]).getvalue(), b"\x00" * 10240):
                base = create()
                eq(storage.storage_apply_diff(id=base, parent=None, stream=io.BytesIO(data)), 0)
                with self.mounted(storage, base) as root:
                    eq(os.listdir(root), [])
                eq(storage.storage_changes(id=base, parent=None), [])
                eq(storage.storage_size(id=base, parent=None), 0)
                with storage.storage_diff(id=base, parent=None) as diff:
                    eq(tar_entries(diff), {})
                child = create(base, make_tar([]))
                eq(storage.storage_changes(id=child, parent=base), [])
            full = create(None, make_tar(BASE))
            empty_child = create(full, io.BytesIO(b""))
            eq(storage.storage_changes(id=empty_child, parent=full), [])
            eq(storage.storage_size(id=empty_child, parent=full), 0)
            with self.mounted(storage, full) as a, self.mounted(storage, empty_child) as b:
                assert_same_tree(a, b)
            with storage.storage_diff(id=empty_child, parent=full) as diff:
                eq(tar_entries(diff), {})

    def test_chain_of_five_layers(self, storage):
        """Layers 0, 1 and 3 made by apply_diff, 2 and 4 by writes through the mount;
        every layer keeps its own view, and a copy of the chain made from diffs matches."""
        with self.layers(storage) as create:
            ids = [create(None, make_tar(BASE))]
            ids.append(create(ids[0], make_tar(CHAIN_L1)))
            ids.append(create(ids[1]))
            with self.mounted(storage, ids[2]) as root:
                _write_l2(root)
            ids.append(create(ids[2], make_tar(CHAIN_L3)))
            ids.append(create(ids[3]))
            with self.mounted(storage, ids[4]) as root:
                _write_l4(root)
            for i, id in enumerate(ids):
                with self.mounted(storage, id) as root:
                    eq(files(root), CHAIN_VIEWS[i], f"layer {i}")
                if i:
                    eq(storage.storage_changes(id=id, parent=ids[i - 1]), CHAIN_CHANGES[i], f"layer {i}")
            copies = []
            for i, id in enumerate(ids):
                parent = ids[i - 1] if i else None
                with storage.storage_diff(id=id, parent=parent) as diff:
                    copies.append(create(copies[-1] if copies else None, io.BytesIO(diff.read())))
                with self.mounted(storage, id) as a, self.mounted(storage, copies[-1]) as b:
                    assert_same_tree(a, b, f"layer {i}")
                if i:
                    eq(storage.storage_changes(id=copies[i], parent=copies[i - 1]), CHAIN_CHANGES[i])
            # the copies never changed the originals
            for i, id in enumerate(ids):
                with self.mounted(storage, id) as root:
                    eq(files(root), CHAIN_VIEWS[i], f"layer {i} after copying")

    # ------------------------------------------------------------ file types and metadata
    def test_file_types_and_metadata(self, storage):
        with self.layers(storage) as create:
            empty = create()
            base = create(None, make_tar(TYPES))
            child = create(empty, make_tar(TYPES))  # the same, applied as a child
            for id in (base, child):
                with self.mounted(storage, id) as root:
                    self._check_types(root)
            with storage.storage_diff(id=base, parent=None) as diff:
                entries = tar_entries(diff)
            assert stat.S_IMODE(entries["d/setuid"].mode) == 0o4755 and entries["d/setuid"].mtime == T1
            assert entries["sticky"].mode & 0o7777 == 0o1777 and entries["sgiddir"].mode & 0o7777 == 0o2775
            assert entries[LONG].isreg() and entries["link"].linkname == "d/setuid"
            if ROOT:
                eq((entries["owned"].uid, entries["owned"].gid), (65534, 65534))
                assert entries["loop"].isblk() and (entries["loop"].devmajor, entries["loop"].devminor) == (7, 200)
            for id, parent in ((base, None), (child, empty)):
                with storage.storage_diff(id=id, parent=parent) as diff:
                    copy = create(parent, io.BytesIO(diff.read()))
                with self.mounted(storage, id) as a, self.mounted(storage, copy) as b:
                    assert_same_tree(a, b)

    def _check_types(self, root):
        def st(rel):
            return os.lstat(os.path.join(root, rel))

        eq(stat.S_IMODE(st("d").st_mode), 0o750)
        assert stat.S_IMODE(st("d/setuid").st_mode) == 0o4755 and st("d/setuid").st_mtime == T1
        assert stat.S_IMODE(st("d/setgid").st_mode) == 0o2711 and st("d/setgid").st_mtime == T0 + 1
        assert stat.S_IMODE(st("sticky").st_mode) == 0o1777 and stat.S_IMODE(st("sgiddir").st_mode) == 0o2775
        assert st("owned").st_mtime == 1_234_567_890 and stat.S_IMODE(st("owned").st_mode) == 0o600
        if ROOT:
            eq((st("d").st_uid, st("d").st_gid), (1000, 1001))
            eq((st("d/setgid").st_uid, st("d/setgid").st_gid), (1, 2))
            eq((st("owned").st_uid, st("owned").st_gid), (65534, 65534))
            eq(st("sgiddir").st_gid, 50)
            null, loop = st("null"), st("loop")
            assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
            assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 200)
            assert stat.S_IMODE(loop.st_mode) == 0o660 and loop.st_mtime == T1
        assert os.readlink(os.path.join(root, "link")) == "d/setuid" and st("link").st_mtime == T1
        eq(os.readlink(os.path.join(root, "abslink")), "/nonexistent/target")
        assert os.path.samefile(os.path.join(root, "hard"), os.path.join(root, "d/setgid"))
        eq(st("hard").st_nlink, 2)
        assert stat.S_ISFIFO(st("fifo").st_mode) and stat.S_IMODE(st("fifo").st_mode) == 0o640
        eq(st("fifo").st_mtime, T1)
        eq(Path(root, "big").read_bytes(), bytes(range(256)) * 12_289)
        assert Path(root, "empty").read_bytes() == b"" and Path(root, "space and \u00fcnicode").read_bytes() == b"u"
        eq(Path(root, LONG).read_bytes(), b"long name")

    def test_xattrs(self, storage):
        reason = user_xattrs_supported(storage)
        if reason:
            pytest.skip(reason)
        with self.layers(storage) as create:
            base = create(None, make_tar(XATTRS))
            with self.mounted(storage, base) as root:
                eq(os.getxattr(os.path.join(root, "x"), "user.dir"), b"d")
                eq(os.getxattr(os.path.join(root, "x/f"), "user.note"), b"hello")
                eq(os.getxattr(os.path.join(root, "x/f"), "user.bin"), b"\x00\xff\x01")
                assert not [n for n in os.listxattr(os.path.join(root, "x/plain")) if n.startswith("user.")]
            with storage.storage_diff(id=base, parent=None) as diff:
                entries = tar_entries(diff)
            eq(entries["x/f"].pax_headers["SCHILY.xattr.user.note"], "hello")
            child = create(base)
            with self.mounted(storage, child) as root:  # a write keeps the xattrs (copy-up)
                with open(os.path.join(root, "x/f"), "ab") as f:
                    f.write(b"+")
                eq(os.getxattr(os.path.join(root, "x/f"), "user.note"), b"hello")
            for id, parent in ((base, None), (child, base)):
                with storage.storage_diff(id=id, parent=parent) as diff:
                    copy = create(parent, io.BytesIO(diff.read()))
                with self.mounted(storage, id) as a, self.mounted(storage, copy) as b:
                    assert_same_tree(a, b)

    # ------------------------------------------------------------ whiteouts and changes
    def test_whiteouts_and_opaque_dirs_round_trip(self, storage):
        base_tar = [("a", "d", None), ("a/x", "f", b"x"), ("a/sub", "d", None), ("a/sub/y", "f", b"y"),
                    ("b", "d", None), ("b/keep", "f", b"k"), ("c", "f", b"c"), ("d", "d", None),
                    ("d/e", "d", None), ("d/e/f", "f", b"f")]
        child_tar = [("a", "d", None), ("a/.wh..wh..opq", "w", None), ("a/new", "f", b"n"),
                     (".wh.c", "w", None), ("b", "d", None), ("b/.wh.keep", "w", None),
                     ("d", "d", None), ("d/e", "d", None), ("d/e/.wh.f", "w", None), (".wh.missing", "w", None),
                     ("newdir", "d", None), ("newdir/.wh..wh..opq", "w", None), ("newdir/z", "f", b"z")]
        expected = [("/a", MODIFIED), ("/a/new", ADDED), ("/a/sub", DELETED), ("/a/x", DELETED),
                    ("/b", MODIFIED), ("/b/keep", DELETED), ("/c", DELETED), ("/d", MODIFIED),
                    ("/d/e", MODIFIED), ("/d/e/f", DELETED), ("/newdir", ADDED), ("/newdir/z", ADDED)]
        with self.layers(storage) as create:
            base = create(None, make_tar(base_tar))
            child = create(base, make_tar(child_tar))
            with self.mounted(storage, child) as root:
                eq(files(root), {"a": None, "a/new": b"n", "b": None, "d": None, "d/e": None,
                                       "newdir": None, "newdir/z": b"z"})
            eq(storage.storage_changes(id=child, parent=base), expected)
            layer = child
            for _ in range(2):  # diff -> apply -> diff again: nothing is lost on the way
                with storage.storage_diff(id=layer, parent=base) as diff:
                    data = diff.read()
                with self.mounted(storage, base) as root:
                    assert effective_deletions(tar_entries(io.BytesIO(data)), root) >= {"a/x", "a/sub", "c", "b/keep",
                                                                                         "d/e/f"}
                copy = create(base, io.BytesIO(data))
                with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
                    assert_same_tree(a, b)
                eq(storage.storage_changes(id=copy, parent=base), expected)
                layer = copy
            # a grandchild sees the whiteouts and may bring a name back
            grand = create(child, make_tar([("c", "f", b"back"), ("a", "d", None), ("a/x", "f", b"x2")]))
            with self.mounted(storage, grand) as root:
                assert Path(root, "c").read_bytes() == b"back" and sorted(os.listdir(os.path.join(root, "a"))) == [
                    "new", "x"]
            eq(storage.storage_changes(id=grand, parent=child), [("/a", MODIFIED), ("/a/x", ADDED),
                                                                        ("/c", ADDED)])

    def test_changes_match_docker_diff(self, storage):
        base_tar = [("a", "d", None), ("a/b", "d", None), ("a/b/c", "d", None), ("a/b/c/file", "f", b"deep"),
                    ("a/b/other", "f", b"o"), ("top.txt", "f", b"t"), ("dir2", "d", None), ("dir2/x", "f", b"x"),
                    ("repl_dir", "d", None), ("repl_dir/inner", "f", b"i"), ("repl_file", "f", b"rf"),
                    ("sym", "l", "top.txt"), ("owned", "f", b"own"), ("same", "d", None), ("same/s", "f", b"s")]
        with self.layers(storage) as create:
            base = create(None, make_tar(base_tar))
            child = create(base)
            with self.mounted(storage, child) as root:
                def p(rel):
                    return os.path.join(root, rel)

                Path(p("a/b/c/file")).write_bytes(b"deeper")  # parents a, a/b, a/b/c are C
                os.chmod(p("top.txt"), 0o600)  # mode only: C
                os.utime(p("dir2/x"), (T1, T1))  # mtime only: C
                os.unlink(p("repl_dir/inner"))
                os.rmdir(p("repl_dir"))
                Path(p("repl_dir")).write_bytes(b"now a file")  # dir -> file: one C
                os.unlink(p("repl_file"))
                os.mkdir(p("repl_file"))
                Path(p("repl_file/child")).write_bytes(b"c")  # file -> dir: C, children A
                os.unlink(p("sym"))
                os.symlink("a/b/other", p("sym"))  # retargeted: C
                os.rename(p("a/b/other"), p("a/moved"))  # D + A
                os.mkdir(p("newd"))  # A
                if ROOT:
                    os.chown(p("owned"), 4242, 4242)  # owner only: C
                os.utime(p("same/s"), ns=(0, os.lstat(p("same/s")).st_mtime_ns))  # atime only: no change
            expected = [("/a", MODIFIED), ("/a/b", MODIFIED), ("/a/b/c", MODIFIED), ("/a/b/c/file", MODIFIED),
                        ("/a/b/other", DELETED), ("/a/moved", ADDED), ("/dir2", MODIFIED), ("/dir2/x", MODIFIED),
                        ("/newd", ADDED)] + ([("/owned", MODIFIED)] if ROOT else []) + [
                        ("/repl_dir", MODIFIED), ("/repl_file", MODIFIED), ("/repl_file/child", ADDED),
                        ("/sym", MODIFIED), ("/top.txt", MODIFIED)]
            eq(storage.storage_changes(id=child, parent=base), expected)
            with storage.storage_diff(id=child, parent=base) as diff:
                copy = create(base, io.BytesIO(diff.read()))
            eq(storage.storage_changes(id=copy, parent=base), expected)
            with self.mounted(storage, child) as a, self.mounted(storage, copy) as b:
                assert_same_tree(a, b)

    # ------------------------------------------------------------ sizes
    def test_size_accounting(self, storage):
        with self.layers(storage) as create:
            tar = make_tar([("d", "d", None), ("d/f1", "f", b"1" * 100), ("d/f2", "h", "d/f1"), ("sym", "l", "abc"),
                            ("fifo", "p", None), ("f3", "f", b"3" * 10)])
            base = create()
            eq(storage.storage_apply_diff(id=base, parent=None, stream=tar), 110)  # hard link once
            eq(storage.storage_size(id=base, parent=None), 110 + 3)  # + the symlink's target
            deletions = create(base)
            with self.mounted(storage, deletions) as root:
                os.unlink(os.path.join(root, "f3"))
                os.unlink(os.path.join(root, "sym"))
                os.chmod(os.path.join(root, "d"), 0o700)  # a directory change weighs nothing
            eq(storage.storage_size(id=deletions, parent=base), 0)
            mixed = create(deletions)
            with self.mounted(storage, mixed) as root:
                Path(root, "new").write_bytes(b"n" * 7)
                os.unlink(os.path.join(root, "fifo"))
                os.symlink("12345", os.path.join(root, "sym2"))
            eq(storage.storage_size(id=mixed, parent=deletions), 7 + 5)

    # ------------------------------------------------------------ concurrency
    def test_concurrent_mounts_of_one_layer(self, storage):
        with self.layers(storage) as create:
            base = create(None, make_tar([("f", "f", b"base")]))
            child = create(base, make_tar([("g", "f", b"child")]))
            for id in (base, child):
                holder = storage.storage_mount(id=id)  # one long-lived reference meanwhile
                paths, errors = {holder}, []
                barrier = threading.Barrier(8)

                def work():
                    try:
                        barrier.wait()
                        for _ in range(25):
                            path = storage.storage_mount(id=id)
                            try:
                                paths.add(path)
                                eq(Path(path, "f").read_bytes(), b"base")
                            finally:
                                storage.storage_unmount(id=id)
                    except Exception as exc:  # reported below
                        errors.append(exc)

                threads = [threading.Thread(target=work) for _ in range(8)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                assert not errors and paths == {holder}
                eq(Path(holder, "f").read_bytes(), b"base")  # the holder's reference survived
                storage.storage_unmount(id=id)
                with self.mounted(storage, id) as again:
                    eq(Path(again, "f").read_bytes(), b"base")

    # ------------------------------------------------------------ across drivers
    def test_cross_driver_with_reference(self, storage, tmp_path):
        """Layers moved by diff to the reference ``vfs`` driver and back give the
        same trees, the same changes and the same canonical diff digests."""
        reference = load_reference(tmp_path / "reference-vfs")
        try:
            xattrs = XATTRS if not (user_xattrs_supported(storage) or user_xattrs_supported(reference)) else []
            chain = [make_tar(BASE).getvalue(), make_tar(CHILD).getvalue(),
                     make_tar([e for e in TYPES if e[1] != "h"] + xattrs).getvalue()]
            there = check_cross_driver(storage, reference, chain)
            back = check_cross_driver(reference, storage, chain)
            eq(there, back)
        finally:
            reference.storage_cleanup()
