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

The kit's parts, one idea each: :mod:`.harness` (loading a driver as the core
does, mounting, moving layers between drivers), :mod:`.tars` and :mod:`.trees`
(making and comparing layer contents), :mod:`.cases` (the trees the tests make)
and the tests themselves, by subject: :mod:`.lifecycle`, :mod:`.diffs`,
:mod:`.metadata`, :mod:`.hostile`.  Everything a driver's tests use is
importable from here, ``dockyard.testing.storage``.

Every test removes the layers it made.  Tests that need root (owners, devices)
check less without it; a file system that refuses ``user.*`` xattrs skips that
test with the reason.
"""

from .cases import (ADDED, BASE, CHAIN_CHANGES, CHAIN_L1, CHAIN_L3, CHAIN_VIEWS, CHILD, CHILD_APPLIED, CHILD_CHANGES,
                    CHILD_SIZE, DELETED, LONG, MODIFIED, ROOT, TYPES, XATTRS)
from .diffs import DiffTests
from .harness import (LayerTests, canonical_diff, check_cross_driver, load_reference, load_storage, mounted, new_id,
                      user_xattrs_supported)
from .hostile import HostileTarTests
from .lifecycle import LifecycleTests
from .metadata import MetadataTests
from .tars import T0, T1, effective_deletions, make_tar, tar_entries
from .trees import assert_same_tree, digest, eq, files, snapshot

__all__ = [
    "StorageConformance", "LifecycleTests", "DiffTests", "MetadataTests", "HostileTarTests", "LayerTests",
    "load_storage", "load_reference", "new_id", "mounted", "canonical_diff", "check_cross_driver",
    "user_xattrs_supported", "make_tar", "tar_entries", "effective_deletions", "snapshot", "files", "digest",
    "eq", "assert_same_tree", "T0", "T1", "MODIFIED", "ADDED", "DELETED", "ROOT", "BASE", "CHILD",
    "CHILD_CHANGES", "CHILD_APPLIED", "CHILD_SIZE", "CHAIN_L1", "CHAIN_L3", "CHAIN_VIEWS", "CHAIN_CHANGES",
    "LONG", "TYPES", "XATTRS",
]


class StorageConformance(LifecycleTests, DiffTests, MetadataTests, HostileTarTests):
    """Contract tests; needs a ``storage`` fixture (see the module doc)."""
