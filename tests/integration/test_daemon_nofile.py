"""The daemon raises its own open-file limit (it holds fds for every running
container) and its containers still get the limit it was started with."""

import os
import re

import pytest

from dockyard.testing.daemon import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def nofile_of(pid):
    with open(f"/proc/{pid}/limits") as fh:
        soft, hard = re.search(r"^Max open files\s+(\d+)\s+(\d+)", fh.read(), re.M).groups()
    return int(soft), int(hard)


def test_the_daemon_raises_its_limit_and_containers_keep_the_started_one(tmp_path, busybox_tar):
    d = Daemon(tmp_path / "d")
    d.args = ["prlimit", "--nofile=1000:4096", "--", *d.args]  # as under LimitNOFILE=1000:4096
    d.start()
    try:
        assert nofile_of(d.proc.pid) == (4096, 4096)
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        res = d.cli("run", "--rm", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn", check=True)
        assert res.stdout == b"1000\n4096\n"
        res = d.cli("run", "--rm", "--ulimit", "nofile=100:200", "busybox", "sh", "-c", "ulimit -n; ulimit -Hn",
                    check=True)
        assert res.stdout == b"100\n200\n"  # what the user asks for still wins
        d.cli("run", "-d", "--name", "idle", "busybox", "sleep", "300", check=True)
        res = d.cli("exec", "idle", "sh", "-c", "ulimit -n", check=True)
        assert res.stdout == b"1000\n"
        pid = int(d.cli("inspect", "-f", "{{.State.Pid}}", "idle", check=True).stdout)
        assert nofile_of(pid) == (1000, 4096)
        d.cli("rm", "-f", "idle", check=True)
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []
