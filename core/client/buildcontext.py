"""The build context, packed on the client as the Docker CLI's classic ``docker build``
does, for ``dockyard build`` to stream to ``POST /build``.

Where a context comes from (:func:`from_directory`, :func:`from_reader`):

* a **directory**: tarred here, ``.dockerignore`` applied (the Dockerfile and
  ``.dockerignore`` itself are always sent); ``-f`` is taken relative to the
  *current* directory, symlinks in it resolved; a Dockerfile outside the context
  (or ``-f -``, from stdin) is added under a random name ``.dockerfile.<20 hex>``
  that is also appended to the sent ``.dockerignore``, so the daemon drops it from
  the context after reading it (as dockerd's classic builder does);
* a **stream** (stdin for ``-``, or a downloaded URL): its first 512 bytes decide --
  a compressed stream or a valid tar header is a context archive, sent unchanged;
  anything else is a bare Dockerfile, sent as a one-file context.

Tar entries (Docker's ``pkg/archive`` with ``ChownOpts 0:0``): PAX format, uid and
gid 0 (so that cache keys do not depend on who runs the client), empty user and
group names, permission bits as on disk, mtime truncated to whole seconds (it is
not part of the builder's cache key), directories with a trailing ``/``, symlinks
not followed, hard links as links to the first name, devices and FIFOs as such,
sockets skipped, the ``security.capability`` xattr kept; names in byte order,
parents first.  The tar is produced lazily, file by file, in 1 MiB pieces.
"""

import os
import stat

