"""What a process does before it enters a container and calls ``execve`` there, as
runc's nsexec and init do (stdlib only, importable standalone from the shim
kit's directory, like :mod:`supervisor`).

A process on its way into a container runs host code (a Python interpreter,
liblxc) with host things in hand: file descriptors (the exec log, the shim's
report pipe, namespace fds), the host's ``/proc/<pid>/exe``, and the
dispositions and mask of whatever started the daemon.  From the moment it is
in the container's pid namespace, container root sees it; once its
capabilities are dropped to the container's and its uid is the container's,
the kernel's ptrace checks let container root attach to it, read its
``exe`` and reopen its fds through ``/proc/<pid>/fd`` (issue 13, hole 2).

* :func:`undumpable`: ``PR_SET_DUMPABLE 0``, so that ptrace, ``/proc/<pid>/
  {exe,fd,mem,environ}`` and ``process_vm_*`` need CAP_SYS_PTRACE in the
  host's user namespace.  The flag belongs to the memory map: a fork inherits
  it, a set*id call that changes an id only lowers it
  (``fs.suid_dumpable``), and ``execve`` of the container's program sets it
  back to dumpable, which is when the process becomes the container's.
* :func:`close_fds`: everything but what the process still needs, with
  ``close_range(2)``, before it joins a namespace or a cgroup.
* :func:`default_signals`: every disposition back to SIG_DFL and an empty
  mask, whatever the daemon inherited (``nohup`` and background shells ignore
  SIGHUP and SIGQUIT; the zygote ignores SIGCHLD).  ``execve`` resets only
  caught signals: ignored ones and the mask would reach the program.
"""

import os

import _ctypes  # not ctypes: the shim's start path is benchmarked (see linux.py)
import _signal

PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
CLOSE_RANGE_MAX = 0xFFFFFFFF  # ~0U: close_range(2)'s "every fd above"
_MACHINE = os.uname().machine
# the same number in every architecture's table since 5.9
_SYS_CLOSE_RANGE = 436
_SYS_RT_SIGACTION = {"x86_64": 13, "aarch64": 134, "riscv64": 134, "s390x": 174, "ppc64le": 173}.get(_MACHINE)
_SIGSET_SIZE = 8  # the kernel's sigset_t: 64 signals
# a zeroed struct sigaction (handler SIG_DFL, no flags, empty mask), longer than
# any architecture's
_SIG_DFL_ACTION = bytes(64)
# Annotations only: typing is not imported at run time (start-up cost).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

_UNCATCHABLE = (_signal.SIGKILL, _signal.SIGSTOP)


class _CLong(_ctypes._SimpleCData):
    _type_ = "l"


class _CULong(_ctypes._SimpleCData):
    _type_ = "L"


class _Func(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _CLong


class _Libc:
    _handle = _ctypes.dlopen("libc.so.6", os.RTLD_NOW)


# _Libc stands in for a CDLL (without importing ctypes): only its _handle is read
_prctl = _Func(("prctl", _Libc()))  # type: ignore[arg-type]
_syscall = _Func(("syscall", _Libc()))  # type: ignore[arg-type]


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = _ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def subreaper() -> None:
    """Adopt our descendants' orphans (``PR_SET_CHILD_SUBREAPER``): the hub's
    keeper, so that no container's exit status goes to init when the hub dies."""
    _check(_prctl(PR_SET_CHILD_SUBREAPER, _CULong(1), _CULong(0), _CULong(0), _CULong(0)),
           "prctl(PR_SET_CHILD_SUBREAPER)")


def undumpable() -> None:
    """Make this process non-dumpable (and its children, which inherit it)."""
    _check(_prctl(PR_SET_DUMPABLE, _CULong(0), _CULong(0), _CULong(0), _CULong(0)), "prctl(PR_SET_DUMPABLE)")


def close_fds(keep: "Collection[int | None]" = (0, 1, 2)) -> None:
    """Close every file descriptor not in ``keep``: ``close_range(2)`` over the
    gaps between them, or one by one from ``/proc/self/fd`` where the kernel
    or a seccomp filter refuses that call."""
    low = 0
    try:
        for fd in sorted({int(k) for k in keep if k is not None and k >= 0}) + [CLOSE_RANGE_MAX + 1]:
            if fd > low:
                _check(_syscall(_CLong(_SYS_CLOSE_RANGE), _CULong(low), _CULong(fd - 1), _CULong(0)),
                       "close_range")
            low = fd + 1
        return
    except OSError:
        pass
    kept = set(keep)
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in kept:
            try:
                os.close(int(name))
            except OSError:
                pass  # the listing's own fd


def default_signals() -> None:
    """Every signal's disposition to SIG_DFL, then an empty signal mask.

    With the raw ``rt_sigaction`` where the number is known: glibc's wrapper
    refuses its two reserved signals (32, 33), which an ignoring parent may
    have left ignored all the same."""
    for sig in range(1, _signal.NSIG):
        if sig in _UNCATCHABLE:
            continue
        if _SYS_RT_SIGACTION is not None:
            _check(_syscall(_CLong(_SYS_RT_SIGACTION), _CLong(sig), _SIG_DFL_ACTION, None, _CULong(_SIGSET_SIZE)),
                   f"rt_sigaction({sig})")
        else:
            try:
                _signal.signal(sig, _signal.SIG_DFL)
            except (OSError, ValueError):
                pass  # glibc's own signals
    _signal.pthread_sigmask(_signal.SIG_SETMASK, ())
