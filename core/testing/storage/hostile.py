"""Conformance tests of tars a driver must refuse: entries that climb out of the
layer (``..``, absolute names, through a symlink of the tar or of the parent
layer, hard links to host files) and truncated or corrupt archives.  Nothing is
written outside the layer, and the error is a StorageError."""

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from dockyard.errors import StorageError

from .harness import LayerTests
from .tars import make_tar
from .trees import eq


class HostileTarTests(LayerTests):
    """Part of :class:`~dockyard.testing.storage.StorageConformance`."""

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
