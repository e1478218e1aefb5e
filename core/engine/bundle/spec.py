"""Turning a container record into an OCI runtime bundle (``config.json``).

The exec driver sees only this bundle, so everything the container needs is
spelled out here in the OCI runtime spec's terms: Docker's default spec (its
mounts, capabilities, masked paths and device allow-list) with the container's
HostConfig applied the way the Docker daemon applies it.  The per-field pieces
live beside this module (:mod:`.ocispec`: resources, devices, mounts, rlimits;
:mod:`.namespaces`, :mod:`.security`, :mod:`.users`); this one puts it all together.

Every refusal is a ``ValueError`` naming the field and value (Docker's message
where Docker has one); the engine answers it with HTTP 400.
"""

from __future__ import annotations

import json
import os
import socket

from ...model.container import ContainerRecord
from .ocispec import MASKED_PATHS, READONLY_PATHS, devices, items, linux_resources, num, rlimits, user_mounts
from .namespaces import NAMESPACES, namespace_modes, namespaces, text
from .environ import container_env
from .security import capabilities, security_options, sysctls
from .nofile import with_default_nofile
from .users import group_ids, resolve_user

INIT_IN_CONTAINER = "/sbin/docker-init"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
# HostConfig fields Dockyard cannot honour yet: refused rather than silently dropped.
UNSUPPORTED = {
    "DeviceRequests": "device requests (--gpus) are not supported yet",
    "CpuRealtimePeriod": "real-time CPU scheduling (--cpu-rt-period) is not supported yet",
    "CpuRealtimeRuntime": "real-time CPU scheduling (--cpu-rt-runtime) is not supported yet",
    "IOMaximumBandwidth": "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
    "IOMaximumIOps": "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
}



