"""Users and groups of an image: ``User`` and ``GroupAdd`` through its passwd and
group files, and the user's ``HOME``.

The files are read inside a rootfs the container may control (a running one's, for
exec and cp): links are resolved inside it, only a regular file is read, and at
most :data:`MAX_DB_BYTES` of it.
"""

from __future__ import annotations

from ...driverkit.fdwalk import read_file_in_root

MAX_DB_BYTES = 16 << 20  # of a passwd or group file: more is not a user database


def resolve_user(rootfs: str, user: str | None) -> dict:
    """Map ``user[:group]`` (names or numbers) through the image's passwd/group files.

    Returns ``{"uid", "gid", "additionalGids"}``; an unknown name raises ValueError.
    """
    name, _, group = (user or "").partition(":")
    uid, gid = 0, 0
    passwd = _read_db(rootfs, "etc/passwd")
    groups = _read_db(rootfs, "etc/group")
    if name:
        entry = next((p for p in passwd if p[0] == name or (name.isdigit() and p[2] == name)), None)
        if entry is not None:
            uid, gid = int(entry[2]), int(entry[3])
            name = entry[0]
        elif name.isdigit():
            uid, gid, name = int(name), int(name) if not group else 0, ""
        else:
            raise ValueError(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        entry = next((g for g in groups if g[0] == group or (group.isdigit() and g[2] == group)), None)
        if entry is not None:
            gid = int(entry[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ValueError(f"unable to find group {group}: no matching entries in group file")
    extra = sorted({int(g[2]) for g in groups if name and len(g) > 3 and name in g[3].split(",")} - {gid})
    return {"uid": uid, "gid": gid, "additionalGids": extra}


def home_dir(rootfs: str, uid: int) -> str:
    """``HOME`` for a process of ``uid``, as runc sets it when the process's
    environment has none: the home of the first passwd entry with that uid, ``/``
    when there is none (no entry, or no passwd file)."""
    entry = next((p for p in _read_db(rootfs, "etc/passwd") if p[2].strip().isdigit() and int(p[2]) == uid), None)
    return entry[5] if entry is not None and len(entry) > 5 else "/"


def _read_db(rootfs: str, rel: str) -> list[list[str]]:
    """The ``:``-split lines of ``/etc/passwd`` or ``/etc/group`` of a rootfs the
    container may control (a running one's, for exec and cp): links resolved
    inside it, only a regular file, at most :data:`MAX_DB_BYTES`."""
    data = read_file_in_root(rootfs, rel, MAX_DB_BYTES)
    if data is None:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return [line.split(":") for line in lines if line.count(":") >= 2]


def group_ids(rootfs: str, names: list[str]) -> list[int]:
    """The gids of ``GroupAdd`` (names through the group file, or numbers)."""
    groups = _read_db(rootfs, "etc/group")
    out = []
    for name in names:
        entry = next((g for g in groups if g[0] == name), None)
        if entry is not None:
            out.append(int(entry[2]))
        elif name.isdigit():
            out.append(int(name))
        else:
            raise ValueError(f"unable to find group {name}: no matching entries in group file")
    return out
