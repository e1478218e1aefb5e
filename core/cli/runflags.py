"""``run``/``create`` flags for resources, devices, mounts, namespaces and security.

:func:`add_flags` registers them (docker's names, help and value syntax);
:func:`host_config` turns the parsed values into the HostConfig keys they set, and
:func:`container_config` into the container Config keys (``StopSignal``,
``StopTimeout``, anonymous ``Volumes``).  Only flags that were given produce keys.

Values are checked here as the docker CLI checks them, with its messages (e.g.
``invalid argument "12x" for "-m, --memory" flag: invalid size: '12x'``); a bad
value raises ``ValueError``, which ``run``/``create`` print before exiting 125.
Everything the daemon checks (ranges, devices, paths) is left to the daemon.
"""

import os
import re

# dest -> (flags, help, kind).  kind: "size", "swap", "int", "uint16", "cpus", "str",
# "list" (repeatable), "bool".
FLAGS = {
    "memory": (("-m", "--memory"), "Memory limit", "size"),
    "memory_swap": (("--memory-swap",), "Swap limit equal to memory plus swap: '-1' to enable unlimited swap", "swap"),
    "memory_reservation": (("--memory-reservation",), "Memory soft limit", "size"),
    "memory_swappiness": (("--memory-swappiness",), "Tune container memory swappiness (0 to 100) (default -1)", "int"),
    "kernel_memory": (("--kernel-memory",), "Kernel memory limit", "size"),
    "oom_kill_disable": (("--oom-kill-disable",), "Disable OOM Killer", "bool"),
    "oom_score_adj": (("--oom-score-adj",), "Tune host's OOM preferences (-1000 to 1000)", "int"),
    "cpus": (("--cpus",), "Number of CPUs", "cpus"),
    "cpu_shares": (("-c", "--cpu-shares"), "CPU shares (relative weight)", "int"),
    "cpu_period": (("--cpu-period",), "Limit CPU CFS (Completely Fair Scheduler) period", "int"),
    "cpu_quota": (("--cpu-quota",), "Limit CPU CFS (Completely Fair Scheduler) quota", "int"),
    "cpuset_cpus": (("--cpuset-cpus",), "CPUs in which to allow execution (0-3, 0,1)", "str"),
    "cpuset_mems": (("--cpuset-mems",), "MEMs in which to allow execution (0-3, 0,1)", "str"),
    "pids_limit": (("--pids-limit",), "Tune container pids limit (set -1 for unlimited)", "int"),
    "blkio_weight": (("--blkio-weight",), "Block IO (relative weight), between 10 and 1000, or 0 to disable "
                     "(default 0)", "uint16"),
    "blkio_weight_device": (("--blkio-weight-device",), "Block IO weight (relative device weight)", "list"),
    "device_read_bps": (("--device-read-bps",), "Limit read rate (bytes per second) from a device", "list"),
    "device_write_bps": (("--device-write-bps",), "Limit write rate (bytes per second) to a device", "list"),
    "device_read_iops": (("--device-read-iops",), "Limit read rate (IO per second) from a device", "list"),
    "device_write_iops": (("--device-write-iops",), "Limit write rate (IO per second) to a device", "list"),
    "device": (("--device",), "Add a host device to the container", "list"),
    "device_cgroup_rule": (("--device-cgroup-rule",), "Add a rule to the cgroup allowed devices list", "list"),
    "ulimit": (("--ulimit",), "Ulimit options", "list"),
    "cap_add": (("--cap-add",), "Add Linux capabilities", "list"),
    "cap_drop": (("--cap-drop",), "Drop Linux capabilities", "list"),
    "privileged": (("--privileged",), "Give extended privileges to this container", "bool"),
    "security_opt": (("--security-opt",), "Security Options", "list"),
    "read_only": (("--read-only",), "Mount the container's root filesystem as read only", "bool"),
    "tmpfs": (("--tmpfs",), "Mount a tmpfs directory", "list"),
    "volume": (("-v", "--volume"), "Bind mount a volume", "list"),
    "mount": (("--mount",), "Attach a filesystem mount to the container", "list"),
    "volumes_from": (("--volumes-from",), "Mount volumes from the specified container(s)", "list"),
    "volume_driver": (("--volume-driver",), "Optional volume driver for the container", "str"),
    "shm_size": (("--shm-size",), "Size of /dev/shm", "size"),
    "init": (("--init",), "Run an init inside the container that forwards signals and reaps processes", "bool"),
    "pid": (("--pid",), "PID namespace to use", "str"),
    "ipc": (("--ipc",), "IPC mode to use", "str"),
    "uts": (("--uts",), "UTS namespace to use", "str"),
    "cgroupns": (("--cgroupns",), "Cgroup namespace to use (host|private)", "str"),
    "group_add": (("--group-add",), "Add additional groups to join", "list"),
    "add_host": (("--add-host",), "Add a custom host-to-IP mapping (host:ip)", "list"),
    "dns": (("--dns",), "Set custom DNS servers", "list"),
    "dns_search": (("--dns-search",), "Set custom DNS search domains", "list"),
    "dns_option": (("--dns-option",), "Set DNS options", "list"),
    "sysctl": (("--sysctl",), "Sysctl options", "list"),
    "stop_signal": (("--stop-signal",), "Signal to stop a container (default SIGTERM)", "str"),
    "stop_timeout": (("--stop-timeout",), "Timeout (in seconds) to stop a container", "int"),
    "cgroup_parent": (("--cgroup-parent",), "Optional parent cgroup for the container", "str"),
    "restart": (("--restart",), 'Restart policy to apply when a container exits (default "no")', "str"),
    "health_cmd": (("--health-cmd",), "Command to run to check health", "str"),
    "health_interval": (("--health-interval",), "Time between running the check (ms|s|m|h) (default 0s)", "duration"),
    "health_timeout": (("--health-timeout",), "Maximum time to allow one check to run (ms|s|m|h) (default 0s)",
                       "duration"),
    "health_start_period": (("--health-start-period",), "Start period for the container to initialize before "
                            "starting health-retries countdown (ms|s|m|h) (default 0s)", "duration"),
    "health_retries": (("--health-retries",), "Consecutive failures needed to report unhealthy", "int"),
    "no_healthcheck": (("--no-healthcheck",), "Disable any container-specified HEALTHCHECK", "bool"),
}
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
CGROUP_RULE_RE = re.compile(r"^[acb] ([0-9]+|\*):([0-9]+|\*) [rwm]{1,3}$")
ULIMITS = ("as", "core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile",
           "nproc", "rss", "rtprio", "rttime", "sigpending", "stack")
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
               "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


