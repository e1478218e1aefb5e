"""Thin ctypes wrappers of the Linux syscalls the native exec driver needs.

Importable standalone (stdlib only): the shims' zygote runs ``python -E -S`` with
this directory and the shim kit's on ``sys.path`` and imports it from there.
Every wrapper raises ``OSError`` (with errno and the failing call) on failure.
"""

import os

TYPE_CHECKING = False  # (mypy reads the package imports; typing is not imported at run time)
if TYPE_CHECKING or __package__:
    from dockyard.driverkit.shim.rootpath import join as secure_join
    from dockyard.driverkit.shim.runtime import CAPS, RLIMITS, cap_numbers, last_cap  # noqa: F401 (re-exported)
else:  # in a shim: the kit's directory is on sys.path
    from rootpath import join as secure_join
    from runtime import CAPS, RLIMITS, cap_numbers, last_cap  # noqa: F401

# ``ctypes`` itself costs ~3 ms to import (types, struct, its endian module): the
# shim's start path is benchmarked, so use its C half directly.
import _ctypes


class _CInt(_ctypes._SimpleCData):
    _type_ = "i"


class _CLong(_ctypes._SimpleCData):
    _type_ = "l"


class _CULong(_ctypes._SimpleCData):
    _type_ = "L"


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _CInt


class _FuncLong(_ctypes.CFuncPtr):
    _flags_ = _Func._flags_
    _restype_ = _CLong


class _Lib:
    _handle = _ctypes.dlopen("libc.so.6", os.RTLD_NOW)

    def __getattr__(self, name):
        func = (_FuncLong if name == "syscall" else _Func)((name, self))
        setattr(self, name, func)
        return func


_libc = _Lib()

# clone(2) / unshare(2) flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: OCI namespace type -> unshare flag
NAMESPACES = {
    "pid": CLONE_NEWPID, "network": CLONE_NEWNET, "mount": CLONE_NEWNS, "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS, "cgroup": CLONE_NEWCGROUP, "user": CLONE_NEWUSER, "time": CLONE_NEWTIME,
}

# mount(2) flags
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_MANDLOCK = 0x40
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_STRICTATIME = 1 << 24
MNT_DETACH = 0x2

#: OCI/fstab mount option -> (flags to set, flags to clear)
MOUNT_OPTIONS = {
    "ro": (MS_RDONLY, 0), "rw": (0, MS_RDONLY), "nosuid": (MS_NOSUID, 0), "suid": (0, MS_NOSUID),
    "nodev": (MS_NODEV, 0), "dev": (0, MS_NODEV), "noexec": (MS_NOEXEC, 0), "exec": (0, MS_NOEXEC),
    "sync": (MS_SYNCHRONOUS, 0), "async": (0, MS_SYNCHRONOUS), "dirsync": (MS_DIRSYNC, 0),
    "mand": (MS_MANDLOCK, 0), "nomand": (0, MS_MANDLOCK), "noatime": (MS_NOATIME, 0),
    "atime": (0, MS_NOATIME), "nodiratime": (MS_NODIRATIME, 0), "diratime": (0, MS_NODIRATIME),
    "relatime": (MS_RELATIME, 0), "norelatime": (0, MS_RELATIME),
    "strictatime": (MS_STRICTATIME, 0), "nostrictatime": (0, MS_STRICTATIME),
    "bind": (MS_BIND, 0), "rbind": (MS_BIND | MS_REC, 0), "defaults": (0, 0),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC, "shared": MS_SHARED, "rshared": MS_SHARED | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}

# prctl(2)
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_V3 = 0x20080522

SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}.get(os.uname().machine, 155)



def _check(ret, what):
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _b(s):
    return None if s is None else os.fsencode(s)


def unshare(flags):
    _check(_libc.unshare(flags), "unshare")


def setns(fd, nstype=0):
    _check(_libc.setns(fd, nstype), "setns")


def mount(source, target, fstype, flags=0, data=None):
    _check(_libc.mount(_b(source), _b(target), _b(fstype), _CULong(flags), _b(data)),
           f"mount {fstype or ''} {source or ''} on {target}")


