"""Conformance tests of what a layer keeps besides contents: every file type,
modes with setuid/setgid/sticky, owners, mtimes, device numbers and ``user.*``
xattrs, through apply_diff, mount and diff, and across drivers (the same trees
and canonical diff digests on this driver and the reference ``vfs``)."""

import io
import os
import stat
from pathlib import Path

import pytest

from .cases import BASE, CHILD, LONG, ROOT, TYPES, XATTRS
from .harness import LayerTests, check_cross_driver, load_reference, user_xattrs_supported
from .tars import T0, T1, make_tar, tar_entries
from .trees import assert_same_tree, eq


class MetadataTests(LayerTests):
    """Part of :class:`~dockyard.testing.storage.StorageConformance`."""

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
