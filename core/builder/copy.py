"""COPY and ADD: what is copied where, with the classic builder's rules
(moby ``builder/dockerfile/copy.go``, ``internals.go``).

* A relative destination is taken from the WORKDIR; a destination ending in
  ``/``, or one that exists in the image as a directory, receives each source
  under its own name; several sources need such a destination (Docker's error
  otherwise).  A directory source copies its *contents*.
* Everything copied belongs to ``0:0``, or to ``--chown`` (names resolved in the
  image's ``/etc/passwd`` and ``/etc/group``; a lone user is also the group, as
  Docker reads it); directories created on the way get that owner and ``0755``,
  and so does the destination a directory source creates (its own mode, or the
  0700 of the daemon's temporary context directory for ``COPY . /dir``, is not
  copied: a later ``USER`` must be able to read it); subdirectories keep theirs.
  ``--chmod`` sets the mode of every copied entry.
* ADD extracts a local tar archive (plain, gzip, bzip2, xz) into the destination
  (the archive's own owners are kept), and downloads an ``http(s)`` URL as a file
  (mode ``0600`` unless ``--chmod``; mtime from ``Last-Modified``), never extracted.

Writes go through :func:`dockyard.driverkit.safetar.extract` below a destination directory
resolved inside the image's root (symlinks followed within it), so nothing lands
outside the image whatever it or the context holds.
"""

import email.utils
import os
import posixpath
import stat
import tarfile
import urllib.parse
import urllib.request

from ..driverkit import safetar
from ..driverkit.shim import rootpath
from ..driverkit.tarwriter import tarinfo_of
from .context import ContextError, _entries, _RefuseWhiteouts, _tree, resolve_sources
from .steps import BuildStepError

__all__ = ["Source", "copy_sources", "download", "is_url", "mkdirs", "normalize_dest", "parse_chown"]


class Source:
    """A resolved source: ``rel`` below directory ``root`` (the context, another
    stage's root, a download directory) and ``path``, the two joined, for
    messages; ``name`` its basename in the dest, ``archive``: extract it (ADD
    of a local tar), ``mode``: forced permissions.  The source is read from
    ``root`` by fds (:mod:`dockyard.driverkit.fdwalk`), never through ``path``."""

    def __init__(self, root, rel, name, archive: bool = False, mode=None) -> None:
        self.root, self.rel, self.name, self.archive, self.mode = root, rel, name, archive, mode
        self.path = os.path.join(root, rel) if rel else root


def is_url(src):
    return src.startswith(("http://", "https://"))


def normalize_dest(workdir, dest):
    if dest.startswith("/"):
        return dest
    out = posixpath.join("/", workdir or "/", dest)
    out = posixpath.normpath(out)
    return out + "/" if dest.endswith("/") and not out.endswith("/") else out


def scoped(root, path):
    """``(real relative path, missing parts)`` of absolute ``path`` in ``root``,
    following symlinks as if ``root`` were ``/`` (:mod:`dockyard.driverkit.shim.rootpath`)."""
    try:
        done, missing = rootpath.split_existing(root, rootpath.resolve(root, path))
    except OSError as exc:
        raise BuildStepError(f"too many levels of symbolic links in {path!r}") from exc
    return "/".join(done), missing


def mkdirs(root, path, owner=(0, 0), refusal: str = "cannot copy to non-directory: {path}"):
    """Make directory ``path`` (absolute in the image) and its missing parents,
    owned by ``owner``; return its real host path.  ``refusal`` is the error when
    ``path``, or the part of it that is there, is not a directory."""
    rel, missing = scoped(root, path)
    here = os.path.join(root, rel) if rel else root
    if not os.path.isdir(here):
        raise BuildStepError(refusal.format(path=path))
    for part in missing:
        here = os.path.join(here, part)
        os.mkdir(here, 0o755)
        os.chown(here, *owner)
        os.chmod(here, 0o755)
    return here


def _lookup(path, name, what):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                fields = line.rstrip("\n").split(":")
                if len(fields) > 2 and fields[0] == name:
                    return int(fields[2])
    except (OSError, ValueError):
        pass
    raise BuildStepError(f"can't find {'uid for user' if what == 'user' else 'gid for group'} {name}: "
                         f"no such {what}: {name}")


def parse_chown(spec, rootfs):
    """``--chown`` → ``(uid, gid)``, names looked up in the image at ``rootfs``."""
    parts = spec.split(":")
    if len(parts) > 2 or not parts[0]:
        raise BuildStepError(f"invalid chown string format: {spec}")
    user, group = (parts[0], parts[0]) if len(parts) == 1 else parts
    ids = []
    for name, what, file in ((user, "user", "passwd"), (group, "group", "group")):
        if name.isdigit():
            ids.append(int(name))
            continue
        rel, missing = scoped(rootfs, f"/etc/{file}")
        ids.append(_lookup(os.path.join(rootfs, rel) if not missing else "/nonexistent", name, what))
    return tuple(ids)


def resolve(root, sources, cmd, allow_archives):
    """Context (or other image) sources → :class:`Source` list, Docker's errors."""
    try:
        found = resolve_sources(root, sources)
    except ContextError as exc:
        raise BuildStepError(f"{cmd} failed: {exc}") from None
    out = []
    for name, resolved in found:
        path = os.path.join(root, resolved) if resolved else root
        archive = allow_archives and os.path.isfile(path) and _is_archive(path)  # the context: the daemon's own
        out.append(Source(root, resolved, posixpath.basename(name) or "", archive=archive))
    return out


