"""Conformance tests of layer contents as diffs: apply_diff and diff round
trips, ``changes`` with ``docker diff``'s A/C/D rules, whiteouts and opaque
directories, empty layers, a chain of five layers, compressed tars and size
accounting."""

import io
import os
import stat
from pathlib import Path

from .cases import (ADDED, BASE, CHAIN_CHANGES, CHAIN_L1, CHAIN_L3, CHAIN_VIEWS, CHILD, CHILD_APPLIED, CHILD_CHANGES,
                    CHILD_SIZE, DELETED, MODIFIED, ROOT, _write_l2, _write_l4)
from .harness import LayerTests
from .tars import T1, effective_deletions, make_tar, tar_entries
from .trees import assert_same_tree, eq, files


class DiffTests(LayerTests):
    """Part of :class:`~dockyard.testing.storage.StorageConformance`."""

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
