"""Build-context helpers: safe extraction of an uploaded context tar, COPY/ADD
source resolution with Docker's rules, and content checksums for cache keys.

Extraction reuses :func:`dockyard.safetar.extract` (plain/gzip/bzip2/xz, nothing
written outside the destination, parents never followed through symlinks).  It
is a *layer* extractor, so a context entry named ``.wh.*`` -- a plain file to
Docker -- is refused here with a clear error rather than applied as a whiteout.

Sources (:func:`resolve_sources`): a COPY/ADD source is cleaned and taken relative
to the context root (a leading ``/`` is the root; ``..`` may not leave it).  A
source holding ``*``, ``?`` or ``[`` (not escaped with ``\\``) is a pattern matched
like Go's ``filepath.Match`` against context-relative paths: per path segment,
``*`` never crosses ``/`` and ``**`` is just ``*`` (as Docker's COPY); matches come
in lexical order.  Symlinks in a source path are resolved inside the context.

Checksums (:func:`checksum`): SHA-256 over, for every source and every entry under
it (sorted by name, symlinks not followed): the relative path, file type, mode
(after ``--chmod``), uid/gid (after ``--chown``; ``0:0`` by default, as COPY
does), size, symlink target, device number, and the SHA-256 of regular-file
content.  Not mtime, atime, ctime or inode numbers (Docker's cache ignores
them).  Files are read in 1 MiB chunks; each inode is hashed once per call, and
an optional ``cache`` dict carries content digests across calls, keyed by
(dev, inode, size, mtime_ns, ctime_ns) so a changed file is always re-read.
"""

import hashlib
import os
import re
import stat

from .. import safetar
from ..dockerignore import clean, segment_regex
from ..errors import InvalidParameter, StorageError
from ..shim import rootpath

__all__ = ["ContextError", "checksum", "extract_context", "has_wildcards", "resolve_sources"]

_CHUNK = 1 << 20
_WILDCARD = re.compile(r"\\.|[*?\[]", re.DOTALL)


class ContextError(InvalidParameter):
    """The build context or a COPY/ADD source is invalid (the message says which)."""


class _RefuseWhiteouts(safetar.Whiteouts):
    create_parents = True  # so that every whiteout-named entry reaches us

    def whiteout(self, dir_fd, name, rel, unpacked):
        raise ContextError(f"build context entry for {rel!r} is named like a whiteout (.wh.*): not supported")

    def opaque(self, dir_fd, rel, unpacked):
        raise ContextError(f"build context holds an opaque-whiteout marker in {rel or '.'!r}: not supported")


def extract_context(stream, dest):
    """Extract the context tar read from ``stream`` into directory ``dest``.

    :return: bytes of file content written.
    :raises ContextError: a corrupt or unsafe tar (nothing is written outside ``dest``).
    """
    try:
        return safetar.extract(stream, os.fspath(dest), whiteouts=_RefuseWhiteouts())
    except StorageError as exc:
        raise ContextError(f"invalid build context: {exc}") from None


def has_wildcards(source):
    """Docker's ``containsWildcards``: an unescaped ``*``, ``?`` or ``[``."""
    return any(m.group() in "*?[" for m in _WILDCARD.finditer(source))


def _relative(source):
    path = clean(source.lstrip("/"))
    if path == ".." or path.startswith("../"):
        raise ContextError(f"forbidden path outside the build context: {source}")
    return "" if path == "." else path


def _resolve(root, rel, source):
    """Resolve symlinks in context-relative ``rel`` as if ``root`` were ``/``."""
    try:
        parts = rootpath.resolve(root, rel)
    except OSError:
        raise ContextError(f"too many levels of symbolic links resolving {source!r}") from None
    if not os.path.lexists(os.path.join(root, *parts)):
        raise ContextError(f"file not found in build context or excluded by .dockerignore: "
                           f"stat {source}: file does not exist")
    return "/".join(parts)


