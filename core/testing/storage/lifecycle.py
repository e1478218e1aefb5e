"""Conformance tests of a layer's life: create, exists, remove, list; a child
over its parent; mounts counted by reference, also from many threads at once;
status and cleanup."""

import os
import threading
from pathlib import Path

import pytest

from dockyard.errors import StorageError

from .cases import ADDED
from .harness import LayerTests, new_id
from .tars import make_tar
from .trees import eq


class LifecycleTests(LayerTests):
    """Part of :class:`~dockyard.testing.storage.StorageConformance`."""

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
