"""Layer tars for the storage conformance kit: make one from a list of entries,
read one back, and tell which paths its whiteouts delete."""

import io
import os
import tarfile
from collections.abc import Collection, Iterable
from typing import IO, Any, Literal

T0, T1 = 1_600_000_000, 1_700_000_000  # the default mtime of an entry, and a later one

#: ``(name, kind, data)`` or ``(name, kind, data, attrs)``: see :func:`make_tar`
Entry = tuple[Any, ...]

#: ``compress`` of :func:`make_tar` -> the tarfile mode that writes it
_MODES: dict[str, Literal["w", "w:gz", "w:bz2", "w:xz"]] = {"": "w", "gz": "w:gz", "bz2": "w:bz2", "xz": "w:xz"}
_TYPES = {"d": tarfile.DIRTYPE, "f": tarfile.REGTYPE, "w": tarfile.REGTYPE, "l": tarfile.SYMTYPE,
          "h": tarfile.LNKTYPE, "p": tarfile.FIFOTYPE, "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE}


def make_tar(entries: Iterable[Entry], compress: str = "") -> io.BytesIO:
    """A layer tar from ``(name, kind, data, **attrs)`` tuples; kind is one of
    ``d`` (dir), ``f`` (file, data bytes), ``l`` (symlink to data), ``h`` (hard
    link to data), ``p`` (fifo), ``c``/``b`` (character/block device), ``w`` (a
    whiteout/opaque marker file).  ``attrs``: ``mode``, ``uid``, ``gid``,
    ``mtime``, ``devmajor``, ``devminor``, ``xattrs`` (``{name: bytes}``).
    ``compress``: ``""`` (none), ``"gz"``, ``"bz2"`` or ``"xz"``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=_MODES[compress], format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, *extra in entries:
            attrs = extra[0] if extra else {}
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.mode = attrs.get("mtime", T0), attrs.get("mode", 0o755 if kind == "d" else 0o644)
            ti.uid, ti.gid = attrs.get("uid", 0), attrs.get("gid", 0)
            ti.type = _TYPES[kind]
            ti.devmajor, ti.devminor = attrs.get("devmajor", 0), attrs.get("devminor", 0)
            ti.pax_headers = {"SCHILY.xattr." + key: value.decode("utf-8", "surrogateescape")
                              for key, value in sorted(attrs.get("xattrs", {}).items())}
            if kind in "lh":
                ti.linkname = data
            if kind == "f":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                t.addfile(ti)
    buf.seek(0)
    return buf


def tar_entries(fileobj: IO[bytes]) -> dict[str, tarfile.TarInfo]:
    """``{name: TarInfo}`` of a tar (names without ``./`` or trailing ``/``)."""
    with tarfile.open(fileobj=fileobj, mode="r|*") as t:
        return {ti.name.strip("/").removeprefix("./"): ti for ti in t}


def effective_deletions(entries: Collection[str], parent_root: str) -> set[str]:
    """Paths a diff deletes from the tree at ``parent_root``."""
    gone = set()
    for name in entries:
        parent, _, base = name.rpartition("/")
        if base == ".wh..wh..opq":
            where = os.path.join(parent_root, parent)
            for child in os.listdir(where) if os.path.isdir(where) else ():
                if f"{parent}/{child}".lstrip("/") not in entries:
                    gone.add(f"{parent}/{child}".lstrip("/"))
        elif base.startswith(".wh."):
            gone.add(f"{parent}/{base[4:]}".lstrip("/"))
    return gone
