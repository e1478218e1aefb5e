"""What a container may do: its capabilities (Docker's defaults, CapAdd/CapDrop,
``--privileged``), its security options (no-new-privileges, seccomp; AppArmor and
SELinux refused) and the sysctls of the namespaces it has of its own."""

from __future__ import annotations

import os
from typing import Any

from ...driverkit.shim import runtime
from .ocispec import items

# Docker's default capability set (oci/caps/defaults.go).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
            **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}


def kernel_capabilities() -> list[str]:
    """Every capability this kernel has (``/proc/sys/kernel/cap_last_cap``)."""
    return ["CAP_" + n for n in runtime.CAPS[:runtime.last_cap() + 1]]


def all_capabilities() -> list[str]:
    """What ``--privileged`` and ``--cap-add ALL`` give: the kernel's capabilities
    that the daemon holds itself (this VM's daemon runs without CAP_SYS_RESOURCE,
    and no container can get more than its daemon has)."""
    try:
        with open("/proc/self/status") as fh:
            held = next(int(line.split()[1], 16) for line in fh if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        held = -1
    return [c for i, c in enumerate(kernel_capabilities()) if held >> i & 1]


def _normalise_caps(names: list[str], known: list[str]) -> list[str]:
    out = []
    for name in names:
        cap = name.upper()
        if cap != "ALL":
            cap = cap if cap.startswith("CAP_") else "CAP_" + cap
            if cap not in known:
                raise ValueError(f'unknown capability: "{cap}"')
        out.append(cap)
    return out


def capabilities(host: dict) -> list[str]:
    """The capability set Docker gives: its defaults, CapAdd/CapDrop, or all when privileged."""
    if host.get("Privileged"):
        return all_capabilities()
    known = kernel_capabilities()
    add = _normalise_caps(items(host, "CapAdd", str), known)
    drop = _normalise_caps(items(host, "CapDrop", str), known)
    if "ALL" in add:
        caps = [c for c in all_capabilities() if c not in drop]
    elif "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drop] + add
    return list(dict.fromkeys(caps))


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _not_here(what: str, module: str, opt: str) -> ValueError:
    enabled = os.path.exists(f"/sys/module/{module}") or (module == "selinux" and os.path.exists("/sys/fs/selinux"))
    why = "Dockyard cannot apply it yet" if enabled else f"{what} is not enabled on this host"
    return ValueError(f"invalid --security-opt {quote(opt)}: {why}")


def security_options(opts: list[str]) -> dict:
    """SecurityOpt -> ``{"no_new_privileges": bool, "seccomp": None | "unconfined" | JSON text}``.

    Docker's syntax: ``no-new-privileges[=bool]``, ``seccomp=unconfined|builtin|<JSON>``,
    ``apparmor=…``, ``label=…`` (``=`` or the old ``:`` separator).  AppArmor and SELinux
    are refused except the no-op ``apparmor=unconfined`` and ``label=disable``.
    """
    out: dict[str, Any] = {"no_new_privileges": False, "seccomp": None}
    for opt in opts:
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":  # Docker's old spelling of label=disable
            continue
        cuts = [i for i in (opt.find("="), opt.find(":")) if i >= 0]
        if not cuts:
            raise ValueError(f"invalid --security-opt 1: {quote(opt)}")
        key, value = opt[:min(cuts)], opt[min(cuts) + 1:]
        if key == "no-new-privileges":
            if value not in GO_BOOLS:
                raise ValueError(f"invalid --security-opt 2: {quote(opt)}")
            out["no_new_privileges"] = GO_BOOLS[value]
        elif key == "seccomp":
            out["seccomp"] = None if value in ("", "builtin") else value
        elif key == "apparmor":
            if value != "unconfined":
                raise _not_here("AppArmor", "apparmor", opt)
        elif key == "label":
            if value != "disable":
                raise _not_here("SELinux", "selinux", opt)
        else:
            raise ValueError(f"invalid --security-opt 2: {quote(opt)}")
    return out


def sysctls(host: dict, ns: dict) -> dict[str, str]:
    """``linux.sysctl``: only the sysctls of a namespace the container has of its own (runc's rule)."""
    values = host.get("Sysctls") or {}
    if not isinstance(values, dict):
        raise ValueError(f"invalid HostConfig.Sysctls: {values!r} is not an object of name -> value")
    for key in values:
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ns["ipc"] == "host":
                raise ValueError(f"sysctl {quote(key)} is not allowed in the hosts ipc namespace")
        elif key.startswith("net."):
            if ns["network"] == "host":
                raise ValueError(f"sysctl {quote(key)} is not allowed in the hosts network namespace")
        else:
            raise ValueError(f"sysctl {quote(key)} is not in a separate kernel namespace")
    return {k: str(v) for k, v in values.items()}
