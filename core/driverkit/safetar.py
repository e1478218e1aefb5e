"""Safe extraction of OCI/Docker layer tars, and writing layer tars of directories.

:func:`extract` applies a layer tar stream (plain, gzip, bzip2 or xz, detected
automatically, read strictly sequentially) to a directory:

* no entry may leave the destination: absolute names and ``..`` components are
  refused, parent directories are opened one component at a time with
  ``O_NOFOLLOW`` (a parent that is a symlink is refused, so a symlink written by
  the layer -- or present below it -- is never followed), and hard links must name
  a path inside the destination;
* modes, owners (when running as root), mtimes, symlinks, hard links, devices,
  fifos and ``SCHILY.xattr.*`` PAX xattrs are preserved (``trusted.overlay.*``
  xattrs are never taken from a tar);
* OCI whiteouts are handed to a :class:`Whiteouts` strategy: the default deletes
  what they name, :class:`OverlayWhiteouts` turns them into overlayfs whiteouts.

Anything unsafe raises :class:`UnsafeTarError`, anything corrupt (truncated or
undecodable stream, a header that is neither valid nor the end of the archive)
:class:`~dockyard.errors.StorageError`, both naming the entry.  Memory stays
bounded whatever the tar holds: an extended header (PAX, GNU long name, sparse
map) larger than :data:`MAX_HEADER` is refused before it is read, and entries are
not accumulated.

The writing half (``TarWriter``, ``write_tar``, ``walk``, ``spool``, ``differs``:
Docker's rule for "this file changed") lives in :mod:`dockyard.driverkit.tarwriter` and is
re-exported here; tar-split, which reads tars with this module's rules, is
:mod:`dockyard.driverkit.tarsplit`.
"""

from __future__ import annotations

import errno
import lzma
import os
import shutil
import stat
import tarfile
import zlib
from typing import IO, TYPE_CHECKING, Protocol

from dockyard.errors import StorageError
from .tarwriter import (CHUNK, OVERLAY_OPAQUE_XATTR, OVERLAY_XATTR_PREFIX, PAX_XATTR,  # re-exported
                        SKIP_XATTRS, WHITEOUT_META_PREFIX, WHITEOUT_OPAQUE, WHITEOUT_PREFIX,
                        TarWriter, differs, read_xattrs, spool, walk, write_tar)

if TYPE_CHECKING:
    from collections.abc import Callable, Set
    from typing import Self

    from _typeshed import StrPath

__all__ = ["CHUNK", "MAX_HEADER", "OVERLAY_OPAQUE_XATTR", "OVERLAY_XATTR_PREFIX", "PAX_XATTR", "WHITEOUT_META_PREFIX",
           "WHITEOUT_OPAQUE", "WHITEOUT_PREFIX", "OverlayWhiteouts", "TarWriter", "UnsafeTarError",
           "Whiteouts", "clean_name", "differs", "extract", "is_whiteout_dev", "read_xattrs",
           "spool", "walk", "write_tar"]
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_SKIP_XATTRS = SKIP_XATTRS
#: the largest extended header (PAX records, GNU long name/link, sparse map) accepted
MAX_HEADER = 1 << 20
_EXTENDED = {tarfile.XHDTYPE: "PAX", tarfile.XGLTYPE: "global PAX", tarfile.SOLARIS_XHDTYPE: "PAX",
             tarfile.GNUTYPE_LONGNAME: "GNU long name", tarfile.GNUTYPE_LONGLINK: "GNU long link"}


class UnsafeTarError(StorageError):
    """A tar entry would write outside the destination or through a symlink.
    Every tar extracted comes from a client or a registry, so the API answers
    400: the input is refused, nothing failed."""

    status = 400

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"unsafe layer tar entry {name!r}: {reason}")
        self.name, self.reason = name, reason


