"""Resource usage in the shapes of the Docker Engine API's ``/containers/{id}/stats``.

The docker CLI computes its columns from exactly these fields:
CPU % from ``cpu_stats.cpu_usage.total_usage``, ``system_cpu_usage`` and
``online_cpus``; memory usage from ``memory_stats.usage`` minus
``stats["total_inactive_file"]`` (v1) or ``stats["inactive_file"]`` (v2), against
``memory_stats.limit``; block I/O from ``io_service_bytes_recursive`` ops "Read" and
"Write" (v2: "read", "write", as dockerd reports them).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from ._fs import read, read_int, read_keyed

if TYPE_CHECKING:
    from .v1 import V1
    from .v2 import V2

    #: ``{"major", "minor", "op", "value"}`` of the Docker API's blkio_stats lists
    BlkioEntry = dict[str, int | str]

NS = 1_000_000_000
CLK_TCK = os.sysconf("SC_CLK_TCK")
V1_BLKIO_EXTRA = ("io_queue_recursive", "io_service_time_recursive", "io_wait_time_recursive",
                  "io_merged_recursive", "io_time_recursive", "sectors_recursive")


def system_cpu_usage(stat: str = "/proc/stat") -> int:
    """Host CPU time in ns, as dockerd counts it: user, nice, system, idle, iowait,
    irq and softirq of the ``cpu`` line of /proc/stat (steal and guest left out)."""
    with open(stat) as fh:
        for line in fh:
            parts = line.split()
            if parts and parts[0] == "cpu":
                return sum(int(x) for x in parts[1:8]) * NS // CLK_TCK
    return 0


def online_cpus() -> int:
    return os.sysconf("SC_NPROCESSORS_ONLN")


def host_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _limit(value: int) -> int:
    """A memory limit, with "unlimited" shown as the host's memory (as dockerd)."""
    host = host_memory()
    return host if value < 0 or value > host else value


def _blkio_v1(path: str) -> list[BlkioEntry]:
    out: list[BlkioEntry] = []
    for line in read(path, "").splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])})
    return out


def stats_v1(cg: V1) -> dict[str, Any]:
    """``cg`` is a :class:`~dockyard.driverkit.cgroups.v1.V1` backend."""
    def d(ctrl: str, name: str) -> str:
        where = cg.dir(ctrl)
        return os.path.join(where, name) if where else "/nonexistent"

    times = read_keyed(d("cpuacct", "cpuacct.stat"))
    throttle = read_keyed(d("cpu", "cpu.stat"))
    mem_stat = read_keyed(d("memory", "memory.stat"))
    pids_max = read(d("pids", "pids.max"), "max")
    return {
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": read_int(d("cpuacct", "cpuacct.usage"), 0),
                "percpu_usage": [int(x) for x in read(d("cpuacct", "cpuacct.usage_percpu"), "").split()],
                "usage_in_kernelmode": times.get("system", 0) * NS // CLK_TCK,
                "usage_in_usermode": times.get("user", 0) * NS // CLK_TCK,
            },
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": online_cpus(),
            "throttling_data": {"periods": throttle.get("nr_periods", 0),
                                "throttled_periods": throttle.get("nr_throttled", 0),
                                "throttled_time": throttle.get("throttled_time", 0)},
        },
        "memory_stats": {
            "usage": read_int(d("memory", "memory.usage_in_bytes"), 0),
            "max_usage": read_int(d("memory", "memory.max_usage_in_bytes"), 0),
            "limit": _limit(read_int(d("memory", "memory.limit_in_bytes"), -1)),
            "failcnt": read_int(d("memory", "memory.failcnt"), 0),
            "stats": mem_stat,
        },
        "pids_stats": {"current": read_int(d("pids", "pids.current"), 0),
                       "limit": 0 if pids_max == "max" else int(pids_max)},
        "blkio_stats": {
            "io_service_bytes_recursive": _blkio_v1(d("blkio", "blkio.throttle.io_service_bytes_recursive")),
            "io_serviced_recursive": _blkio_v1(d("blkio", "blkio.throttle.io_serviced_recursive")),
            **{k: None for k in V1_BLKIO_EXTRA},
        },
    }


def _io_v2(path: str) -> tuple[list[BlkioEntry], list[BlkioEntry]]:
    """io.stat lines ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 ...") -> two lists."""
    nbytes: list[BlkioEntry] = []
    nios: list[BlkioEntry] = []
    for line in read(path, "").splitlines():
        dev, *pairs = line.split()
        if ":" not in dev:
            continue
        major, minor = (int(x) for x in dev.split(":"))
        kv = dict(p.split("=", 1) for p in pairs if "=" in p)
        for op in ("read", "write"):
            nbytes.append({"major": major, "minor": minor, "op": op, "value": int(kv.get(op[0] + "bytes", 0))})
            nios.append({"major": major, "minor": minor, "op": op, "value": int(kv.get(op[0] + "ios", 0))})
    return nbytes, nios


def stats_v2(cg: V2) -> dict[str, Any]:
    """``cg`` is a :class:`~dockyard.driverkit.cgroups.v2.V2` backend.  v2 has no per-CPU
    usage (``percpu_usage`` is []); ``max_usage`` is ``memory.peak`` (0 before
    Linux 5.19) and ``failcnt`` the ``max`` count of ``memory.events``."""
    cpu = read_keyed(cg.f("cpu.stat"))
    io_bytes, io_ios = _io_v2(cg.f("io.stat"))
    pids_max = read(cg.f("pids.max"), "max")
    return {
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": cpu.get("usage_usec", 0) * 1000,
                "percpu_usage": [],
                "usage_in_kernelmode": cpu.get("system_usec", 0) * 1000,
                "usage_in_usermode": cpu.get("user_usec", 0) * 1000,
            },
            "system_cpu_usage": system_cpu_usage(),
            "online_cpus": online_cpus(),
            "throttling_data": {"periods": cpu.get("nr_periods", 0),
                                "throttled_periods": cpu.get("nr_throttled", 0),
                                "throttled_time": cpu.get("throttled_usec", 0) * 1000},
        },
        "memory_stats": {
            "usage": read_int(cg.f("memory.current"), 0),
            "max_usage": read_int(cg.f("memory.peak"), 0),
            "limit": _limit(read_int(cg.f("memory.max"), -1)),
            "failcnt": read_keyed(cg.f("memory.events")).get("max", 0),
            "stats": read_keyed(cg.f("memory.stat")),
        },
        "pids_stats": {"current": read_int(cg.f("pids.current"), 0),
                       "limit": 0 if pids_max == "max" else int(pids_max)},
        "blkio_stats": {"io_service_bytes_recursive": io_bytes, "io_serviced_recursive": io_ios},
    }
