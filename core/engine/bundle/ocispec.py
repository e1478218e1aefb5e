"""Docker's HostConfig, piece by piece, in the OCI runtime spec's terms.

Each function takes the HostConfig dict of a container record (the API's field
names) and returns one part of ``config.json``: ``linux.resources``, device nodes
and the device allow-list, rlimits and the user's mounts.  They validate as the
Docker daemon does and raise ``ValueError`` with Docker's message (the API answers
400).  :mod:`dockyard.engine.bundle.spec` puts the parts together.

Nothing here changes the host; :func:`user_mounts` returns the bind sources to
create instead of creating them, so a refused config leaves nothing behind.
"""

import os
import posixpath
import re
import stat

MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
    "/sys/firmware", "/sys/devices/virtual/powercap",
]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def _rule(kind, major, minor, access="rwm"):
    rule = {"allow": True, "type": kind}
    if major is not None:
        rule["major"] = major
    if minor is not None:
        rule["minor"] = minor
    rule["access"] = access
    return rule


# Docker's device allow-list: deny everything, allow mknod of any node and use of
# the few harmless ones.  A missing major/minor means "*".
DEFAULT_DEVICE_RULES = [
    {"allow": False, "access": "rwm"},
    _rule("c", None, None, "m"), _rule("b", None, None, "m"),
    _rule("c", 1, 3), _rule("c", 1, 5), _rule("c", 1, 7), _rule("c", 5, 0), _rule("c", 5, 1),
    _rule("c", 5, 2), _rule("c", 1, 8), _rule("c", 1, 9), _rule("c", 136, None), _rule("c", 10, 200),
]
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
RLIM_INFINITY = 2 ** 64 - 1
MIN_MEMORY = 6 * 1024 * 1024
HOST_DEV_SKIP = ("pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev")  # as runc's HostDevices
PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
CGROUP_RULE = re.compile(r"^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$")


# --- values -------------------------------------------------------------------------

def num(host, key, default=0):
    """HostConfig[key] as an int (None/missing: ``default``); anything else: ValueError."""
    value = host.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"invalid HostConfig.{key}: {value!r} is not an integer")
    return value


def items(host, key, kind=dict):
    """HostConfig[key] as a list of ``kind`` (None: empty)."""
    value = host.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise ValueError(f"invalid HostConfig.{key}: {value!r} is not a list of {kind.__name__}")
    return value


def clean(path):
    path = posixpath.normpath(path)
    return "/" + path.lstrip("/") if path.startswith("//") else path


# --- resources ------------------------------------------------------------------------

def parse_list(text):
    """``"0-3,5"`` -> {0, 1, 2, 3, 5} (Docker's ParseUintList); ValueError if malformed."""
    out = set()
    for part in text.split(",") if text else ():
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"invalid format: {text}")
        out.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    return out


def format_list(values):
    """{0, 1, 2, 5} -> ``"0-2,5"``."""
    runs, values = [], sorted(values)
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)


def online_mems():
    try:
        with open("/sys/devices/system/node/online") as fh:
            return parse_list(fh.read().strip())
    except (OSError, ValueError):
        return {0}


def _cpuset(host, key, what, available):
    text = host.get(key) or ""
    if not isinstance(text, str):
        raise ValueError(f"invalid HostConfig.{key}: {text!r} is not a string")
    try:
        wanted = parse_list(text)
    except ValueError as exc:
        raise ValueError(f"Invalid value {text} for cpuset {what}: {exc}") from None
    if wanted - available:
        label = "CPUs" if what == "cpus" else "memory nodes"
        raise ValueError(f"Requested {label} are not available - requested {text}, "
                         f"available: {format_list(available)}")
    return text