def clean_name(name: str) -> str:
    """Return ``name`` as a relative ``a/b/c`` path ('' for the root) or raise."""
    if "\x00" in name:
        raise UnsafeTarError(name, "NUL in name")
    if name.startswith("/"):
        raise UnsafeTarError(name, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeTarError(name, "'..' component")
    return "/".join(parts)


def is_whiteout_dev(st: os.stat_result) -> bool:
    """``True`` for an overlayfs whiteout: a 0/0 character device."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _remove(dir_fd: int, name: str) -> None:
    """Remove ``name`` (any type; directories recursively) inside ``dir_fd``."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


class Whiteouts:
    """Whiteout strategy for a tree that *contains* the lower content (vfs, naive):
    ``.wh.NAME`` deletes NAME, an opaque marker deletes whatever of the directory
    this layer did not itself unpack (OCI: whiteouts apply to lower layers only)."""

    #: make missing parent directories of a whiteout (else: nothing to delete)
    create_parents = False

    def whiteout(self, dir_fd: int, name: str, rel: str, unpacked: Set[str]) -> None:
        if rel not in unpacked:
            _remove(dir_fd, name)

    def opaque(self, dir_fd: int, rel: str, unpacked: Set[str]) -> None:
        for name in os.listdir(dir_fd):
            child = f"{rel}/{name}" if rel else name
            if child not in unpacked:
                _remove(dir_fd, name)
                continue
            st = os.lstat(name, dir_fd=dir_fd)
            if stat.S_ISDIR(st.st_mode):  # kept (unpacked or ancestor of unpacked)
                fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
                try:
                    self.opaque(fd, child, unpacked)
                finally:
                    os.close(fd)

    def implied_dir(self, rel: str) -> os.stat_result | None:
        """``os.stat_result`` to copy onto a parent directory the tar does not
        list, or ``None`` for root:root 0755."""
        return None


class OverlayWhiteouts(Whiteouts):
    """Whiteout strategy for an overlayfs upper directory: ``.wh.NAME`` becomes a
    0/0 character device, an opaque marker the ``trusted.overlay.opaque=y`` xattr.
    ``lower_stat(rel)`` (optional) gives the metadata of implied parents."""

    create_parents = True

    def __init__(self, lower_stat: Callable[[str], os.stat_result | None] | None = None) -> None:
        self._lower_stat = lower_stat

    def whiteout(self, dir_fd: int, name: str, rel: str, unpacked: Set[str]) -> None:
        if rel in unpacked:
            return
        _remove(dir_fd, name)
        os.mknod(name, stat.S_IFCHR | 0o000, 0, dir_fd=dir_fd)

    def opaque(self, dir_fd: int, rel: str, unpacked: Set[str]) -> None:
        os.setxattr(dir_fd, OVERLAY_OPAQUE_XATTR, b"y")

    def implied_dir(self, rel: str) -> os.stat_result | None:
        return self._lower_stat(rel) if self._lower_stat else None


class _TarInfo(tarfile.TarInfo):
    """tarfile's header reader, made strict and bounded: a truncated or invalid
    header is an error (tarfile would silently end the archive there), and an
    extended header larger than :data:`MAX_HEADER` is refused before being read."""

    @classmethod
    def fromtarfile(cls, tarfile_: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(tarfile_)
        except tarfile.TruncatedHeaderError as exc:  # type: ignore[attr-defined]  # private, not in typeshed
            raise StorageError(f"corrupt layer tar: truncated header ({exc})") from None
        except tarfile.InvalidHeaderError as exc:  # type: ignore[attr-defined]  # private, not in typeshed
            at = tarfile_.fileobj.tell() - tarfile.BLOCKSIZE
            raise StorageError(f"corrupt layer tar: invalid header at byte {max(at, 0)} ({exc})") from None

    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        kind = _EXTENDED.get(self.type)
        if kind is not None:
            size = self.size
            if self.type == tarfile.XGLTYPE:  # global records accumulate
                size += sum(len(k) + len(v) for k, v in tarfile_.pax_headers.items())
            if size > MAX_HEADER:
                raise StorageError(f"refusing layer tar: a {kind} header of {self.size} bytes at byte "
                                   f"{self.offset} (the limit is {MAX_HEADER})")
        return super()._proc_member(tarfile_)  # type: ignore[misc]  # private, not in typeshed

    def _proc_sparse(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self._sparse_structs[1]:  # type: ignore[attr-defined]  # extension blocks follow: count them as they come
            raw, limit = tarfile_.fileobj, MAX_HEADER // tarfile.BLOCKSIZE
            tarfile_.fileobj = _Limited(raw, limit, self.offset)  # type: ignore[assignment]  # reads only
            try:
                return super()._proc_sparse(tarfile_)  # type: ignore[misc]  # private, not in typeshed
            finally:
                tarfile_.fileobj = raw
        return super()._proc_sparse(tarfile_)  # type: ignore[misc]  # private, not in typeshed


class _Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...
    def tell(self) -> int: ...


class _Limited:
    """Passes reads through, refusing more than ``blocks`` block reads (the
    extension blocks of a GNU sparse header)."""

    def __init__(self, raw: _Reader, blocks: int, offset: int) -> None:
        self.raw, self.left, self.offset = raw, blocks, offset

    def read(self, n: int) -> bytes:
        self.left -= 1
        if self.left < 0:
            raise StorageError(f"refusing layer tar: a GNU sparse map larger than {MAX_HEADER} bytes "
                               f"at byte {self.offset}")
        return self.raw.read(n)

    def tell(self) -> int:
        return self.raw.tell()


class _Counting:
    def __init__(self, raw: _Reader) -> None:
        self.raw, self.count = raw, 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return data


def _ns(mtime: float) -> int:
    return int(mtime) * 1_000_000_000 if isinstance(mtime, int) else int(round(mtime * 1e9))


class _Extractor:
    def __init__(self, dest: StrPath, whiteouts: Whiteouts, same_owner: bool | None) -> None:
        self.root = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.wh = whiteouts
        self.same_owner = os.geteuid() == 0 if same_owner is None else same_owner
        self.unpacked: set[str] = set()
        self.dirs: dict[str, tarfile.TarInfo] = {}  # rel -> TarInfo, metadata applied at the end
        self.size = 0

    def close(self) -> None:
        os.close(self.root)

    def open_dir(self, rel: str, entry: str, create: bool) -> int | None:
        """Open directory ``rel`` without following symlinks; ``None`` if missing
        (or not a directory) and not ``create``."""
        fd = os.dup(self.root)
        done: list[str] = []
        try:
            for part in rel.split("/") if rel else ():
                done.append(part)
                try:
                    new = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        os.close(fd)
                        return None
                    self._implied(fd, part, "/".join(done))
                    new = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    st = os.lstat(part, dir_fd=fd)
                    if stat.S_ISLNK(st.st_mode):
                        raise UnsafeTarError(entry, f"parent {'/'.join(done)!r} is a symlink") from None
                    if not create:
                        os.close(fd)
                        return None
                    raise UnsafeTarError(entry, f"parent {'/'.join(done)!r} is not a directory") from None
                os.close(fd)
                fd = new
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _implied(self, fd: int, part: str, rel: str) -> None:
        os.mkdir(part, 0o755, dir_fd=fd)
        self.unpacked.add(rel)
        st = self.wh.implied_dir(rel)
        if st is not None and stat.S_ISDIR(st.st_mode):
            if self.same_owner:
                os.chown(part, st.st_uid, st.st_gid, dir_fd=fd, follow_symlinks=False)
            os.chmod(part, stat.S_IMODE(st.st_mode), dir_fd=fd)
            os.utime(part, ns=(st.st_mtime_ns, st.st_mtime_ns), dir_fd=fd, follow_symlinks=False)

    def run(self, stream: IO[bytes]) -> int:
        counting = _Counting(stream)
        try:
            # (typeshed wants a whole file object; a stream is only read)
            tar = tarfile.open(fileobj=counting, mode="r|*", tarinfo=_TarInfo)  # type: ignore[call-overload]
        except tarfile.ReadError as exc:
            if counting.count == 0:
                return 0  # a zero-byte stream: an empty layer
            raise StorageError(f"corrupt layer tar: {exc}") from None
        except RecursionError:
            raise StorageError("refusing layer tar: too many chained extended headers") from None
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
            raise StorageError(f"corrupt layer tar: {exc}") from None
        name = "<start>"
        try:
            with tar:
                while (ti := tar.next()) is not None:
                    tar.members.clear()  # tarfile keeps every member: memory would grow
                    name = ti.name
                    self.entry(tar, ti)
            self.finish()
            while counting.read(CHUNK):  # drain padding so callers can digest it all
                pass
        except StorageError:
            raise
        except RecursionError:
            raise StorageError(f"refusing layer tar: too many chained extended headers after {name!r}") from None
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise StorageError(f"corrupt layer tar at entry {name!r}: {exc}") from None
        except OSError as exc:
            raise StorageError(f"extracting layer tar entry {name!r}: {exc}") from None
        return self.size

    def _mark(self, rel: str) -> None:
        while rel and rel not in self.unpacked:
            self.unpacked.add(rel)
            rel = rel.rpartition("/")[0]

    def entry(self, tar: tarfile.TarFile, ti: tarfile.TarInfo) -> None:
        rel = clean_name(ti.name)
        parent, _, base = rel.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            return self.whiteout(ti.name, parent, base)
        if not rel:
            if not ti.isdir():
                raise UnsafeTarError(ti.name, "the root must be a directory")
            self.dirs[rel] = ti
            return
        dfd = self.open_dir(parent, ti.name, create=True)
        assert dfd is not None  # made, or open_dir raised
        try:
            self.create(tar, ti, dfd, rel, base)
        finally:
            os.close(dfd)
        self._mark(rel)

    def whiteout(self, name: str, parent: str, base: str) -> None:
        if base.startswith(WHITEOUT_META_PREFIX) and base != WHITEOUT_OPAQUE:
            return  # aufs metadata (.wh..wh.plnk etc.): nothing to apply
        target = base[len(WHITEOUT_PREFIX):]
        if base != WHITEOUT_OPAQUE and target in ("", ".", ".."):
            raise UnsafeTarError(name, "bad whiteout name")
        dfd = self.open_dir(parent, name, create=self.wh.create_parents)
        if dfd is None:
            return  # nothing there to hide
        try:
            if base == WHITEOUT_OPAQUE:
                self.wh.opaque(dfd, parent, self.unpacked)
            else:
                self.wh.whiteout(dfd, target, f"{parent}/{target}" if parent else target, self.unpacked)
        finally:
            os.close(dfd)

    def create(self, tar: tarfile.TarFile, ti: tarfile.TarInfo, dfd: int, rel: str, base: str) -> None:
        try:
            old = os.lstat(base, dir_fd=dfd)
        except FileNotFoundError:
            old = None
        if ti.isdir():
            if old is not None and not stat.S_ISDIR(old.st_mode):
                os.unlink(base, dir_fd=dfd)
                old = None
            if old is None:
                os.mkdir(base, 0o700, dir_fd=dfd)
            self.dirs[rel] = ti
            return
        if ti.islnk():  # validate before removing anything
            try:
                target = clean_name(ti.linkname)
            except UnsafeTarError as exc:
                raise UnsafeTarError(ti.name, f"hard link target {ti.linkname!r}: {exc.reason}") from None
            if not target or target == rel:
                raise UnsafeTarError(ti.name, f"bad hard link target {ti.linkname!r}")
        if old is not None:
            _remove(dfd, base)
            self.dirs.pop(rel, None)
        mode = ti.mode & 0o7777
        if ti.isreg():
            fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                src = tar.extractfile(ti)
                assert src is not None  # a regular file's
                left = ti.size
                while left > 0:
                    chunk = src.read(min(CHUNK, left))
                    if not chunk:
                        raise StorageError(f"corrupt layer tar: {ti.name!r} is truncated")
                    _write_all(fd, chunk)
                    left -= len(chunk)
                self.size += ti.size
                if self.same_owner:
                    os.fchown(fd, ti.uid, ti.gid)
                os.fchmod(fd, mode)
                self._xattrs(ti, fd)
                os.utime(fd, ns=(_ns(ti.mtime),) * 2)
            finally:
                os.close(fd)
            return
        if ti.islnk():
            tparent, _, tbase = target.rpartition("/")
            tfd = self.open_dir(tparent, ti.name, create=False)
            if tfd is None:
                raise StorageError(f"layer tar entry {ti.name!r}: hard link target {ti.linkname!r} missing")
            try:
                os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                raise StorageError(f"layer tar entry {ti.name!r}: hard link target {ti.linkname!r} missing") from None
            finally:
                os.close(tfd)
            return
        if ti.issym():
            os.symlink(ti.linkname, base, dir_fd=dfd)
        elif ti.ischr() or ti.isblk() or ti.isfifo():
            kind = stat.S_IFCHR if ti.ischr() else stat.S_IFBLK if ti.isblk() else stat.S_IFIFO
            try:
                os.mknod(base, kind | mode, os.makedev(ti.devmajor, ti.devminor), dir_fd=dfd)
            except PermissionError:
                if os.geteuid() == 0:
                    raise
                return  # unprivileged: devices cannot be made; skip like rootless Docker
            os.chmod(base, mode, dir_fd=dfd)
        else:
            raise StorageError(f"layer tar entry {ti.name!r}: unsupported type {ti.type!r}")
        if self.same_owner:
            os.chown(base, ti.uid, ti.gid, dir_fd=dfd, follow_symlinks=False)
        self._xattrs(ti, f"/proc/self/fd/{dfd}/{base}")
        os.utime(base, ns=(_ns(ti.mtime),) * 2, dir_fd=dfd, follow_symlinks=False)

    def _xattrs(self, ti: tarfile.TarInfo, target: int | str) -> None:
        for key, value in ti.pax_headers.items():
            if not key.startswith(PAX_XATTR):
                continue
            name = key[len(PAX_XATTR):]
            if name.startswith(OVERLAY_XATTR_PREFIX) or name in _SKIP_XATTRS:
                continue
            data = value.encode("utf-8", "surrogateescape")
            try:
                if isinstance(target, int):
                    os.setxattr(target, name, data)
                else:
                    os.setxattr(target, name, data, follow_symlinks=False)
            except OSError as exc:  # best effort: the file system may refuse
                if exc.errno not in (errno.ENOTSUP, errno.EPERM, errno.EINVAL, errno.EACCES, errno.ERANGE):
                    raise

    def finish(self) -> None:
        for rel, ti in self.dirs.items():
            fd = self.open_dir(rel, ti.name, create=False)
            if fd is None:
                continue
            try:
                if self.same_owner:
                    os.fchown(fd, ti.uid, ti.gid)
                os.fchmod(fd, ti.mode & 0o7777)
                self._xattrs(ti, fd)
                os.utime(fd, ns=(_ns(ti.mtime),) * 2)
            finally:
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def extract(stream: IO[bytes], dest: StrPath, *, whiteouts: Whiteouts | None = None,
            same_owner: bool | None = None) -> int:
    """Apply the layer tar read from ``stream`` to directory ``dest``.

    :param whiteouts: a :class:`Whiteouts` strategy (default: delete).
    :param same_owner: restore uid/gid (default: when running as root).
    :return: the number of bytes of regular-file content written.
    :raises UnsafeTarError, StorageError: see the module doc.  What was extracted
        before the error stays; nothing is written outside ``dest``.
    """
    try:
        ex = _Extractor(dest, whiteouts or Whiteouts(), same_owner)
    except OSError as exc:
        raise StorageError(f"cannot extract a layer tar into {dest}: {exc}") from exc
    try:
        return ex.run(stream)
    finally:
        ex.close()
