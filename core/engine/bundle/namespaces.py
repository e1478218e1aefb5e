"""A container's namespaces: PidMode, IpcMode, UTSMode, CgroupnsMode and NetworkMode,
checked as Docker checks them, and the OCI ``linux.namespaces`` they make."""

from __future__ import annotations

NAMESPACES = ("mount", "network", "uts", "pid", "ipc", "cgroup", "user")
MODE_FIELDS = {"pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode", "cgroup": "CgroupnsMode",
               "network": "NetworkMode"}


def text(host: dict, key: str) -> str:
    """A string field of HostConfig (``""`` when null)."""
    value = host.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"invalid HostConfig.{key}: {value!r} is not a string")
    return value


def _mode(value: str, private: tuple, error: str, joinable: bool = True) -> str | tuple[str, str]:
    if value == "host":
        return "host"
    if value in private:
        return "private"
    kind, _, name = value.partition(":")
    if joinable and kind == "container" and name and ":" not in name:
        return ("container", name)
    raise ValueError(error)


def namespace_modes(host_config: dict | None) -> dict:
    """PidMode, IpcMode, UTSMode, CgroupnsMode and NetworkMode, checked as Docker checks them.

    Returns ``{"pid"|"ipc"|"uts"|"cgroup"|"network": "private" | "host" |
    ("container", NAME)}``; the engine turns ``("container", NAME)`` into the path of
    that container's namespace.  IpcMode ``none`` and ``shareable`` are private
    namespaces (``none`` only changes /dev/shm); every network but ``host`` and
    ``container:NAME`` (none, bridge, default, a network's name) is a private one.
    """
    host = host_config or {}
    pid, ipc, uts = text(host, "PidMode"), text(host, "IpcMode"), text(host, "UTSMode")
    cgroupns, net = text(host, "CgroupnsMode"), text(host, "NetworkMode")
    if net.startswith("container:") and not net[len("container:"):]:
        raise ValueError("Invalid network mode: invalid container format container:<name|id>")
    return {
        "pid": _mode(pid, ("",), f"invalid PID mode: {pid}"),
        "ipc": _mode(ipc, ("", "private", "shareable", "none"), f"invalid IPC mode: {ipc}"),
        "uts": _mode(uts, ("",), f"invalid UTS mode: {uts}", joinable=False),
        "cgroup": _mode(cgroupns, ("", "private"), f"invalid cgroup namespace mode: {cgroupns}", joinable=False),
        "network": "host" if net == "host" else ("container", net[len("container:"):])
        if net.startswith("container:") else "private",
    }


def namespaces(modes: dict, ns_paths: dict) -> dict:
    """type -> None (new), "host" or a path to join, from ``ns_paths`` over ``modes``."""
    out = {}
    for kind in NAMESPACES:
        if kind in ns_paths:
            value = ns_paths[kind]
            if not (value is None or value == "host" or (isinstance(value, str) and value.startswith("/"))):
                raise ValueError(f"namespace {kind}: {value!r} is not None, \"host\" or an absolute path")
        else:
            mode = modes.get(kind, "host" if kind == "user" else "private")
            if isinstance(mode, tuple):
                raise ValueError(f"{MODE_FIELDS[kind]} container:{mode[1]}: no namespace path was given to join")
            value = "host" if mode == "host" else None
        out[kind] = value
    if out["mount"] == "host":
        raise ValueError("a container cannot share the host's mount namespace")
    return out
