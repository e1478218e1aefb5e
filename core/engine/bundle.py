"""Turning a container record into an OCI runtime bundle (``config.json``).

The exec driver sees only this bundle, so everything the container needs is
spelled out here in the OCI runtime spec's terms: Docker's default spec (its
mounts, capabilities, masked paths and device allow-list) with the container's
HostConfig applied the way the Docker daemon applies it.  The per-field pieces
live in :mod:`dockyard.engine.ocispec`; this module adds the namespaces,
capabilities, security options and sysctls, and puts it all together.

Every refusal is a ``ValueError`` naming the field and value (Docker's message
where Docker has one); the engine answers it with HTTP 400.
"""

import ipaddress
import json
import os
import socket

from ..driverkit.fdwalk import read_file_in_root
from ..driverkit.shim import runtime
from . import ocispec

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Docker's default capability set (oci/caps/defaults.go).
DEFAULT_CAPS = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]
MASKED_PATHS = ocispec.MASKED_PATHS
READONLY_PATHS = ocispec.READONLY_PATHS
NAMESPACES = ("mount", "network", "uts", "pid", "ipc", "cgroup", "user")
MODE_FIELDS = {"pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode", "cgroup": "CgroupnsMode",
               "network": "NetworkMode"}
IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
INIT_IN_CONTAINER = "/sbin/docker-init"
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
MAX_DB_BYTES = 16 << 20  # of a passwd or group file: more is not a user database
GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
            **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
# HostConfig fields Dockyard cannot honour yet: refused rather than silently dropped.
UNSUPPORTED = {
    "DeviceRequests": "device requests (--gpus) are not supported yet",
    "CpuRealtimePeriod": "real-time CPU scheduling (--cpu-rt-period) is not supported yet",
    "CpuRealtimeRuntime": "real-time CPU scheduling (--cpu-rt-runtime) is not supported yet",
    "IOMaximumBandwidth": "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
    "IOMaximumIOps": "Invalid QoS settings: linux does not support Maximum IO Bandwidth or Maximum IO IOps",
}


def resolve_user(rootfs, user):
    """Map ``user[:group]`` (names or numbers) through the image's passwd/group files.

    Returns ``{"uid", "gid", "additionalGids"}``; an unknown name raises ValueError.
    """
    name, _, group = (user or "").partition(":")
    uid, gid = 0, 0
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
    """The ``:``-split lines of ``/etc/passwd`` or ``/etc/group`` of a rootfs the
    container may control (a running one's, for exec and cp): links resolved
    inside it, only a regular file, at most :data:`MAX_DB_BYTES`."""
    data = read_file_in_root(rootfs, rel, MAX_DB_BYTES)
    if data is None:
        return []
    lines = data.decode("utf-8", "replace").splitlines()
    return [line.split(":") for line in lines if line.count(":") >= 2]


def extra_host_lines(extra_hosts, host_gateway=None):
    """``HostConfig.ExtraHosts`` (``name:ip``, or ``name=ip``; ``host-gateway`` is the
    default bridge's gateway) -> /etc/hosts lines, checked as Docker checks them."""
    lines = []
    for item in extra_hosts or ():
        name, sep, ip = str(item).partition("=") if "=" in str(item) else str(item).partition(":")
        if not sep or not name or not ip:
            raise ValueError(f"bad format for add-host: {item!r} (expected name:ip)")
        ip = ip.strip("[]")
        if ip == "host-gateway":
            if not host_gateway:
                raise ValueError(f"add-host {item!r}: host-gateway has no address here (no default bridge)")
            ip = host_gateway
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid IP address in add-host: {ip!r}") from None
        lines.append(f"{ip}\t{name}")
    return lines


def _resolv_conf(resolv, network_mode, nameservers, dns):
    """The container's resolv.conf from the host's: the embedded DNS (``nameservers``)
    or ``--dns`` servers instead of the host's, ``--dns-search``/``--dns-option``
    instead of its search domains and options (Docker's rules)."""
    lines = resolv.splitlines()
    search = [x for x in lines if x.strip().startswith(("search", "domain"))]
    options = [x for x in lines if x.strip().startswith("options")]
    if dns.get("DnsSearch"):
        search = ["search " + " ".join(dns["DnsSearch"])]
    if dns.get("DnsOptions"):
        options = ["options " + " ".join(dns["DnsOptions"])]
    if nameservers:  # the embedded DNS answers (its upstreams are the host's)
        servers = list(nameservers)
        options = ["options " + " ".join(dns["DnsOptions"])] if dns.get("DnsOptions") else ["options ndots:0"]
    elif dns.get("Dns"):
        servers = list(dns["Dns"])
    else:
        servers = [x.split()[1] for x in lines if x.strip().startswith("nameserver") and len(x.split()) > 1]
        if network_mode != "host":  # a loopback resolver of the host is unreachable inside
            servers = [x for x in servers if not x.startswith("127.")]
        if not nameservers and not dns and network_mode == "host":
            return resolv
    return "".join(f"nameserver {x}\n" for x in servers) + "".join(x + "\n" for x in search + options)


