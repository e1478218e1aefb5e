"""Seccomp for the native exec driver: OCI ``linux.seccomp`` -> BPF -> the kernel.

The runtime's half of the split Docker and runc use (the engine resolved the
profile against capabilities, architecture and kernel already):

* :func:`compile_bpf` runs in the daemon. It hands the rules to libseccomp
  (through ``ctypes``) and exports the classic BPF program, so the container's
  init does not load libseccomp at all.
* :func:`load` runs in the container's init, right before ``execve``, and
  installs that program with one ``seccomp(2)`` call.

Importable standalone (stdlib only at module level): the init runs as
``python -E -S`` with this directory as ``sys.path[0]`` and imports this file as
the top-level module ``seccomp``. ``load`` uses ``_ctypes`` directly, never
``ctypes`` (~3 ms to import on the benchmarked start path).
"""

import _ctypes  # not ctypes: see above
import os
import sys

# libseccomp's action values (seccomp.h); ERRNO and TRACE carry 16 bits of data.
_ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = KILL_THREAD, as in runc
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
_EPERM = 1

# enum scmp_compare
_OPS = {
    "SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7,
}

#: OCI ``linux.seccomp.flags`` -> SECCOMP_FILTER_FLAG_* bits for :func:`load`.
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1,
    "SECCOMP_FILTER_FLAG_LOG": 2,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32,
}

_SCMP_FLTATR_CTL_NNP = 3
_SCMP_FLTATR_CTL_OPTIMIZE = 8
_NR_SCMP_ERROR = -1
_BPF_MAXINSNS = 4096
_EEXIST = 17
_EINVAL = 22

# seccomp(2) by machine; elsewhere load() falls back to prctl(PR_SET_SECCOMP).
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277, "riscv64": 277, "i686": 354, "i386": 354,
                "armv7l": 383, "ppc64le": 358, "s390x": 348}.get(os.uname().machine)
_SECCOMP_SET_MODE_FILTER = 1
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_POINTER_SIZE = 8 if sys.maxsize > 2**32 else 4


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


def filter_flags(linux_seccomp):
    """The ``flags`` list of an OCI ``linux.seccomp`` object as bits for :func:`load`."""
    bits = 0
    for name in (linux_seccomp or {}).get("flags") or ():
        if not isinstance(name, str) or name not in FLAGS:
            raise ValueError(f"seccomp: unknown filter flag {name!r}")
        bits |= FLAGS[name]
    return bits


def compile_bpf(linux_seccomp):
    """OCI ``linux.seccomp`` -> a classic BPF program (``struct sock_filter[]`` bytes).

    Follows runc: a rule whose action is the default action is left out (that
    is what happens anyway, and libseccomp refuses it); names libseccomp does
    not know on this machine are skipped; several conditions on the same
    argument become one rule each (any may match), conditions on different
    arguments one rule (all must match). The filter is built without
    no_new_privs, so loading it does not set that bit.

    Unless the default action allows, the program starts with runc's ENOSYS
    stub (see :func:`_enosys_stub`).

    Results are memoised by content: the daemon compiles the same default
    profile for most containers, and libseccomp takes ~13 ms over it.

    Raises ValueError for an unknown action, operator or architecture, and
    OSError if libseccomp refuses a rule.
    """
    import json

    key = json.dumps(linux_seccomp, sort_keys=True)
    program = _compiled.get(key)
    if program is None:
        program = _compile(linux_seccomp)
        if len(_compiled) >= 32:
            _compiled.clear()
        _compiled[key] = program
    return program


_compiled: "dict[str, bytes]" = {}


