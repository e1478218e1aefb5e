"""cgroup v1: one directory per hierarchy, OCI resources mapped to v1 files."""

from __future__ import annotations

import errno
import functools
import os
from typing import TYPE_CHECKING, Any

from ._fs import CgroupError, check_subset, read, read_int, read_keyed, reason, write

if TYPE_CHECKING:
    from collections.abc import Callable

    from .layout import Layout

UNLIMITED = 2**63 - 1  # what -1 reads back as (page-rounded by the kernel)


def _num(v: int) -> int:
    return UNLIMITED if v == -1 else v


class V1:
    version = "v1"

    def __init__(self, layout: Layout, rel: str) -> None:
        self.layout, self.rel = layout, rel

    # --------------------------------------------------------------- places
    def dir(self, controller: str) -> str | None:
        mount = self.layout.controllers.get(controller)
        return os.path.join(mount, self.rel) if mount else None

    def dirs(self) -> list[str]:
        return [os.path.join(h, self.rel) for h in self.layout.hierarchies]

    def pid_root(self) -> str:
        for c in ("pids", "freezer", "memory"):
            if d := self.dir(c):
                return d
        return self.dirs()[0]

    def _need(self, controller: str, what: str) -> str:
        d = self.dir(controller)
        if d is None:
            raise CgroupError(f"{what}: the {controller} controller is not mounted on this host", errno.ENOENT)
        return d

    # --------------------------------------------------------------- making
    def make(self, created: list[str]) -> None:
        """mkdir every level in every hierarchy, appending new dirs to ``created``."""
        cpuset = self.layout.controllers.get("cpuset")
        for hier in self.layout.hierarchies:
            cur = hier
            for part in self.rel.split("/"):
                parent, cur = cur, os.path.join(cur, part)
                try:
                    os.mkdir(cur)
                    created.append(cur)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise CgroupError(f"{cur}: cannot create cgroup ({reason(exc)})", exc.errno, cur) from None
                if hier == cpuset:  # new levels, and any a crash left half-made
                    self._inherit_cpuset(parent, cur)

    @staticmethod
    def _inherit_cpuset(parent: str, child: str) -> None:
        # A new v1 cpuset starts with empty cpus/mems, and a process cannot join
        # it (ENOSPC) until both are set.
        for name in ("cpuset.cpus", "cpuset.mems"):
            if not read(os.path.join(child, name), ""):
                write(os.path.join(child, name), read(os.path.join(parent, name), ""))

    # ------------------------------------------------------------ resources
    def apply(self, res: dict[str, Any]) -> None:
        if res.get("memory"):
            self._memory(res["memory"])
        if res.get("cpu"):
            self._cpu(res["cpu"])
        if res.get("pids"):
            d = self._need("pids", "pids.max")
            limit = res["pids"]["limit"]
            write(os.path.join(d, "pids.max"), "max" if limit == -1 else limit)
        if res.get("blockIO"):
            self._blkio(res["blockIO"])
        if res.get("devices"):
            d = self._need("devices", "devices.allow")
            for rule in res["devices"]:
                write(os.path.join(d, "devices.allow" if rule["allow"] else "devices.deny"), device_line(rule),
                      lambda e: "the parent cgroup does not allow it" if e == errno.EPERM else None)

    def _memory(self, m: dict[str, Any]) -> None:
        d = self._need("memory", "memory.limit_in_bytes")
        f = lambda name: os.path.join(d, name)
        limit, swap = m.get("limit"), m.get("swap")
        has_memsw = os.path.exists(f("memory.memsw.limit_in_bytes"))
        if swap is not None and not has_memsw and swap != -1:
            raise CgroupError(f"memory.memsw.limit_in_bytes: cannot set {swap} (no swap accounting in this "
                              "kernel; boot with swapaccount=1)", errno.ENOENT)
        steps: list[tuple[str, int]] = []
        if limit is not None:
            steps.append(("memory.limit_in_bytes", limit))
        if swap is not None and has_memsw:
            steps.append(("memory.memsw.limit_in_bytes", swap))
        # The kernel keeps memsw >= limit at every moment: when the new memory
        # limit is above the current memsw limit, memsw must go up first.
        if len(steps) == 2 and limit is not None and _num(limit) > read_int(f("memory.memsw.limit_in_bytes")):
            steps.reverse()
        for name, value in steps:
            write(f(name), value, functools.partial(self._memory_hint, name))
        if m.get("reservation") is not None:
            write(f("memory.soft_limit_in_bytes"), m["reservation"])
        for key, name in (("kernel", "memory.kmem.limit_in_bytes"), ("kernelTCP", "memory.kmem.tcp.limit_in_bytes")):
            if m.get(key) is not None and os.path.exists(f(name)):
                write(f(name), m[key])
        if m.get("swappiness") is not None:
            write(f("memory.swappiness"), m["swappiness"])
        if m.get("disableOOMKiller") is not None:
            write(f("memory.oom_control"), int(m["disableOOMKiller"]))

    def _memory_hint(self, name: str, err: int | None) -> str | None:
        d = self._need("memory", name)  # mounted: the write that failed was there
        if err == errno.EBUSY:
            usage = read(os.path.join(d, "memory.usage_in_bytes"), "?")
            return f"the limit is below current usage of {usage} bytes"
        if err == errno.EINVAL and name == "memory.limit_in_bytes":
            memsw = read(os.path.join(d, "memory.memsw.limit_in_bytes"), "?")
            return f"memory+swap limit is {memsw}; it must stay >= the memory limit, so raise swap too"
        if err == errno.EINVAL:
            limit = read(os.path.join(d, "memory.limit_in_bytes"), "?")
            return f"memory+swap must be >= the memory limit of {limit}"
        return None

    def _cpu(self, c: dict[str, Any]) -> None:
        if any(k in c for k in ("shares", "quota", "period", "burst", "realtimeRuntime", "realtimePeriod", "idle")):
            d = self._need("cpu", "cpu.shares")
            f = lambda name: os.path.join(d, name)
            if "shares" in c:
                write(f("cpu.shares"), c["shares"])
            steps = [(f("cpu.cfs_period_us"), c.get("period")), (f("cpu.cfs_quota_us"), c.get("quota"))]
            steps = [s for s in steps if s[1] is not None]
            try:
                for path, value in steps:
                    write(path, value)
            except CgroupError as exc:
                # a shorter period can break the parent's quota/period ratio until
                # the quota changes: set the quota first and try again (as runc does)
                if exc.errno != errno.EINVAL or len(steps) < 2:
                    raise
                for path, value in reversed(steps):
                    write(path, value)
            if "burst" in c:
                write(f("cpu.cfs_burst_us"), c["burst"])
            if "realtimePeriod" in c:
                write(f("cpu.rt_period_us"), c["realtimePeriod"])
            if "realtimeRuntime" in c:
                write(f("cpu.rt_runtime_us"), c["realtimeRuntime"],
                      lambda e: "more than the parent's cpu.rt_runtime_us allows" if e == errno.EINVAL else None)
            if "idle" in c:
                write(f("cpu.idle"), c["idle"])
        for key, kind in (("cpus", "CPUs"), ("mems", "memory nodes")):
            if key in c:
                d = self._need("cpuset", f"cpuset.{key}")
                fname, eff = f"cpuset.{key}", f"cpuset.effective_{key}"
                check_subset(fname, c[key], kind, os.path.join(self.layout.controllers["cpuset"], eff),
                                 os.path.join(os.path.dirname(d), eff))
                write(os.path.join(d, fname), c[key])

    def _blkio(self, b: dict[str, Any]) -> None:
        d = self._need("blkio", "blkio.weight")
        f = lambda name: os.path.join(d, name)
        # blkio.weight (CFQ, gone since 5.0) or blkio.bfq.weight (BFQ scheduler)
        prefix = "blkio." if os.path.exists(f("blkio.weight")) else "blkio.bfq."
        if "weight" in b:
            if not os.path.exists(f(prefix + "weight")):
                raise CgroupError(f"blkio.weight: cannot set {b['weight']} (this kernel has neither blkio.weight "
                                  "nor blkio.bfq.weight)", errno.ENOENT)
            write(f(prefix + "weight"), b["weight"])
        if "leafWeight" in b:
            if not os.path.exists(f("blkio.leaf_weight")):
                raise CgroupError(f"blkio.leaf_weight: cannot set {b['leafWeight']} (not in this kernel)",
                                  errno.ENOENT)
            write(f("blkio.leaf_weight"), b["leafWeight"])
        for dev in b.get("weightDevice", ()):
            if dev["weight"] is not None:
                write(f(prefix + "weight_device"), f"{dev['major']}:{dev['minor']} {dev['weight']}", _no_dev(dev))
            if dev["leafWeight"] is not None:
                write(f("blkio.leaf_weight_device"), f"{dev['major']}:{dev['minor']} {dev['leafWeight']}")
        for key, name in (("throttleReadBpsDevice", "read_bps_device"), ("throttleWriteBpsDevice", "write_bps_device"),
                          ("throttleReadIOPSDevice", "read_iops_device"),
                          ("throttleWriteIOPSDevice", "write_iops_device")):
            for dev in b.get(key, ()):
                write(f("blkio.throttle." + name), f"{dev['major']}:{dev['minor']} {dev['rate'] or 0}", _no_dev(dev))

    # ----------------------------------------------------- freezer, events
    def set_frozen(self, frozen: bool) -> None:
        d = self._need("freezer", "freezer.state")
        write(os.path.join(d, "freezer.state"), "FROZEN" if frozen else "THAWED")

    def frozen_state(self) -> bool | None:
        """True (FROZEN), False (THAWED) or None (FREEZING: on its way)."""
        d = self._need("freezer", "freezer.state")
        state = read(os.path.join(d, "freezer.state"), "THAWED")
        return {"FROZEN": True, "THAWED": False}.get(state)

    def oom_kills(self) -> int:
        d = self._need("memory", "memory.oom_control")
        return read_keyed(os.path.join(d, "memory.oom_control")).get("oom_kill", 0)

    def kill_now(self) -> bool:
        return False  # v1 has no cgroup.kill


def device_line(rule: dict[str, Any]) -> str:
    """A devices.allow/deny line: 'a' or 'c 1:3 rwm' ('*' for any major/minor)."""
    if rule["type"] == "a":
        return "a"
    star = lambda v: "*" if v is None else v
    return f"{rule['type']} {star(rule['major'])}:{star(rule['minor'])} {rule['access']}"


def _no_dev(dev: dict[str, Any]) -> Callable[[int | None], str | None]:
    return lambda e: f"no block device {dev['major']}:{dev['minor']}" if e in (errno.ENODEV, errno.EINVAL) else None
