"""Host-side ``/dev/shm`` of containers whose IPC namespace others may join.

Docker's ``--ipc shareable``: the owner's /dev/shm is a tmpfs mounted by the
daemon at ``<container dir>/shm`` and bound into the container, so a container
started with ``--ipc container:OWNER`` can bind the same one (a mount inside
another mount namespace cannot be bound from outside it).  It is unmounted
when the owner stops.
"""

import ctypes
import os

from ...errors import DockyardError

MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MNT_DETACH = 0x2
_libc = ctypes.CDLL("libc.so.6", use_errno=True)


def path(container_dir: str) -> str:
    return os.path.join(container_dir, "shm")


def mount(container_dir: str, size: int) -> str:
    """Mount the tmpfs (idempotent); return its path."""
    target = path(container_dir)
    os.makedirs(target, 0o700, exist_ok=True)
    if os.path.ismount(target):
        return target
    data = f"mode=1777,size={int(size)}".encode()
    if _libc.mount(b"shm", os.fsencode(target), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data) != 0:
        err = ctypes.get_errno()
        raise DockyardError(f"mounting the shareable /dev/shm at {target}: {os.strerror(err)}")
    return target


def unmount(container_dir: str) -> None:
    """Unmount it if it is there (idempotent)."""
    target = path(container_dir)
    if os.path.ismount(target):
        _libc.umount2(os.fsencode(target), MNT_DETACH)