def _compile(linux_seccomp):
    import ctypes

    lib = _libseccomp(ctypes)
    default = _action(linux_seccomp.get("defaultAction"), linux_seccomp.get("defaultErrnoRet"))
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise OSError(_EINVAL, "seccomp_init failed")
    try:
        _rc(lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set(CTL_NNP)")
        # A binary tree of syscall numbers instead of a list: ~25% more
        # instructions, but the kernel's load (it runs the filter once per
        # syscall number to build its cache) drops from ~0.9 to ~0.35 ms, and
        # each filtered call walks log(n) comparisons. Not in libseccomp < 2.5.
        lib.seccomp_attr_set(ctx, _SCMP_FLTATR_CTL_OPTIMIZE, 2)
        for arch in linux_seccomp.get("architectures") or ():
            token = lib.seccomp_arch_resolve_name(_arch_name(arch))
            if not token:
                raise ValueError(f"seccomp: unknown architecture {arch!r}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc != -_EEXIST:  # the native one is there from seccomp_init
                _rc(rc, f"seccomp_arch_add({arch})")
        for rule in linux_seccomp.get("syscalls") or ():
            action = _action(rule.get("action"), rule.get("errnoRet"))
            groups = _conditions(rule.get("args") or (), lib.ArgCmp)
            if action == default:
                continue
            for name in rule.get("names") or ():
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    continue  # not a system call libseccomp knows here
                for conds in groups:
                    _rc(lib.seccomp_rule_add_array(ctx, action, nr, len(conds or ()), conds),
                        f"seccomp_rule_add({name})")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _rc(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
            size = os.lseek(fd, 0, os.SEEK_END)
            program = os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
    if default not in (_ACTIONS["SCMP_ACT_ALLOW"], _ACTIONS["SCMP_ACT_LOG"]):
        program = _enosys_stub(lib, linux_seccomp) + program
    if len(program) // 8 > _BPF_MAXINSNS:
        raise ValueError(f"seccomp: the profile compiles to {len(program) // 8} BPF instructions; "
                         f"the kernel takes at most {_BPF_MAXINSNS}")
    return program


# classic BPF (linux/filter.h, linux/seccomp.h)
_LD_ABS_W, _JEQ, _JGT, _JSET, _RET = 0x20, 0x15, 0x25, 0x45, 0x06
_NR_OFFSET, _ARCH_OFFSET = 0, 4  # struct seccomp_data
_RET_ENOSYS = 0x00050000 | 38
_X32_SYSCALL_BIT = 0x40000000
# Architectures whose libseccomp token is their AUDIT_ARCH_* value and whose
# numbers need no decoding (x32 shares x86_64's value: its calls are let through).
_STUB_ARCHES = ("x86_64", "x86", "aarch64", "arm", "riscv64", "ppc64le", "s390x", "s390")


def _enosys_stub(lib, linux_seccomp):
    """BPF put before libseccomp's: ENOSYS for calls newer than any the profile names.

    As runc does. A call the profile does not know (a kernel newer than the
    profile or than libseccomp) would otherwise get the default action, EPERM,
    and libcs fall back to an older call only on ENOSYS (clone3, faccessat2
    and fchmodat2 have each broken containers this way). The stub jumps to
    the rest of the program for anything it does not decide, and
    libseccomp's program checks the architecture again itself.
    """
    names = [n.encode() for rule in linux_seccomp.get("syscalls") or () for n in rule.get("names") or ()]
    tokens = [lib.seccomp_arch_native()]
    tokens += [lib.seccomp_arch_resolve_name(_arch_name(a)) for a in linux_seccomp.get("architectures") or ()]
    entries = []
    for name in _STUB_ARCHES:
        token = lib.seccomp_arch_resolve_name(name.encode())
        if token not in tokens:
            continue
        numbers = [nr for nr in (lib.seccomp_syscall_resolve_name_arch(token, n) for n in names) if nr >= 0]
        if numbers:
            entries.append((token, max(numbers), name == "x86_64"))
    if not entries:
        return b""
    size = 1 + sum(5 if x32 else 4 for _, _, x32 in entries)
    insns = [(_LD_ABS_W, 0, 0, _ARCH_OFFSET)]
    for token, highest, x32 in entries:
        body = 4 if x32 else 3
        insns.append((_JEQ, 0, body, token))  # another architecture: next entry
        insns.append((_LD_ABS_W, 0, 0, _NR_OFFSET))
        if x32:
            insns.append((_JSET, size - len(insns) - 1, 0, _X32_SYSCALL_BIT))
        insns.append((_JGT, 0, size - len(insns) - 1, highest))
        insns.append((_RET, 0, 0, _RET_ENOSYS))
    return b"".join(code.to_bytes(2, sys.byteorder) + bytes((jt, jf)) + k.to_bytes(4, sys.byteorder)
                    for code, jt, jf, k in insns)


def load(bpf, flags=0):
    """Install ``bpf`` (from :func:`compile_bpf`) as a seccomp filter of the calling thread.

    Without ``SECCOMP_FILTER_FLAG_TSYNC`` in ``flags`` it applies to this thread
    and whatever it execs or forks, which is what a single-threaded container
    init wants. Needs CAP_SYS_ADMIN or no_new_privs. Raises OSError on failure
    (EINVAL for bytes that are not a valid filter).
    """
    count, rest = divmod(len(bpf), 8)
    if rest or not count or count > 0xFFFF:
        raise OSError(_EINVAL, f"seccomp: {len(bpf)} bytes is not a BPF program of 8-byte instructions")
    if __package__:
        from . import linux
    else:
        import linux  # standalone in the container init: this directory is sys.path[0]
    insns = bytearray(bpf)  # a stable buffer; a char over its first byte gives its address
    # struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    prog = (count.to_bytes(2, sys.byteorder) + bytes(_POINTER_SIZE - 2)
            + _ctypes.addressof(_Char.from_buffer(insns)).to_bytes(_POINTER_SIZE, sys.byteorder))
    libc = linux._libc
    if _SYS_SECCOMP is not None:
        ret = libc.syscall(linux._CLong(_SYS_SECCOMP), _SECCOMP_SET_MODE_FILTER, flags, prog)
    elif flags:
        raise OSError(_EINVAL, "seccomp: filter flags need seccomp(2), unknown on this machine")
    else:
        ret = libc.prctl(_PR_SET_SECCOMP, linux._CULong(_SECCOMP_MODE_FILTER), prog)
    linux._check(ret, "seccomp(SECCOMP_SET_MODE_FILTER)")
    del insns  # the kernel has copied the program


# ---------------------------------------------------------------------------
# compile_bpf's helpers (daemon side; ctypes is passed in, never imported here)
# ---------------------------------------------------------------------------

_lib = None


def _libseccomp(ctypes):
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)

        class ArgCmp(ctypes.Structure):  # struct scmp_arg_cmp
            _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),  # noqa: RUF012
                        ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]

        lib.ArgCmp = ArgCmp
        sig = {
            "seccomp_init": (ctypes.c_void_p, [ctypes.c_uint32]),
            "seccomp_release": (None, [ctypes.c_void_p]),
            "seccomp_attr_set": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]),
            "seccomp_arch_resolve_name": (ctypes.c_uint32, [ctypes.c_char_p]),
            "seccomp_arch_add": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32]),
            "seccomp_syscall_resolve_name": (ctypes.c_int, [ctypes.c_char_p]),
            "seccomp_syscall_resolve_name_arch": (ctypes.c_int, [ctypes.c_uint32, ctypes.c_char_p]),
            "seccomp_arch_native": (ctypes.c_uint32, []),
            "seccomp_rule_add_array": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                                      ctypes.c_uint, ctypes.c_void_p]),
            "seccomp_export_bpf": (ctypes.c_int, [ctypes.c_void_p, ctypes.c_int]),
        }
        for name, (restype, argtypes) in sig.items():
            func = getattr(lib, name)
            func.restype, func.argtypes = restype, argtypes
        _lib = lib
    return _lib