def _glob(root, segments):
    """Context-relative paths matching ``segments`` (one regex per segment)."""
    found = [""]
    for i, seg in enumerate(segments):
        rx, last, nxt = segment_regex(seg), i == len(segments) - 1, []
        for base in found:
            try:
                with os.scandir(os.path.join(root, base) if base else root) as it:
                    entries = sorted(it, key=lambda e: os.fsencode(e.name))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for entry in entries:
                if rx.match(entry.name) and (last or entry.is_dir(follow_symlinks=False)):
                    nxt.append(f"{base}/{entry.name}" if base else entry.name)
        found = nxt
    return found


def resolve_sources(root, sources):
    """Expand COPY/ADD ``sources`` against context directory ``root``.

    :return: ``[(name, resolved)]``: ``name`` the matched context-relative path
        (``""`` for the root), ``resolved`` the same after following symlinks
        inside the context -- what to read.
    :raises ContextError: a missing file, or a pattern matching nothing.
    """
    root, out = os.fspath(root), []
    for source in sources:
        rel = _relative(source)
        if not has_wildcards(rel):
            out.append((rel, _resolve(root, rel, source)))
            continue
        matches = _glob(root, rel.split("/"))
        if not matches:
            raise ContextError(f"no source files were specified (pattern {source!r} matches nothing)")
        out.extend((m, _resolve(root, m, m)) for m in matches)
    return out


def _content(path, st, seen, cache):
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = seen.get(key) or (cache.get(key) if cache is not None else None)
    if digest is None:
        h = hashlib.sha256()
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
        finally:
            os.close(fd)
        digest = h.hexdigest()
        if cache is not None:
            cache[key] = digest
    seen[key] = digest
    return digest


def _entries(root, rel):
    """(relative-to-source path, absolute path, lstat) for ``rel`` and below."""
    top = os.path.join(root, rel) if rel else root
    st = os.lstat(top)
    yield "", top, st
    if stat.S_ISDIR(st.st_mode):
        stack = [("", top)]
        while stack:
            sub, path = stack.pop()
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: os.fsencode(e.name))
            dirs = []
            for entry in entries:
                child = f"{sub}/{entry.name}" if sub else entry.name
                est = entry.stat(follow_symlinks=False)
                yield child, entry.path, est
                if stat.S_ISDIR(est.st_mode):
                    dirs.append((child, entry.path))
            stack.extend(reversed(dirs))  # depth-first, in name order


def _kind(mode):
    for test, char in ((stat.S_ISREG, "f"), (stat.S_ISDIR, "d"), (stat.S_ISLNK, "l"), (stat.S_ISCHR, "c"),
                       (stat.S_ISBLK, "b"), (stat.S_ISFIFO, "p"), (stat.S_ISSOCK, "s")):
        if test(mode):
            return char
    return "?"


def _field(value):
    return os.fsencode(str(value)) + b"\0"


def checksum(root, sources, *, owner=(0, 0), chmod=None, cache=None):
    """``"sha256:<hex>"`` of what COPY/ADD would take from context ``root``.

    :param sources: as given to COPY/ADD (resolved with :func:`resolve_sources`).
    :param owner: ``(uid, gid)`` every entry gets (``--chown``), or ``None`` to
        keep each file's own (e.g. ``COPY --from`` without ``--chown``).
    :param chmod: permission bits every entry gets (``--chmod``), or ``None``.
    :param cache: optional dict reused across calls for content digests.
    """
    root, h, seen = os.fspath(root), hashlib.sha256(), {}
    for name, resolved in resolve_sources(root, sources):
        h.update(b"S\0" + _field(name))
        for rel, path, st in _entries(root, resolved):
            kind = _kind(st.st_mode)
            uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
            mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
            link = os.readlink(path) if kind == "l" else ""
            content = _content(path, st, seen, cache) if kind == "f" else ""
            rdev = st.st_rdev if kind in "cb" else 0
            size = st.st_size if kind == "f" else 0
            h.update(b"E\0" + b"".join(_field(v) for v in (rel, kind, oct(mode), uid, gid, size, link, rdev,
                                                             content)))
    return "sha256:" + h.hexdigest()
