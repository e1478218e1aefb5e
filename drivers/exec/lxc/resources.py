"""OCI ``linux.resources`` -> ``lxc.cgroup.*`` keys (cgroup v1; daemon side).

LXC writes each ``lxc.cgroup.<file> = <value>`` into the container's cgroup
before its init runs, in the order given, so the order here is the one the
kernel needs (the memory limit before memory+swap, the CFS period before the
quota).  Values are checked here, naming the OCI field, so ``docker create``
fails rather than ``start``; the same files and spellings as the shared cgroup
manager (``dockyard.driverkit.cgroups``, which ``exec_update`` uses on a running
container) writes.  cgroup v2 keys (``lxc.cgroup2.*``) are not produced: this
driver refuses v2 hosts in ``exec_supported``.
"""

import os

from dockyard.errors import ExecError

NOT_LXC = "not supported by the lxc exec driver"
FIELDS = {
    "memory": {"limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness", "disableOOMKiller",
               "useHierarchy", "checkBeforeUpdate"},
    "cpu": {"shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "cpus", "mems", "idle"},
    "pids": {"limit"},
    "blockIO": {"weight", "leafWeight", "weightDevice", "throttleReadBpsDevice", "throttleWriteBpsDevice",
                "throttleReadIOPSDevice", "throttleWriteIOPSDevice"},
}
THROTTLES = (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
             ("throttleReadIOPSDevice", "read_iops_device"), ("throttleWriteIOPSDevice", "write_iops_device"))


def oom_file(layout, path):
    """The v1 ``memory.oom_control`` of cgroup ``path`` (its ``oom_kill`` counts kills)."""
    mount = layout.controllers.get("memory")
    return os.path.join(mount, path, "memory.oom_control") if mount else None


def _int(where, field, value, lo=None, hi=None):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ExecError(f"{where}: linux.resources.{field}: {value!r} is not an integer")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ExecError(f"{where}: linux.resources.{field}: {value} must be {rng}")
    return value


def _section(where, resources, name):
    sec = resources.get(name)
    if sec is None:
        return {}
    if not isinstance(sec, dict):
        raise ExecError(f"{where}: linux.resources.{name} must be an object")
    unknown = sorted(set(sec) - FIELDS[name])
    if unknown:
        raise ExecError(f"{where}: linux.resources.{name}.{unknown[0]}: unknown field")
    return sec


def _have(layout, controller, name):
    mount = layout.controllers.get(controller)
    return bool(mount) and os.path.exists(os.path.join(mount, name))


def _need(where, layout, controller, field):
    if not layout.controllers.get(controller):
        raise ExecError(f"{where}: linux.resources.{field}: the {controller} controller is not mounted here")


def lines(where, resources, layout):
    """``[(lxc key, value)]`` for ``resources``; raises ExecError naming the field."""
    if not isinstance(resources, dict):
        raise ExecError(f"{where}: linux.resources must be an object")
    known = set(FIELDS) | {"devices", "unified", "hugepageLimits", "network", "rdma"}
    for key in resources:
        if key not in known:
            raise ExecError(f"{where}: linux.resources.{key}: unknown resource")
    for key in ("hugepageLimits", "network", "rdma", "unified"):
        if resources.get(key):
            raise ExecError(f"{where}: linux.resources.{key}: {NOT_LXC}: not translated to lxc.cgroup keys")
    out = []
    out += _memory(where, _section(where, resources, "memory"), layout)
    out += _cpu(where, _section(where, resources, "cpu"), layout)
    pids = _section(where, resources, "pids")
    if pids.get("limit") is not None:
        _need(where, layout, "pids", "pids.limit")
        limit = _int(where, "pids.limit", pids["limit"], -1)
        out.append(("lxc.cgroup.pids.max", "max" if limit in (-1, 0) else limit))
    out += _blkio(where, _section(where, resources, "blockIO"), layout)
    devices = resources.get("devices") or []
    if not isinstance(devices, list):
        raise ExecError(f"{where}: linux.resources.devices must be a list")
    if devices:
        _need(where, layout, "devices", "devices")
    for i, rule in enumerate(devices):
        out.append(_device(where, i, rule))
    return [(k, str(v)) for k, v in out]


def _memory(where, m, layout):
    out = []
    if not any(m.get(k) is not None for k in m if k not in ("useHierarchy", "checkBeforeUpdate")):
        return out
    _need(where, layout, "memory", "memory")
    for key in ("limit", "reservation", "swap", "kernel", "kernelTCP"):
        if m.get(key) is not None and _int(where, f"memory.{key}", m[key]) < -1:
            raise ExecError(f"{where}: linux.resources.memory.{key}: {m[key]} must be -1 (unlimited) or >= 0")
    limit, swap = m.get("limit"), m.get("swap")
    if swap == 0:
        swap = None  # docker's "unset"
    if limit is not None:
        out.append(("lxc.cgroup.memory.limit_in_bytes", limit))
    if swap is not None:
        if limit is not None and swap != -1 and (limit == -1 or swap < limit):
            raise ExecError(f"{where}: linux.resources.memory.swap: memory+swap {swap} must be >= "
                            f"memory.limit {limit}")
        if not _have(layout, "memory", "memory.memsw.limit_in_bytes"):
            if swap != -1:
                raise ExecError(f"{where}: linux.resources.memory.swap: this kernel has no swap accounting "
                                "(boot with swapaccount=1)")
        else:
            out.append(("lxc.cgroup.memory.memsw.limit_in_bytes", swap))
    if m.get("reservation") is not None:
        out.append(("lxc.cgroup.memory.soft_limit_in_bytes", m["reservation"]))
    for key, name in (("kernel", "memory.kmem.limit_in_bytes"), ("kernelTCP", "memory.kmem.tcp.limit_in_bytes")):
        if m.get(key) is not None:
            if not _have(layout, "memory", name):
                raise ExecError(f"{where}: linux.resources.memory.{key}: this kernel has no {name}")
            out.append(("lxc.cgroup." + name, m[key]))
    if m.get("swappiness") is not None:
        out.append(("lxc.cgroup.memory.swappiness", _int(where, "memory.swappiness", m["swappiness"], 0, 100)))
    if m.get("disableOOMKiller") is not None:
        if not isinstance(m["disableOOMKiller"], bool):
            raise ExecError(f"{where}: linux.resources.memory.disableOOMKiller must be true or false")
        out.append(("lxc.cgroup.memory.oom_control", int(m["disableOOMKiller"])))
    return out


def _cpu(where, c, layout):
    out = []
    if c.get("shares") not in (None, 0):
        _need(where, layout, "cpu", "cpu.shares")
        out.append(("lxc.cgroup.cpu.shares", _int(where, "cpu.shares", c["shares"], 2, 262144)))
    if c.get("period") not in (None, 0):
        _need(where, layout, "cpu", "cpu.period")
        out.append(("lxc.cgroup.cpu.cfs_period_us", _int(where, "cpu.period", c["period"], 1000, 1000000)))
    if c.get("quota") not in (None, 0):
        _need(where, layout, "cpu", "cpu.quota")
        quota = _int(where, "cpu.quota", c["quota"], -1)
        if quota != -1 and quota < 1000:
            raise ExecError(f"{where}: linux.resources.cpu.quota: {quota} must be -1 (unlimited) or >= 1000 "
                            "microseconds")
        out.append(("lxc.cgroup.cpu.cfs_quota_us", quota))
    for key, name, lo in (("burst", "cpu.cfs_burst_us", 0), ("realtimePeriod", "cpu.rt_period_us", 1),
                          ("realtimeRuntime", "cpu.rt_runtime_us", -1), ("idle", "cpu.idle", 0)):
        if c.get(key) not in (None,) and not (key.startswith("realtime") and c[key] == 0):
            if not _have(layout, "cpu", name):
                raise ExecError(f"{where}: linux.resources.cpu.{key}: this kernel has no {name}")
            out.append(("lxc.cgroup." + name, _int(where, f"cpu.{key}", c[key], lo, 1 if key == "idle" else None)))
    for key in ("cpus", "mems"):
        if c.get(key) not in (None, ""):
            _need(where, layout, "cpuset", f"cpu.{key}")
            value = c[key]
            if not isinstance(value, str) or not value.strip() or set(value) - set("0123456789,- "):
                raise ExecError(f"{where}: linux.resources.cpu.{key}: {value!r} must be a list like 0-3,5")
            out.append((f"lxc.cgroup.cpuset.{key}", value.replace(" ", "")))
    return out


def _blkio(where, b, layout):
    out = []
    if not b:
        return out
    _need(where, layout, "blkio", "blockIO")
    prefix = "blkio." if _have(layout, "blkio", "blkio.weight") else "blkio.bfq."
    if b.get("weight") not in (None, 0):
        if not _have(layout, "blkio", prefix + "weight"):
            raise ExecError(f"{where}: linux.resources.blockIO.weight: this kernel has neither blkio.weight nor "
                            "blkio.bfq.weight")
        out.append(("lxc.cgroup." + prefix + "weight", _int(where, "blockIO.weight", b["weight"], 10, 1000)))
    if b.get("leafWeight") not in (None, 0):
        if not _have(layout, "blkio", "blkio.leaf_weight"):
            raise ExecError(f"{where}: linux.resources.blockIO.leafWeight: this kernel has no blkio.leaf_weight")
        out.append(("lxc.cgroup.blkio.leaf_weight", _int(where, "blockIO.leafWeight", b["leafWeight"], 10, 1000)))
    for i, dev in enumerate(b.get("weightDevice") or ()):
        major, minor = _dev(where, f"blockIO.weightDevice[{i}]", dev)
        if dev.get("weight") is not None:
            out.append(("lxc.cgroup." + prefix + "weight_device",
                        f"{major}:{minor} {_int(where, f'blockIO.weightDevice[{i}].weight', dev['weight'], 0)}"))
        if dev.get("leafWeight") is not None:
            raise ExecError(f"{where}: linux.resources.blockIO.weightDevice[{i}].leafWeight: {NOT_LXC}")
    for key, name in THROTTLES:
        for i, dev in enumerate(b.get(key) or ()):
            major, minor = _dev(where, f"blockIO.{key}[{i}]", dev)
            rate = _int(where, f"blockIO.{key}[{i}].rate", dev.get("rate") or 0, 0)
            out.append((f"lxc.cgroup.blkio.throttle.{name}", f"{major}:{minor} {rate}"))
    return out


def _dev(where, field, dev):
    if not isinstance(dev, dict) or dev.get("major") is None or dev.get("minor") is None:
        raise ExecError(f"{where}: linux.resources.{field}: major and minor are required")
    return _int(where, f"{field}.major", dev["major"], 0), _int(where, f"{field}.minor", dev["minor"], 0)


def _device(where, i, e):
    """A devices.allow/deny rule, as the v1 files spell them."""
    field = f"linux.resources.devices[{i}]"
    if not isinstance(e, dict) or not isinstance(e.get("allow"), bool):
        raise ExecError(f"{where}: {field}.allow must be true or false")
    kind = e.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise ExecError(f"{where}: {field}.type {kind!r} must be \"a\", \"b\" or \"c\"")
    access = e.get("access") or "rwm"
    if not isinstance(access, str) or set(access) - set("rwm"):
        raise ExecError(f"{where}: {field}.access {access!r}: letters of \"rwm\" only")
    key = "lxc.cgroup.devices." + ("allow" if e["allow"] else "deny")
    if kind == "a":
        return key, "a"
    nums = []
    for name in ("major", "minor"):
        v = e.get(name)
        nums.append("*" if v is None or v == -1 else str(_int(where, f"devices[{i}].{name}", v, 0, 2**31 - 1)))
    return key, f"{kind} {nums[0]}:{nums[1]} {''.join(c for c in 'rwm' if c in access)}"
