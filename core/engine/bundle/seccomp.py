"""Seccomp profiles: Docker's JSON format in, the OCI ``linux.seccomp`` object out.

This is the engine's half of the split Docker and runc use. The engine reads a
profile -- ours (:mod:`dockyard.engine.bundle.seccomp_default`) or the text a user
passed with ``--security-opt seccomp=FILE`` -- and resolves what depends on the
container and the machine: rules that apply only with some capabilities, on
some architectures or from some kernel version on. What is left is the OCI
runtime-spec object, which the exec driver compiles to BPF and loads.

Every problem with a profile raises :class:`~dockyard.errors.InvalidParameter`
(a ``ValueError``; HTTP 400) whose message starts with ``--security-opt
seccomp:`` and names the rule and field at fault.
"""

import functools
import json
import os
import re

from ...errors import InvalidParameter
from .seccomp_default import profile as default_profile

#: The actions of the OCI runtime spec that the native driver can carry out.
#: (SCMP_ACT_NOTIFY needs a seccomp agent, ``listenerPath``, which we do not run.)
ACTIONS = frozenset({
    "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO", "SCMP_ACT_TRACE", "SCMP_ACT_ALLOW", "SCMP_ACT_LOG",
})
_ERRNO_ACTIONS = frozenset({"SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"})

OPERATORS = frozenset({
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
})

ARCHES = frozenset({
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",
    "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
})

FLAGS = frozenset({
    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
})

#: ``uname -m`` (or Go's GOARCH) -> (the arch name profiles use in
#: ``includes/excludes.arches``, the libseccomp architecture for ``archMap``).
MACHINES = {
    "x86_64": ("amd64", "SCMP_ARCH_X86_64"),
    "i386": ("x86", "SCMP_ARCH_X86"),
    "i686": ("x86", "SCMP_ARCH_X86"),
    "aarch64": ("arm64", "SCMP_ARCH_AARCH64"),
    "armv6l": ("arm", "SCMP_ARCH_ARM"),
    "armv7l": ("arm", "SCMP_ARCH_ARM"),
    "armv8l": ("arm", "SCMP_ARCH_ARM"),
    "ppc": ("ppc", "SCMP_ARCH_PPC"),
    "ppc64": ("ppc64", "SCMP_ARCH_PPC64"),
    "ppc64le": ("ppc64le", "SCMP_ARCH_PPC64LE"),
    "s390": ("s390", "SCMP_ARCH_S390"),
    "s390x": ("s390x", "SCMP_ARCH_S390X"),
    "mips": ("mips", "SCMP_ARCH_MIPS"),
    "mips64": ("mips64", "SCMP_ARCH_MIPS64"),
    "riscv64": ("riscv64", "SCMP_ARCH_RISCV64"),
    "loongarch64": ("loong64", "SCMP_ARCH_LOONGARCH64"),
}
MACHINES.update({pair[0]: pair for pair in list(MACHINES.values())})  # "amd64", "arm64", ...
MACHINES["386"] = MACHINES["x86"]

_MAX_ERRNO = 4095  # the kernel clamps SECCOMP_RET_ERRNO data to this
_MAX_ARG = 5  # system calls have six arguments, 0..5
_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")


def linux_seccomp(profile, capabilities, arch=None):
    """The OCI ``linux.seccomp`` object for a container, or None for no filter.

    ``profile``: None for Dockyard's default profile, ``"unconfined"`` for no
    filter, otherwise the text of a profile in Docker's seccomp JSON format.
    ``capabilities``: the capability names the container gets (its bounding
    set, e.g. ``["CAP_CHOWN", ...]``); ``includes.caps`` / ``excludes.caps``
    are resolved against them here. ``arch``: ``uname -m`` of the machine
    (default: this one's); it picks the ``archMap`` entry and resolves
    ``includes/excludes.arches``. ``minKernel`` is compared with this
    machine's kernel release.

    Raises InvalidParameter (a ValueError) naming what is wrong with the profile.
    """
    if profile is None:  # most containers: resolved once per set of capabilities
        return dict(_default_for(frozenset(_cap_set(capabilities)), _machine(arch)))
    if isinstance(profile, str) and profile.strip() == "unconfined":
        return None
    return _resolve(_decode(profile), _cap_set(capabilities), _machine(arch))


@functools.lru_cache(maxsize=64)
def _default_for(caps, machine):
    """The default profile resolved; shared between containers, so it is never
    changed after (a container gets a copy of its top level, and the bundle is
    only serialised)."""
    return _resolve(default_profile(), caps, machine)


def _fail(message):
    raise InvalidParameter(f"--security-opt seccomp: {message}")


def _decode(text):
    try:
        config = json.loads(text)
    except (TypeError, ValueError) as exc:  # JSONDecodeError, or not text at all
        _fail(f"the profile is not valid JSON: {exc}")
    if not isinstance(config, dict):
        _fail(f"the profile must be a JSON object, not {type(config).__name__}")
    return config


def _cap_set(capabilities):
    out = set()
    for cap in capabilities or ():
        cap = str(cap).upper()
        out.add(cap if cap.startswith("CAP_") else "CAP_" + cap)
    return out


def _machine(arch):
    machine = arch or os.uname().machine
    try:
        return MACHINES[machine]
    except KeyError:
        return machine, None  # unknown here: no archMap entry, arches compare by name


