"""driverkit.mounts.is_mounted asks the kernel about one path, so a concurrent
change of the mount table cannot hide a mount point (which would be mounted twice)."""

import os
import threading

import pytest

from dockyard.driverkit.mounts import MNT_DETACH, is_mounted, mount, umount

MS_BIND = 4096

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mount(2) needs root")


def test_binds_of_a_directory_onto_itself_and_of_a_file_are_mount_points(tmp_path):
    d, f = tmp_path / "d", tmp_path / "f"
    d.mkdir()
    f.write_text("x")
    assert not is_mounted(d) and not is_mounted(f) and not is_mounted(tmp_path / "missing")
    mount(str(d), str(d), None, MS_BIND)  # same file system, same device number
    mount(str(f), str(f), None, MS_BIND)
    try:
        assert is_mounted(d) and is_mounted(f)
        assert not is_mounted(tmp_path)
    finally:
        umount(str(f), MNT_DETACH)
        umount(str(d), MNT_DETACH)
    assert not is_mounted(d) and not is_mounted(f)
    assert is_mounted("/")


def test_a_mount_point_is_seen_while_other_mounts_come_and_go(tmp_path):
    target = tmp_path / "held"
    target.mkdir()
    mount("tmpfs", str(target), "tmpfs", 0, "size=64k")
    churn = [tmp_path / f"c{i}" for i in range(8)]
    for c in churn:
        c.mkdir()
    stop = threading.Event()

    def flap():
        while not stop.is_set():
            for c in churn:
                mount("tmpfs", str(c), "tmpfs", 0, "size=64k")
            for c in churn:
                umount(str(c), MNT_DETACH)

    t = threading.Thread(target=flap)
    t.start()
    try:
        assert all(is_mounted(target) for _ in range(2000))
    finally:
        stop.set()
        t.join()
        umount(str(target), MNT_DETACH)
