"""Writing layer tars: deterministic tar streams of trees, and tar-split.

:class:`TarWriter` writes entries of a directory tree as an uncompressed PAX tar;
:func:`write_tar` tars a whole tree, :func:`walk` lists one in the canonical order,
:func:`differs` is Docker's rule for "this entry changed" that decides what a diff
holds, :func:`scan_entries` lists where a tar file keeps its file contents.

**Determinism.**  The same entries added in the same order give the same bytes,
whatever file system or storage driver holds the tree: headers are normalised
(PAX format, empty ``uname``/``gname``, mtime in whole seconds rounded down, no
atime/ctime, device numbers only for devices, xattrs sorted by name and
``trusted.overlay.*``/``security.selinux`` left out), and a hard link points to
the first path of its inode *in this tar*.  Callers add entries in a fixed order
(:func:`walk` and the naive diff both sort by path), so a tree's diff has one
digest -- the property that lets a layer moved between drivers be checked.

**Tar-split.**  A layer's diff ID is the sha256 of the tar it was made from, whose
exact bytes no writer can reproduce from the extracted tree (another tool wrote
its headers).  As Docker does (``tar-split``), :func:`record_tar_split` keeps the
tar's bytes *except* the regular-file contents -- headers, padding, trailers --
and :class:`TarSplitReader` rebuilds the original stream from that record and the
files of the extracted layer, so the diff ID can be verified again at any time
(and the layer moved to another driver byte for byte).  The record is small:
about one compressed header per entry.  Contents the extracted tree cannot give
back (a file that a later entry of the same tar replaced) are kept inline.

Layout of a record: zlib of ``MAGIC`` then items ``R`` u32 n + n raw bytes,
``F`` u16 n + n name bytes + u64 size (that many bytes from file ``name`` of the
layer), ``I`` u64 n + n bytes (contents kept inline), and ``E`` (end).
"""

import hashlib
import io
import os
import stat
import struct
import tarfile
import tempfile
import zlib

from .errors import StorageError

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_XATTR_PREFIX = "trusted.overlay."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
PAX_XATTR = "SCHILY.xattr."
SKIP_XATTRS = ("security.selinux",)
CHUNK = 1 << 20
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def read_xattrs(path):
    """Xattrs of ``path`` (not following symlinks) worth putting in a layer tar,
    sorted by name."""
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith(OVERLAY_XATTR_PREFIX) or name in SKIP_XATTRS:
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
    return out


def tarinfo_of(name, path, st):
    """The tar header of ``path`` (``st`` its lstat) as entry ``name``: type, mode,
    owner, size, mtime in whole seconds, no user or group names, a link's target,
    a device's numbers.  ``None`` for a socket, which tar cannot hold."""
    ti = tarfile.TarInfo(name)
    ti.mode, ti.uid, ti.gid = stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid
    ti.mtime, ti.uname, ti.gname = st.st_mtime_ns // 1_000_000_000, "", ""
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFREG:
        ti.size = st.st_size
    elif fmt == stat.S_IFDIR:
        ti.type = tarfile.DIRTYPE
    elif fmt == stat.S_IFLNK:
        ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
    elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
        ti.type = tarfile.CHRTYPE if fmt == stat.S_IFCHR else tarfile.BLKTYPE
        ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif fmt == stat.S_IFIFO:
        ti.type = tarfile.FIFOTYPE
    else:
        return None
    return ti