METAVARS = {"size": "bytes", "swap": "bytes", "cpus": "decimal", "str": "string", "ulimit": "ulimit",
            "mount": "mount", "sysctl": "map"}


def add_flags(parser):
    """Register the flags on a run/create parser (every dest defaults to None)."""
    for dest, (names, help_text, kind) in FLAGS.items():
        if kind == "bool":
            parser.add_argument(*names, dest=dest, action="store_const", const=True, help=help_text)
        else:
            parser.add_argument(*names, dest=dest, action="append" if kind == "list" else "store",
                                metavar=METAVARS.get(dest, METAVARS.get(kind, kind)), help=help_text)


# --- value parsers (docker's go-units / strconv / opts) --------------------------------

def goquote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flag_error(dest, value, why):
    names = FLAGS[dest][0]
    label = f"{names[0]}, {names[1]}" if len(names) == 2 else names[0]
    return ValueError(f"invalid argument {goquote(value)} for {goquote(label)} flag: {why}")


def ram_in_bytes(text):
    """go-units RAMInBytes: ``512m``, ``1g``, ``100k``, ``1.5GiB``, plain bytes (binary units)."""
    m = SIZE_RE.match(text)
    try:
        size = float(m.group(1)) if m else None
    except ValueError:
        size = None
    if size is None:
        raise ValueError(f"invalid size: '{text}'")
    unit = (m.group(2) or "").lower()
    return int(size * 1024 ** " kmgtp".index(unit or " "))


