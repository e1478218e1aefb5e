"""An aufs branch on disk, read and written without mounting it.

A branch is a layer's ``diff/<id>`` directory.  It holds the layer's own
entries and, as aufs stores them, its whiteouts: a ``.wh.<name>`` file hides
``name`` of the branches below, a ``.wh..wh..opq`` file makes its directory
opaque.  These are the OCI names, so a layer tar's whiteout entries are stored
as (empty) files (:class:`AufsWhiteouts`, the extraction strategy) and a diff
emits them as they are (:func:`write_branch`).  aufs' own metadata at the branch
root (``.wh..wh.aufs``, ``.wh..wh.plnk/``, ``.wh..wh.orph/``) and its temporary
``.wh.*`` directories (an rmdir in progress) are never part of a layer
(:func:`classify`).

:class:`BranchView` reads the union of a layer's ancestors the way aufs would
show it, so the native ``changes`` (:func:`branch_changes`) compare a branch with
what lies below it in one walk, without a mount.  The driver
(:mod:`dockyard.drivers.storage.aufs`) owns the layout, the mounts and the hooks.
"""

import os
import stat
from collections.abc import Callable, Iterable, Mapping, Set

from dockyard.driverkit.fdwalk import Tree
from dockyard.driverkit.lowerview import scan
from dockyard.driverkit.naivediff import mark_parents
from dockyard.driverkit.safetar import (WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, TarWriter, Whiteouts,
                                        differs)

#: the kinds of a change (docker diff's C, A, D), as the storage hooks report them
ADDED, MODIFIED, DELETED = 1, 0, 2
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: ``[(name, lstat)]`` of one directory, as :meth:`Tree.walk` lists it
Listing = list[tuple[str, os.stat_result]]


def rel_join(rel: str, name: str) -> str:
    """``rel/name``, or ``name`` at the branch root (``rel`` empty)."""
    return f"{rel}/{name}" if rel else name


def classify(entries: Mapping[str, os.stat_result]) -> tuple[dict[str, os.stat_result], set[str], bool]:
    """Split the ``{name: stat}`` of a branch directory into ``(live, whiteouts,
    opaque)``: the visible entries, the names whited out for lower branches and
    whether the directory is opaque.  aufs metadata (``.wh..wh.*`` other than the
    opaque marker) and directories named ``.wh.*`` (aufs' temporary rmdir names)
    are none of these."""
    live: dict[str, os.stat_result] = {}
    whiteouts: set[str] = set()
    opaque = False
    for name, st in entries.items():
        if not name.startswith(WHITEOUT_PREFIX):
            live[name] = st
        elif stat.S_ISDIR(st.st_mode):
            continue
        elif name == WHITEOUT_OPAQUE:
            opaque = True
        elif name.startswith(WHITEOUT_META_PREFIX):
            continue
        else:
            whiteouts.add(name[len(WHITEOUT_PREFIX):])
    return live, whiteouts, opaque


def _is_whiteout(dirpath: str, name: str) -> bool:
    try:
        return not stat.S_ISDIR(os.lstat(os.path.join(dirpath, WHITEOUT_PREFIX + name)).st_mode)
    except OSError:
        return False


def _is_opaque(dirpath: str) -> bool:
    try:
        return not stat.S_ISDIR(os.lstat(os.path.join(dirpath, WHITEOUT_OPAQUE)).st_mode)
    except OSError:
        return False


