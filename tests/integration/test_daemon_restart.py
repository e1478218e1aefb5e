"""Containers outlive the daemon; a second daemon runs side by side."""

import os
import signal
import time

import pytest

from conftest import Daemon, mounts_under

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def second_daemon(session_root, busybox_tar):
    d = Daemon(session_root / f"second-{time.monotonic_ns()}", storage_driver="vfs").start()
    assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
    yield d
    d.stop()
    d = Daemon(d.base, storage_driver="vfs").start()  # clean up with a live daemon
    client = d.sdk()
    for c in client.containers.list(all=True):
        c.remove(force=True)
    client.close()
    d.stop()
    assert mounts_under(d.base) == []


def test_two_daemons_side_by_side(daemon, second_daemon):
    a, b = daemon.sdk(), second_daemon.sdk()
    assert a.info()["DockerRootDir"] != b.info()["DockerRootDir"]
    assert b.info()["Driver"] == "vfs"
    assert b.containers.run("busybox", ["echo", "b"], remove=True) == b"b\n"
    assert a.containers.run("busybox", ["echo", "a"], remove=True) == b"a\n"


def test_container_survives_daemon_kill_and_exit_is_recorded(second_daemon):
    d = second_daemon
    client = d.sdk()
    c = client.containers.run("busybox", ["sh", "-c", "echo before; sleep 2; echo after; exit 5"], detach=True)
    time.sleep(0.5)
    d.stop(signal.SIGKILL)  # a crash: no clean shutdown
    time.sleep(2.5)  # the container ends while the daemon is down
    d.start()
    client = d.sdk()
    state = client.api.inspect_container(c.id)["State"]
    assert state["Status"] == "exited" and state["ExitCode"] == 5
    assert client.containers.get(c.id).logs() == b"before\nafter\n"


def test_running_container_is_reattached(second_daemon):
    d = second_daemon
    client = d.sdk()
    c = client.containers.run("busybox", ["sleep", "30"], detach=True)
    pid = client.api.inspect_container(c.id)["State"]["Pid"]
    d.stop()  # clean stop: containers keep running
    assert os.path.exists(f"/proc/{pid}")
    d.start()
    client = d.sdk()
    assert client.api.inspect_container(c.id)["State"]["Running"] is True
    client.api.kill(c.id, "SIGKILL")
    assert client.api.wait(c.id, timeout=30)["StatusCode"] == 137
    client.api.remove_container(c.id)