def _rc(rc, what):
    if rc < 0:
        raise OSError(-rc, f"{what}: {os.strerror(-rc)}")


def _action(name, errno_ret):
    try:
        value = _ACTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"seccomp: unknown action {name!r}") from None
    if name in ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE"):
        value |= (_EPERM if errno_ret is None else int(errno_ret)) & 0xFFFF
    return value


def _arch_name(arch):
    if not isinstance(arch, str) or not arch.startswith("SCMP_ARCH_"):
        raise ValueError(f"seccomp: unknown architecture {arch!r}")
    return arch[len("SCMP_ARCH_"):].lower().encode()


def _conditions(args, ArgCmp):
    """OCI args -> the ``struct scmp_arg_cmp`` arrays of the rules to add (one or more)."""
    conds = []
    for arg in args:
        op = arg.get("op")
        if not isinstance(op, str) or op not in _OPS:
            raise ValueError(f"seccomp: unknown comparison operator {op!r}")
        conds.append(ArgCmp(arg["index"], _OPS[op], arg.get("value", 0), arg.get("valueTwo", 0)))
    if not conds:
        return [None]
    indexes = [c.arg for c in conds]
    if len(set(indexes)) < len(indexes):
        return [(ArgCmp * 1)(c) for c in conds]
    return [(ArgCmp * len(conds))(*conds)]
