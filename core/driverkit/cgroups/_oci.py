"""Check and normalise OCI ``linux.resources`` before anything is written.

:func:`normalise` returns the same shape with ``None`` values dropped, numbers
checked, device rules filled in (``type`` "a" when unset, ``major``/``minor``
``None`` for "*", ``access`` "rwm") and the "unset" spellings (0 shares, 0 quota,
empty cpus) removed, or raises :class:`CgroupError` naming the field.  The v1 and v2
backends then only map values to files.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from ._fs import CgroupError, parse_list

FIELDS = {
    "memory": {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness",
               "disableOOMKiller", "useHierarchy", "checkBeforeUpdate"},
    "cpu": {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"},
    "pids": {"limit"},
    "blockIO": {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"},
}
if TYPE_CHECKING:
    from collections.abc import Container, Iterable

UNSUPPORTED = ("hugepageLimits", "network", "rdma")
THROTTLES = ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice", "throttleWriteIOPSDevice")


def _bad(field: str, value: object, why: str) -> CgroupError:
    return CgroupError(f"linux.resources.{field}: cannot use {value!r} ({why})", errno.EINVAL)


def _int(field: str, value: Any, lo: int | None = None, hi: int | None = None,
         unset: Container[int] = ()) -> int | None:
    if value is None or value in unset:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(field, value, "not an integer")
    if not -2 ** 63 <= value < 2 ** 63:  # the kernel parses with simple_strtoull: a bigger number wraps
        raise _bad(field, value, "does not fit in an int64")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise _bad(field, value, f"must be {rng}")
    return value


def _limit(field: str, value: Any) -> int | None:
    """A byte/count limit: -1 means unlimited; other negatives are refused."""
    value = _int(field, value)
    if value is not None and value < -1:
        raise _bad(field, value, "must be -1 (unlimited) or >= 0")
    return value


def _section(resources: dict[str, Any], name: str) -> dict[str, Any]:
    sec = resources.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise _bad(name, sec, "must be an object")
    unknown = sorted(set(sec) - FIELDS[name])
    if unknown:
        raise _bad(f"{name}.{unknown[0]}", sec[unknown[0]], "unknown field")
    return sec


def _devices_of(field: str, entries: Iterable[Any] | None, keys: Iterable[str]) -> list[dict[str, int | None]]:
    out = []
    for i, e in enumerate(entries or ()):
        if not isinstance(e, dict):
            raise _bad(f"{field}[{i}]", e, "must be an object")
        item = {"major": _int(f"{field}[{i}].major", e.get("major"), 0),
                "minor": _int(f"{field}[{i}].minor", e.get("minor"), 0)}
        if item["major"] is None or item["minor"] is None:
            raise _bad(f"{field}[{i}]", e, "major and minor are required")
        for key in keys:
            item[key] = _int(f"{field}[{i}].{key}", e.get(key), 0)
        out.append(item)
    return out


def _device_rule(i: int, e: Any) -> dict[str, Any]:
    field = f"devices[{i}]"
    if not isinstance(e, dict):
        raise _bad(field, e, "must be an object")
    if not isinstance(e.get("allow"), bool):
        raise _bad(f"{field}.allow", e.get("allow"), "must be true or false")
    kind = e.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise _bad(f"{field}.type", kind, 'must be "a", "b" or "c"')
    access = e.get("access") or "rwm"
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise _bad(f"{field}.access", access, 'letters of "rwm" only')
    nums: dict[str, int | None] = {}
    for key in ("major", "minor"):
        v = e.get(key)
        nums[key] = None if v is None or v == -1 or kind == "a" else _int(f"{field}.{key}", v, 0, 2**31 - 1)
    return {"allow": e["allow"], "type": kind, "access": "".join(c for c in "rwm" if c in access), **nums}


def normalise(resources: dict[str, Any] | None, version: str) -> dict[str, Any]:
    """Check ``resources`` (an OCI ``linux.resources`` dict) for cgroup ``version``."""
    if resources is None:
        return {}
    if not isinstance(resources, dict):
        raise _bad("", resources, "must be an object")
    known = set(FIELDS) | {"devices", "unified", *UNSUPPORTED}
    for key in resources:
        if key not in known:
            raise _bad(key, resources[key], "unknown resource")
    for key in UNSUPPORTED:
        if resources.get(key):
            raise CgroupError(f"linux.resources.{key}: not supported by this cgroup manager", errno.EOPNOTSUPP)
    out: dict[str, Any] = {}

    m = _section(resources, "memory")
    mem = {k: _limit(f"memory.{k}", m.get(k)) for k in ("limit", "reservation", "swap", "kernel", "kernelTCP")}
    mem["swappiness"] = _int("memory.swappiness", m.get("swappiness"), 0, 100)
    if m.get("disableOOMKiller") is not None:
        if not isinstance(m["disableOOMKiller"], bool):
            raise _bad("memory.disableOOMKiller", m["disableOOMKiller"], "must be true or false")
        mem["disableOOMKiller"] = m["disableOOMKiller"]
    if mem.get("swap") == 0:  # docker's "unset"
        mem["swap"] = None
    lim, swap = mem.get("limit"), mem.get("swap")
    if lim is not None and swap is not None and swap != -1 and (lim == -1 or swap < lim):
        raise _bad("memory.swap", swap, f"memory+swap must be >= memory.limit {lim}")
    out["memory"] = {k: v for k, v in mem.items() if v is not None}

    c = _section(resources, "cpu")
    cpu: dict[str, Any] = {"shares": _int("cpu.shares", c.get("shares"), 2, 262144, unset=(0,)),
           "quota": _int("cpu.quota", c.get("quota"), unset=(0,)),
           "period": _int("cpu.period", c.get("period"), 1000, 1000000, unset=(0,)),
           "burst": _int("cpu.burst", c.get("burst"), 0),
           "realtimeRuntime": _int("cpu.realtimeRuntime", c.get("realtimeRuntime"), -1, unset=(0,)),
           "realtimePeriod": _int("cpu.realtimePeriod", c.get("realtimePeriod"), 1, unset=(0,)),
           "idle": _int("cpu.idle", c.get("idle"), 0, 1)}
    if cpu["quota"] is not None and cpu["quota"] != -1 and cpu["quota"] < 1000:
        raise _bad("cpu.quota", cpu["quota"], "must be -1 (unlimited) or >= 1000 microseconds")
    for key, what in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        if c.get(key) not in (None, ""):
            if not isinstance(c[key], str):
                raise _bad(f"cpu.{key}", c[key], "must be a string like 0-3,5")
            parse_list(c[key], what)
            cpu[key] = c[key].strip()
    out["cpu"] = {k: v for k, v in cpu.items() if v is not None}

    p = _section(resources, "pids")
    if p.get("limit") is not None:
        limit = _int("pids.limit", p["limit"], -1)
        out["pids"] = {"limit": -1 if limit == 0 else limit}

    b = _section(resources, "blockIO")
    bio: dict[str, Any] = {"weight": _int("blockIO.weight", b.get("weight"), 10, 1000, unset=(0,)),
           "leafWeight": _int("blockIO.leafWeight", b.get("leafWeight"), 10, 1000, unset=(0,))}
    if b.get("weightDevice"):
        bio["weightDevice"] = _devices_of("blockIO.weightDevice", b["weightDevice"], ("weight", "leafWeight"))
    for key in THROTTLES:
        if b.get(key):
            bio[key] = _devices_of(f"blockIO.{key}", b[key], ("rate",))
    out["blockIO"] = {k: v for k, v in bio.items() if v is not None}

    if resources.get("devices"):
        if not isinstance(resources["devices"], list):
            raise _bad("devices", resources["devices"], "must be a list")
        out["devices"] = [_device_rule(i, e) for i, e in enumerate(resources["devices"])]

    if resources.get("unified"):
        uni = resources["unified"]
        if version != "v2":
            raise CgroupError("linux.resources.unified: only for cgroup v2 (this host uses v1)", errno.EOPNOTSUPP)
        if not isinstance(uni, dict):
            raise _bad("unified", uni, "must be an object of file name -> value")
        for key in uni:
            if not isinstance(key, str) or "/" in key or key.startswith("."):
                raise _bad(f"unified.{key}", uni[key], "must name a file of the cgroup")
        out["unified"] = {k: str(v) for k, v in uni.items()}
    return {k: v for k, v in out.items() if v}
