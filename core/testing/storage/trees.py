"""Trees for the storage conformance kit: describe one so that two drivers' trees
compare equal when they hold the same files, and say what differs when not.

The kit is not a test module, so pytest does not rewrite its ``assert``
statements: :func:`eq` and :func:`assert_same_tree` write the message a
rewritten assert would have.
"""

import hashlib
import os
import stat
from pathlib import Path
from typing import Any

def _xattrs(path: str) -> tuple[tuple[str, bytes], ...]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return ()
    return tuple((n, os.getxattr(path, n, follow_symlinks=False)) for n in sorted(names)
                 if not n.startswith("trusted.overlay.") and n != "security.selinux")


def snapshot(root: str | os.PathLike[str]) -> dict[str, list[Any]]:
    """``{rel: description}`` of a tree, comparable across drivers: type, mode,
    owner, xattrs; mtime (seconds) of every non-directory; content digest of files,
    target of symlinks, device numbers; hard-linked files name the first path of
    their group.  Directory mtimes are left out (writes below them change them)."""
    out: dict[str, list[Any]] = {}
    groups: dict[tuple[int, int], list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            desc: list[Any] = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, _xattrs(path)]
            if not stat.S_ISDIR(st.st_mode):
                desc.append(st.st_mtime_ns // 10**9)
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                desc.append((os.major(st.st_rdev), os.minor(st.st_rdev)))
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    desc += [st.st_size, hashlib.file_digest(f, "sha256").hexdigest()]
                groups.setdefault((st.st_dev, st.st_ino), []).append(rel)
                desc.append((st.st_dev, st.st_ino))
            elif stat.S_ISLNK(st.st_mode):
                desc.append(os.readlink(path))
            out[rel] = desc
    for desc in out.values():
        if isinstance(desc[-1], tuple) and len(desc[-1]) == 2 and stat.S_ISREG(desc[0]):
            desc[-1] = min(groups[desc[-1]])
    return out


def eq(got: object, want: object, what: object = "") -> None:
    """``assert got == want`` with a message naming both (the kit is not a test
    module: pytest does not rewrite its asserts)."""
    if got != want:
        raise AssertionError(f"{f'{what}: ' if what else ''}got {got!r}, expected {want!r}")


def assert_same_tree(a: str | os.PathLike[str], b: str | os.PathLike[str], what: str = "") -> None:
    """Assert that trees ``a`` and ``b`` have equal snapshots, naming what differs
    (the kit is not a test module: pytest does not rewrite its asserts)."""
    sa, sb = snapshot(a), snapshot(b)
    if sa == sb:
        return
    diffs = [f"only in {a}: {k}" for k in sorted(set(sa) - set(sb))]
    diffs += [f"only in {b}: {k}" for k in sorted(set(sb) - set(sa))]
    diffs += [f"{k}: {sa[k]} != {sb[k]}" for k in sorted(set(sa) & set(sb)) if sa[k] != sb[k]]
    raise AssertionError(f"trees differ{' (' + what + ')' if what else ''}: " + "; ".join(diffs[:8])
                         + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else ""))


def files(root: str | os.PathLike[str]) -> dict[str, bytes | None]:
    """``{rel: bytes}`` of the regular files of a tree, ``{rel: None}`` for dirs."""
    out: dict[str, bytes | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root)] = None
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                out[os.path.relpath(path, root)] = Path(path).read_bytes()
    return out


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
