"""Facts about the host that ``/info`` and ``/version`` report: the kernel's cgroup
features (and the warnings Docker prints about the missing ones), the operating
system, memory, forwarding, proxies."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone

#: ``docker info``'s warnings about missing kernel features
WARNINGS = [("MemoryLimit", "WARNING: No memory limit support"), ("SwapLimit", "WARNING: No swap limit support"),
            ("CpuCfsPeriod", "WARNING: No cpu cfs period support"),
            ("CpuCfsQuota", "WARNING: No cpu cfs quota support"),
            ("CPUShares", "WARNING: No cpu shares support"), ("CPUSet", "WARNING: No cpuset support"),
            ("PidsLimit", "WARNING: No pids limit support")]


def read(path: str, default: str = "") -> str:
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def arch() -> str:
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def os_name() -> str:
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def os_version() -> str:
    for line in read("/etc/os-release").splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def memtotal() -> int:
    try:
        with open("/proc/meminfo") as fh:
            return int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


def kernel_features() -> tuple[str, dict[str, bool]]:
    """The cgroup version and what ``docker info`` reports (and warns about) of
    the host's cgroups."""
    from ...driverkit.cgroups import layout as cg_layout

    try:
        lay = cg_layout.detect()
    except Exception:  # no cgroups here: every limit is missing
        return "1", {}
    ctrls = lay.controllers
    if lay.version == "v2":
        has_mem = "memory" in ctrls
        has_cpu = "cpu" in ctrls
        return "2", {"MemoryLimit": has_mem, "SwapLimit": has_mem and any(
                         os.path.exists(os.path.join(lay.unified or "", d, "memory.swap.max"))
                         for d in ("", "init.scope", "system.slice")),
                     "CpuCfsPeriod": has_cpu, "CpuCfsQuota": has_cpu, "CPUShares": has_cpu,
                     "CPUSet": "cpuset" in ctrls,
                     "PidsLimit": "pids" in ctrls, "OomKillDisable": False, "KernelMemory": False,
                     "KernelMemoryTCP": False}
    mem, cpu = ctrls.get("memory") or "", ctrls.get("cpu") or ""
    return "1", {"MemoryLimit": bool(mem),
                 "SwapLimit": bool(mem) and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")),
                 "KernelMemory": bool(mem) and os.path.exists(os.path.join(mem, "memory.kmem.limit_in_bytes")),
                 "KernelMemoryTCP": bool(mem) and os.path.exists(os.path.join(mem, "memory.kmem.tcp.limit_in_bytes")),
                 "CpuCfsPeriod": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.cfs_period_us")),
                 "CpuCfsQuota": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.cfs_quota_us")),
                 "CPUShares": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.shares")),
                 "CPUSet": "cpuset" in ctrls, "PidsLimit": "pids" in ctrls,
                 "OomKillDisable": bool(mem) and os.path.exists(os.path.join(mem, "memory.oom_control"))}


def proxies() -> dict[str, str]:
    env = os.environ
    return {"HttpProxy": env.get("HTTP_PROXY") or env.get("http_proxy") or "",
            "HttpsProxy": env.get("HTTPS_PROXY") or env.get("https_proxy") or "",
            "NoProxy": env.get("NO_PROXY") or env.get("no_proxy") or ""}