def _touch(dir_fd: int, name: str) -> None:
    """A whiteout marker.  Its times are the epoch, as all of aufs' own share
    one inode's: a layer's diff, applied again, gives the same branch whatever
    second it is applied in."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o444, dir_fd=dir_fd)
    try:
        os.utime(fd, ns=(0, 0))
    finally:
        os.close(fd)


def _open_dir(root: str | os.PathLike[str], rel: str) -> int | None:
    """An fd of directory ``root/rel`` opened without following symlinks, or ``None``."""
    fd = os.open(root, _DIR_FLAGS)
    for part in rel.split("/") if rel else ():
        try:
            new = os.open(part, _DIR_FLAGS, dir_fd=fd)
        except OSError:
            os.close(fd)
            return None
        os.close(fd)
        fd = new
    return fd


class BranchView:
    """The merged tree of aufs branches ``tops`` (nearest first) read from the
    directories without mounting: a ``.wh.<name>`` file hides ``name`` in the
    branches below, an opaque directory or a non-directory stops the search."""

    def __init__(self, tops: Iterable[str | os.PathLike[str]]) -> None:
        self.tops = [str(t) for t in tops]

    @staticmethod
    def _probe(top: str, parts: list[str]) -> tuple[tuple[str, os.stat_result] | None, bool]:
        """``((path, stat), False)`` if ``parts`` exists in branch ``top``, else
        ``(None, stop)`` where ``stop`` says deeper branches are hidden."""
        cur, stop = top, False
        for i, part in enumerate(parts):
            path = os.path.join(cur, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, stop or _is_whiteout(cur, part)
            if i == len(parts) - 1:
                return (path, st), False
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            stop = stop or _is_opaque(path)
            cur = path
        return (top, os.lstat(top)), False

    def find(self, rel: str) -> tuple[str, os.stat_result] | None:
        """``(path, stat)`` of the visible ``rel`` or ``None``."""
        parts = rel.split("/") if rel else []
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is not None:
                return hit
            if stop:
                break
        return None

    def lstat(self, rel: str) -> os.stat_result | None:
        hit = self.find(rel)
        return hit[1] if hit else None

    def listdir(self, rel: str) -> dict[str, os.stat_result]:
        """``{name: stat}`` of the visible children of directory ``rel``."""
        parts = rel.split("/") if rel else []
        names: dict[str, os.stat_result] = {}
        masked: set[str] = set()
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is None:
                if stop:
                    break
                continue
            path, st = hit
            if not stat.S_ISDIR(st.st_mode):
                break
            live, whiteouts, opaque = classify(scan(path))
            for name, est in live.items():
                if name not in names and name not in masked:
                    names[name] = est
            masked |= whiteouts  # hides the branches below, not this one
            if opaque:
                break
        return names


class AufsWhiteouts(Whiteouts):
    """Whiteout strategy for an aufs branch: OCI whiteouts are stored as the
    (same-named) aufs whiteout files.  As OCI wants, a whiteout hides lower
    content only: one naming something this tar itself makes is dropped (and a
    directory made by the tar then gets an opaque marker, since the lower one was
    deleted); :meth:`settle` does the same for entries made after their whiteout.
    ``lower_stat(rel)`` (optional) gives the metadata of implied parents."""

    create_parents = True

    def __init__(self, lower_stat: Callable[[str], os.stat_result | None] | None = None) -> None:
        self._lower_stat = lower_stat
        self.stored: list[str] = []

    @staticmethod
    def _replace_lower(dir_fd: int, name: str) -> None:
        try:
            st = os.lstat(name, dir_fd=dir_fd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            try:
                _touch(fd, WHITEOUT_OPAQUE)
            finally:
                os.close(fd)

    def whiteout(self, dir_fd: int, name: str, rel: str, unpacked: Set[str]) -> None:
        if rel in unpacked:
            self._replace_lower(dir_fd, name)
            return
        _touch(dir_fd, WHITEOUT_PREFIX + name)
        self.stored.append(rel)

    def opaque(self, dir_fd: int, rel: str, unpacked: Set[str]) -> None:
        _touch(dir_fd, WHITEOUT_OPAQUE)

    def implied_dir(self, rel: str) -> os.stat_result | None:
        return self._lower_stat(rel) if self._lower_stat else None

    def settle(self, root: str | os.PathLike[str]) -> None:
        """After extraction into ``root``: drop stored whiteouts whose name the tar
        made later (the entry replaces the lower one)."""
        for rel in self.stored:
            parent, _, name = rel.rpartition("/")
            fd = _open_dir(root, parent)
            if fd is None:
                continue
            try:
                try:
                    os.lstat(name, dir_fd=fd)
                except FileNotFoundError:
                    continue
                try:
                    os.unlink(WHITEOUT_PREFIX + name, dir_fd=fd)
                except FileNotFoundError:
                    pass
                self._replace_lower(fd, name)
            finally:
                os.close(fd)


def write_branch(top: str, writer: TarWriter) -> None:
    """Write branch ``top`` into ``writer`` as a layer tar: its entries, with a
    directory's opaque marker and whiteouts before its entries, and none of aufs'
    own metadata.  The branch may be a running container's: it is read by fds
    (:mod:`dockyard.driverkit.fdwalk`).  OSError is the caller's to translate."""

    def listed(rel: str, entries: Listing) -> Listing:
        live, whiteouts, opaque = classify(dict(entries))
        if opaque:
            writer.add_opaque(rel)
        for name in sorted(whiteouts - set(live)):
            writer.add_whiteout(rel_join(rel, name))
        return [(n, st) for n, st in entries if n in live]

    with Tree(top) as branch:
        for e in branch.walk(listed):
            writer.add_entry(e)


def branch_changes(top: str, low: BranchView) -> list[tuple[str, int]]:
    """Changes of branch ``top`` against ``low`` (the view of its ancestors),
    ``[(rel, kind)]`` with the same rules as the naive fallback, in one walk of the
    branch (by fds: it may be a running container's).  Per directory,
    ``decided`` says how to read it: ``None`` when everything below is new, else
    whether an opaque directory above hides the lower ones (then what they have
    and the branch does not is deleted).  OSError is the caller's to translate."""
    out: dict[str, int] = {}
    decided: dict[str, bool | None] = {"": False}
    path: list[tuple[str, bool | None]] = []

    def listed(rel: str, entries: Listing) -> Listing:
        live, whiteouts, opaque = classify(dict(entries))
        hidden = decided.pop(rel, None)
        if hidden is not None:
            hidden = hidden or opaque
            if hidden:
                gone = set(low.listdir(rel)) - set(live)
            else:
                gone = {n for n in whiteouts - set(live) if low.find(rel_join(rel, n)) is not None}
            out.update((rel_join(rel, n), DELETED) for n in gone)
        path.append((rel, hidden))
        return [(n, st) for n, st in entries if n in live]

    with Tree(top) as branch:
        for e in branch.walk(listed):
            parent = e.rel.rpartition("/")[0]
            while path[-1][0] != parent:
                path.pop()
            hidden = path[-1][1]
            is_dir = stat.S_ISDIR(e.st.st_mode)
            hit = low.find(e.rel) if hidden is not None else None
            if hit is None:
                out[e.rel] = ADDED
                if is_dir:
                    decided[e.rel] = None
                continue
            lpath, lst = hit
            if differs(lpath, lst, e, e.st):
                out[e.rel] = MODIFIED
            if is_dir:  # a directory that replaced a non-directory: its content is new
                decided[e.rel] = hidden if stat.S_ISDIR(lst.st_mode) else None
    return mark_parents(out)