def parse_int(text, bits=64, unsigned=False):
    """strconv.ParseInt/ParseUint with base 0, as pflag's int flags parse."""
    func = "ParseUint" if unsigned else "ParseInt"
    body = text[1:] if text[:1] in "+-" else text
    try:
        value = int(text, 8) if re.fullmatch(r"0[0-7]+", body) else int(text, 0)
    except ValueError:
        raise ValueError(f"strconv.{func}: parsing {goquote(text)}: invalid syntax") from None
    if unsigned and text.startswith("-"):
        raise ValueError(f"strconv.{func}: parsing {goquote(text)}: invalid syntax")
    lo, hi = (0, 2 ** bits - 1) if unsigned else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)
    if not lo <= value <= hi:
        raise ValueError(f"strconv.{func}: parsing {goquote(text)}: value out of range")
    return value


def parse_cpus(text):
    """``--cpus 1.5`` -> 1500000000 nano CPUs (docker's opts.ParseCPUs)."""
    from fractions import Fraction
    try:
        nano = Fraction(text) * 10 ** 9
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"failed to parse {text} as a rational number") from None
    if nano.denominator != 1:
        raise ValueError("value is too precise")
    return int(nano)


def parse_ulimit(text):
    """``nofile=1024:2048`` -> {"Name", "Soft", "Hard"} (go-units ParseUlimit)."""
    name, eq, limits = text.partition("=")
    if not eq:
        raise ValueError(f"invalid ulimit argument: {text}")
    if name not in ULIMITS:
        raise ValueError(f"invalid ulimit type: {name}")
    values = limits.split(":")
    if len(values) > 2:
        raise ValueError(f"too many limit value arguments - {limits}, can only have up to two, `soft[:hard]`")
    soft = parse_int(values[0])
    hard = parse_int(values[1]) if len(values) == 2 else soft
    if hard != -1 and soft > hard:
        raise ValueError(f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}")
    return {"Name": name, "Soft": soft, "Hard": hard}


def parse_sysctl(text):
    key, eq, value = text.partition("=")
    if eq and key and (key in IPC_SYSCTLS or key.startswith(("net.", "fs.mqueue."))):
        return key, value
    raise ValueError(f"sysctl '{text}' is not allowed")


def _device_mode(mode):
    return bool(mode) and set(mode) <= set("rwm") and len(set(mode)) == len(mode)


def parse_device(text):
    """``/dev/x[:/dev/y][:rwm]`` -> DeviceMapping (docker's validateLinuxPath + parseLinuxDevice)."""
    if text.count(":") > 2 or not text.split(":", 1)[0]:
        raise ValueError(f"bad format for path: {text}")
    parts = text.split(":")
    src, dst, perms = parts[0], parts[0], "rwm"
    if len(parts) == 2:
        if _device_mode(parts[1]):
            perms = parts[1]
        else:
            dst = parts[1]
    elif len(parts) == 3:
        dst, perms = parts[1], parts[2]
        if not _device_mode(perms):
            raise ValueError(f"bad mode specified: {perms}")
    if not dst.startswith("/"):
        raise ValueError(f"{dst} is not an absolute path")
    if src.endswith("*"):
        import glob
        if len(parts) == 3 or dst != src:
            raise ValueError(f"device with * suffix can't have dst: {text}")
        return [{"PathOnHost": p, "PathInContainer": p, "CgroupPermissions": perms} for p in sorted(glob.glob(src))]
    return [{"PathOnHost": src, "PathInContainer": os.path.normpath(dst), "CgroupPermissions": perms}]


