"""Driving a storage driver as the core does, for the conformance kit: load it
into a plugin manager with the naive diff fallback, name layers, mount them for a
block, and move layers between two drivers by diff (:func:`check_cross_driver`).

The canonical diff of a layer is the core's naive diff (:func:`canonical_diff`):
it depends only on the two trees, so equal trees give equal digests on every
driver; a driver's native diff may encode the same change differently (an opaque
directory instead of one whiteout per name) and is compared by the tree it makes.
"""

import io
import os
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any

import pluggy

from dockyard.driverkit.naivediff import NaiveDiff
from dockyard.errors import DriverUnsupported
from dockyard.hookspecs import PROJECT
from dockyard.hookspecs import storage as storage_specs

from .trees import assert_same_tree, digest, eq

#: the hook relay of a loaded storage driver (``pm.hook``): ``storage_create(...)``, ...
Storage = Any


def load_storage(driver: object, home: str | os.PathLike[str], options: Mapping[str, Any] | None = None,
                 name: str = "driver") -> Storage:
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


def new_id() -> str:
    """A fresh layer id (64 hex digits, as the core makes them)."""
    return secrets.token_hex(32)


@contextmanager
def mounted(storage: Storage, id: str) -> Iterator[str]:
    """Layer ``id`` mounted for the ``with`` block (its path), unmounted after."""
    path = storage.storage_mount(id=id)
    try:
        yield path
    finally:
        storage.storage_unmount(id=id)


def user_xattrs_supported(storage: Storage) -> str | None:
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


def canonical_diff(storage: Storage, id: str, parent: str | None) -> bytes:
    """The canonical diff of layer ``id`` (bytes): the core's naive diff, which
    depends only on the two trees (see the module doc)."""
    with NaiveDiff(storage).storage_diff(id=id, parent=parent) as diff:
        return diff.read()


def check_cross_driver(src: Storage, dst: Storage, chain: Sequence[bytes]) -> list[str]:
    """Move a chain of layers from driver ``src`` to driver ``dst`` by diff.

    ``chain`` lists layer tars (bytes, base first; parents of every entry listed,
    as a diff holds them).  Each is applied on ``src``; its native diff is applied
    on ``dst`` as the child of the previous moved layer; the two trees, their
    ``changes`` and their canonical diff digests must be equal; the canonical diff
    itself applied on ``dst`` must give the same tree and digest again.  Returns
    the canonical digests; removes every layer it made, also on failure.
    """
    made: list[tuple[Storage, str]] = []
    digests: list[str] = []
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


def load_reference(home: str | os.PathLike[str]) -> Storage:
    """The reference ``vfs`` driver (loaded by name, as the core does) in ``home``."""
    from dockyard.plugins import load_driver

    return load_storage(load_driver("storage", "vfs", Path(home)).driver, home, name="vfs")


class LayerTests:
    """Base of the conformance kit's test classes: layers made in a ``with`` block
    are removed after it, whatever happened."""

    @contextmanager
    def layers(self, storage: Storage) -> Iterator[Callable[..., str]]:
        made: list[str] = []

        def create(parent: str | None = None, tar: IO[bytes] | None = None) -> str:
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

    def mounted(self, storage: Storage, id: str) -> AbstractContextManager[str]:
        return mounted(storage, id)
