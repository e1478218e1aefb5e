"""``docker cp``'s engine half: stat, read (as a tar) and write (from a tar) paths
inside a container's file system, running or not; and ``docker export``, the
whole file system as a tar.

Where the file system is, running or stopped, and how a stopped container's
mounts are reached: :mod:`.containerfs`.

Paths are resolved as moby's ``container.ResolvePath`` does: the path is taken as
absolute inside the container, its directory is resolved with every symlink
followed *in the scope of the container's root* (an absolute link target or
``..`` never leaves it: :func:`resolve_in_root`), and the last element is kept
as it is (so a symlink is copied as a symlink) unless the path ends in ``/`` or
``/.``.  Extraction resolves the last element too (a tar may be put into a link to
a directory).  The final open goes through ``openat2(RESOLVE_IN_ROOT)``, so even a
link swapped in by the container between the resolution and the open stays in
scope; extraction then opens each entry's parents with ``O_NOFOLLOW``
(:func:`dockyard.driverkit.safetar.extract`).  Reading a directory out walks it relative
to directory fds (:mod:`dockyard.driverkit.fdwalk`), so a running container that swaps a
directory for a symlink to a host path mid-walk is never followed
(CVE-2018-15664); unlike Docker, the container is not paused for it.

Stat results are Docker's ``ContainerPathStat``: ``{name, size, mode, mtime,
linkTarget}`` with ``mode`` in Go's ``os.FileMode`` bits, which is what the docker
CLI decodes.
"""

from __future__ import annotations

import errno
import os
import stat as st_
import tarfile
import tempfile
from typing import Any, BinaryIO, Callable

from ...driverkit import fdwalk
from ...driverkit.fdwalk import (RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS,  # noqa: F401 (this module's API too)
                                 open_in_root)
from ...driverkit.safetar import extract
from ...driverkit.tarwriter import TarWriter
from ...errors import DockyardError, InvalidParameter
from .containerfs import (Containers, ContainerFS, Layers, PathNotFound, ReadOnlyFS,  # noqa: F401 (its API)
                          go_mode, resolve_in_root, split_path)

def _renaming_writer(fileobj, rename):
    """A :class:`TarWriter` whose entry names (and hard-link targets) go through
    ``rename`` (moby's ``TarResourceRebase``)."""
    writer = TarWriter(fileobj)
    real = writer.tar.addfile

    def addfile(ti, f=None):
        ti.name = rename(ti.name)
        if ti.type == tarfile.LNKTYPE:
            ti.linkname = rename(ti.linkname)
        return real(ti, f)

    writer.tar.addfile = addfile
    return writer