def parse_cgroup_rule(text):
    if not CGROUP_RULE_RE.match(text):
        raise ValueError(f"invalid device cgroup format '{text}'")
    return text


def parse_throttle(text, per_second_io):
    path, colon, rate = text.partition(":")
    if not colon:
        raise ValueError(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise ValueError(f"bad format for device path: {text}")
    try:
        value = parse_int(rate, unsigned=True) if per_second_io else ram_in_bytes(rate)
    except ValueError:
        unit = "" if per_second_io else "[<unit>]"
        tail = "" if per_second_io else ". Unit is optional and can be kb, mb, or gb"
        raise ValueError(f"invalid rate for device: {text}. The correct format is <device-path>:<number>{unit}. "
                         f"Number must be a positive integer{tail}") from None
    return {"Path": path, "Rate": value}


def parse_weight_device(text):
    path, colon, weight = text.partition(":")
    if not colon:
        raise ValueError(f"bad format: {text}")
    if not path.startswith("/dev/"):
        raise ValueError(f"bad format for device path: {text}")
    try:
        value = parse_int(weight, bits=16, unsigned=True)
    except ValueError:
        value = -1
    if value < 0 or (value > 0 and not 10 <= value <= 1000):
        raise ValueError(f"invalid weight for device: {text}")
    return {"Path": path, "Weight": value}


def parse_mount(text):
    """``type=bind,source=/a,target=/b,readonly`` -> an API Mount (docker's opts.MountOpt)."""
    import csv
    try:
        fields = next(csv.reader([text]))
    except (csv.Error, StopIteration) as exc:
        raise ValueError(str(exc) or "empty mount") from None
    mount, sections = {"Type": "volume"}, {}

    def section(name):
        return sections.setdefault(name, {})

    def boolean(key, value):
        if value not in ("1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"):
            raise ValueError(f"invalid value for {key}: {value}")
        return value in ("1", "t", "T", "TRUE", "true", "True")

    for field in fields:
        key, eq, value = field.partition("=")
        if not eq:
            if key in ("readonly", "ro"):
                mount["ReadOnly"] = True
            elif key == "volume-nocopy":
                section("VolumeOptions")["NoCopy"] = True
            elif key == "bind-nonrecursive":
                section("BindOptions")["NonRecursive"] = True
            else:
                raise ValueError(f"invalid field '{field}' must be a key=value pair")
        elif key == "type":
            mount["Type"] = value.lower()
        elif key in ("source", "src"):
            mount["Source"] = os.path.abspath(value) if value == "." or value.startswith("./") else value
        elif key in ("target", "dst", "destination"):
            mount["Target"] = value
        elif key in ("readonly", "ro"):
            mount["ReadOnly"] = boolean(key, value)
        elif key == "consistency":
            mount["Consistency"] = value.lower()
        elif key == "bind-propagation":
            section("BindOptions")["Propagation"] = value.lower()
        elif key == "bind-nonrecursive":
            section("BindOptions")["NonRecursive"] = boolean(key, value)
        elif key == "volume-nocopy":
            section("VolumeOptions")["NoCopy"] = boolean(key, value)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            section("VolumeOptions").setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            section("VolumeOptions").setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            section("VolumeOptions").setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                section("TmpfsOptions")["SizeBytes"] = ram_in_bytes(value)
            except ValueError:
                raise ValueError(f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            if not re.fullmatch(r"[0-7]+", value) or int(value, 8) >= 2 ** 32:
                raise ValueError(f"invalid value for {key}: {value}")
            section("TmpfsOptions")["Mode"] = int(value, 8)
        else:
            raise ValueError(f"unexpected key '{key}' in '{field}'")
    if not mount.get("Target"):
        raise ValueError("target is required")
    for name, kind in (("VolumeOptions", "volume"), ("BindOptions", "bind"), ("TmpfsOptions", "tmpfs")):
        if name in sections and mount["Type"] != kind:
            raise ValueError(f"cannot mix '{kind}-*' options with mount type '{mount['Type']}'")
    return {**mount, **sections}


def security_opts(values):
    """SecurityOpt, MaskedPaths, ReadonlyPaths: a seccomp profile file is sent as its JSON
    text, ``systempaths=unconfined`` becomes empty masked/read-only path lists (as docker)."""
    out, masked = [], None
    for opt in values:
        key, sep, value = opt.partition("=")
        if not sep and key != "no-new-privileges":
            key, sep, value = opt.partition(":")
        if (not sep or not value) and key != "no-new-privileges":
            raise ValueError(f"Invalid --security-opt: {goquote(opt)}")
        if key == "seccomp" and value not in ("unconfined", "builtin"):
            import json
            try:
                with open(value, "rb") as fh:
                    text = fh.read()
            except OSError as exc:
                raise ValueError(f"opening seccomp profile ({value}) failed: open {value}: "
                                 f"{(exc.strerror or str(exc)).lower()}") from None
            try:
                profile = json.loads(text)
            except ValueError as exc:
                raise ValueError(f"compacting json for seccomp profile ({value}) failed: {exc}") from None
            opt = "seccomp=" + json.dumps(profile, separators=(",", ":"), ensure_ascii=False)
        if opt == "systempaths=unconfined":
            masked = []
            continue
        out.append(opt)
    return out, masked


def _binds_and_volumes(values):
    binds, volumes = [], {}
    for spec in dict.fromkeys(values):
        host_part, colon, rest = spec.partition(":")
        if not colon:
            volumes[spec] = {}  # an anonymous volume goes in Config.Volumes, as docker sends it
            continue
        if host_part == "." or host_part.startswith("./"):
            host_part = os.path.abspath(host_part)
        binds.append(f"{host_part}:{rest}")
    return binds, volumes


# --- HostConfig / Config --------------------------------------------------------------

def _value(args, dest):
    raw = getattr(args, dest, None)
    if raw is None:
        return None
    kind = FLAGS[dest][2]
    try:
        if kind == "size":
            return ram_in_bytes(raw)
        if kind == "swap":
            return -1 if raw == "-1" else ram_in_bytes(raw)
        if kind == "int":
            return parse_int(raw, bits=64 if dest not in ("oom_score_adj", "stop_timeout") else 32)
        if kind == "uint16":
            return parse_int(raw, bits=16, unsigned=True)
        if kind == "cpus":
            return parse_cpus(raw)
    except ValueError as exc:
        raise flag_error(dest, raw, exc) from None
    return raw


def _each(args, dest, parse):
    out = []
    for raw in getattr(args, dest, None) or ():
        try:
            out.append(parse(raw))
        except ValueError as exc:
            raise flag_error(dest, raw, exc) from None
    return out


def host_config(args):
    """The HostConfig keys the given flags set (docker's field names and values)."""
    hc = {}
    for dest, key in (("memory", "Memory"), ("memory_swap", "MemorySwap"), ("memory_reservation", "MemoryReservation"),
                      ("memory_swappiness", "MemorySwappiness"), ("kernel_memory", "KernelMemory"),
                      ("oom_score_adj", "OomScoreAdj"), ("cpus", "NanoCpus"), ("cpu_shares", "CpuShares"),
                      ("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"), ("cpuset_cpus", "CpusetCpus"),
                      ("cpuset_mems", "CpusetMems"), ("pids_limit", "PidsLimit"), ("blkio_weight", "BlkioWeight"),
                      ("shm_size", "ShmSize"), ("cgroup_parent", "CgroupParent"), ("ipc", "IpcMode")):
        value = _value(args, dest)
        if value is not None:
            hc[key] = value
    swappiness = hc.get("MemorySwappiness")
    if swappiness is not None and swappiness != -1 and not 0 <= swappiness <= 100:
        raise ValueError(f"invalid value: {swappiness}. Valid memory swappiness range is 0-100")
    for dest, key, valid, message in (("pid", "PidMode", ("", "host"), "--pid: invalid PID mode"),
                                      ("uts", "UTSMode", ("", "host"), "--uts: invalid UTS mode"),
                                      ("cgroupns", "CgroupnsMode", ("", "host", "private"),
                                       "--cgroupns: invalid CGROUP mode")):
        value = getattr(args, dest, None)
        if value is None:
            continue
        joinable = dest == "pid" and re.fullmatch(r"container:[^:]+", value)
        if value not in valid and not joinable:
            raise ValueError(message)
        hc[key] = value
    for dest, key in (("oom_kill_disable", "OomKillDisable"), ("privileged", "Privileged"),
                      ("read_only", "ReadonlyRootfs"), ("init", "Init")):
        if getattr(args, dest, None):
            hc[key] = True
    lists = (("blkio_weight_device", "BlkioWeightDevice", parse_weight_device),
             ("device_read_bps", "BlkioDeviceReadBps", lambda t: parse_throttle(t, False)),
             ("device_write_bps", "BlkioDeviceWriteBps", lambda t: parse_throttle(t, False)),
             ("device_read_iops", "BlkioDeviceReadIOps", lambda t: parse_throttle(t, True)),
             ("device_write_iops", "BlkioDeviceWriteIOps", lambda t: parse_throttle(t, True)),
             ("mount", "Mounts", parse_mount))
    for dest, key, parse in lists:
        if getattr(args, dest, None):
            hc[key] = _each(args, dest, parse)
    if getattr(args, "device_cgroup_rule", None):
        hc["DeviceCgroupRules"] = _each(args, "device_cgroup_rule", parse_cgroup_rule)
    if getattr(args, "ulimit", None):
        by_name = {u["Name"]: u for u in _each(args, "ulimit", parse_ulimit)}  # the last of a name wins
        hc["Ulimits"] = list(by_name.values())
    if getattr(args, "sysctl", None):
        hc["Sysctls"] = dict(_each(args, "sysctl", parse_sysctl))
    if getattr(args, "device", None):
        hc["Devices"] = [d for text in args.device for d in parse_device(text)]
    for dest, key in (("cap_add", "CapAdd"), ("cap_drop", "CapDrop"), ("group_add", "GroupAdd"),
                      ("add_host", "ExtraHosts"), ("dns", "Dns"), ("dns_search", "DnsSearch"),
                      ("dns_option", "DnsOptions")):
        if getattr(args, dest, None):
            hc[key] = list(getattr(args, dest))
    if getattr(args, "security_opt", None):
        opts, masked = security_opts(args.security_opt)
        if opts:
            hc["SecurityOpt"] = opts
        if masked is not None:
            hc["MaskedPaths"], hc["ReadonlyPaths"] = [], []
    if getattr(args, "tmpfs", None):
        hc["Tmpfs"] = {path: opts for path, _, opts in (t.partition(":") for t in args.tmpfs)}
    if getattr(args, "volume", None):
        binds, _ = _binds_and_volumes(args.volume)
        if binds:
            hc["Binds"] = binds
    if getattr(args, "volumes_from", None):
        hc["VolumesFrom"] = list(args.volumes_from)
    if getattr(args, "volume_driver", None):
        hc["VolumeDriver"] = args.volume_driver
    return hc


def container_config(args):
    """The container Config keys of these flags: StopSignal, StopTimeout, Volumes."""
    out = {}
    if getattr(args, "stop_signal", None) is not None:
        out["StopSignal"] = args.stop_signal
    timeout = _value(args, "stop_timeout")
    if timeout is not None:
        out["StopTimeout"] = timeout
    if getattr(args, "volume", None):
        _, volumes = _binds_and_volumes(args.volume)
        if volumes:
            out["Volumes"] = volumes
    return out

