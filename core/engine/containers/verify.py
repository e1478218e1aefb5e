"""What ``docker create`` and ``docker update`` refuse before anything is made.

moby checks a container's settings when it is created (``verifyContainerSettings``,
``verifyPlatformContainerResources``), not only when it starts: a limit that could
never be applied is a 400 at once, with Docker's message, instead of a container
that fails at every start, or worse, a number that wraps on its way into a cgroup
file (the kernel parses ``memory.limit_in_bytes`` with ``simple_strtoull``, which
overflows silently).  The resource rules live in :mod:`dockyard.engine.bundle.ocispec`
(they run again when the bundle is made); this module adds the bounds that keep
every number inside what the kernel and Python can take, and the checks of the
config that moby runs at create.
"""

from __future__ import annotations

import signal as signals

from ...errors import InvalidParameter
from ..bundle import ocispec

INT64 = (-2 ** 63, 2 ** 63 - 1)
#: HostConfig integers that end in a cgroup file, a rlimit or a mount option
INT_FIELDS = ("Memory", "MemorySwap", "MemoryReservation", "KernelMemory", "KernelMemoryTCP", "MemorySwappiness",
              "CpuShares", "NanoCpus", "CpuPeriod", "CpuQuota", "CpuRealtimePeriod", "CpuRealtimeRuntime",
              "PidsLimit", "BlkioWeight", "OomScoreAdj", "ShmSize", "CpuCount", "CpuPercent")
#: pids.max above the kernel's PID_MAX_LIMIT (4M on 64-bit) is refused by the kernel at start
PIDS_MAX = 4 * 1024 * 1024
#: seconds a stop or a health check may wait: beyond it Python's waits overflow (68 years is forever)
MAX_WAIT = 2 ** 31 - 1
MIN_DURATION_NS = 1_000_000  # Docker's MinimumDuration (1ms)
MAX_TERMINAL = 65535  # rows and columns of a struct winsize
MAX_HOSTNAME = 63


def _int(where: str, value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"invalid {where}: {value!r} is not an integer")
    if not INT64[0] <= value <= INT64[1]:
        raise InvalidParameter(f"invalid {where}: {value} does not fit in an int64")
    return value


def _no_nul(where: str, value: object) -> None:
    if isinstance(value, str) and "\0" in value:
        raise InvalidParameter(f"invalid {where}: it contains a NUL byte")


def bounds(host: dict) -> None:
    """The limits no kernel file or wait can take, beyond ocispec's Docker rules (ValueError)."""
    for key in INT_FIELDS:
        value = host.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and not INT64[0] <= value <= INT64[1]:
            raise ValueError(f"invalid HostConfig.{key}: {value} does not fit in an int64")
    if ocispec.num(host, "MemorySwap") < -1:
        raise ValueError("Minimum memoryswap limit should be larger than memory limit, see usage "
                         "(-1 for unlimited swap)")
    if ocispec.num(host, "CpuQuota") < -1:
        raise ValueError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if ocispec.num(host, "PidsLimit") > PIDS_MAX:
        raise ValueError(f"invalid PidsLimit {host['PidsLimit']}: the kernel allows at most {PIDS_MAX} "
                         "(0 or -1 for unlimited)")


def console_size(size: object) -> None:
    """``[height, width]`` of a terminal (HostConfig's, or an exec start's), or None."""
    if size is None:
        return
    if not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_TERMINAL for v in size)):
        raise InvalidParameter(f"invalid ConsoleSize {size!r}: [height, width], each 0 to {MAX_TERMINAL}")


def host_config(host: object) -> None:
    """moby's create-time checks of HostConfig resources (InvalidParameter, Docker's messages)."""
    if not isinstance(host, dict):
        raise InvalidParameter("invalid HostConfig: an object is expected")
    console_size(host.get("ConsoleSize"))
    try:
        bounds(host)
        ocispec.linux_resources(host)
        ocispec.rlimits(host)
        if ocispec.num(host, "ShmSize") < 0:
            raise ValueError("SHM size can not be less than 0")
        adj = ocispec.num(host, "OomScoreAdj")
        if not -1000 <= adj <= 1000:
            raise ValueError(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None


def _healthcheck(hc: object) -> None:
    if not hc:
        return
    if not isinstance(hc, dict):
        raise InvalidParameter("invalid Healthcheck: an object is expected")
    for key in ("Interval", "Timeout", "StartPeriod", "StartInterval"):
        value = _int(f"Healthcheck.{key}", hc.get(key))
        if value and value < MIN_DURATION_NS:
            raise InvalidParameter(f"{key} in Healthcheck cannot be less than 1ms")
        if value > MAX_WAIT * 10 ** 9:
            raise InvalidParameter(f"{key} in Healthcheck cannot be more than {MAX_WAIT}s")
    if _int("Healthcheck.Retries", hc.get("Retries")) < 0:
        raise InvalidParameter("Retries in Healthcheck cannot be negative")


def config(cfg: dict) -> None:
    """moby's ``validateContainerConfig`` and the hostname length check."""
    wd = cfg.get("WorkingDir")
    if wd and isinstance(wd, str) and not wd.startswith("/"):
        raise InvalidParameter(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    if cfg.get("StopSignal"):
        parse_signal(cfg["StopSignal"])
    for env in cfg.get("Env") or ():
        if not isinstance(env, str) or not env.split("=", 1)[0]:
            raise InvalidParameter(f"invalid environment variable: {env}")
        _no_nul("environment variable", env)
    for key in ("Cmd", "Entrypoint"):
        value = cfg.get(key)
        for arg in [value] if isinstance(value, str) else value or ():
            _no_nul(key, arg)
    for key in ("WorkingDir", "User", "Hostname", "Domainname"):
        _no_nul(key, cfg.get(key))
    hostname = cfg.get("Hostname")
    if isinstance(hostname, str) and len(hostname.encode()) > MAX_HOSTNAME:
        raise InvalidParameter(f"hostname {hostname!r} is too long (maximum {MAX_HOSTNAME} bytes)")
    timeout = _int("StopTimeout", cfg.get("StopTimeout"))
    if timeout > MAX_WAIT:
        raise InvalidParameter(f"invalid StopTimeout {timeout}: at most {MAX_WAIT} seconds")
    _healthcheck(cfg.get("Healthcheck"))


def container_settings(body: dict) -> None:
    """Everything ``POST /containers/create`` refuses before making anything."""
    config(body)
    host_config(body.get("HostConfig") or {})


def parse_signal(sig: str | int) -> int:
    """``9``, ``KILL`` or ``SIGKILL`` → 9; anything else is a 400."""
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        num = int(sig)
        if 0 < num < 65:
            return num
    elif isinstance(sig, str):
        name = sig.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if hasattr(signals.Signals, name):
            return int(signals.Signals[name])
    raise InvalidParameter(f"invalid signal: {sig}")
