"""OCI ``linux.seccomp`` -> an LXC seccomp profile (the "2" format; daemon side).

LXC reads the profile with libseccomp, as runc and the native driver do, so a
rule translates one to one::

    2
    allowlist errno 1                  <- defaultAction, defaultErrnoRet
    [all]
    clone allow [0,0,SCMP_CMP_MASKED_EQ,2114060288]
    socket errno 1 [0,40,SCMP_CMP_EQ]

What follows runc (and the native driver) exactly: a rule whose action is the
default one is left out; names libseccomp does not know are skipped (LXC warns);
several conditions on one argument become one rule each (any may match), on
different arguments one rule (all must match); ``SCMP_CMP_MASKED_EQ``'s mask is
``value`` and its datum ``valueTwo``.  runc's ENOSYS stub (calls newer than the
profile fail with ENOSYS rather than the default errno, so that libcs fall back)
is written as explicit ``errno 38`` rules for every newer call this host's
libseccomp knows; calls newer than libseccomp itself get the default action.

Refused (no LXC equivalent): the actions ``SCMP_ACT_KILL_PROCESS``,
``SCMP_ACT_LOG``, ``SCMP_ACT_TRACE`` and ``SCMP_ACT_NOTIFY``, filter ``flags``,
``listenerPath``, and an ``architectures`` list other than the set LXC always
filters on this machine (on x86_64: x86_64, x86 and x32).
"""

import os

from dockyard.errors import ExecError

NOT_LXC = "not supported by the lxc exec driver"
ACTIONS = {"SCMP_ACT_KILL": "kill", "SCMP_ACT_KILL_THREAD": "kill", "SCMP_ACT_TRAP": "trap",
           "SCMP_ACT_ALLOW": "allow", "SCMP_ACT_ERRNO": "errno"}
REFUSED = ("SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_NOTIFY")
OPS = {"SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
       "SCMP_CMP_MASKED_EQ"}
#: uname -m -> the architectures LXC puts in every filter it builds there
LXC_ARCHES = {"x86_64": {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"},
              "aarch64": {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"},
              "ppc64": {"SCMP_ARCH_PPC64", "SCMP_ARCH_PPC"}}
EPERM, ENOSYS = 1, 38


def _action(where, field, name, errno_ret):
    if name in REFUSED:
        raise ExecError(f"{where}: {field}: {NOT_LXC}: {name} (LXC profiles know kill, trap, errno and allow)")
    if name not in ACTIONS:
        raise ExecError(f"{where}: {field}: unknown action {name!r}")
    if ACTIONS[name] != "errno":
        return ACTIONS[name]
    value = EPERM if errno_ret is None else errno_ret
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 4095:
        raise ExecError(f"{where}: {field}: errnoRet {value!r} must be 0..4095")
    return f"errno {value}"


def _uint(where, field, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise ExecError(f"{where}: {field}: {value!r} must be an unsigned 64-bit integer")
    return value


def _conditions(where, field, args):
    """OCI args -> the condition lists of the LXC rules to write (one or more)."""
    conds = []
    for j, arg in enumerate(args or ()):
        f = f"{field}.args[{j}]"
        if not isinstance(arg, dict) or arg.get("op") not in OPS:
            raise ExecError(f"{where}: {f}: unknown comparison operator {arg.get('op') if isinstance(arg, dict) else arg!r}")
        index = arg.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index <= 5:
            raise ExecError(f"{where}: {f}.index {index!r} must be 0..5")
        value = _uint(where, f"{f}.value", arg.get("value", 0))
        two = _uint(where, f"{f}.valueTwo", arg.get("valueTwo", 0))
        if arg["op"] == "SCMP_CMP_MASKED_EQ":  # LXC: [index, datum, op, mask]
            conds.append((index, f"[{index},{two},SCMP_CMP_MASKED_EQ,{value}]"))
        else:
            conds.append((index, f"[{index},{value},{arg['op']}]"))
    if not conds:
        return [[]]
    indexes = [i for i, _ in conds]
    if len(set(indexes)) < len(indexes):
        return [[c] for _, c in conds]
    return [[c for _, c in conds]]


def profile(where, spec):
    """The LXC profile text for the OCI ``linux.seccomp`` object ``spec``."""
    field = "linux.seccomp"
    if not isinstance(spec, dict):
        raise ExecError(f"{where}: {field} must be an object")
    if spec.get("flags"):
        raise ExecError(f"{where}: {field}.flags: {NOT_LXC}: {spec['flags']} (LXC loads filters without flags)")
    if spec.get("listenerPath"):
        raise ExecError(f"{where}: {field}.listenerPath: {NOT_LXC}: seccomp agents")
    machine = os.uname().machine
    want = LXC_ARCHES.get(machine)
    arches = set(spec.get("architectures") or ())
    if want is None or arches != want:
        raise ExecError(f"{where}: {field}.architectures: {NOT_LXC}: {sorted(arches)}; LXC filters "
                        f"{sorted(want or ())} on {machine}, so a profile must name exactly those (Docker's "
                        "profiles do, through archMap)")
    default = _action(where, f"{field}.defaultAction", spec.get("defaultAction"), spec.get("defaultErrnoRet"))
    out = ["2", f"allowlist {default}", "[all]"]
    named = []
    for i, rule in enumerate(spec.get("syscalls") or ()):
        f = f"{field}.syscalls[{i}]"
        if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
            raise ExecError(f"{where}: {f}.names must be a list")
        action = _action(where, f"{f}.action", rule.get("action"), rule.get("errnoRet"))
        groups = _conditions(where, f, rule.get("args"))
        for name in rule["names"]:
            if not isinstance(name, str) or not name or not all(c.isalnum() or c == "_" for c in name):
                raise ExecError(f"{where}: {f}.names: bad system call name {name!r}")
            named.append(name)
            if action == default:
                continue  # what happens anyway (and libseccomp refuses it)
            for conds in groups:
                out.append(" ".join([name, action, *conds]))
    if default not in ("allow",):
        out += [f"{name} errno {ENOSYS}" for name in newer_than(named)]
    return "\n".join(out) + "\n"


def newer_than(names):
    """System calls this host's libseccomp knows whose native number is above
    every one of ``names`` (runc's ENOSYS stub, as rules)."""
    try:
        import ctypes

        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return []
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
    lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p
    numbers = [lib.seccomp_syscall_resolve_name(n.encode()) for n in names]
    numbers = [n for n in numbers if n >= 0]
    if not numbers:
        return []
    native = lib.seccomp_arch_native()
    out, highest = [], max(numbers)
    for nr in range(highest + 1, highest + 1024):
        ptr = lib.seccomp_syscall_resolve_num_arch(native, nr)
        if ptr:
            out.append(ctypes.string_at(ptr).decode())
            ctypes.CDLL(None).free(ctypes.c_void_p(ptr))
    return out
