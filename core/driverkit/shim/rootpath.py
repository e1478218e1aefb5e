"""Paths inside a root directory, symlinks followed as if the root were ``/``.

This is Go's securejoin (moby's ``symlink.FollowSymlinkInScope``), the one
resolver the builder, the engine's mounts and ``cp``, and both exec drivers
share.  A link's target, absolute or relative, is followed inside the root; a
``..`` never climbs out of it; a component that does not exist is kept as it
is (a ``..`` after it undoes it lexically).  Resolving is not a guarantee
against a rootfs that changes meanwhile: callers that write into an untrusted,
running root open the result with ``openat2(RESOLVE_IN_ROOT)`` instead
(:func:`dockyard.driverkit.fdwalk.open_in_root`).

It is in the shim kit, stdlib only, because the native driver's container init
imports it standalone (see ``drivers/exec/native/linux.py``).
"""

import errno
import os

MAX_LINKS = 255


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve(root: str, path: str, max_links: int = MAX_LINKS) -> list[str]:
    """The components of absolute (or root-relative) ``path`` inside ``root``, every
    symlink followed there.  Raises ``OSError(ELOOP)`` after ``max_links`` links."""
    todo, links = _parts(path), 0
    done: list[str] = []
    while todo:
        part = todo.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        try:
            target = os.readlink(os.path.join(root, *done, part))
        except OSError:  # not a link, or not there
            done.append(part)
            continue
        links += 1
        if links > max_links:
            raise OSError(errno.ELOOP, f"too many levels of symbolic links in {path}")
        if target.startswith("/"):
            done = []
        todo[:0] = _parts(target)
    return done


def join(root: str, path: str) -> str:
    """The host path of ``path`` inside ``root``; it never leaves ``root``."""
    return os.path.join(root, *resolve(root, path))


def split_existing(root: str, parts: list[str]) -> tuple[list[str], list[str]]:
    """``(existing, missing)``: the longest prefix of resolved ``parts`` that is
    there in ``root``, and the rest, which does not exist."""
    if os.path.lexists(os.path.join(root, *parts)):
        return parts, []
    for i in range(len(parts)):
        if not os.path.lexists(os.path.join(root, *parts[: i + 1])):
            return parts[:i], parts[i:]
    return parts, []