class TarWriter:
    """Writes layer-tar entries, one path at a time, to a binary file object."""

    def __init__(self, fileobj):
        self.tar = tarfile.open(fileobj=fileobj, mode="w", format=tarfile.PAX_FORMAT)
        self._inodes = {}

    def add(self, root, rel, st=None):
        """Add ``root/rel`` as entry ``rel`` (not recursive); sockets are skipped."""
        path = os.path.join(root, rel)
        st = st or os.lstat(path)
        ti = tarinfo_of(rel, path, st)
        if ti is None:
            return
        if ti.type == tarfile.REGTYPE and st.st_nlink > 1:
            key = (st.st_dev, st.st_ino)
            if key in self._inodes:
                ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, self._inodes[key], 0
            else:
                self._inodes[key] = rel
        for name, value in read_xattrs(path).items():
            ti.pax_headers[PAX_XATTR + name] = value.decode("utf-8", "surrogateescape")
        if ti.type == tarfile.REGTYPE:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            with os.fdopen(fd, "rb") as f:
                self.tar.addfile(ti, f)
        else:
            self.tar.addfile(ti)

    def _marker(self, rel):
        ti = tarfile.TarInfo(rel)
        ti.mode, ti.mtime, ti.uname, ti.gname = 0o644, 0, "", ""
        self.tar.addfile(ti)

    def add_whiteout(self, rel):
        """Record the deletion of ``rel`` as ``dir/.wh.name``."""
        parent, _, base = rel.rpartition("/")
        self._marker(f"{parent}/{WHITEOUT_PREFIX}{base}" if parent else WHITEOUT_PREFIX + base)

    def add_opaque(self, rel_dir):
        """Record that directory ``rel_dir`` hides its lower content."""
        self._marker(f"{rel_dir}/{WHITEOUT_OPAQUE}" if rel_dir else WHITEOUT_OPAQUE)

    def close(self):
        self.tar.close()


def walk(root, rel=""):
    """Yield ``(rel, lstat)`` for everything below ``root/rel``, parents first,
    names sorted (the canonical order); symlinks are not followed."""
    base = os.path.join(root, rel) if rel else root
    with os.scandir(base) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        crel = f"{rel}/{e.name}" if rel else e.name
        st = e.stat(follow_symlinks=False)
        yield crel, st
        if stat.S_ISDIR(st.st_mode):
            yield from walk(root, crel)


def spool():
    """A temporary binary file for tars (memory first, disk past 16 MiB)."""
    return tempfile.SpooledTemporaryFile(max_size=16 << 20)


def write_tar(root, fileobj=None):
    """Write everything below ``root`` as a layer tar; return the file object
    rewound to 0 (a new spooled temporary file unless ``fileobj`` is given)."""
    out = fileobj if fileobj is not None else spool()
    writer = TarWriter(out)
    for rel, st in walk(root):
        writer.add(root, rel, st)
    writer.close()
    out.seek(0)
    return out


# ---------------------------------------------------------------- payload layout


def scan_entries(path):
    """The entries of the uncompressed layer tar file at ``path`` as a list of
    ``(clean name, data offset, size, is regular file, is directory)``, or
    ``None`` if it has GNU sparse members (whose archived bytes are not the file's).

    Reads headers only (payloads are skipped by seeking); refuses what
    :func:`extract` refuses about names and headers.
    """
    from .safetar import _TarInfo, clean_name

    out = []
    if os.path.getsize(path) == 0:
        return out
    try:
        with tarfile.open(path, "r:", tarinfo=_TarInfo) as tar:
            while (ti := tar.next()) is not None:
                tar.members.clear()
                if ti.issparse():
                    return None
                out.append((clean_name(ti.name), ti.offset_data, ti.size, ti.isreg(), ti.isdir()))
    except StorageError:
        raise
    except RecursionError:
        raise StorageError("refusing layer tar: too many chained extended headers") from None
    except (tarfile.TarError, EOFError, OSError) as exc:
        if isinstance(exc, tarfile.ReadError) and "empty file" in str(exc):
            return out
        raise StorageError(f"corrupt layer tar: {exc}") from None
    return out


# ---------------------------------------------------------------- comparing


def _same_time(a_ns, b_ns):
    """Docker's ``sameFsTime``: equal, or equal seconds with one side truncated."""
    if a_ns == b_ns:
        return True
    return a_ns // 10**9 == b_ns // 10**9 and (a_ns % 10**9 == 0 or b_ns % 10**9 == 0)