def write_etc_files(container_dir, hostname, network_mode, ip=None, nameservers=None, extra_hosts=(),
                    dns=None):
    """Write the container's hostname, hosts and resolv.conf; return their paths.

    ``ip``: the container's address (its hostname's line in /etc/hosts);
    ``nameservers``: the resolvers to name instead of the host's (127.0.0.11, the
    embedded DNS of user-defined networks), keeping the host's search domains;
    ``extra_hosts``: more /etc/hosts lines (:func:`extra_host_lines`); ``dns``:
    ``{"Dns", "DnsSearch", "DnsOptions"}`` of the HostConfig."""
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
    hosts += list(extra_hosts or ())
    if ip:
        hosts.append(f"{ip}\t{hostname}")
    elif network_mode != "host":
        hosts.append(f"127.0.1.1\t{hostname}")
    with open(paths["hosts"], "w") as fh:
        fh.write("\n".join(hosts) + "\n")
    try:
        with open("/etc/resolv.conf") as fh:
            resolv = fh.read()
    except OSError:
        resolv = ""
    dns = {k: v for k, v in (dns or {}).items() if v}
    with open(paths["resolv.conf"], "w") as fh:
        fh.write(_resolv_conf(resolv, network_mode, nameservers, dns))
    return paths


# --- namespaces -----------------------------------------------------------------------

def _text(host, key):
    value = host.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"invalid HostConfig.{key}: {value!r} is not a string")
    return value


def _mode(value, private, error, joinable=True):
    if value == "host":
        return "host"
    if value in private:
        return "private"
    kind, _, name = value.partition(":")
    if joinable and kind == "container" and name and ":" not in name:
        return ("container", name)
    raise ValueError(error)


def namespace_modes(host_config):
    """PidMode, IpcMode, UTSMode, CgroupnsMode and NetworkMode, checked as Docker checks them.

    Returns ``{"pid"|"ipc"|"uts"|"cgroup"|"network": "private" | "host" |
    ("container", NAME)}``; the engine turns ``("container", NAME)`` into the path of
    that container's namespace.  IpcMode ``none`` and ``shareable`` are private
    namespaces (``none`` only changes /dev/shm); every network but ``host`` and
    ``container:NAME`` (none, bridge, default, a network's name) is a private one.
    """
    host = host_config or {}
    pid, ipc, uts = _text(host, "PidMode"), _text(host, "IpcMode"), _text(host, "UTSMode")
    cgroupns, net = _text(host, "CgroupnsMode"), _text(host, "NetworkMode")
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


def _namespaces(modes, ns_paths):
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


# --- capabilities ---------------------------------------------------------------------

def kernel_capabilities():
    """Every capability this kernel has (``/proc/sys/kernel/cap_last_cap``)."""
    return ["CAP_" + n for n in runtime.CAPS[:runtime.last_cap() + 1]]