def _is_archive(path) -> bool:
    try:
        with tarfile.open(path, "r:*") as tar:
            return tar.next() is not None
    except (tarfile.TarError, OSError, EOFError, ValueError):
        return False


def download(url, into):
    """Fetch ``url`` into directory ``into``; returns its :class:`Source`."""
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "dockyard-build"}),
                                      timeout=60)
    except Exception as exc:  # urllib raises many types; all mean "could not download"
        raise BuildStepError(f"failed to GET {url}: {exc}") from None
    with resp:
        name = posixpath.basename(urllib.parse.urlparse(url).path)
        if not name:
            disp = resp.headers.get_param("filename", header="Content-Disposition")
            name = posixpath.basename(disp or "")
        if not name or name in (".", ".."):
            raise BuildStepError(f"cannot determine filename from url: {url}")
        if resp.status >= 400:
            raise BuildStepError(f"failed to GET {url} with status {resp.status}")
        path = os.path.join(into, name)
        with open(path, "wb") as fh:
            while chunk := resp.read(1 << 20):
                fh.write(chunk)
        modified = resp.headers.get("Last-Modified")
    os.chmod(path, 0o600)
    if modified:
        try:
            ts = email.utils.parsedate_to_datetime(modified).timestamp()
            os.utime(path, (ts, ts))
        except (TypeError, ValueError):
            pass
    return Source(into, name, name, mode=0o600)


def _tarinfo(name, entry, owner, mode):
    """The header of walked ``entry`` as ``name``, with ``--chown``/``--chmod``."""
    try:
        link = entry.readlink() if stat.S_ISLNK(entry.st.st_mode) else None
    except OSError:
        raise BuildStepError(f"{entry.rel or '.'!r} changed while it was copied") from None
    ti = tarinfo_of(name, None, entry.st, link)
    if ti is not None:
        ti.uid, ti.gid = owner if owner is not None else (ti.uid, ti.gid)
        ti.mode = mode if mode is not None else ti.mode
    return ti


def _write(tar, ti, entry):
    if ti.type == tarfile.REGTYPE:
        fd = entry.open()
        if fd is None:
            raise BuildStepError(f"{entry.rel or '.'!r} changed while it was copied")
        with os.fdopen(fd, "rb") as fh:
            tar.addfile(ti, fh)
    else:
        tar.addfile(ti)


def _apply(spool, target):
    spool.seek(0)
    try:
        safetar.extract(spool, target, whiteouts=_RefuseWhiteouts(), same_owner=True)
    except (safetar.UnsafeTarError, ContextError) as exc:
        raise BuildStepError(f"cannot copy into {target}: {exc}") from None


def copy_sources(rootfs, sources, dest, *, owner, chmod, cmd):
    """Copy :class:`Source` items to ``dest`` (absolute, normalized) in ``rootfs``."""
    if len(sources) > 1 and not dest.endswith("/"):
        raise BuildStepError(f"When using {cmd} with more than one source file, the destination must be a "
                             "directory and end with a /")
    owner = owner or (0, 0)
    rel, missing = scoped(rootfs, dest)
    dest_is_dir = dest.endswith("/") or (not missing and os.path.isdir(os.path.join(rootfs, rel)))
    for src in sources:
        with _tree(src.root) as tree:
            _copy_one(tree, src, rootfs, dest, dest_is_dir, owner, chmod, cmd)


def _copy_one(tree, src, rootfs, dest, dest_is_dir, owner, chmod, cmd):
    top = tree.entry(src.rel)
    if top is None:
        raise BuildStepError(f"{cmd} failed: {src.name or '.'!r} is gone")
    st = top.st
    mode = chmod if chmod is not None else src.mode
    if src.archive:
        target = mkdirs(rootfs, dest, owner)
        fd = top.open()
        if fd is None:
            raise BuildStepError(f"{cmd} failed: {src.name!r} changed while it was read")
        with os.fdopen(fd, "rb") as fh:
            try:
                safetar.extract(fh, target, whiteouts=_RefuseWhiteouts(), same_owner=True)
            except (safetar.UnsafeTarError, ContextError) as exc:
                raise BuildStepError(f"{cmd} failed: cannot extract {src.name}: {exc}") from None
        return
    spool = safetar.spool()
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if stat.S_ISDIR(st.st_mode):
            existed = not scoped(rootfs, dest)[1]
            target = mkdirs(rootfs, dest, owner)
            if not existed:  # 0755 whatever the source directory's mode, as dockerd makes it
                os.chmod(target, mode if mode is not None else 0o755)
            for sub, entry in _entries(tree, src.rel):
                if sub:
                    ti = _tarinfo(sub, entry, owner, mode)
                    if ti is not None:
                        _write(tar, ti, entry)
        else:
            if dest_is_dir:
                target, name = mkdirs(rootfs, dest, owner), src.name
            else:
                parent, name = posixpath.split(dest.rstrip("/"))
                target = mkdirs(rootfs, parent or "/", owner)
                if os.path.isdir(os.path.join(target, name)) and not os.path.islink(os.path.join(target, name)):
                    target = os.path.join(target, name)
                    name = src.name
            ti = _tarinfo(name, top, owner, mode)
            if ti is not None:
                _write(tar, ti, top)
    try:
        _apply(spool, target)
    finally:
        spool.close()
