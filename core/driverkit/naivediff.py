"""The fallback for ``storage_diff``, ``storage_apply_diff``, ``storage_changes``
and ``storage_size`` (Docker's ``NaiveDiffDriver``), and the tree comparison that
drivers with a native diff reuse (:func:`tree_changes`, :func:`changes_size`,
:func:`mark_parents`).

They work for any driver through its mount hooks: mount ``id`` (and ``parent``),
walk both trees, compare.  The engine's layer store registers :class:`NaiveDiff`
``trylast`` in the storage slot's plugin manager, so a driver's native
implementation (returning non-``None``) wins::

    pm.register(NaiveDiff(pm.hook), name="naive-diff")

An entry counts as modified when its type, mode, owner or device differ, or, for
non-directories, its size, mtime, symlink target or ``security.capability``
(:func:`dockyard.driverkit.tarwriter.differs`); a directory holding changes is listed as
modified too.  A directory that replaced a non-directory (or the reverse) is one
change; what was inside the old one is not listed.

The new tree is a container's, which may be running (``commit --pause=false``):
both trees are read relative to directory fds (:mod:`dockyard.driverkit.fdwalk`), in one
walk of the new tree that looks up the old one beside it, and what is tarred is
opened the same way, so a directory swapped for a symlink is never followed.
"""

from __future__ import annotations

import os
import stat
from contextlib import ExitStack, nullcontext
from typing import IO, TYPE_CHECKING, Any

from dockyard.hookspecs import hookimpl

from .fdwalk import Entry, Tree
from .safetar import TarWriter, differs, extract, spool

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed import StrPath

ADDED, MODIFIED, DELETED = 1, 0, 2


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def mark_parents(out: dict[str, int]) -> list[tuple[str, int]]:
    """A directory holding changes is modified: add ``(dir, MODIFIED)`` for every
    ancestor of a change that ``out`` (``{rel: kind}``) does not list."""
    for rel in list(out):
        parent = rel.rpartition("/")[0]
        while parent and parent not in out:
            out[parent] = MODIFIED
            parent = parent.rpartition("/")[0]
    return sorted(out.items())


def _changes(new: Tree, old: Tree | None) -> dict[str, int]:
    """``{rel: kind}`` turning ``old`` (a :class:`Tree` or ``None``) into ``new``,
    in one walk of ``new``.  Each directory of ``new`` is compared with ``old``'s
    listing of the same path (``decided``: the listing, or ``None`` when
    everything below it is new), and what ``old`` has there that ``new`` does
    not is deleted."""
    out: dict[str, int] = {}
    decided: dict[str, dict[str, os.stat_result] | None] = {"": old.listdir("") if old is not None else None}
    # (dir rel, old listing or None) of the directories above the walk
    path: list[tuple[str, dict[str, os.stat_result] | None]] = []

    def listed(rel: str, entries: list[tuple[str, os.stat_result]]) -> list[tuple[str, os.stat_result]]:
        old_list = decided.pop(rel, None)
        if old_list:
            names = {name for name, _ in entries}
            out.update((_join(rel, name), DELETED) for name in old_list if name not in names)
        path.append((rel, old_list))
        return entries

    for e in new.walk(listed):
        parent = e.rel.rpartition("/")[0]
        while path[-1][0] != parent:
            path.pop()
        old_list = path[-1][1]
        ost = old_list.get(e.name) if old_list is not None else None
        is_dir = stat.S_ISDIR(e.st.st_mode)
        if ost is None:
            out[e.rel] = ADDED
            if is_dir:
                decided[e.rel] = None
            continue
        assert old is not None  # ost came from old's listing
        if differs(Entry(e.rel, e.name, ost, old.dir_fd(parent)), ost, e, e.st):
            out[e.rel] = MODIFIED
        if is_dir:  # a directory that replaced a non-directory: its content is new
            decided[e.rel] = old.listdir(e.rel) if stat.S_ISDIR(ost.st_mode) else None
    return out


def tree_changes(new_root: StrPath, old_root: StrPath | None = None) -> list[tuple[str, int]]:
    """``[(rel path, kind)]`` turning tree ``old_root`` into ``new_root``, sorted;
    paths are relative (``etc/passwd``), kinds Docker's (0 mod, 1 add, 2 del).
    Both trees are read relative to directory fds (:mod:`dockyard.driverkit.fdwalk`)."""
    with Tree(new_root) as new, (Tree(old_root) if old_root is not None else nullcontext()) as old:
        return mark_parents(_changes(new, old))


def changes_size(root: StrPath, changes: Iterable[tuple[str, int]]) -> int:
    """Docker's ``ChangesSize``: bytes of added/modified non-directories, each
    hard-linked inode once."""
    size, seen = 0, set[tuple[int, int]]()
    with Tree(root) as tree:
        for rel, kind in changes:
            if kind == DELETED:
                continue
            st = tree.lstat(rel)
            if st is None or stat.S_ISDIR(st.st_mode):
                continue
            if st.st_nlink > 1:
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            size += st.st_size
    return size


def write_changes(root: StrPath, changes: Iterable[tuple[str, int]], fileobj: IO[bytes]) -> None:
    """Write ``changes`` of tree ``root`` as an OCI layer tar to ``fileobj``; an
    entry that is gone (or no longer reachable without a symlink) is left out."""
    writer = TarWriter(fileobj)
    with Tree(root) as tree:
        for rel, kind in changes:
            if kind == DELETED:
                writer.add_whiteout(rel)
                continue
            entry = tree.entry(rel)
            if entry is not None:
                writer.add_entry(entry)
    writer.close()


class NaiveDiff:
    """Diff hooks for any storage driver, built on its mount/unmount hooks."""

    def __init__(self, hook: Any) -> None:
        """``hook``: the storage slot's ``pm.hook`` (its ``storage_mount`` and
        ``storage_unmount`` are called)."""
        self.hook = hook

    def _mount(self, stack: ExitStack, id: str) -> str:
        path = self.hook.storage_mount(id=id)
        stack.callback(self.hook.storage_unmount, id=id)
        return path

    def _changes(self, stack: ExitStack, id: str, parent: str | None) -> tuple[str, list[tuple[str, int]]]:
        new = self._mount(stack, id)
        old = self._mount(stack, parent) if parent is not None else None
        return new, tree_changes(new, old)

    @hookimpl(trylast=True)
    def storage_changes(self, id: str, parent: str | None) -> list[tuple[str, int]]:
        with ExitStack() as stack:
            _, changes = self._changes(stack, id, parent)
        return [("/" + rel, kind) for rel, kind in changes]

    @hookimpl(trylast=True)
    def storage_diff(self, id: str, parent: str | None) -> IO[bytes]:
        out = spool()
        try:
            with ExitStack() as stack:
                root, changes = self._changes(stack, id, parent)
                write_changes(root, changes, out)
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    @hookimpl(trylast=True)
    def storage_size(self, id: str, parent: str | None) -> int:
        with ExitStack() as stack:
            root, changes = self._changes(stack, id, parent)
            return changes_size(root, changes)

    @hookimpl(trylast=True)
    def storage_apply_diff(self, id: str, parent: str | None, stream: IO[bytes]) -> int:
        with ExitStack() as stack:
            return extract(stream, self._mount(stack, id))
