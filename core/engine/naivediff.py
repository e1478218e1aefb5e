"""The core's fallback for ``storage_diff``, ``storage_apply_diff``,
``storage_changes`` and ``storage_size`` (Docker's ``NaiveDiffDriver``).

They work for any driver through its mount hooks: mount ``id`` (and ``parent``),
walk both trees, compare.  Registered ``trylast`` in the storage slot's plugin
manager, so a driver's native implementation (returning non-``None``) wins::

    pm.register(NaiveDiff(pm.hook), name="naive-diff")

An entry counts as modified when its type, mode, owner or device differ, or, for
non-directories, its size, mtime, symlink target or ``security.capability``
(:func:`dockyard.safetar.differs`); a directory holding changes is listed as
modified too.  A directory that replaced a non-directory (or the reverse) is one
change; what was inside the old one is not listed.
"""

import os
import stat
from contextlib import ExitStack

from ..hookspecs import hookimpl
from ..safetar import TarWriter, differs, extract, spool

ADDED, MODIFIED, DELETED = 1, 0, 2


def _scan(path):
    try:
        with os.scandir(path) as it:
            return {e.name: e.stat(follow_symlinks=False) for e in it}
    except FileNotFoundError:
        return {}


def _all(root, rel, out):
    for name, st in sorted(_scan(os.path.join(root, rel) if rel else root).items()):
        crel = f"{rel}/{name}" if rel else name
        out.append((crel, ADDED))
        if stat.S_ISDIR(st.st_mode):
            _all(root, crel, out)


def _compare(new_root, old_root, rel, out):
    """Append the changes below directory ``rel`` (both sides are directories)."""
    start = len(out)
    new = _scan(os.path.join(new_root, rel) if rel else new_root)
    old = _scan(os.path.join(old_root, rel) if rel else old_root)
    for name in sorted(new):
        crel = f"{rel}/{name}" if rel else name
        nst, ost = new[name], old.get(name)
        is_dir = stat.S_ISDIR(nst.st_mode)
        if ost is None:
            out.append((crel, ADDED))
            if is_dir:
                _all(new_root, crel, out)
            continue
        mark = len(out)
        changed = differs(os.path.join(old_root, crel), ost, os.path.join(new_root, crel), nst)
        if changed:
            out.append((crel, MODIFIED))
        if is_dir and stat.S_ISDIR(ost.st_mode):
            inner = len(out)
            _compare(new_root, old_root, crel, out)
            if not changed and len(out) > inner:
                out.insert(mark, (crel, MODIFIED))
        elif is_dir:  # a directory replaced a non-directory: its content is new
            _all(new_root, crel, out)
    for name in sorted(set(old) - set(new)):
        out.append((f"{rel}/{name}" if rel else name, DELETED))
    return len(out) > start


def tree_changes(new_root, old_root=None):
    """``[(rel path, kind)]`` turning tree ``old_root`` into ``new_root``, sorted;
    paths are relative (``etc/passwd``), kinds Docker's (0 mod, 1 add, 2 del)."""
    out = []
    if old_root is None:
        _all(new_root, "", out)
    else:
        _compare(new_root, old_root, "", out)
    return sorted(out)


def changes_size(root, changes):
    """Docker's ``ChangesSize``: bytes of added/modified non-directories, each
    hard-linked inode once."""
    size, seen = 0, set()
    for rel, kind in changes:
        if kind == DELETED:
            continue
        try:
            st = os.lstat(os.path.join(root, rel))
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            continue
        if st.st_nlink > 1:
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
        size += st.st_size
    return size


def write_changes(root, changes, fileobj):
    """Write ``changes`` of tree ``root`` as an OCI layer tar to ``fileobj``."""
    writer = TarWriter(fileobj)
    for rel, kind in changes:
        if kind == DELETED:
            writer.add_whiteout(rel)
        else:
            writer.add(root, rel)
    writer.close()


class NaiveDiff:
    """Diff hooks for any storage driver, built on its mount/unmount hooks."""

    def __init__(self, hook):
        self.hook = hook

    def _mount(self, stack, id):
        path = self.hook.storage_mount(id=id)
        stack.callback(self.hook.storage_unmount, id=id)
        return path

    def _changes(self, stack, id, parent):
        new = self._mount(stack, id)
        old = self._mount(stack, parent) if parent is not None else None
        return new, tree_changes(new, old)

    @hookimpl(trylast=True)
    def storage_changes(self, id, parent):
        with ExitStack() as stack:
            _, changes = self._changes(stack, id, parent)
        return [("/" + rel, kind) for rel, kind in changes]

    @hookimpl(trylast=True)
    def storage_diff(self, id, parent):
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
    def storage_size(self, id, parent):
        with ExitStack() as stack:
            root, changes = self._changes(stack, id, parent)
            return changes_size(root, changes)

    @hookimpl(trylast=True)
    def storage_apply_diff(self, id, parent, stream):
        with ExitStack() as stack:
            return extract(stream, self._mount(stack, id))
