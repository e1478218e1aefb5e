"""Device rules on cgroup v2: a ``BPF_PROG_TYPE_CGROUP_DEVICE`` program, built here
and attached with ``bpf(2)`` through ctypes.

Semantics are those of the v1 devices cgroup written in order: a later rule wins
over an earlier one, a request is allowed only if *each* access it asks for
(m, r, w) is allowed, and a request no rule matches is allowed (an empty v1
devices cgroup allows everything; so does v2 without a program).  So the usual
OCI list, ``{"allow": false, "type": "a"}`` then the allowed devices, means
"deny all but these".

The program, for each access bit b the request has::

    scan the rules that include b, last first; the first whose type, major and
    minor match decides: allow -> check the next bit, deny -> return 0.

and returns 1 at the end.  Attaching uses ``BPF_F_ALLOW_MULTI`` (as runc and
systemd do, so nested managers can add their own); the programs attached to the
cgroup before are detached after the new one is in (for a moment both apply,
which only ever denies more).
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

from typing import TYPE_CHECKING, Any

from ._fs import CgroupError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    #: ``[code, dst, src, off, imm]``; ``off`` of a jump is a label name until linked
    Insn = list[Any]

# bpf(2) commands, program and attach types (linux/bpf.h)
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_DETACH, BPF_PROG_GET_FD_BY_ID, BPF_PROG_QUERY = 5, 8, 9, 13, 16
BPF_PROG_TYPE_CGROUP_DEVICE, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI = 15, 6, 2
# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }
#   access_type = (access << 16) | type
DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
ACCESS_BITS = (("m", ACC_MKNOD), ("r", ACC_READ), ("w", ACC_WRITE))
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

# opcodes used (BPF_CLASS | BPF_OP | BPF_SRC)
LDXW, MOV64K, MOV64X, AND32K, RSH32K, JNEK, JSETK, JA, EXIT = 0x61, 0xB7, 0xBF, 0x54, 0x74, 0x55, 0x45, 0x05, 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int | str = 0, imm: int = 0) -> Insn:
    return [code, dst, src, off, imm]


def program(rules: Sequence[dict[str, Any]]) -> list[Insn]:
    """Build the program for normalised rules (dicts with allow, type, major,
    minor, access).  Returns a list of [code, dst, src, off, imm]; jumps hold
    label names in ``off`` until :func:`_link` resolves them."""
    out = [
        _insn(LDXW, 2, 1, 0),        # r2 = ctx->access_type
        _insn(MOV64X, 3, 2),         # r3 = r2
        _insn(RSH32K, 3, imm=16),    # r3 = access bits
        _insn(AND32K, 2, imm=0xFFFF),  # r2 = device type
        _insn(LDXW, 4, 1, 4),        # r4 = ctx->major
        _insn(LDXW, 5, 1, 8),        # r5 = ctx->minor
    ]
    labels: dict[str, int] = {}
    n = 0
    for letter, bit in ACCESS_BITS:
        relevant = [r for r in reversed(rules) if letter in r["access"]]
        if not relevant:
            continue  # nothing says anything about this access: allowed
        done = f"after_{letter}"
        out += [_insn(JSETK, 3, imm=bit, off=1), _insn(JA, off=done)]
        for rule in relevant:
            n += 1
            skip = f"rule_{n}"
            checks: list[tuple[int, int]] = []
            if rule["type"] != "a":
                checks.append((2, DEV_CHAR if rule["type"] == "c" else DEV_BLOCK))
            checks += [(reg, rule[k]) for reg, k in ((4, "major"), (5, "minor")) if rule[k] is not None]
            out += [_insn(JNEK, reg, imm=value, off=skip) for reg, value in checks]
            out += [_insn(JA, off=done)] if rule["allow"] else [_insn(MOV64K, 0, imm=0), _insn(EXIT)]
            labels[skip] = len(out)
            if not checks:
                break  # this rule matches every request: the rest cannot be reached
        labels[done] = len(out)
    out += [_insn(MOV64K, 0, imm=1), _insn(EXIT)]
    return _link(out, labels)


def _link(insns: list[Insn], labels: dict[str, int]) -> list[Insn]:
    for i, ins in enumerate(insns):
        if isinstance(ins[3], str):
            ins[3] = off = labels[ins[3]] - (i + 1)
            if off > 0x7FFF:
                raise CgroupError(f"devices: too many device rules for one program ({len(insns)} instructions)",
                                  errno.E2BIG)
    return insns


def encode(insns: Iterable[Insn]) -> bytes:
    return b"".join(struct.pack("<BBhi", c, (s << 4) | d, off, imm) for c, d, s, off, imm in insns)


# ---------------------------------------------------------------- syscalls
_libc: ctypes.CDLL | None = None


def _bpf(cmd: int, attr: bytes | bytearray) -> tuple[int, bytes]:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = SYS_BPF.get(platform.machine())
    if nr is None:
        raise CgroupError(f"devices: bpf(2) syscall number unknown for {platform.machine()}", errno.ENOSYS)
    buf = ctypes.create_string_buffer(bytes(attr), len(attr))
    res = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if res < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return res, buf.raw


def load(insns: list[Insn]) -> int:
    """Load the program; returns its fd.  A verifier refusal quotes its log."""
    code = ctypes.create_string_buffer(encode(insns))
    lic = ctypes.create_string_buffer(b"GPL")
    for log_size in (0, 1 << 16):
        log = ctypes.create_string_buffer(log_size or 1)
        attr = bytearray(128)
        struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns), ctypes.addressof(code),
                         ctypes.addressof(lic), 1 if log_size else 0, log_size, ctypes.addressof(log) if log_size else 0)
        attr[48:48 + 9] = b"dockyard\0"
        try:
            return _bpf(BPF_PROG_LOAD, attr)[0]
        except OSError as exc:
            if log_size or exc.errno not in (errno.EINVAL, errno.EACCES):
                text = log.value.decode(errors="replace").strip().splitlines()[-3:]
                raise CgroupError(f"devices: the kernel refused the device-rule program ({exc.strerror}"
                                  + (f": {' / '.join(text)}" if text else "") + ")", exc.errno) from None
    raise AssertionError("unreachable")


def attached(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup (not inherited ones)."""
    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(64)
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    _, raw = _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", raw, 24)[0]
    return list(ids[:count])