def _into_file_binds(stream: Any, binds: dict, tmpdir: str) -> tuple[Any, int]:
    """A stopped container's binds of files in the extraction directory (``binds``:
    their names there -> mount points): the tar's regular files of those names are
    written into the binds' sources, as through dockerd's mounts (a read-only bind
    refuses them); returns the rest of the tar, to extract as usual, and the
    bytes written."""
    rest = tempfile.TemporaryFile(dir=tmpdir)
    written = 0
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar, tarfile.open(fileobj=rest, mode="w") as out:
            for member in tar:
                name = os.path.normpath(member.name.lstrip("/"))
                mp = binds.get(name)
                if mp is None or not member.isreg():
                    out.addfile(member, tar.extractfile(member) if member.isreg() else None)
                    continue
                if not mp.rw:
                    raise ReadOnlyFS("mounted volume is marked read-only")
                directory, base = os.path.split(os.path.normpath(mp.source))
                dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    out_fd = os.open(base, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
                with os.fdopen(out_fd, "wb") as dest:
                    data = tar.extractfile(member)
                    while data is not None and (chunk := data.read(1 << 20)):
                        written += dest.write(chunk)
    except tarfile.TarError as exc:
        rest.close()
        raise InvalidParameter(f"the archive to extract is not a valid tar: {exc}") from None
    except BaseException:
        rest.close()
        raise
    rest.seek(0)
    return rest, written


def _target(resolved):
    """The resolved path to open: without a trailing ``/`` or ``/.``."""
    if resolved.endswith("/."):
        resolved = resolved[:-2]
    return resolved.rstrip("/") or "/"


# ------------------------------------------------------------------ extracting
def _scan(spooled):
    """Entry names and kinds (``True`` for a directory) of a spooled tar."""
    out = []
    try:
        with tarfile.open(fileobj=spooled, mode="r|*") as tar:
            for ti in tar:
                tar.members.clear()
                out.append((ti.name, ti.isdir()))
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidParameter(f"the archive to extract is not a valid tar: {exc}") from None
    spooled.seek(0)
    return out


def _check_overwrites(dest_fd, entries):
    """``noOverwriteDirNonDir``: refuse replacing a directory by a non-directory
    or the reverse (checked before anything is written)."""
    for name, is_dir in entries:
        rel = os.path.normpath(name).lstrip("/")
        if rel in ("", ".") or rel.startswith("../"):
            continue
        parent, _, base = rel.rpartition("/")
        try:
            pfd = open_in_root(dest_fd, parent or ".", os.O_PATH)
        except OSError:
            continue  # the parent is new: nothing below it can clash
        try:
            existing = os.lstat(base, dir_fd=pfd)
        except OSError:
            continue
        finally:
            os.close(pfd)
        if st_.S_ISDIR(existing.st_mode) and not is_dir:
            raise InvalidParameter(f"cannot overwrite directory \"/{rel}\" with non-directory \"{name}\"")
        if is_dir and not st_.S_ISDIR(existing.st_mode):
            raise InvalidParameter(f"cannot overwrite non-directory \"/{rel}\" with directory \"{name}\"")


def _chown_entries(dest_fd, entries, uid, gid):
    for name, _ in entries:
        rel = os.path.normpath(name).lstrip("/")
        if rel.startswith("../"):
            continue
        parent, _, base = rel.rpartition("/")
        try:
            pfd = open_in_root(dest_fd, parent or ".", os.O_PATH)
        except OSError:
            continue
        try:
            os.chown(base or ".", uid, gid, dir_fd=pfd, follow_symlinks=False)
        except OSError:
            pass  # a whiteout or an entry a later one replaced
        finally:
            os.close(pfd)


class ContainerArchives:
    """``docker cp`` and ``docker export`` of the containers of ``containers`` (their
    records), whose layers ``layers`` mounts; ``resolve_user`` maps a ``User``
    through an image's passwd file (``copyUIDGID``); tars to extract that must be
    read twice are spooled in ``tmpdir``."""

    def __init__(self, containers: Containers, layers: Layers, resolve_user: Callable[[str, str], dict],
                 emit: Callable[[str, str, str, dict], None], tmpdir: str) -> None:
        self.containers, self.layers, self.resolve_user = containers, layers, resolve_user
        self.emit, self.tmpdir = emit, tmpdir

    def fs(self, ref: str) -> ContainerFS:
        return ContainerFS(self.containers, self.layers, ref)

    def stat_path(self, ref: str, path: str) -> dict:
        """Docker's ``ContainerPathStat`` of ``path`` in the container."""
        with self.fs(ref) as fs:
            return fs.stat(path)

    def write_archive(self, ref: str, path: str, fileobj: BinaryIO) -> None:
        """Write ``path`` of the container as a tar to ``fileobj`` (moby's
        ``archivePath``): entries are named from the path's last element (``.`` for a
        path ending in ``/.``).  The tree is read relative to directory fds
        (:mod:`dockyard.driverkit.fdwalk`): the container may swap a directory for a symlink
        meanwhile, the walk never follows it (CVE-2018-15664), without pausing it."""
        with self.fs(ref) as fs:
            absolute, resolved = fs.resolve(path)
            target = _target(resolved)
            new = "." if absolute.endswith("/.") else (absolute.rstrip("/").rpartition("/")[2] or ".")
            fd = fs.open(target, os.O_PATH | (0 if resolved != target else os.O_NOFOLLOW))
            try:
                info = os.fstat(fd)
                if st_.S_ISDIR(info.st_mode):
                    with fdwalk.Tree(fd) as tree:
                        writer = _renaming_writer(fileobj, lambda n: new if n == "." else f"{new}/{n}")
                        writer.add_entry(tree.top(), ".")
                        writer.add_tree(tree)
                        writer.close()
                else:
                    parent, name = fs.open_parent(target)
                    try:
                        writer = _renaming_writer(fileobj, lambda n: new)
                        writer.add_entry(fdwalk.Entry(name, name, os.lstat(name, dir_fd=parent), parent))
                        writer.close()
                    finally:
                        os.close(parent)
            finally:
                os.close(fd)
            self.emit("container", "archive-path", fs.cid, {"name": fs.rec.name, "path": path})

    def put_archive(self, ref: str, path: str, stream: Any, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> int:
        """Extract the tar read from ``stream`` into directory ``path`` of the
        container (moby's ``extractToDir``); returns the bytes of file content written."""
        with self.fs(ref) as fs:
            absolute, resolved = fs.resolve(path, follow_last=True)
            target = _target(resolved)
            fd = fs.open(target, os.O_PATH)
            try:
                if not st_.S_ISDIR(os.fstat(fd).st_mode):
                    raise InvalidParameter("extraction point is not a directory")
                in_mount = any(target == d or target.startswith(d.rstrip("/") + "/") for d in fs.mounts()) \
                    if fs.running else fs.reachable_mount(target) is not None
                if fs.rec.host_config.get("ReadonlyRootfs") and not in_mount:
                    raise ReadOnlyFS("container rootfs is marked read-only")
                mp = fs.reachable_mount(target)
                if mp is not None and not mp.rw:  # not mounted now: its read-only flag is ours to keep
                    raise ReadOnlyFS("mounted volume is marked read-only")
                owner = None
                user = fs.rec.config.get("User")
                if copy_uid_gid and user:
                    try:
                        found = self.resolve_user(fs.root, user)
                    except ValueError as exc:
                        raise InvalidParameter(f"copyUIDGID: {exc}") from None
                    owner = (found["uid"], found["gid"])
                entries = None
                source = stream
                spooled = None
                binds = {os.path.basename(d): mp for d, mp in fs.file_binds().items()
                         if os.path.dirname(d) == os.path.normpath(target)}
                bound_size = 0
                if binds:  # dockerd writes them through the mounts it makes: into their sources here
                    stream, bound_size = _into_file_binds(stream, binds, self.tmpdir)
                    source = stream
                if no_overwrite_dir_non_dir or owner:
                    spooled = tempfile.TemporaryFile(dir=self.tmpdir)
                    while chunk := stream.read(1 << 20):
                        spooled.write(chunk)
                    spooled.seek(0)
                    entries = _scan(spooled)
                    source = spooled
                try:
                    if no_overwrite_dir_non_dir:
                        _check_overwrites(fd, entries)
                    try:
                        size = extract(source, f"/proc/self/fd/{fd}")
                    except OSError as exc:
                        if exc.errno == errno.EROFS:
                            raise ReadOnlyFS(f"{absolute}: read-only file system") from None
                        raise
                    except DockyardError as exc:
                        if "Read-only file system" in str(exc):
                            raise ReadOnlyFS(f"{absolute}: read-only file system") from None
                        raise InvalidParameter(str(exc)) from None
                    if owner:
                        _chown_entries(fd, entries, *owner)
                finally:
                    if spooled is not None:
                        spooled.close()
                    if binds:
                        stream.close()
            finally:
                os.close(fd)
        self.emit("container", "extract-to-dir", fs.cid, {"name": fs.rec.name, "path": path})
        return size + bound_size

    def export(self, ref: str, fileobj: BinaryIO) -> None:
        """Write the container's whole file system to ``fileobj`` as a plain tar.
        The container may be running: its tree is read relative to directory fds
        (:mod:`dockyard.driverkit.fdwalk`), so a directory it swaps for a symlink
        meanwhile is never followed."""
        cid = self.containers.resolve(ref)
        rec = self.containers.get(cid)
        root = self.layers.mount(cid)
        try:
            with fdwalk.Tree(root) as tree:
                writer = TarWriter(fileobj)
                writer.add_tree(tree)
                writer.close()
        finally:
            self.layers.unmount(cid)
        self.emit("container", "export", cid, rec.event_attributes())
