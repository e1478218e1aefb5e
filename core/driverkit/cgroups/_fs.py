"""Reading and writing cgroupfs files, with errors that name the file and value.

Everything that touches a cgroup file goes through :func:`write` and the readers
here, so that every kernel error is turned into a :class:`CgroupError` in one
place.  Writes never create files (cgroupfs files exist or the controller is
missing), and each value goes in one ``write(2)``, as cgroupfs requires.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable


class CgroupError(OSError):
    """A cgroup could not be made, changed or read.

    The message names the file (or OCI field) and the value, e.g.
    ``memory.limit_in_bytes: cannot set 1048576 (device or resource busy: the limit
    is below current usage of 39161856 bytes)``.  ``errno`` is the kernel's error
    number when there was one; ``file`` the absolute path involved, if any.
    """

    def __init__(self, message: str, errno: int | None = None, file: str | None = None) -> None:
        super().__init__(message)
        self.errno = errno
        self.file = file


def reason(exc: OSError) -> str:
    """'device or resource busy' for an OSError with errno EBUSY."""
    if exc.errno is None:
        return str(exc)
    return os.strerror(exc.errno)[:1].lower() + os.strerror(exc.errno)[1:]


def write(path: str, value: object, explain: Callable[[int | None], str | None] | None = None) -> None:
    """Write ``value`` to the cgroup file ``path`` in one write.

    ``explain(errno)`` may return a hint appended to the kernel's reason.
    """
    data = str(value).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
        try:
            if os.write(fd, data) != len(data):
                raise OSError(_errno.EIO, "short write")
        finally:
            os.close(fd)
    except OSError as exc:
        hint = explain(exc.errno) if explain else None
        why = reason(exc) + (f": {hint}" if hint else "")
        raise CgroupError(f"{os.path.basename(path)}: cannot set {value} ({why})", exc.errno, path) from None


def read(path: str, default: str | None = None) -> str:
    """The file's text, stripped; ``default`` if it is missing (or raise)."""
    try:
        with open(path) as fh:
            return fh.read().strip()
    except FileNotFoundError:
        if default is not None:
            return default
        raise CgroupError(f"{os.path.basename(path)}: cannot read (no such file: {path})",
                          _errno.ENOENT, path) from None
    except OSError as exc:
        raise CgroupError(f"{os.path.basename(path)}: cannot read ({reason(exc)})", exc.errno, path) from None


def read_int(path: str, default: int | None = None) -> int:
    """An integer file; "max" reads as -1."""
    text = read(path, None if default is None else str(default))
    return -1 if text == "max" else int(text.split()[0])


def read_keyed(path: str) -> dict[str, int]:
    """A flat-keyed file ("key value" lines) as a dict of ints; {} if missing."""
    out: dict[str, int] = {}
    for line in read(path, "").splitlines():
        key, _, value = line.partition(" ")
        try:
            out[key] = int(value)
        except ValueError:
            continue
    return out


def read_procs(path: str) -> list[int]:
    """The pids listed in a cgroup.procs file; [] if the cgroup is gone."""
    try:
        with open(path) as fh:
            return [int(x) for x in fh.read().split()]
    except OSError as exc:
        if exc.errno in (_errno.ENOENT, _errno.ENODEV, _errno.ESRCH):
            return []
        raise CgroupError(f"cgroup.procs: cannot read ({reason(exc)})", exc.errno, path) from None


def parse_list(text: object, what: str = "cpuset.cpus") -> set[int]:
    """'0-3,5' -> {0, 1, 2, 3, 5}; raises CgroupError naming ``what``."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        lo, sep, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi if sep else lo)
        except ValueError:
            first, last = 0, -1
        if first < 0 or last < first:
            raise CgroupError(f"{what}: cannot set {text} (not a list like 0-3,5)", _errno.EINVAL)
        out.update(range(first, last + 1))
    return out


def format_list(items: Iterable[int]) -> str:
    """{0, 1, 2, 5} -> '0-2,5'."""
    runs: list[list[int]] = []
    for i in sorted(items):
        if runs and runs[-1][1] == i - 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def check_subset(fname: str, value: str, kind: str, root_file: str, parent_file: str) -> None:
    """Refuse a cpuset.cpus/mems value naming CPUs (nodes) that do not exist (the
    hierarchy root's effective set) or that the parent cgroup does not have."""
    wanted = parse_list(value, fname)
    for path, where in ((root_file, "exist"), (parent_file, f"are available in {os.path.dirname(parent_file)}")):
        avail = parse_list(read(path, ""), fname)
        if not wanted <= avail:
            have = format_list(avail) or "none"
            raise CgroupError(f"{fname}: cannot set {value} (only {kind} {have} {where})", _errno.ERANGE, path)


def rmdir_tree(path: str) -> OSError | None:
    """Remove the cgroup directory ``path`` and any child cgroups, deepest first.

    Returns the first OSError other than "already gone" (or None)."""
    failure: OSError | None = None
    for dirpath, _dirs, _files in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            pass
        except OSError as exc:
            failure = failure or exc
    return failure