def differs(old_path, old, new_path, new):
    """Docker's rule for a changed entry: mode, owner, device or (non-directories)
    size, mtime, symlink target or ``security.capability`` differ."""
    if (old.st_mode, old.st_uid, old.st_gid, old.st_rdev) != (new.st_mode, new.st_uid, new.st_gid, new.st_rdev):
        return True
    if stat.S_ISDIR(new.st_mode):
        return False
    if old.st_size != new.st_size or not _same_time(old.st_mtime_ns, new.st_mtime_ns):
        return True
    if stat.S_ISLNK(new.st_mode):
        return os.readlink(old_path) != os.readlink(new_path)
    if stat.S_ISREG(new.st_mode):
        return _capability(old_path) != _capability(new_path)
    return False


def _capability(path):
    try:
        return os.getxattr(path, "security.capability", follow_symlinks=False)
    except OSError:
        return None


# ---------------------------------------------------------------- tar-split

MAGIC = b"dockyard-tar-split/1\n"
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")


def _inline_set(entries):
    """Indexes of regular entries whose content the extracted tree will not hold:
    replaced later by an entry of the same name or under a later non-directory
    ancestor, or named like a whiteout (never extracted as a file)."""
    last, nondir = {}, {}
    for i, (name, _off, _size, _reg, is_dir) in enumerate(entries):
        last[name] = i
        if not is_dir:
            nondir[name] = i
    out = set()
    for i, (name, _off, size, reg, _dir) in enumerate(entries):
        if not reg or not size:
            continue
        if last[name] > i or name.rpartition("/")[2].startswith(WHITEOUT_PREFIX):
            out.add(i)
            continue
        parts = name.split("/")
        for depth in range(1, len(parts)):
            if nondir.get("/".join(parts[:depth]), -1) > i:
                out.add(i)
                break
    return out


class _Out:
    def __init__(self):
        self.buf = io.BytesIO()
        self.z = zlib.compressobj(6)

    def put(self, data):
        self.buf.write(self.z.compress(data))

    def raw(self, data):
        for i in range(0, len(data), CHUNK):
            part = data[i:i + CHUNK]
            self.put(b"R" + struct.pack(">I", len(part)) + part)

    def done(self):
        self.put(b"E")
        self.buf.write(self.z.flush())
        return self.buf.getvalue()


def _read_exact(fh, n, digest, what):
    data = fh.read(n)
    if len(data) != n:
        raise StorageError(f"corrupt layer tar: truncated {what}")
    digest.update(data)
    return data


def record_tar_split(path):
    """Read the uncompressed layer tar at ``path``; return ``(diff_id, record)``.

    ``diff_id`` is ``sha256:`` + the hex digest of the file; ``record`` the
    tar-split bytes, or ``None`` when no record can be made (a compressed file,
    GNU sparse members).  Refuses unsafe or corrupt tars like extraction does
    (:class:`~dockyard.errors.StorageError`), in memory bounded by the number of
    entries, not their size.
    """
    with open(path, "rb") as fh:
        head = fh.read(6)
    entries = None if head.startswith(_COMPRESSED) else scan_entries(path)
    digest = hashlib.sha256()
    if entries is None:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return "sha256:" + digest.hexdigest(), None
    inline = _inline_set(entries)
    out = _Out()
    out.put(MAGIC)
    pos = 0
    with open(path, "rb") as fh:
        for i, (name, off, size, reg, _dir) in enumerate(entries):
            if not reg or not size:
                continue
            while pos < off:
                out.raw(_read_exact(fh, min(CHUNK, off - pos), digest, "header"))
                pos = min(off, pos + CHUNK)
            if i in inline:
                out.put(b"I" + struct.pack(">Q", size))
            else:
                bname = name.encode("utf-8", "surrogateescape")
                out.put(b"F" + struct.pack(">H", len(bname)) + bname + struct.pack(">Q", size))
            left = size
            while left:
                data = _read_exact(fh, min(CHUNK, left), digest, f"content of {name!r}")
                if i in inline:
                    out.put(data)
                left -= len(data)
            pos += size
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            out.raw(chunk)
    return "sha256:" + digest.hexdigest(), out.done()