def _memory(host):
    memory, swap = num(host, "Memory"), num(host, "MemorySwap")
    reservation = num(host, "MemoryReservation")
    swappiness = num(host, "MemorySwappiness", None)
    if memory > 0 and swap == 0:
        swap = min(2 * memory, 2 ** 63 - 1)  # Docker's default: as much swap as memory (an int64)
    if memory != 0 and memory < MIN_MEMORY:
        raise ValueError("Minimum memory limit allowed is 6MB")
    if memory > 0 and 0 < swap < memory:
        raise ValueError("Minimum memoryswap limit should be larger than memory limit, see usage")
    if memory == 0 and swap > 0:
        raise ValueError("You should always set the Memory limit when using Memoryswap limit, see usage")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise ValueError(f"Invalid value: {swappiness}, valid memory swappiness range is 0-100")
    if reservation > 0 and reservation < MIN_MEMORY:
        raise ValueError("Minimum memory reservation allowed is 6MB")
    if memory > 0 and reservation > 0 and memory < reservation:
        raise ValueError("Minimum memory limit can not be less than memory reservation limit, see usage")
    out = {}
    if memory > 0:
        out["limit"] = memory
    if reservation > 0:
        out["reservation"] = reservation
    if swap != 0:
        out["swap"] = swap
    if swappiness is not None and swappiness != -1:
        out["swappiness"] = swappiness
    if host.get("OomKillDisable"):
        out["disableOOMKiller"] = True
    # KernelMemory is ignored, as Docker does on cgroup v2 (the kernel dropped kmem limits in 5.4).
    return out