HEADER_SIZE = 512
_CHUNK = 1 << 20
_COMPRESSED = (b"\x1f\x8b\x08", b"BZh", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd")  # gzip, bzip2, xz, zstd
DEFAULT_DOCKERFILE = "Dockerfile"


class ContextError(Exception):
    """The context or Dockerfile cannot be prepared (the message says why, as docker words it)."""


class Context:
    """What to upload: ``chunks`` (an iterable of bytes), the ``dockerfile`` query
    parameter (``None``: the daemon's default) and :meth:`close` for what is left open."""

    def __init__(self, chunks, dockerfile, closers=()):
        self.chunks = chunks
        self.dockerfile = dockerfile
        self._closers = list(closers)

    def close(self):
        while self._closers:
            self._closers.pop()()


# --- directories -----------------------------------------------------------------------

def resolve_context_dir(path):
    """Docker's ResolveAndValidateContextPath: absolute, symlinks resolved, a directory."""
    absolute = os.path.realpath(os.path.abspath(path))
    try:
        st = os.lstat(absolute)
    except OSError as exc:
        raise ContextError(f"unable to prepare context: unable to evaluate symlinks in context path: {exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ContextError(f"unable to prepare context: context must be a directory: {absolute}")
    return absolute


def dockerfile_path(context_dir, given):
    """(absolute Dockerfile path, path relative to ``context_dir``) like docker's
    getDockerfileRelPath: ``-f`` relative to the current directory; without it
    ``Dockerfile`` in the context, or ``dockerfile`` if only that exists."""
    if given:
        absolute = os.path.abspath(given)
    else:
        absolute = os.path.join(context_dir, DEFAULT_DOCKERFILE)
        alt = os.path.join(context_dir, DEFAULT_DOCKERFILE.lower())
        if not os.path.lexists(absolute) and os.path.lexists(alt):
            absolute = alt
    absolute = os.path.realpath(absolute)
    if not os.path.lexists(absolute):
        raise ContextError(f"unable to prepare context: unable to evaluate symlinks in Dockerfile path: "
                           f"lstat {absolute}: no such file or directory")
    return absolute, os.path.relpath(absolute, context_dir)


def _outside(rel):
    return rel == ".." or rel.startswith("../")


def read_ignore_file(context_dir):
    """The raw ``.dockerignore`` of a context (``None`` if it has none)."""
    try:
        with open(os.path.join(context_dir, ".dockerignore"), "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        return None
    except OSError as exc:
        raise ContextError(f"unable to prepare context: error reading .dockerignore: {exc}") from None


def context_entries(context_dir, dockerfile_rel=None, ignore_text=None):
    """``[(rel, lstat)]`` of what goes into the tar, after ``.dockerignore``.

    Checks every file can be read first (docker's ValidateContextDirectory), so
    that a bad file is reported before anything is sent.
    """
    from dockyard.dockerignore import IgnoreError, Matcher, read_patterns, walk

    matcher = None
    if ignore_text is not None:
        try:
            matcher = Matcher(read_patterns(ignore_text), dockerfile=dockerfile_rel)
        except IgnoreError as exc:
            raise ContextError(f"unable to prepare context: .dockerignore: {exc}") from None
    entries = []
    try:
        for rel in walk(context_dir, matcher):
            path = os.path.join(context_dir, rel)
            st = os.lstat(path)
            if stat.S_ISSOCK(st.st_mode):
                continue
            if (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)) and not os.access(path, os.R_OK):
                raise ContextError(f"error checking context: 'no permission to read from '{path}''")
            entries.append((rel, st))
    except PermissionError as exc:
        raise ContextError(f"error checking context: 'can't stat '{exc.filename}''") from None
    except FileNotFoundError as exc:
        raise ContextError(f"error checking context: 'file vanished: {exc.filename}'") from None
    return entries


def random_dockerfile_name():
    return ".dockerfile." + os.urandom(10).hex()


def from_directory(context, dockerfile=None, stdin=None):
    """The :class:`Context` for directory ``context`` and ``-f dockerfile``
    (``"-"``: the Dockerfile is read from binary stream ``stdin``)."""
    context_dir = resolve_context_dir(context)
    extra, ignore_add = None, None
    if dockerfile == "-":
        content, rel = stdin.read(), None
    else:
        absolute, rel = dockerfile_path(context_dir, dockerfile)
        content = None
        if _outside(rel):
            try:
                with open(absolute, "rb") as fh:
                    content = fh.read()
            except OSError as exc:
                raise ContextError(f"unable to open Dockerfile: {exc}") from None
            rel = None
    if content is not None:
        name = random_dockerfile_name()
        extra, ignore_add, rel = (name, content), name, name
    ignore_text = read_ignore_file(context_dir)
    entries = context_entries(context_dir, None if ignore_add else rel, ignore_text)
    chunks = tar_stream(context_dir, entries, extra=extra, ignore_add=ignore_add, ignore_text=ignore_text)
    return Context(chunks, rel)


# --- the tar itself ----------------------------------------------------------------------

def _tarinfo(rel, st, path, links):
    import tarfile

    from dockyard.driverkit.tarwriter import tarinfo_of

    ti = tarinfo_of(rel, path, st)  # never a socket: context_entries leaves them out
    ti.uid = ti.gid = 0
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        if key in links:
            ti.type, ti.linkname, ti.size = tarfile.LNKTYPE, links[key], 0
        else:
            links[key] = rel
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        try:
            cap = os.getxattr(path, "security.capability", follow_symlinks=False)
        except OSError:
            cap = None
        if cap:
            ti.pax_headers["SCHILY.xattr.security.capability"] = cap.decode("utf-8", "surrogateescape")
    return ti


def _header(ti):
    import tarfile

    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padding(size):
    return b"\0" * (-size % HEADER_SIZE)


def memory_entry(name, content, mode=0o600, mtime=None):
    """Header + content + padding of a regular file that exists only in memory."""
    import tarfile
    import time

    ti = tarfile.TarInfo(name)
    ti.mode, ti.size, ti.uname, ti.gname = mode, len(content), "", ""
    ti.mtime = int(time.time()) if mtime is None else mtime
    return _header(ti) + content + _padding(len(content))


def _file_chunks(path, size):
    """The content of regular file ``path``, exactly ``size`` bytes (it was lstat'ed
    before; a file that changed size meanwhile is an error, not a corrupt tar)."""
    left = size
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while left > 0:
            data = os.read(fd, min(left, _CHUNK))
            if not data:
                break
            left -= len(data)
            yield data
    finally:
        os.close(fd)
    if left:
        raise ContextError(f"error sending the build context: {path} shrank while it was read")


def tar_stream(root, entries, extra=None, ignore_add=None, ignore_text=None):
    """Yield the bytes of the context tar of ``entries`` (from :func:`context_entries`).

    ``extra``: ``(name, content)`` of a Dockerfile added from outside the context;
    ``ignore_add``: a name appended to the sent ``.dockerignore`` (which is made if
    the context has none), ``ignore_text`` its content as read before.
    """
    links = {}
    ignore_sent = False
    for rel, st in entries:
        path = os.path.join(root, rel)
        if ignore_add and rel == ".dockerignore" and stat.S_ISREG(st.st_mode):
            content = (ignore_text or b"") + b"\n" + ignore_add.encode() + b"\n"
            yield memory_entry(rel, content, stat.S_IMODE(st.st_mode), st.st_mtime_ns // 1_000_000_000)
            ignore_sent = True
            continue
        try:
            ti = _tarinfo(rel, st, path, links)
        except OSError as exc:
            raise ContextError(f"error sending the build context: {exc}") from None
        yield _header(ti)
        if ti.isreg() and ti.size:
            try:
                yield from _file_chunks(path, ti.size)
            except OSError as exc:
                raise ContextError(f"error sending the build context: {exc}") from None
            yield _padding(ti.size)
    if extra:
        yield memory_entry(*extra)
    if ignore_add and not ignore_sent:
        yield memory_entry(".dockerignore", b".dockerignore\n" + ignore_add.encode() + b"\n")
    yield b"\0" * (2 * HEADER_SIZE)


# --- streams (stdin, URLs) -------------------------------------------------------------------

def is_archive(head):
    """Docker's IsArchive on the first 512 bytes: compressed, or a valid tar header."""
    import tarfile

    if any(head.startswith(magic) for magic in _COMPRESSED):
        return True
    try:
        tarfile.TarInfo.frombuf(head[:HEADER_SIZE], "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _read_head(stream):
    parts, got = [], 0
    while got < HEADER_SIZE:
        data = stream.read(HEADER_SIZE - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _rest(head, stream):
    if head:
        yield head
    while data := stream.read(_CHUNK):
        yield data


def from_reader(stream, dockerfile=None):
    """The :class:`Context` for a binary stream: a context archive (sent as it
    comes, ``dockerfile`` relative to its root) or a bare Dockerfile."""
    head = _read_head(stream)
    if is_archive(head):
        return Context(_rest(head, stream), dockerfile or None)
    if dockerfile == "-":
        raise ContextError("unable to prepare context: build context is not an archive")
    if dockerfile:
        raise ContextError("unable to prepare context: ambiguous Dockerfile source: "
                           "both stdin and flag correspond to Dockerfiles")
    content = head + b"".join(_rest(b"", stream))
    chunks = [memory_entry(DEFAULT_DOCKERFILE, content, mode=0o644), b"\0" * (2 * HEADER_SIZE)]
    return Context(chunks, DEFAULT_DOCKERFILE)


# --- what kind of context argument --------------------------------------------------------

def is_url(text):
    return text.startswith(("http://", "https://"))


def is_git_url(text):
    """Docker's urlutil.IsGitURL."""
    import re

    if is_url(text) and re.search(r"\.git(?:#.+)?$", text):
        return True
    return text.startswith(("git://", "github.com/", "git@"))


def from_git(url, dockerfile, tmpdir):
    """Clone ``url`` (``#ref:subdir`` fragment as docker's) into ``tmpdir``; the
    directory context of its ``subdir``."""
    import shutil
    import subprocess

    git = shutil.which("git")
    if git is None:
        raise ContextError("unable to prepare context: unable to find 'git': executable file not found in $PATH")
    if url.startswith("github.com/"):
        url = "https://" + url
    remote, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    cmd = [git, "clone", "--quiet", "--recurse-submodules", "--depth", "1"]
    cmd += ["--branch", ref] if ref else []
    res = subprocess.run([*cmd, "--", remote, tmpdir], check=False, capture_output=True, text=True,
                         stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise ContextError(f"unable to prepare context: unable to 'git clone' to temporary context directory: "
                           f"error fetching: {res.stderr.strip()}")
    root = os.path.realpath(os.path.join(tmpdir, subdir)) if subdir else tmpdir
    if os.path.relpath(root, tmpdir).startswith(".."):
        raise ContextError(f"unable to prepare context: subdirectory {subdir!r} is outside the repository")
    if dockerfile and dockerfile != "-" and not os.path.isabs(dockerfile):
        dockerfile = os.path.join(root, dockerfile)  # in a git context, -f is inside the repository
    return root, dockerfile
