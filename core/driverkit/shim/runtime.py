"""What every runtime needs to know about Linux processes, shared by the exec
drivers' daemon side and their shim side (stdlib only, importable standalone
from the shim kit's directory, like :mod:`supervisor`).

* :data:`CAPS`, :func:`cap_numbers`, :func:`last_cap`: capability names and bits;
* :data:`RLIMITS`: OCI rlimit types and their resource numbers;
* :func:`find_executable`, :func:`environment`, :func:`exec_failure`: finding
  and running ``process.args`` the way runc reports failures (127, 126);
* :func:`remove_cgroup_dirs`: the shim's clean-up after a container's init ended.
"""

import os
import time

# Annotations only: typing is not imported at run time (a shim starts with
# ``python -E -S`` and every import costs start-up time).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from .supervisor import StartError
else:
    try:
        from supervisor import StartError  # in a shim: the kit's directory is on sys.path
    except ImportError:
        from .supervisor import StartError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

#: capability names without ``CAP_``, in bit order
CAPS = (
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID",
    "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW",
    "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
    "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD",
    "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG",
    "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
)
CAP_SYS_RESOURCE = CAPS.index("SYS_RESOURCE")

#: OCI rlimit type -> resource number
RLIMITS = {"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
           "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
           "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
           "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15}
INFINITY = 2**64 - 1  # an OCI rlimit this high means unlimited

_last_cap: "int | None" = None


def last_cap() -> int:
    """The highest capability number this kernel has."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as fh:
                _last_cap = int(fh.read())
        except (OSError, ValueError):
            _last_cap = len(CAPS) - 1
    return _last_cap


def cap_numbers(names: "Iterable[object] | None") -> set[int]:
    """``["CAP_CHOWN", "kill", ...]`` -> set of capability numbers; a name that is
    unknown, or that this kernel does not have, raises ValueError."""
    out: set[int] = set()
    for name in names or ():
        short = str(name).upper()
        short = short[4:] if short.startswith("CAP_") else short
        if short not in CAPS or CAPS.index(short) > last_cap():
            raise ValueError(f"unknown capability {name!r}")
        out.add(CAPS.index(short))
    return out


def environment(proc: "dict[str, Any]") -> dict[str, str]:
    """OCI ``process.env`` (``K=V`` strings) -> dict; items without ``=`` are dropped."""
    env: dict[str, str] = {}
    for item in proc.get("env") or ():
        key, sep, value = item.partition("=")
        if sep:
            env[key] = value
    return env


def find_executable(name: str, path: str) -> str:
    """``name`` through ``path`` as execvp does, or StartError with exit code 127."""
    if "/" in name:
        return name
    for d in path.split(":"):
        cand = os.path.join(d or ".", name)
        try:
            st = os.stat(cand)
        except OSError:
            continue
        if st.st_mode & 0o170000 == 0o100000 and st.st_mode & 0o111:
            return cand
    raise StartError(f'exec: "{name}": executable file not found in $PATH', 127)


def exec_failure(exc: OSError, name: str, exe: str) -> "StartError":
    """The StartError for ``execve(exe)`` of ``process.args[0]`` = ``name`` failing
    with OSError ``exc``: 127 for a missing file, 126 for one that cannot run."""
    code = 127 if exc.errno == 2 else 126 if exc.errno in (1, 8, 13, 21) else None
    what = f"stat {exe}: " if exc.errno == 2 and not os.path.lexists(exe) else ""
    return StartError(f'exec: "{name}": {what}{(exc.strerror or str(exc)).lower()}', code)


def remove_cgroup_dirs(paths: "Iterable[str]", timeout: float = 2.0) -> None:
    """Remove cgroup directories (and any below them, deepest first), thawing and
    killing what is still in them; gives up quietly after ``timeout`` (the
    driver's exec_delete tries again)."""
    for top in paths:
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            _rmdir(dirpath, timeout)


def _rmdir(path: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                return
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(path, name), "w") as fh:
                    fh.write(value)  # a frozen process cannot die
            except OSError:
                pass
        try:
            with open(os.path.join(path, "cgroup.procs")) as fh:
                for pid in fh.read().split():
                    os.kill(int(pid), 9)
        except OSError:
            pass
        time.sleep(0.01)