def set_device_rules(cgroup_dir: str, rules: Sequence[dict[str, Any]]) -> None:
    """Replace the device policy of the cgroup v2 directory ``cgroup_dir``."""
    what = f"devices: cannot apply {len(rules)} device rules to {cgroup_dir}"
    try:
        cg = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise CgroupError(f"{what} ({exc.strerror})", exc.errno, cgroup_dir) from None
    prog = None
    try:
        prog = load(program(rules))
        old = attached(cg)
        attr = bytearray(20)
        struct.pack_into("<IIII", attr, 0, cg, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
        _bpf(BPF_PROG_ATTACH, attr)
        for prog_id in old:
            old_fd = _bpf(BPF_PROG_GET_FD_BY_ID, struct.pack("<III", prog_id, 0, 0))[0]
            try:
                _bpf(BPF_PROG_DETACH, struct.pack("<IIII", cg, old_fd, BPF_CGROUP_DEVICE, 0))
            finally:
                os.close(old_fd)
    except OSError as exc:
        if isinstance(exc, CgroupError):
            raise
        hint = {errno.EBADF: "not a cgroup v2 directory", errno.EPERM: "needs CAP_SYS_ADMIN, or a parent "
                "attached a program that does not allow more", errno.EINVAL: "not a cgroup v2 directory"}
        raise CgroupError(f"{what} ({exc.strerror}" + (f": {hint[exc.errno]}" if exc.errno in hint else "") + ")",
                          exc.errno, cgroup_dir) from None
    finally:
        if prog is not None:
            os.close(prog)
        os.close(cg)