def umount2(target, flags=0):
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root, put_old):
    _check(_libc.syscall(_CLong(SYS_PIVOT_ROOT), _b(new_root), _b(put_old)), "pivot_root")


def sethostname(name):
    raw = name.encode()
    _check(_libc.sethostname(raw, len(raw)), "sethostname")


def setdomainname(name):
    raw = name.encode()
    _check(_libc.setdomainname(raw, len(raw)), "setdomainname")


def capset(effective, permitted, inheritable):
    """Set this thread's capability sets (each a set of capability numbers)."""
    def words(caps):
        bits = sum(1 << c for c in caps)
        return bits & 0xFFFFFFFF, bits >> 32

    e, p, i = words(effective), words(permitted), words(inheritable)
    header = _CAP_V3.to_bytes(4, "little") + bytes(4)
    data = b"".join(w.to_bytes(4, "little") for w in (e[0], p[0], i[0], e[1], p[1], i[1]))
    _check(_libc.capset(header, data), "capset")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0):
    args = (_CULong(a) for a in (arg2, arg3, arg4, arg5))
    return _check(_libc.prctl(option, *args), f"prctl({option})")


def parse_mount_options(options):
    """OCI ``options`` list -> (flags, propagation flags, data string or None)."""
    flags, prop, data = 0, 0, []
    for opt in options or ():
        if opt in MOUNT_OPTIONS:
            setf, clear = MOUNT_OPTIONS[opt]
            flags = (flags | setf) & ~clear
        elif opt in PROPAGATION:
            prop |= PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, prop, ",".join(data) or None


def loopback_up():
    """Set IFF_UP|IFF_RUNNING on ``lo`` of the current network namespace."""
    fd = _check(_libc.socket(2, 2 | 0o2000000, 0), "socket")  # AF_INET, SOCK_DGRAM|SOCK_CLOEXEC
    try:
        # struct ifreq (40 bytes): name[16], then short flags = IFF_UP | IFF_RUNNING
        ifr = b"lo".ljust(16, b"\0") + (0x1 | 0x40).to_bytes(2, "little") + bytes(22)
        _check(_libc.ioctl(fd, _CULong(0x8914), ifr), "ioctl SIOCSIFFLAGS lo")
    finally:
        os.close(fd)


def drop_bounding(keep):
    """Drop every capability not in ``keep`` from the bounding set."""
    for cap in range(last_cap() + 1):
        if cap not in keep:
            prctl(PR_CAPBSET_DROP, cap)


def mkfile(path, mode=0o644):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, mode))


def mount_at(root, dest, source, fstype, flags=0, data=None, prop=0, dir_=True):
    """Mount under ``root`` at container path ``dest``, creating the mount point."""
    target = secure_join(root, dest)
    if dir_:
        os.makedirs(target, 0o755, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), 0o755, exist_ok=True)
        if not os.path.lexists(target):
            mkfile(target)
    mount(source, target, fstype, flags, data)
    rest = flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
    if flags & MS_BIND and rest:  # a bind mount ignores other flags: remount
        remount_bind(target, rest)
    if prop:
        mount(None, target, None, prop)
    return target


# statvfs f_flag bits -> the mount flags a user namespace may not clear ("locked")
_LOCKED = ((0x1, MS_RDONLY), (0x2, MS_NOSUID), (0x4, MS_NODEV), (0x8, MS_NOEXEC), (0x400, MS_NOATIME),
           (0x800, MS_NODIRATIME), (0x1000, MS_RELATIME))


def remount_bind(target, flags):
    """Remount the bind mount at ``target`` with ``flags``; in a user namespace the
    flags the source mount has are locked and must be kept (as runc does)."""
    try:
        mount(None, target, None, MS_BIND | MS_REMOUNT | flags)
    except OSError as exc:
        if exc.errno != 1:
            raise
        have = os.statvfs(target).f_flag
        mount(None, target, None, MS_BIND | MS_REMOUNT | flags | sum(m for st, m in _LOCKED if have & st))