def _resolve(config, caps, machine):
    native, scmp_arch = machine
    default = config.get("defaultAction") or ""
    syscalls = _list(config, "syscalls", "the profile")
    if not default and not syscalls:
        return None  # Docker: an empty profile means no filter
    out = {"defaultAction": _action(default, "defaultAction")}
    if config.get("defaultErrnoRet") is not None:
        errno_ret = _errno(config["defaultErrnoRet"], "defaultErrnoRet", default)
        if errno_ret is not None:
            out["defaultErrnoRet"] = errno_ret
    if config.get("listenerPath"):
        _fail("listenerPath (a seccomp notify agent) is not supported")

    architectures = _list(config, "architectures", "the profile")
    arch_map = _list(config, "archMap", "the profile")
    if architectures and arch_map:
        _fail("both 'architectures' and 'archMap' are set; use one of them")
    archs = [_arch(a, "architectures") for a in architectures]
    for i, entry in enumerate(arch_map):
        where = f"archMap[{i}]"
        if not isinstance(entry, dict):
            _fail(f"{where} must be an object")
        main = _arch(entry.get("architecture"), f"{where}.architecture")
        subs = [_arch(a, f"{where}.subArchitectures") for a in _list(entry, "subArchitectures", where)]
        if main == scmp_arch and not archs:
            archs = [main, *subs]
    if archs:
        out["architectures"] = list(dict.fromkeys(archs))

    flags = _list(config, "flags", "the profile")
    for flag in flags:
        if not isinstance(flag, str) or flag not in FLAGS:
            _fail(f"unknown flag {flag!r} (known: {', '.join(sorted(FLAGS))})")
    if flags:
        out["flags"] = list(flags)

    rules = []
    for i, call in enumerate(syscalls):
        rule = _rule(call, i, caps, native)
        if rule is not None:
            rules.append(rule)
    out["syscalls"] = rules
    return out


def _rule(call, i, caps, native):
    """One Docker syscall rule -> an OCI one, or None when it does not apply here."""
    if not isinstance(call, dict):
        _fail(f"syscalls[{i}] must be an object")
    names = _names(call, i)
    where = f"syscalls[{i}] ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
    action = _action(call.get("action"), f"{where}: action")
    args = [_arg(arg, f"{where}: args[{j}]") for j, arg in enumerate(_list(call, "args", where))]
    errno_ret = call.get("errnoRet")
    if errno_ret is not None:
        errno_ret = _errno(errno_ret, f"{where}: errnoRet", action)
    includes = _filters(call, "includes", where)
    excludes = _filters(call, "excludes", where)
    # Validate everything before deciding, so a bad rule fails on every machine.
    if native in excludes["arches"] or caps & set(excludes["caps"]):
        return None
    if excludes["minKernel"] and _kernel_at_least(excludes["minKernel"]):
        return None
    if includes["arches"] and native not in includes["arches"]:
        return None
    if not set(includes["caps"]) <= caps:
        return None
    if includes["minKernel"] and not _kernel_at_least(includes["minKernel"]):
        return None
    rule = {"names": names, "action": action}
    if args:
        rule["args"] = args
    if errno_ret is not None:
        rule["errnoRet"] = errno_ret
    return rule


def _names(call, i):
    name, names = call.get("name"), call.get("names")
    if name and names:
        _fail(f"syscalls[{i}] has both 'name' and 'names'; use one of them")
    names = [name] if name else names
    if not names:
        _fail(f"syscalls[{i}] names no system call (set 'names')")
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        _fail(f"syscalls[{i}]: 'names' must be a list of system call names, not {names!r}")
    return list(names)


def _filters(call, key, where):
    value = call.get(key)
    value = {} if value is None else value
    if not isinstance(value, dict):
        _fail(f"{where}: {key} must be an object")
    out = {"arches": _list(value, "arches", f"{where}: {key}"),
           "caps": sorted(_cap_set(_list(value, "caps", f"{where}: {key}"))),
           "minKernel": value.get("minKernel") or ""}
    if out["minKernel"]:
        _version(out["minKernel"], f"{where}: {key}.minKernel")
    return out


def _action(action, where):
    if action == "SCMP_ACT_NOTIFY":
        _fail(f"{where}: SCMP_ACT_NOTIFY (a seccomp notify agent) is not supported")
    if not isinstance(action, str) or action not in ACTIONS:
        _fail(f"{where}: unknown action {action!r} (known: {', '.join(sorted(ACTIONS))})")
    return action


def _errno(value, where, action):
    """A valid errno, or None where the action returns none (runc ignores it there too)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ERRNO:
        _fail(f"{where} must be an errno number from 0 to {_MAX_ERRNO}, not {value!r}")
    return value if action in _ERRNO_ACTIONS else None


def _arg(arg, where):
    if not isinstance(arg, dict):
        _fail(f"{where} must be an object")
    index = arg.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= _MAX_ARG:
        _fail(f"{where}: index must be 0 to {_MAX_ARG}, not {index!r}")
    out = {"index": index}
    for key in ("value", "valueTwo"):
        value = arg.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
            _fail(f"{where}: {key} must be an unsigned 64-bit number, not {value!r}")
        out[key] = value
    op = arg.get("op")
    if not isinstance(op, str) or op not in OPERATORS:
        _fail(f"{where}: unknown op {op!r} (known: {', '.join(sorted(OPERATORS))})")
    out["op"] = op
    return out


def _arch(arch, where):
    if not isinstance(arch, str) or arch not in ARCHES:
        _fail(f"{where}: unknown architecture {arch!r}")
    return arch


def _list(obj, key, where):
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(f"{where}: {key!r} must be a list, not {type(value).__name__}")
    return value


def _version(text, where=None):
    """``"4.8"``, ``"6.18.0-1-amd64"`` -> (4, 8, 0), (6, 18, 0)."""
    match = _VERSION.match(str(text))
    if match is None:
        if where is None:
            return (0, 0, 0)  # an unreadable kernel release: treat as old
        _fail(f"{where}: {text!r} is not a kernel version such as \"4.8\"")
    return tuple(int(part or 0) for part in match.groups())


def _kernel_at_least(version):
    return _version(os.uname().release) >= _version(version)
