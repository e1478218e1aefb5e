"""Containers outlive the daemon; a second daemon runs side by side."""

import os
import signal
import subprocess
import time

import pytest

from dockyard.testing.daemon import PY, Daemon, mounts_under

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


def test_a_second_daemon_on_the_same_data_root_is_refused(second_daemon, tmp_path):
    d = second_daemon
    res = subprocess.run([PY, "-m", "dockyard.daemon.main", "-H", f"unix://{tmp_path}/other.sock",
                          "--data-root", str(d.data_root), "--exec-root", str(tmp_path / "exec")],
                         capture_output=True, timeout=60)
    assert res.returncode == 1
    assert f"a daemon (pid {d.proc.pid}) already uses the data root {d.data_root}" in res.stderr.decode()
    assert not (tmp_path / "other.sock").exists() and not (tmp_path / "exec").exists()
    assert d.sdk().containers.run("busybox", ["echo", "still"], remove=True) == b"still\n"


def test_what_a_killed_daemon_left_is_swept_at_start(second_daemon):
    """A build step's scratch layer and the spools in tmp/ are gone once the next daemon starts."""
    from dockyard import plugins
    from dockyard.engine.layers.store import LayerStore
    from dockyard.store import Store

    d = second_daemon
    d.stop(signal.SIGKILL)
    home = d.data_root / "storage" / "vfs"
    slot = plugins.load_driver("storage", "vfs", str(home))
    slot.init()
    store = Store(str(d.data_root / "dockyard.db"))
    top = store.one("SELECT i.top_layer FROM tags t JOIN images i ON t.image_id=i.id WHERE t.ref=?",
                    "busybox:latest")["top_layer"]
    rw = LayerStore(slot, store).create_scratch(top)  # as a step that was under way when the daemon died
    assert (home / "dir" / rw).is_dir()
    store.close()
    (d.data_root / "tmp" / "upload-123.archive").write_bytes(b"half an upload")
    (d.data_root / "tmp" / "build-add-x" / "0").mkdir(parents=True)
    d.start()
    assert list((d.data_root / "tmp").iterdir()) == []
    assert not (home / "dir" / rw).exists()
    check = Store(str(d.data_root / "dockyard.db"))
    assert check.query("SELECT id FROM scratch_layers") == []
    check.close()
    assert d.sdk().containers.run("busybox", ["echo", "fine"], remove=True) == b"fine\n"
