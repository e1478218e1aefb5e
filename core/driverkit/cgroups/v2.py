"""cgroup v2: one directory in the unified hierarchy, OCI resources mapped to v2 files.

Mappings follow runc/crun: ``memory.max``, ``memory.low`` (reservation),
``memory.swap.max`` (OCI swap is memory+swap, so swap - limit), ``cpu.weight``
(shares 2..262144 -> weight 1..10000), ``cpu.max`` ("quota period", "max period"),
``cpuset.cpus``/``mems``, ``pids.max``, ``io.bfq.weight`` (as is) or ``io.weight``
(blkio weight 10..1000 -> 1..10000), ``io.max``, devices as an eBPF program
(:mod:`.ebpf`), and ``unified`` keys written to the files they name.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any

from ._fs import CgroupError, check_subset, read, read_int, read_keyed, reason, write

# controllers enabled in each ancestor's cgroup.subtree_control (when available)
DELEGATE = ("cpuset", "cpu", "io", "memory", "pids", "hugetlb")


if TYPE_CHECKING:
    from collections.abc import Callable

    from .layout import Layout


def shares_to_weight(shares: int) -> int:
    """cpu.shares 2..262144 -> cpu.weight 1..10000 (runc/crun's formula)."""
    return 1 + ((shares - 2) * 9999) // 262142


def blkio_to_io_weight(weight: int) -> int:
    """blkio weight 10..1000 -> io.weight 1..10000 (runc's formula)."""
    return 1 + ((weight - 10) * 9999) // 990


def _max(v: int) -> int | str:
    return "max" if v == -1 else v


class V2:
    version = "v2"

    def __init__(self, layout: Layout, rel: str) -> None:
        self.layout, self.rel = layout, rel
        self.mount = layout.hierarchies[0]
        self.path = os.path.join(self.mount, rel)

    def dir(self, controller: str | None = None) -> str:
        return self.path

    def dirs(self) -> list[str]:
        return [self.path]

    def pid_root(self) -> str:
        return self.path

    def f(self, name: str) -> str:
        return os.path.join(self.path, name)

    def _explain(self, name: str) -> Callable[[int | None], str | None]:
        parent = os.path.dirname(self.path)

        def hint(err: int | None) -> str | None:
            if err == errno.ENOENT:
                ctrl = name.split(".")[0]
                return f"the {ctrl} controller is not enabled in {parent}/cgroup.subtree_control"
            if err == errno.EBUSY and name == "cgroup.subtree_control":
                return "that cgroup has processes of its own, so it cannot hand controllers to children"
            return None
        return hint

    def _write(self, name: str, value: object) -> None:
        write(self.f(name), value, self._explain(name))

    # --------------------------------------------------------------- making
    def make(self, created: list[str]) -> None:
        cur = self.mount
        for part in self.rel.split("/"):
            self._delegate(cur)
            cur = os.path.join(cur, part)
            if os.path.isdir(cur):
                continue
            try:
                os.mkdir(cur)
            except FileExistsError:
                continue
            except OSError as exc:
                raise CgroupError(f"{cur}: cannot create cgroup ({reason(exc)})", exc.errno, cur) from None
            created.append(cur)

    @staticmethod
    def _delegate(parent: str) -> None:
        avail = read(os.path.join(parent, "cgroup.controllers"), "").split()
        enabled = read(os.path.join(parent, "cgroup.subtree_control"), "").split()
        wanted = [c for c in DELEGATE if c in avail and c not in enabled]
        if not wanted:
            return
        ctl = os.path.join(parent, "cgroup.subtree_control")
        hint = lambda e: ("that cgroup has processes of its own, so it cannot hand controllers to children"
                          if e == errno.EBUSY else None)
        try:
            write(ctl, " ".join("+" + c for c in wanted), hint)
        except CgroupError:
            for c in wanted:  # one at a time, so the error names the one refused
                write(ctl, "+" + c, hint)

    # ------------------------------------------------------------ resources
    def apply(self, res: dict[str, Any]) -> None:
        if res.get("memory"):
            self._memory(res["memory"])
        if res.get("cpu"):
            self._cpu(res["cpu"])
        if res.get("pids"):
            self._write("pids.max", _max(res["pids"]["limit"]))
        if res.get("blockIO"):
            self._io(res["blockIO"])
        if res.get("devices"):
            from .ebpf import set_device_rules  # ctypes and bpf(2): only when there are device rules
            set_device_rules(self.path, res["devices"])
        for name, value in res.get("unified", {}).items():
            self._write(name, value)

    def _memory(self, m: dict[str, Any]) -> None:
        limit, swap = m.get("limit"), m.get("swap")
        if limit is not None:
            if limit != -1:
                # v2 would not refuse: it reclaims, then OOM-kills the container.
                # Refuse a limit below what cannot be reclaimed (all but file pages).
                cache = read_keyed(self.f("memory.stat")).get("file", 0)
                used = read_int(self.f("memory.current"), 0) - cache
                if limit < used:
                    raise CgroupError(f"memory.max: cannot set {limit} (the limit is below current usage of "
                                      f"{used} bytes, not counting page cache)", errno.EBUSY, self.f("memory.max"))
            self._write("memory.max", _max(limit))
        if swap is not None:
            if not os.path.exists(self.f("memory.swap.max")):
                if swap != -1:
                    raise CgroupError(f"memory.swap.max: cannot set {swap} (no swap accounting in this kernel)",
                                      errno.ENOENT)
            else:
                mem = limit if limit is not None else read_int(self.f("memory.max"))
                if swap == -1:
                    value = "max"
                elif mem == -1:
                    raise CgroupError(f"memory.swap.max: cannot set {swap} (memory+swap needs a memory limit; "
                                      "memory.max is max)", errno.EINVAL)
                elif swap < mem:
                    raise CgroupError(f"memory.swap.max: cannot set {swap} (memory+swap must be >= the memory "
                                      f"limit of {mem})", errno.EINVAL)
                else:
                    value = swap - mem
                self._write("memory.swap.max", value)
        if m.get("reservation") is not None:
            self._write("memory.low", _max(m["reservation"]))
        # kernel / kernelTCP: no v2 files; kernel memory is always in memory.max
        if m.get("swappiness") is not None:
            if not os.path.exists(self.f("memory.swappiness")):
                raise CgroupError(f"memory.swappiness: cannot set {m['swappiness']} (cgroup v2 has no per-cgroup "
                                  "swappiness)", errno.EOPNOTSUPP)
            self._write("memory.swappiness", m["swappiness"])
        if m.get("disableOOMKiller"):
            raise CgroupError("memory.oom_control: cannot set 1 (cgroup v2 cannot disable the OOM killer)",
                              errno.EOPNOTSUPP)

    def _cpu(self, c: dict[str, Any]) -> None:
        if "shares" in c:
            self._write("cpu.weight", shares_to_weight(c["shares"]))
        if "quota" in c or "period" in c:
            old = read(self.f("cpu.max"), "max 100000").split()
            quota = c.get("quota", -1 if old[0] == "max" else int(old[0]))
            period = c.get("period", int(old[1]) if len(old) > 1 else 100000)
            self._write("cpu.max", f"{_max(quota)} {period}")
        if "burst" in c:
            self._write("cpu.max.burst", c["burst"])
        if "idle" in c:
            self._write("cpu.idle", c["idle"])
        for key in ("realtimeRuntime", "realtimePeriod"):
            if key in c:
                raise CgroupError(f"linux.resources.cpu.{key}: cgroup v2 has no real-time CPU budget",
                                  errno.EOPNOTSUPP)
        for key, kind in (("cpus", "CPUs"), ("mems", "memory nodes")):
            if key in c:
                fname, eff = f"cpuset.{key}", f"cpuset.{key}.effective"
                check_subset(fname, c[key], kind, os.path.join(self.mount, eff),
                                 os.path.join(os.path.dirname(self.path), eff))
                self._write(fname, c[key])

    def _io(self, b: dict[str, Any]) -> None:
        bfq = os.path.exists(self.f("io.bfq.weight"))
        name, conv = ("io.bfq.weight", int) if bfq else ("io.weight", blkio_to_io_weight)
        if "weight" in b:
            self._write(name, f"default {conv(b['weight'])}")
        if "leafWeight" in b:
            raise CgroupError("linux.resources.blockIO.leafWeight: cgroup v2 has no leaf weight", errno.EOPNOTSUPP)
        for dev in b.get("weightDevice", ()):
            if dev["weight"] is not None:
                self._write(name, f"{dev['major']}:{dev['minor']} {conv(dev['weight'])}")
        for key, knob in (("throttleReadBpsDevice", "rbps"), ("throttleWriteBpsDevice", "wbps"),
                          ("throttleReadIOPSDevice", "riops"), ("throttleWriteIOPSDevice", "wiops")):
            for dev in b.get(key, ()):
                self._write("io.max", f"{dev['major']}:{dev['minor']} {knob}={dev['rate'] or 'max'}")

    # ----------------------------------------------------- freezer, events
    def set_frozen(self, frozen: bool) -> None:
        self._write("cgroup.freeze", int(frozen))

    def frozen_state(self) -> bool | None:
        """True (frozen), False (thawed) or None (freezing, or thawing)."""
        want = read(self.f("cgroup.freeze"), "0") == "1"
        now = read_keyed(self.f("cgroup.events")).get("frozen", 0) == 1
        return now if want == now else None

    def oom_kills(self) -> int:
        return read_keyed(self.f("memory.events")).get("oom_kill", 0)

    def kill_now(self) -> bool:
        """SIGKILL the whole subtree at once through cgroup.kill (Linux 5.14+)."""
        if not os.path.exists(self.f("cgroup.kill")):
            return False
        self._write("cgroup.kill", 1)
        return True
