"""Writing layer tars: deterministic tar streams of trees.

:class:`TarWriter` writes entries of a directory tree as an uncompressed PAX tar;
:func:`write_tar` tars a whole tree, :func:`walk` lists one in the canonical order,
:func:`differs` is Docker's rule for "this entry changed" that decides what a diff
holds.
Trees are read through :mod:`dockyard.driverkit.fdwalk` (every component relative to a
directory fd), as the tree may be a running container's.

**Determinism.**  The same entries added in the same order give the same bytes,
whatever file system or storage driver holds the tree: headers are normalised
(PAX format, empty ``uname``/``gname``, mtime in whole seconds rounded down, no
atime/ctime, device numbers only for devices, xattrs sorted by name and
``trusted.overlay.*``/``security.selinux`` left out), and a hard link points to
the first path of its inode *in this tar*.  Callers add entries in a fixed order
(:func:`walk` and the naive diff both sort by path), so a tree's diff has one
digest -- the property that lets a layer moved between drivers be checked.

Tar-split (the record that rebuilds a layer's exact tar) is :mod:`dockyard.driverkit.tarsplit`.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from typing import IO, TYPE_CHECKING

from . import fdwalk

if TYPE_CHECKING:
    from collections.abc import Iterator

    from _typeshed import StrPath

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
SKIP_XATTRS = ("security.selinux",)
CHUNK = 1 << 20


def _skip_xattr(name: str) -> bool:
    return name.startswith(OVERLAY_XATTR_PREFIX) or name in SKIP_XATTRS


def read_xattrs(path: int | StrPath) -> dict[str, bytes]:
    """Xattrs of ``path`` (an fd, or a path whose last component is not
    followed) worth putting in a layer tar, sorted by name."""
    return fdwalk.read_xattrs(path, _skip_xattr)


def tarinfo_of(name: str, path: StrPath | None, st: os.stat_result,
              linkname: str | None = None) -> tarfile.TarInfo | None:
    """The tar header of ``path`` (``st`` its lstat) as entry ``name``: type, mode,
    owner, size, mtime in whole seconds, no user or group names, a link's target
    (``linkname``, else read from ``path``), a device's numbers.  ``None`` for a
    socket, which tar cannot hold."""
    ti = tarfile.TarInfo(name)
    ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    ti.mtime, ti.uname, ti.gname = st.st_mtime_ns // 1_000_000_000, "", ""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        ti.size = st.st_size
    elif fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        if linkname is None:
            if path is None:
                raise TypeError("tarinfo_of: a symlink needs its path or its linkname")
            linkname = os.readlink(path)
        ti.type, ti.linkname = tarfile.SYMTYPE, linkname
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    else:
        return None
    return ti


class TarWriter:
    """Writes layer-tar entries, one at a time, to a binary file object.

    Entries come from a :class:`dockyard.driverkit.fdwalk.Tree` (:meth:`add_entry`,
    :meth:`add_tree`): read relative to directory fds, never through a path
    string, so a tree that changes meanwhile (a running container's) cannot
    make it read anything outside the tree."""

    def __init__(self, fileobj: IO[bytes]) -> None:
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)
        self._inodes: dict[tuple[int, int], str] = {}

    def add_entry(self, entry: fdwalk.Entry, name: str | None = None) -> bool:
        """Add ``entry`` (not recursive) as ``name`` (default: its ``rel``).
        Sockets are skipped, and so is an entry that is no longer what was
        listed (gone, or swapped for another file): ``False`` then."""
        st = entry.st
        name = entry.rel if name is None else name
        fmt = stat.S_IFMT(st.st_mode)
        if fmt == stat.S_IFSOCK:
            return False
        linkname = fd = None
        if fmt == stat.S_IFLNK:
            try:
                linkname = entry.readlink()
            except OSError:
                return False
        elif fmt == stat.S_IFREG:
            fd = entry.open()
            if fd is None:
                return False
        try:
            ti = tarinfo_of(name, None, st, linkname)
            if ti is None:  # a socket, refused above
                return False
            if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
                key = (st.st_dev, st.st_ino)
                if key in self._inodes:
                    ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self._inodes[key], 0
                else:
                    self._inodes[key] = name
            xattrs = {PAX_XATTR + xname: value.decode("utf-8", "surrogateescape")
                      for xname, value in entry.xattrs(fd, _skip_xattr).items()}
            if xattrs:
                ti.pax_headers = {**ti.pax_headers, **xattrs}
            if ti.type == tarfile.REGTYPE and fd is not None:  # fd: the regular file opened above
                with os.fdopen(fd, "rb") as f:
                    fd = None
                    self.tar.addfile(ti, f)
            else:
                self.tar.addfile(ti)
        finally:
            if fd is not None:
                os.close(fd)
        return True

    def add_tree(self, tree: fdwalk.Tree) -> None:
        """Add everything below ``tree``'s top, in the canonical order."""
        for entry in tree.walk():
            self.add_entry(entry)

    def add(self, root: StrPath, rel: str, st: os.stat_result | None = None) -> bool:
        """Add ``root/rel`` as entry ``rel`` (not recursive), ``rel`` resolved
        below ``root`` without following any symlink; ``st`` is ignored (the
        entry is looked at now)."""
        with fdwalk.Tree(root) as tree:
            entry = tree.entry(rel)
            return entry is not None and self.add_entry(entry)

    def _marker(self, rel: str) -> None:
        ti = tarfile.TarInfo(rel)
        ti.mode, ti.mtime, ti.uname, ti.gname = 0o644, 0, "", ""
        self.tar.addfile(ti)

    def add_whiteout(self, rel: str) -> None:
        """Record the deletion of ``rel`` as ``dir/.wh.name``."""
        parent, _, base = rel.rpartition("/")
        self._marker(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)

    def add_opaque(self, rel_dir: str) -> None:
        """Record that directory ``rel_dir`` hides its lower content."""
        self._marker(f"{rel_dir}/{WHITEOUT_OPAQUE}" if rel_dir else WHITEOUT_OPAQUE)

    def close(self) -> None:
        self.tar.close()


def walk(root: int | StrPath) -> Iterator[tuple[str, os.stat_result]]:
    """Yield ``(rel, lstat)`` for everything below ``root``, parents first, names
    sorted (the canonical order); every component is opened relative to its
    parent's fd (:class:`dockyard.driverkit.fdwalk.Tree`), symlinks are not followed."""
    with fdwalk.Tree(root) as tree:
        for entry in tree.walk():
            yield entry.rel, entry.st


def spool() -> tempfile.SpooledTemporaryFile[bytes]:
    """A temporary binary file for tars (memory first, disk past 16 MiB)."""
    return tempfile.SpooledTemporaryFile(max_size=16 << 20)


def write_tar(root: StrPath | fdwalk.Tree, fileobj: IO[bytes] | None = None) -> IO[bytes]:
    """Write everything below ``root`` (a path or a :class:`~dockyard.driverkit.fdwalk.Tree`)
    as a layer tar; return the file object rewound to 0 (a new spooled
    temporary file unless ``fileobj`` is given)."""
    out = fileobj if fileobj is not None else spool()
    writer = TarWriter(out)
    if isinstance(root, fdwalk.Tree):
        writer.add_tree(root)
    else:
        with fdwalk.Tree(root) as tree:
            writer.add_tree(tree)
    writer.close()
    out.seek(0)
    return out


# ---------------------------------------------------------------- comparing


def _same_time(a_ns: int, b_ns: int) -> bool:
    """Docker's ``sameFsTime``: equal, or equal seconds with one side truncated."""
    if a_ns == b_ns:
        return True
    return a_ns // 10**9 == b_ns // 10**9 and (a_ns % 10**9 == 0 or b_ns % 10**9 == 0)


def differs(old_ref: fdwalk.Entry | StrPath, old: os.stat_result, new_ref: fdwalk.Entry | StrPath,
            new: os.stat_result) -> bool:
    """Docker's rule for a changed entry: mode, owner, device or (non-directories)
    size, mtime, symlink target or ``security.capability`` differ.  ``*_ref``
    is where to read a link or xattr: a :class:`~dockyard.driverkit.fdwalk.Entry` (of a
    tree the container controls) or a path (of a trusted one)."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False
    if old.st_size != new.st_size or not _same_time(old.st_mtime_ns, new.st_mtime_ns):
        return True
    if stat.S_ISLNK(new.st_mode):
        return _readlink(old_ref) != _readlink(new_ref)
    if stat.S_ISREG(new.st_mode):
        return _capability(old_ref) != _capability(new_ref)
    return False


def _readlink(ref: fdwalk.Entry | StrPath) -> str | None:
    try:
        return ref.readlink() if isinstance(ref, fdwalk.Entry) else os.readlink(ref)
    except OSError:
        return None  # no longer a link (swapped meanwhile): it has no target


def _capability(ref: fdwalk.Entry | StrPath) -> bytes | None:
    if isinstance(ref, fdwalk.Entry):
        return ref.xattr("security.capability")
    try:
        return os.getxattr(ref, "security.capability", follow_symlinks=False)
    except OSError:
        return None