def _cpu(host):
    nano, shares = num(host, "NanoCpus"), num(host, "CpuShares")
    period, quota = num(host, "CpuPeriod"), num(host, "CpuQuota")
    if nano > 0 and period > 0:
        raise ValueError("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano > 0 and quota > 0:
        raise ValueError("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = len(os.sched_getaffinity(0))
    if nano != 0 and not 0 < nano <= ncpu * 10 ** 9:
        raise ValueError(f"Range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    if period != 0 and not 1000 <= period <= 1000000:
        raise ValueError("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if 0 < quota < 1000:
        raise ValueError("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if shares < 0:
        raise ValueError(f"invalid CpuShares {shares}: shares: invalid argument")
    out = {}
    if shares:
        out["shares"] = min(max(shares, 2), 262144)  # the kernel's range, as cgroup v1 clamps
    if nano:
        out["period"], out["quota"] = 100000, nano * 100000 // 10 ** 9
    if period:
        out["period"] = period
    if quota:
        out["quota"] = quota
    cpus = _cpuset(host, "CpusetCpus", "cpus", os.sched_getaffinity(0))
    mems = _cpuset(host, "CpusetMems", "mems", online_mems())
    if cpus:
        out["cpus"] = cpus
    if mems:
        out["mems"] = mems
    return out


def _device_numbers(field, path):
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ValueError(f"invalid {field} device {path!r}: {exc.strerror}") from None
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISCHR(st.st_mode)):
        raise ValueError(f"invalid {field} device {path!r}: not a device node")
    return {"major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev)}


def _block_io(host):
    weight = num(host, "BlkioWeight")
    if weight and not 10 <= weight <= 1000:
        raise ValueError("Range of blkio weight is from 10 to 1000")
    out = {"weight": weight} if weight else {}
    devices = []
    for entry in items(host, "BlkioWeightDevice"):
        w = num(entry, "Weight")
        if w and not 10 <= w <= 1000:
            raise ValueError(f"invalid weight for device: {entry.get('Path')}:{w}")
        devices.append({**_device_numbers("BlkioWeightDevice", entry.get("Path") or ""), "weight": w})
    if devices:
        out["weightDevice"] = devices
    for key, oci in (("BlkioDeviceReadBps", "throttleReadBpsDevice"),
                     ("BlkioDeviceWriteBps", "throttleWriteBpsDevice"),
                     ("BlkioDeviceReadIOps", "throttleReadIOPSDevice"),
                     ("BlkioDeviceWriteIOps", "throttleWriteIOPSDevice")):
        rates = []
        for entry in items(host, key):
            rate = num(entry, "Rate")
            if rate < 0:
                raise ValueError(f"invalid rate for device: {entry.get('Path')}:{rate}")
            rates.append({**_device_numbers(key, entry.get("Path") or ""), "rate": rate})
        if rates:
            out[oci] = rates
    return out


def linux_resources(host):
    """``linux.resources`` without ``devices``: memory, cpu, pids and blockIO (only what is set)."""
    out = {"memory": _memory(host), "cpu": _cpu(host), "blockIO": _block_io(host)}
    pids = num(host, "PidsLimit")
    if pids > 0:  # 0 and -1 mean unlimited
        out["pids"] = {"limit": pids}
    return {k: v for k, v in out.items() if v}


# --- devices --------------------------------------------------------------------------

def _node(path, dest, permissions):
    st = os.lstat(path)
    kind = "c" if stat.S_ISCHR(st.st_mode) else "b" if stat.S_ISBLK(st.st_mode) else None
    if kind is None:
        return None, None
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    node = {"path": dest, "type": kind, "major": major, "minor": minor,
            "fileMode": stat.S_IMODE(st.st_mode) & 0o777, "uid": st.st_uid, "gid": st.st_gid}
    return node, _rule(kind, major, minor, permissions)


def _walk_nodes(root, dest, permissions, skip=()):
    """(node, rule) of every device node below ``root``, at the same place below ``dest``."""
    found = []
    for top, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in skip)
        for name in sorted(files):
            path = os.path.join(top, name)
            try:
                node, rule = _node(path, posixpath.join(dest, os.path.relpath(path, root)), permissions)
            except OSError:
                continue  # gone meanwhile
            if node and path != "/dev/console":
                found.append((node, rule))
    return found


def _valid_permissions(text):
    return bool(text) and set(text) <= set("rwm") and len(set(text)) == len(text)


def _mapped_devices(mapping, privileged):
    host_path = mapping.get("PathOnHost") or ""
    dest = mapping.get("PathInContainer") or host_path
    permissions = "rwm" if privileged else (mapping.get("CgroupPermissions") or "rwm")
    if not _valid_permissions(permissions):
        raise ValueError(f"invalid device mode {permissions!r} for device {host_path!r}: "
                         "use letters of rwm (read, write, mknod)")
    if not dest.startswith("/"):
        raise ValueError(f"{dest} is not an absolute path")
    resolved = os.path.realpath(host_path)
    try:
        node, rule = _node(resolved, dest, permissions)
    except OSError as exc:
        raise ValueError(f"error gathering device information while adding custom device "
                         f"\"{host_path}\": {exc.strerror.lower()}") from None
    if node:
        return [node], [rule]
    found = _walk_nodes(resolved, dest, permissions) if os.path.isdir(resolved) else []  # a directory of devices
    if not found:
        raise ValueError(f"error gathering device information while adding custom device "
                         f"\"{host_path}\": not a device node")
    return [n for n, _ in found], [r for _, r in found]


def devices(host):
    """(``linux.devices``, ``linux.resources.devices``) for Devices, DeviceCgroupRules, Privileged."""
    privileged = bool(host.get("Privileged"))
    nodes, rules = [], []
    for mapping in items(host, "Devices"):
        more, allowed = _mapped_devices(mapping, privileged)
        nodes += more
        rules += allowed
    if privileged:
        seen = {n["path"] for n in nodes}
        host_nodes = [n for n, _ in _walk_nodes("/dev", "/dev", "rwm", HOST_DEV_SKIP) if n["path"] not in seen]
        return host_nodes + nodes, [{"allow": True, "access": "rwm"}]
    for text in items(host, "DeviceCgroupRules", str):
        m = CGROUP_RULE.match(text)
        if not m or not _valid_permissions(m.group(4)):
            raise ValueError(f"invalid device cgroup rule format: '{text}'")
        kind, major, minor, access = m.groups()
        rules.append(_rule(kind, None if major == "*" else int(major), None if minor == "*" else int(minor), access))
    return nodes, [dict(r) for r in DEFAULT_DEVICE_RULES] + rules


# --- process --------------------------------------------------------------------------

def rlimits(host):
    """``process.rlimits`` from Ulimits ([{"Name": "nofile", "Soft": 1024, "Hard": 2048}])."""
    out = []
    for entry in items(host, "Ulimits"):
        name = str(entry.get("Name") or "")
        if name.lower() not in ULIMITS:
            raise ValueError(f"invalid ulimit type: {name}")
        soft, hard = num(entry, "Soft"), num(entry, "Hard")
        if hard != -1 and soft > hard:
            raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
        if soft < -1 or hard < -1:
            raise ValueError(f"invalid ulimit {name}={soft}:{hard}: limits are -1 (unlimited) or >= 0")
        out.append({"type": "RLIMIT_" + name.upper(), "soft": RLIM_INFINITY if soft == -1 else soft,
                    "hard": RLIM_INFINITY if hard == -1 else hard})
    return out


# --- mounts ---------------------------------------------------------------------------

def _mount_error(kind, why):
    return ValueError(f'invalid mount config for type "{kind}": {why}')


def _target(kind, target):
    if not target:
        raise _mount_error(kind, "field Target must not be empty")
    if not isinstance(target, str) or not target.startswith("/"):
        raise _mount_error(kind, f"invalid mount path: '{target}' mount path must be absolute")
    if clean(target) == "/":
        raise _mount_error(kind, "invalid specification: destination can't be '/'")
    return clean(target)


def _bind(source, target, readonly, propagation, recursive=True):
    return {"destination": target, "type": "bind", "source": source,
            "options": ["rbind" if recursive else "bind"] + (["ro"] if readonly else []) + [propagation]}


def _valid_mode(mode):
    """Docker's check of a Binds mode: comma-separated, at most one of each kind."""
    kinds = {"ro": "rw", "rw": "rw", "z": "label", "Z": "label", "nocopy": "copy",
             "consistent": "consistency", "cached": "consistency", "delegated": "consistency",
             **{p: "propagation" for p in PROPAGATIONS}}
    seen = [kinds.get(o) for o in mode.split(",")] if mode else []
    return None not in seen and len(seen) == len(set(seen))


def _parse_bind(spec):
    """A Binds entry -> (mount, source dir to create); ``None`` for a volume
    (named or anonymous: :mod:`dockyard.engine.containers.mountpoints` mounts those)."""
    parts = spec.split(":", 3)
    invalid = f"invalid volume specification: '{spec}'"
    if not parts[0] or len(parts) > 3 or (len(parts) == 2 and _valid_mode(parts[1])):
        raise ValueError(invalid)
    if len(parts) == 1:
        return None
    mode = parts[2] if len(parts) == 3 else ""
    if not _valid_mode(mode):
        raise ValueError(f"invalid mode: {mode}")
    source, opts = parts[0], mode.split(",") if mode else []
    if not source.startswith("/"):
        return None
    try:
        target = _target("bind", parts[1])
        if "nocopy" in opts:  # Docker: nocopy applies to volumes only
            raise _mount_error("bind", "field VolumeOptions must not be specified")
    except ValueError as exc:
        raise ValueError(f"{invalid}: {exc}") from None
    propagation = next((o for o in opts if o in PROPAGATIONS), "rprivate")
    return _bind(clean(source), target, "ro" in opts, propagation), clean(source)


_FLAG_GROUPS = {flag: group for group in (
    ("ro", "rw"), ("suid", "nosuid"), ("dev", "nodev"), ("exec", "noexec"), ("sync", "async"),
    ("dirsync",), ("remount",), ("mand", "nomand"), ("atime", "noatime"), ("diratime", "nodiratime"),
    ("bind",), ("rbind",), ("relatime", "norelatime"), ("strictatime", "nostrictatime"),
    PROPAGATIONS + ("unbindable", "runbindable")) for flag in group}
_TMPFS_DATA = ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol")


def tmpfs_options(data):
    """Docker's tmpfs options: noexec,nosuid,nodev,rprivate then the user's, the last of a kind winning."""
    options = ["noexec", "nosuid", "nodev", "rprivate"] + [o for o in (data or "").split(",") if o]
    seen, out = set(), []
    for option in reversed(options):
        if option == "defaults":
            continue
        key = _FLAG_GROUPS.get(option)
        if key is None:
            name, eq, _ = option.partition("=")
            if not eq or name not in _TMPFS_DATA:
                quoted = " ".join(f'"{p}"' for p in option.split("=", 1))
                raise ValueError(f"Invalid tmpfs option [{quoted}]")
            key = "=" + name
        if key not in seen:
            seen.add(key)
            out.insert(0, option)
    return out


def _tmpfs(target, data):
    return {"destination": target, "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options(data)}


def _size_option(size):
    for suffix, unit in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
        if size % unit == 0:
            return f"size={size // unit}{suffix}"
    return f"size={size}"


def _parse_mount(m):
    """A Mounts entry -> (mount, None); bind sources must exist; ``None`` for a
    volume (:mod:`dockyard.engine.containers.mountpoints` mounts those)."""
    if not isinstance(m, dict):
        raise ValueError(f"invalid HostConfig.Mounts entry: {m!r}")
    kind = m.get("Type") or ""
    target = _target(kind, m.get("Target"))
    source, readonly = m.get("Source") or "", bool(m.get("ReadOnly"))
    if kind == "bind":
        opts = m.get("BindOptions") or {}
        propagation = opts.get("Propagation") or "rprivate"
        if not source:
            raise _mount_error(kind, "field Source must not be empty")
        if propagation not in PROPAGATIONS:
            raise _mount_error(kind, f"invalid propagation mode: {propagation}")
        if m.get("VolumeOptions"):
            raise _mount_error(kind, "field VolumeOptions must not be specified")
        if not source.startswith("/"):
            raise _mount_error(kind, f"invalid mount path: '{source}' mount path must be absolute")
        if not os.path.exists(source):
            raise _mount_error(kind, f"bind source path does not exist: {source}")
        return _bind(clean(source), target, readonly, propagation, not opts.get("NonRecursive")), None
    if kind == "tmpfs":
        if m.get("BindOptions"):
            raise _mount_error(kind, "field BindOptions must not be specified")
        if source:
            raise _mount_error(kind, "field Source must not be specified")
        opts, data = m.get("TmpfsOptions") or {}, ["ro"] if readonly else []
        mode, size = num(opts, "Mode"), num(opts, "SizeBytes")
        if mode:
            data.append(f"mode={mode & 0o7777:o}")
        if size:
            data.append(_size_option(size))
        return _tmpfs(target, ",".join(data)), None
    if kind == "volume":
        return None
    raise _mount_error(kind, "mount type unknown")


def user_mounts(host):
    """The mounts of Binds, Mounts and Tmpfs, parents before children (Docker sorts by depth).

    Returns ``(mounts, create)``: ``create`` lists the Binds sources that do not exist,
    which the caller makes as directories once the whole config is accepted.
    """
    parsed = [_parse_bind(b) for b in items(host, "Binds", str)]
    parsed += [_parse_mount(m) for m in items(host, "Mounts", object)]
    parsed = [p for p in parsed if p is not None]
    tmpfs = host.get("Tmpfs") or {}
    if not isinstance(tmpfs, dict):
        raise ValueError(f"invalid HostConfig.Tmpfs: {tmpfs!r} is not an object of path -> options")
    for dest, data in tmpfs.items():
        if clean(dest) == "/":
            raise ValueError("invalid specification: destination can't be '/'")
        if not dest.startswith("/"):
            raise ValueError(f"invalid mount path: '{dest}' mount path must be absolute")
        parsed.append((_tmpfs(clean(dest), data), None))
    seen = set()
    for mount, _ in parsed:
        if mount["destination"] in seen:
            raise ValueError(f"Duplicate mount point: {mount['destination']}")
        seen.add(mount["destination"])
    mounts = sorted((m for m, _ in parsed), key=lambda m: len(m["destination"].rstrip("/").split("/")))
    create = [src for _, src in parsed if src and not os.path.exists(src)]
    return mounts, create
