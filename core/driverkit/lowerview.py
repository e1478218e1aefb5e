"""A read-only view of a stack of overlay-style layer directories, without
mounting them: what a union file system driver reads to compare a layer with
its parent (overlayfs keeps whiteouts as 0/0 character devices and opaque
directories as a ``trusted.overlay.opaque`` xattr; see :mod:`.safetar`).
"""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from .safetar import OVERLAY_OPAQUE_XATTR, is_whiteout_dev

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed import StrPath

__all__ = ["LowerView", "is_opaque", "scan"]


def is_opaque(path: StrPath) -> bool:
    """``True`` if directory ``path`` is an overlayfs opaque directory."""
    try:
        return os.getxattr(path, OVERLAY_OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def scan(path: StrPath) -> dict[str, os.stat_result]:
    """``{name: lstat}`` of the entries of directory ``path``."""
    with os.scandir(path) as it:
        return {e.name: e.stat(follow_symlinks=False) for e in it}


class LowerView:
    """The parent's merged tree as overlayfs sees it, read from the lower diff
    directories (nearest first) without mounting: whiteouts hide, an opaque
    directory or a non-directory stops the search in deeper layers."""

    def __init__(self, tops: Iterable[StrPath]) -> None:
        self.tops = [os.path.realpath(t) for t in tops]

    @staticmethod
    def _probe(top: str, parts: list[str]) -> tuple[tuple[str, os.stat_result] | None, bool]:
        """``((path, stat), False)`` if ``parts`` exists in layer ``top``, else
        ``(None, stop)`` where ``stop`` says deeper layers are hidden."""
        cur, stop = top, False
        for i, part in enumerate(parts):
            path = os.path.join(cur, part)
            try:
                st = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                return None, stop
            if i == len(parts) - 1:
                return (path, st), False
            if not stat.S_ISDIR(st.st_mode):
                return None, True
            stop = stop or is_opaque(path)
            cur = path
        return (top, os.lstat(top)), False

    def find(self, rel: str) -> tuple[str, os.stat_result] | None:
        parts = rel.split("/") if rel else []
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is not None:
                return None if is_whiteout_dev(hit[1]) else hit
            if stop:
                break
        return None

    def lstat(self, rel: str) -> os.stat_result | None:
        hit = self.find(rel)
        return hit[1] if hit else None

    def listdir(self, rel: str) -> dict[str, os.stat_result]:
        """``{name: stat}`` of the visible children of directory ``rel``."""
        parts = rel.split("/") if rel else []
        names: dict[str, os.stat_result] = {}
        masked: set[str] = set()
        for top in self.tops:
            hit, stop = self._probe(top, parts)
            if hit is None:
                if stop:
                    break
                continue
            path, st = hit
            if not stat.S_ISDIR(st.st_mode):
                break
            for name, est in scan(path).items():
                if name in names or name in masked:
                    continue
                if is_whiteout_dev(est):
                    masked.add(name)
                else:
                    names[name] = est
            if is_opaque(path):
                break
        return names