class _Inflater:
    """Exact reads from a zlib-compressed record, in bounded memory."""

    def __init__(self, record):
        self.src = memoryview(record)
        self.pos = 0
        self.z = zlib.decompressobj()
        self.buf = bytearray()

    def read(self, n):
        while len(self.buf) < n:
            want = n - len(self.buf)
            if self.z.unconsumed_tail:
                data = self.z.decompress(self.z.unconsumed_tail, max(want, 65536))
            elif self.pos < len(self.src):
                chunk = self.src[self.pos:self.pos + 65536]
                self.pos += len(chunk)
                data = self.z.decompress(chunk, max(want, 65536))
            else:
                raise StorageError("corrupt tar-split record: truncated")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _open_in(root_fd, rel):
    """Open regular file ``rel`` below ``root_fd`` without following any symlink."""
    parts = rel.split("/")
    fd = os.dup(root_fd)
    try:
        for part in parts[:-1]:
            new = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = new
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)


class TarSplitReader:
    """A readable stream of the original layer tar, rebuilt from a tar-split
    ``record`` and the layer's tree at ``root``; :attr:`diff_id` once read to the
    end.  Raises :class:`~dockyard.errors.StorageError` when the tree lacks a file
    the tar held (or its size differs); other content differences show in the
    digest.  Never follows a symlink of the tree."""

    def __init__(self, record, root):
        self._in = _Inflater(record)
        if self._in.read(len(MAGIC)) != MAGIC:
            raise StorageError("corrupt tar-split record: bad magic")
        self._root = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._items = self._generate()
        self._buf = bytearray()
        self._digest = hashlib.sha256()
        self._eof = False
        self.size = 0

    def _generate(self):
        while True:
            kind = self._in.read(1)
            if kind == b"R":
                yield self._in.read(struct.unpack(">I", self._in.read(4))[0])
            elif kind == b"I":
                left = struct.unpack(">Q", self._in.read(8))[0]
                while left:
                    data = self._in.read(min(CHUNK, left))
                    left -= len(data)
                    yield data
            elif kind == b"F":
                name = self._in.read(struct.unpack(">H", self._in.read(2))[0]).decode("utf-8", "surrogateescape")
                size = struct.unpack(">Q", self._in.read(8))[0]
                yield from self._file(name, size)
            elif kind == b"E":
                return
            else:
                raise StorageError(f"corrupt tar-split record: unknown item {kind!r}")

    def _file(self, name, size):
        try:
            fd = _open_in(self._root, name)
        except OSError as exc:
            raise StorageError(f"layer content differs from its tar: {name!r}: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size != size:
                raise StorageError(f"layer content differs from its tar: {name!r} is not the "
                                   f"{size}-byte file the tar held")
            left = size
            while left:
                data = f.read(min(CHUNK, left))
                if not data:
                    raise StorageError(f"layer content differs from its tar: {name!r} shrank while read")
                left -= len(data)
                yield data

    def read(self, n=-1):
        while not self._eof and (n is None or n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._items)
            except StopIteration:
                self._eof = True
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = bytes(self._buf), bytearray()
        else:
            out = bytes(self._buf[:n])
            del self._buf[:n]
        self._digest.update(out)
        self.size += len(out)
        return out

    def readable(self):
        return True

    @property
    def diff_id(self):
        """``sha256:...`` of everything read (the diff ID once read to the end)."""
        return "sha256:" + self._digest.hexdigest()

    def drain(self):
        """Read to the end; return :attr:`diff_id`."""
        while self.read(CHUNK):
            pass
        return self.diff_id

    def close(self):
        if self._root is not None:
            os.close(self._root)
            self._root = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
