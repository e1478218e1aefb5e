"""Build-context helpers: safe extraction of an uploaded context tar, COPY/ADD
source resolution with Docker's rules, and content checksums for cache keys.

Extraction reuses :func:`dockyard.driverkit.safetar.extract` (plain/gzip/bzip2/xz, nothing
written outside the destination, parents never followed through symlinks).  It
is a *layer* extractor, so a context entry named ``.wh.*`` -- a plain file to
Docker -- is refused here with a clear error rather than applied as a whiteout.

Sources (:func:`resolve_sources`): a COPY/ADD source is cleaned and taken relative
to the context root (a leading ``/`` is the root; ``..`` may not leave it).  The
context, or another stage's root for ``COPY --from``, is read relative to
directory fds (:mod:`dockyard.driverkit.fdwalk`), never through joined path strings.  A
source holding ``*``, ``?`` or ``[`` (not escaped with ``\\``) is a pattern matched
like Go's ``filepath.Match`` against context-relative paths: per path segment,
``*`` never crosses ``/`` and ``**`` is just ``*`` (as Docker's COPY); matches come
in lexical order.  Symlinks in a source path are resolved inside the context.

Checksums (:func:`checksum`): SHA-256 over, for every source and every entry under
it (parents first, names sorted as bytes, symlinks not followed): the relative path, file type, mode
(after ``--chmod``), uid/gid (after ``--chown``; ``0:0`` by default, as COPY
does), size, symlink target, device number, and the SHA-256 of regular-file
content.  Not mtime, atime, ctime or inode numbers (Docker's cache ignores
them).  Files are read in 1 MiB chunks; each inode is hashed once per call, and
an optional ``cache`` dict carries content digests across calls, keyed by
(dev, inode, size, mtime_ns, ctime_ns) so a changed file is always re-read.
"""

import errno
import hashlib
import os
import re
import stat

from ..dockerignore import clean, segment_regex
from ..driverkit import fdwalk, safetar
from ..errors import InvalidParameter, StorageError

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


def _resolve(tree, rel, source):
    """Resolve symlinks in context-relative ``rel`` as if the context were ``/``."""
    try:
        parts = fdwalk.resolve(tree.fd, rel)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise ContextError(f"too many levels of symbolic links resolving {source!r}") from None
    if tree.lstat("/".join(parts)) is None:
        raise ContextError(f"file not found in build context or excluded by .dockerignore: "
                           f"stat {source}: file does not exist")
    return "/".join(parts)


def _glob(tree, segments):
    """Context-relative paths matching ``segments`` (one regex per segment)."""
    found = [""]
    for i, seg in enumerate(segments):
        rx, last, nxt = segment_regex(seg), i == len(segments) - 1, []
        for base in found:
            for name, st in tree.listdir(base).items():  # sorted by the tree's key: bytes
                if rx.match(name) and (last or stat.S_ISDIR(st.st_mode)):
                    nxt.append(f"{base}/{name}" if base else name)
        found = nxt
    return found


def _tree(root):
    """The context (or another stage's root) to read: by fds, names in byte order."""
    return fdwalk.Tree(os.fspath(root), key=os.fsencode)


def resolve_sources(root, sources):
    """Expand COPY/ADD ``sources`` against context directory ``root``.

    :return: ``[(name, resolved)]``: ``name`` the matched context-relative path
        (``""`` for the root), ``resolved`` the same after following symlinks
        inside the context -- what to read.
    :raises ContextError: a missing file, or a pattern matching nothing.
    """
    with _tree(root) as tree:
        return _resolve_all(tree, sources)


def _resolve_all(tree, sources):
    out = []
    for source in sources:
        rel = _relative(source)
        if not has_wildcards(rel):
            out.append((rel, _resolve(tree, rel, source)))
            continue
        matches = _glob(tree, rel.split("/"))
        if not matches:
            raise ContextError(f"no source files were specified (pattern {source!r} matches nothing)")
        out.extend((m, _resolve(tree, m, m)) for m in matches)
    return out


def _content(entry, seen, cache):
    st = entry.st
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    digest = seen.get(key) or (cache.get(key) if cache is not None else None)
    if digest is None:
        h = hashlib.sha256()
        fd = entry.open()
        if fd is None:
            raise ContextError(f"{entry.rel or '.'!r} changed while it was read")
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


def _entries(tree, rel):
    """``(relative-to-source path, Entry)`` for ``rel`` and everything below it,
    parents first, names sorted, read relative to directory fds
    (:mod:`dockyard.driverkit.fdwalk`): another stage's root is read as safely as a
    container's."""
    top = tree.entry(rel)
    if top is None:
        raise ContextError(f"file not found in build context: {rel or '.'}")
    yield "", top
    if top.is_dir():
        sub = tree.subtree(rel)
        if sub is None:
            raise ContextError(f"{rel or '.'!r} changed while it was read")
        with sub:
            for entry in sub.walk():
                yield entry.rel, entry


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
    h = hashlib.sha256()
    seen: dict[tuple[int, ...], str] = {}  # (dev, inode, size, mtime, ctime) -> content digest
    with _tree(root) as tree:
        for name, resolved in _resolve_all(tree, sources):
            h.update(b"S\0" + _field(name))
            for rel, entry in _entries(tree, resolved):
                st = entry.st
                kind = _kind(st.st_mode)
                uid, gid = owner if owner is not None else (st.st_uid, st.st_gid)
                mode = chmod if chmod is not None else stat.S_IMODE(st.st_mode)
                link = _readlink(entry) if kind == "l" else ""
                content = _content(entry, seen, cache) if kind == "f" else ""
                rdev = st.st_rdev if kind in "cb" else 0
                size = st.st_size if kind == "f" else 0
                h.update(b"E\0" + b"".join(_field(v) for v in (rel, kind, oct(mode), uid, gid, size, link, rdev,
                                                                 content)))
    return "sha256:" + h.hexdigest()


def _readlink(entry):
    try:
        return entry.readlink()
    except OSError:
        raise ContextError(f"{entry.rel or '.'!r} changed while it was read") from None