def _checked(host: dict, ns: dict) -> dict:
    """Everything of HostConfig that needs no rootfs, validated (shared by make_config and
    :func:`validate_host_config`)."""
    for key, why in UNSUPPORTED.items():
        if host.get(key):
            raise ValueError(f"{why} (HostConfig.{key}: {host[key]!r})")
    userns = text(host, "UsernsMode")
    if userns not in ("", "host"):
        raise ValueError(f"invalid UsernsMode {userns!r}: user namespaces are not supported yet")
    if num(host, "ShmSize") < 0:
        raise ValueError("SHM size can not be less than 0")
    adj = num(host, "OomScoreAdj")
    if not -1000 <= adj <= 1000:
        raise ValueError(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    parent = text(host, "CgroupParent")
    if ".." in parent.split("/") or "\0" in parent:
        raise ValueError(f"invalid CgroupParent {parent!r}: it must not contain '..'")
    size = host.get("ConsoleSize")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise ValueError(f"invalid HostConfig.ConsoleSize: {size!r} is not [height, width]")
    caps = capabilities(host)
    nodes, rules = devices(host)
    resources = {**linux_resources(host), "devices": rules}
    mounts, create = user_mounts(host)
    return {"caps": caps, "security": security_options(items(host, "SecurityOpt", str)),
            "nodes": nodes, "resources": resources, "mounts": mounts, "create": create,
            "rlimits": with_default_nofile(rlimits(host)), "sysctl": sysctls(host, ns), "oomScoreAdj": adj}


def validate_host_config(host_config: dict | None) -> None:
    """Raise ValueError for what :func:`make_config` would refuse, without a rootfs and
    without changing anything (for ``POST /containers/create``, as Docker checks there)."""
    host = host_config or {}
    modes = namespace_modes(host)
    ns = {k: "host" if modes.get(k) == "host" else None for k in NAMESPACES}
    _checked(host, ns)


def _default_mounts(host: dict, ns: dict, privileged: bool, shm_path: str | None = None) -> list[dict]:
    """Docker's default mounts, /dev/shm per IpcMode and ShmSize (``shm_path``: the
    host-side /dev/shm of a shareable IPC namespace, its owner's or a joiner's)."""
    ro = [] if privileged else ["ro"]  # privileged: /sys and its cgroup mount writable
    mounts: list[dict] = [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"] + ro},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ro + ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
    ]
    if text(host, "IpcMode") == "none":
        return mounts
    if ns["ipc"] == "host" or shm_path:  # share the /dev/shm that goes with the IPC namespace
        source = "/dev/shm" if ns["ipc"] == "host" else shm_path
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
    elif ns["ipc"]:
        raise ValueError("joining an IPC namespace needs the /dev/shm of its owner (shm_path)")
    else:
        size = num(host, "ShmSize") or DEFAULT_SHM_SIZE
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    return mounts


def make_config(record: ContainerRecord, rootfs: str, etc_paths: dict, ns_paths: dict | None, init_path: str | None = None,
                shm_path: str | None = None, volume_mounts: list | None = None) -> dict:
    """Return the OCI runtime config dict for a container record.

    ``etc_paths``: name ("hostname", "hosts", "resolv.conf") -> host file to bind at
    /etc/<name>.  ``ns_paths``: OCI namespace type -> None (a new namespace),
    ``"host"`` (share the host's) or a ``/proc/<pid>/ns/<type>`` path to join; types
    left out follow HostConfig (:func:`namespace_modes`), user sharing the host's.
    ``init_path``: the host's tini-static, bound at /sbin/docker-init for ``Init``.
    ``shm_path``: a host-side tmpfs to bind at /dev/shm (IpcMode shareable, or the
    owner's when joining another container's IPC namespace).
    ``volume_mounts``: OCI bind mounts of the container's volumes (and of binds
    from ``--volumes-from``), made by :mod:`dockyard.engine.containers.mountpoints`.
    Bind sources of ``Binds`` that do not exist are created (as Docker does) once
    the whole config is accepted.
    """
    cfg, host = record.config, record.host_config
    ns = namespaces(namespace_modes(host), ns_paths or {})
    privileged = bool(host.get("Privileged"))
    parts = _checked(host, ns)
    caps = parts["caps"]

    user = resolve_user(rootfs, cfg.get("User"))
    env = container_env(cfg.get("Env") or [], cfg["Hostname"], bool(cfg.get("Tty")), rootfs, user["uid"])
    extra = group_ids(rootfs, items(host, "GroupAdd", str))
    user["additionalGids"] = list(dict.fromkeys(user["additionalGids"] + extra))

    args = record.command
    init_mount = []
    if host.get("Init"):
        if not init_path or not os.path.isfile(init_path):
            raise ValueError("--init needs tini-static on the host (apt-get install tini)")
        args = [INIT_IN_CONTAINER, "--", *args]
        init_mount = [{"destination": INIT_IN_CONTAINER, "type": "bind", "source": init_path,
                       "options": ["bind", "ro"]}]

    user_mounts = parts["mounts"]
    if volume_mounts:
        own = {m["destination"] for m in user_mounts}
        user_mounts = sorted(user_mounts + [m for m in volume_mounts if m["destination"] not in own],
                             key=lambda m: len(m["destination"].rstrip("/").split("/")))
    taken = {m["destination"] for m in user_mounts}
    defaults = [m for m in _default_mounts(host, ns, privileged, shm_path) if m["destination"] not in taken
                and not ("/dev" in taken and m["destination"].startswith("/dev/"))]
    etc = [{"destination": "/etc/" + name, "type": "bind", "source": path,
            "options": ["rbind", "rprivate"] + (["ro"] if host.get("ReadonlyRootfs") and name != "resolv.conf" else [])}
           for name, path in etc_paths.items() if "/etc/" + name not in taken]

    process = {
        "terminal": bool(cfg.get("Tty")),
        "user": user,
        "args": args,
        "env": env,
        "cwd": cfg.get("WorkingDir") or "/",
        "capabilities": {"bounding": list(caps), "effective": list(caps), "permitted": list(caps),
                         "inheritable": [], "ambient": []},
        "noNewPrivileges": parts["security"]["no_new_privileges"],
        "oomScoreAdj": parts["oomScoreAdj"],
    }
    if parts["rlimits"]:
        process["rlimits"] = parts["rlimits"]
    size = host.get("ConsoleSize")
    if cfg.get("Tty") and size and size[0] and size[1]:
        process["consoleSize"] = {"height": size[0], "width": size[1]}

    parent = text(host, "CgroupParent").strip("/")
    linux = {
        "namespaces": [{"type": k} if v is None else {"type": k, "path": v}
                       for k, v in ns.items() if v != "host"],
        "maskedPaths": [] if privileged else list(MASKED_PATHS if host.get("MaskedPaths") is None
                                                  else items(host, "MaskedPaths", str)),
        "readonlyPaths": [] if privileged else list(READONLY_PATHS if host.get("ReadonlyPaths") is None
                                                    else items(host, "ReadonlyPaths", str)),
        "devices": parts["nodes"],
        "resources": parts["resources"],
        "cgroupsPath": f"/{parent}/{record.id}" if parent else record.id,
    }
    if parts["sysctl"]:
        linux["sysctl"] = parts["sysctl"]
    propagations = {o for m in user_mounts if m["type"] == "bind" for o in m["options"]}
    if propagations & {"shared", "rshared"}:
        linux["rootfsPropagation"] = "rshared"
    elif propagations & {"slave", "rslave"}:
        linux["rootfsPropagation"] = "rslave"
    profile = parts["security"]["seccomp"]
    if not privileged and profile != "unconfined":
        from .seccomp import linux_seccomp  # lazily: only containers that get a filter pay for it

        seccomp = linux_seccomp(profile, caps)
        if seccomp:
            linux["seccomp"] = seccomp

    config = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "mounts": defaults + user_mounts + etc + init_mount,
        "linux": linux,
        "annotations": {"org.dockyard.container.name": record.name},
    }
    if ns["uts"] != "host":  # no hostname without a UTS namespace of its own
        config["hostname"] = cfg["Hostname"] if ns["network"] != "host" else socket.gethostname()
    for path in parts["create"]:  # Docker creates missing Binds sources
        os.makedirs(path, exist_ok=True)
    return config


def write_bundle(bundle_dir: str, config: dict) -> str:
    """config.json holds the container's environment (its secrets): 0600 in a 0700 directory."""
    os.makedirs(bundle_dir, 0o700, exist_ok=True)
    tmp = os.path.join(bundle_dir, ".config.json.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as fh:
        fh.write(json.dumps(config))  # dumps: the C encoder (dump() encodes in Python, ~1 ms here)
    os.replace(tmp, os.path.join(bundle_dir, "config.json"))
    return bundle_dir