def all_capabilities():
    """What ``--privileged`` and ``--cap-add ALL`` give: the kernel's capabilities
    that the daemon holds itself (this VM's daemon runs without CAP_SYS_RESOURCE,
    and no container can get more than its daemon has)."""
    try:
        with open("/proc/self/status") as fh:
            held = next(int(line.split()[1], 16) for line in fh if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        held = -1
    return [c for i, c in enumerate(kernel_capabilities()) if held >> i & 1]


def _normalise_caps(names, known):
    out = []
    for name in names:
        cap = name.upper()
        if cap != "ALL":
            cap = cap if cap.startswith("CAP_") else "CAP_" + cap
            if cap not in known:
                raise ValueError(f'unknown capability: "{cap}"')
        out.append(cap)
    return out


def capabilities(host):
    """The capability set Docker gives: its defaults, CapAdd/CapDrop, or all when privileged."""
    if host.get("Privileged"):
        return all_capabilities()
    known = kernel_capabilities()
    add = _normalise_caps(ocispec.items(host, "CapAdd", str), known)
    drop = _normalise_caps(ocispec.items(host, "CapDrop", str), known)
    if "ALL" in add:
        caps = [c for c in all_capabilities() if c not in drop]
    elif "ALL" in drop:
        caps = [c for c in add if c != "ALL"]
    else:
        caps = [c for c in DEFAULT_CAPS if c not in drop] + add
    return list(dict.fromkeys(caps))


# --- security options and sysctls ----------------------------------------------------

def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _not_here(what, module, opt):
    enabled = os.path.exists(f"/sys/module/{module}") or (module == "selinux" and os.path.exists("/sys/fs/selinux"))
    why = "Dockyard cannot apply it yet" if enabled else f"{what} is not enabled on this host"
    return ValueError(f"invalid --security-opt {_quote(opt)}: {why}")


def security_options(opts):
    """SecurityOpt -> ``{"no_new_privileges": bool, "seccomp": None | "unconfined" | JSON text}``.

    Docker's syntax: ``no-new-privileges[=bool]``, ``seccomp=unconfined|builtin|<JSON>``,
    ``apparmor=…``, ``label=…`` (``=`` or the old ``:`` separator).  AppArmor and SELinux
    are refused except the no-op ``apparmor=unconfined`` and ``label=disable``.
    """
    out = {"no_new_privileges": False, "seccomp": None}
    for opt in opts:
        if opt == "no-new-privileges":
            out["no_new_privileges"] = True
            continue
        if opt == "disable":  # Docker's old spelling of label=disable
            continue
        cuts = [i for i in (opt.find("="), opt.find(":")) if i >= 0]
        if not cuts:
            raise ValueError(f"invalid --security-opt 1: {_quote(opt)}")
        key, value = opt[:min(cuts)], opt[min(cuts) + 1:]
        if key == "no-new-privileges":
            if value not in GO_BOOLS:
                raise ValueError(f"invalid --security-opt 2: {_quote(opt)}")
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
            raise ValueError(f"invalid --security-opt 2: {_quote(opt)}")
    return out


def sysctls(host, ns):
    """``linux.sysctl``: only the sysctls of a namespace the container has of its own (runc's rule)."""
    values = host.get("Sysctls") or {}
    if not isinstance(values, dict):
        raise ValueError(f"invalid HostConfig.Sysctls: {values!r} is not an object of name -> value")
    for key in values:
        if key in IPC_SYSCTLS or key.startswith("fs.mqueue."):
            if ns["ipc"] == "host":
                raise ValueError(f"sysctl {_quote(key)} is not allowed in the hosts ipc namespace")
        elif key.startswith("net."):
            if ns["network"] == "host":
                raise ValueError(f"sysctl {_quote(key)} is not allowed in the hosts network namespace")
        else:
            raise ValueError(f"sysctl {_quote(key)} is not in a separate kernel namespace")
    return {k: str(v) for k, v in values.items()}


# --- the whole config ----------------------------------------------------------------

def _checked(host, ns):
    """Everything of HostConfig that needs no rootfs, validated (shared by make_config and
    :func:`validate_host_config`)."""
    for key, why in UNSUPPORTED.items():
        if host.get(key):
            raise ValueError(f"{why} (HostConfig.{key}: {host[key]!r})")
    userns = _text(host, "UsernsMode")
    if userns not in ("", "host"):
        raise ValueError(f"invalid UsernsMode {userns!r}: user namespaces are not supported yet")
    if ocispec.num(host, "ShmSize") < 0:
        raise ValueError("SHM size can not be less than 0")
    adj = ocispec.num(host, "OomScoreAdj")
    if not -1000 <= adj <= 1000:
        raise ValueError(f"Invalid value {adj}, range for oom score adj is [-1000, 1000]")
    parent = _text(host, "CgroupParent")
    if ".." in parent.split("/") or "\0" in parent:
        raise ValueError(f"invalid CgroupParent {parent!r}: it must not contain '..'")
    size = host.get("ConsoleSize")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise ValueError(f"invalid HostConfig.ConsoleSize: {size!r} is not [height, width]")
    caps = capabilities(host)
    nodes, rules = ocispec.devices(host)
    resources = {**ocispec.linux_resources(host), "devices": rules}
    mounts, create = ocispec.user_mounts(host)
    return {"caps": caps, "security": security_options(ocispec.items(host, "SecurityOpt", str)),
            "nodes": nodes, "resources": resources, "mounts": mounts, "create": create,
            "rlimits": ocispec.rlimits(host), "sysctl": sysctls(host, ns), "oomScoreAdj": adj}


def validate_host_config(host_config):
    """Raise ValueError for what :func:`make_config` would refuse, without a rootfs and
    without changing anything (for ``POST /containers/create``, as Docker checks there)."""
    host = host_config or {}
    modes = namespace_modes(host)
    ns = {k: "host" if modes.get(k) == "host" else None for k in NAMESPACES}
    _checked(host, ns)


def _default_mounts(host, ns, privileged, shm_path=None):
    """Docker's default mounts, /dev/shm per IpcMode and ShmSize (``shm_path``: the
    host-side /dev/shm of a shareable IPC namespace, its owner's or a joiner's)."""
    ro = [] if privileged else ["ro"]  # privileged: /sys and its cgroup mount writable
    mounts = [
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
    if _text(host, "IpcMode") == "none":
        return mounts
    if ns["ipc"] == "host" or shm_path:  # share the /dev/shm that goes with the IPC namespace
        source = "/dev/shm" if ns["ipc"] == "host" else shm_path
        mounts.append({"destination": "/dev/shm", "type": "bind", "source": source, "options": ["rbind", "rprivate"]})
    elif ns["ipc"]:
        raise ValueError("joining an IPC namespace needs the /dev/shm of its owner (shm_path)")
    else:
        size = ocispec.num(host, "ShmSize") or DEFAULT_SHM_SIZE
        mounts.append({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                       "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={size}"]})
    return mounts


def _group_ids(rootfs, names):
    groups = _read_db(rootfs, "etc/group")
    out = []
    for name in names:
        entry = next((g for g in groups if g[0] == name), None)
        if entry is not None:
            out.append(int(entry[2]))
        elif name.isdigit():
            out.append(int(name))
        else:
            raise ValueError(f"unable to find group {name}: no matching entries in group file")
    return out


def make_config(record, rootfs, etc_paths, ns_paths, init_path=None, shm_path=None, volume_mounts=None):
    """Return the OCI runtime config dict for a container record.

    ``etc_paths``: name ("hostname", "hosts", "resolv.conf") -> host file to bind at
    /etc/<name>.  ``ns_paths``: OCI namespace type -> None (a new namespace),
    ``"host"`` (share the host's) or a ``/proc/<pid>/ns/<type>`` path to join; types
    left out follow HostConfig (:func:`namespace_modes`), user sharing the host's.
    ``init_path``: the host's tini-static, bound at /sbin/docker-init for ``Init``.
    ``shm_path``: a host-side tmpfs to bind at /dev/shm (IpcMode shareable, or the
    owner's when joining another container's IPC namespace).
    ``volume_mounts``: OCI bind mounts of the container's volumes (and of binds
    from ``--volumes-from``), made by :mod:`.mountpoints`.
    Bind sources of ``Binds`` that do not exist are created (as Docker does) once
    the whole config is accepted.
    """
    cfg, host = record["Config"], record.get("HostConfig") or {}
    ns = _namespaces(namespace_modes(host), ns_paths or {})
    privileged = bool(host.get("Privileged"))
    parts = _checked(host, ns)
    caps = parts["caps"]

    env = list(cfg.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, DEFAULT_PATH)
    if not any(e.startswith("HOSTNAME=") for e in env):
        env.append(f"HOSTNAME={cfg['Hostname']}")
    user = resolve_user(rootfs, cfg.get("User"))
    extra = _group_ids(rootfs, ocispec.items(host, "GroupAdd", str))
    user["additionalGids"] = list(dict.fromkeys(user["additionalGids"] + extra))

    args = list(record["Path_Args"])
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

    parent = _text(host, "CgroupParent").strip("/")
    linux = {
        "namespaces": [{"type": k} if v is None else {"type": k, "path": v}
                       for k, v in ns.items() if v != "host"],
        "maskedPaths": [] if privileged else list(ocispec.MASKED_PATHS if host.get("MaskedPaths") is None
                                                  else ocispec.items(host, "MaskedPaths", str)),
        "readonlyPaths": [] if privileged else list(ocispec.READONLY_PATHS if host.get("ReadonlyPaths") is None
                                                    else ocispec.items(host, "ReadonlyPaths", str)),
        "devices": parts["nodes"],
        "resources": parts["resources"],
        "cgroupsPath": f"/{parent}/{record['Id']}" if parent else record["Id"],
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
        from .seccomp import (
            linux_seccomp,  # lazily: only containers that get a filter pay for it
        )
        seccomp = linux_seccomp(profile, caps)
        if seccomp:
            linux["seccomp"] = seccomp

    config = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": bool(host.get("ReadonlyRootfs"))},
        "mounts": defaults + user_mounts + etc + init_mount,
        "linux": linux,
        "annotations": {"org.dockyard.container.name": record["Name"].lstrip("/")},
    }
    if ns["uts"] != "host":  # no hostname without a UTS namespace of its own
        config["hostname"] = cfg["Hostname"] if ns["network"] != "host" else socket.gethostname()
    for path in parts["create"]:  # Docker creates missing Binds sources
        os.makedirs(path, exist_ok=True)
    return config

def write_bundle(bundle_dir, config):
    """config.json holds the container's environment (its secrets): 0600 in a 0700 directory."""
    os.makedirs(bundle_dir, 0o700, exist_ok=True)
    tmp = os.path.join(bundle_dir, ".config.json.tmp")
    with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600), "w") as fh:
        json.dump(config, fh)
    os.replace(tmp, os.path.join(bundle_dir, "config.json"))
    return bundle_dir
