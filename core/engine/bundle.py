"""Turning a container record into an OCI runtime bundle (``config.json``).

The exec driver sees only this bundle, so everything the container needs is
spelled out here in the OCI runtime spec's terms.
"""

import json
import os
import socket

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's default capability set.
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def resolve_user(rootfs, user):
    """Map ``user[:group]`` (names or numbers) through the image's passwd/group files.

    Returns ``{"uid", "gid", "additionalGids"}``; an unknown name raises ValueError.
    """
    name, _, group = (user or "").partition(":")
    uid, gid, home = 0, 0, "/root"
    passwd = _read_db(rootfs, "etc/passwd")
    groups = _read_db(rootfs, "etc/group")
    if name:
        entry = next((p for p in passwd if p[0] == name or (name.isdigit() and p[2] == name)), None)
        if entry is not None:
            uid, gid = int(entry[2]), int(entry[3])
            name = entry[0]
        elif name.isdigit():
            uid, gid, name = int(name), int(name) if not group else 0, None
        else:
            raise ValueError(f"unable to find user {name}: no matching entries in passwd file")
    if group:
        entry = next((g for g in groups if g[0] == group or (group.isdigit() and g[2] == group)), None)
        if entry is not None:
            gid = int(entry[2])
        elif group.isdigit():
            gid = int(group)
        else:
            raise ValueError(f"unable to find group {group}: no matching entries in group file")
    extra = sorted({int(g[2]) for g in groups if name and len(g) > 3 and name in g[3].split(",")} - {gid})
    return {"uid": uid, "gid": gid, "additionalGids": extra}


def _read_db(rootfs, rel):
    path = os.path.realpath(os.path.join(rootfs, rel))
    if not path.startswith(os.path.realpath(rootfs) + os.sep):
        return []  # a link pointing out of the image: never read the host's files
    try:
        with open(path) as fh:
            return [line.rstrip("\n").split(":") for line in fh if line.count(":") >= 2]
    except OSError:
        return []


def write_etc_files(container_dir, hostname, network_mode):
    """Write the container's hostname, hosts and resolv.conf; return their paths."""
    os.makedirs(container_dir, exist_ok=True)
    paths = {
        "hostname": os.path.join(container_dir, "hostname"),
        "hosts": os.path.join(container_dir, "hosts"),
        "resolv.conf": os.path.join(container_dir, "resolv.conf"),
    }
    with open(paths["hostname"], "w") as fh:
        fh.write(hostname + "\n")
    hosts = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters",
    ]
    if network_mode != "host":
        hosts.append(f"127.0.1.1\t{hostname}")
    with open(paths["hosts"], "w") as fh:
        fh.write("\n".join(hosts) + "\n")
    try:
        with open("/etc/resolv.conf") as fh:
            resolv = fh.read()
    except OSError:
        resolv = ""
    if network_mode != "host":  # a loopback resolver of the host is unreachable inside
        resolv = "".join(line for line in resolv.splitlines(True)
                         if not line.strip().startswith("nameserver 127."))
    with open(paths["resolv.conf"], "w") as fh:
        fh.write(resolv)
    return paths


def make_config(record, rootfs, etc_paths, netns_mode, netns_path=None):
    """Return the OCI runtime config dict for a container record."""
    cfg = record["Config"]
    host = record["HostConfig"]
    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={cfg['Hostname']}")
    user = resolve_user(rootfs, cfg.get("User"))
    namespaces = [{"type": t} for t in ("pid", "mount", "uts", "ipc")]
    if netns_mode != "host":
        ns = {"type": "network"}
        if netns_path:
            ns["path"] = netns_path
        namespaces.append(ns)
    mounts = [
        {"destination": "/etc/" + name, "type": "bind", "source": path,
         "options": ["rbind", "rprivate"] + (["ro"] if host.get("ReadonlyRootfs") and name != "resolv.conf" else [])}
        for name, path in etc_paths.items()
    ]
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(cfg.get("Tty")),
            "user": user,
            "args": record["Path_Args"],
            "env": env,
            "cwd": cfg.get("WorkingDir") or "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": False,
        },
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "hostname": cfg["Hostname"] if netns_mode != "host" else socket.gethostname(),
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
        "annotations": {"org.dockyard.container.name": record["Name"].lstrip("/")},
    }


def write_bundle(bundle_dir, config):
    os.makedirs(bundle_dir, exist_ok=True)
    tmp = os.path.join(bundle_dir, ".config.json.tmp")
    with open(tmp, "w") as fh:
        json.dump(config, fh)
    os.replace(tmp, os.path.join(bundle_dir, "config.json"))
    return bundle_dir
