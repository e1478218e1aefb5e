"""Our own CLI's run flags, exec, pause, unpause and stats, against the daemon."""

import os
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def test_run_resource_flags_reach_the_container(daemon):
    res = daemon.cli("run", "--rm", "-m", "48m", "--pids-limit", "33", "--cap-drop", "ALL", "--cap-add", "KILL",
                     "--ulimit", "nofile=100:200", "--read-only", "--tmpfs", "/run:size=1m", "--init",
                     "busybox", "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes "
                     "/sys/fs/cgroup/pids/pids.max; grep CapEff /proc/self/status; ulimit -n; "
                     "touch /x || echo ro; touch /run/ok && echo run-ok; cat /proc/1/cmdline | tr '\\0' ' '")
    assert res.returncode == 0, res.stderr.decode()
    lines = res.stdout.decode().splitlines()
    assert lines[:3] == [str(48 << 20), "33", "CapEff:\t0000000000000020"], lines
    assert lines[3:6] == ["100", "ro", "run-ok"] and lines[6].startswith("/sbin/docker-init -- sh"), lines


def test_bad_run_flags_say_what_is_wrong(daemon):
    res = daemon.cli("run", "--rm", "-m", "12x", "busybox", "true")
    assert res.returncode == 125 and b'invalid argument "12x" for "-m, --memory" flag' in res.stderr
    res = daemon.cli("run", "--rm", "--cap-add", "NOPE", "busybox", "true")
    assert res.returncode == 125 and b"unknown capability" in res.stderr
    res = daemon.cli("run", "--rm", "--ulimit", "nofile=50000:50000", "busybox", "true")
    assert res.returncode != 0 and b"CAP_SYS_RESOURCE" in res.stderr, res.stderr


def test_exec_pause_unpause_stats(daemon):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert daemon.cli("run", "-d", "--name", name, "busybox", "sleep", "300").returncode == 0
    try:
        res = daemon.cli("exec", "-e", "K=v w", "-w", "/tmp", "-u", "nobody", name, "sh", "-c", "echo $K; pwd; id -u")
        assert res.returncode == 0 and res.stdout == b"v w\n/tmp\n65534\n", res.stderr
        assert daemon.cli("exec", name, "sh", "-c", "exit 4").returncode == 4
        res = daemon.cli("exec", "-i", name, "cat", input=b"through stdin\n")
        assert res.stdout == b"through stdin\n"
        res = daemon.cli("exec", name, "nope")
        assert res.returncode == 126 and b"executable file not found" in res.stdout + res.stderr
        assert daemon.cli("pause", name).returncode == 0
        ps = daemon.cli("ps", "--format", "{{.Names}} {{.Status}}").stdout.decode()
        assert f"{name} Up" in ps and "(Paused)" in ps
        res = daemon.cli("pause", name)
        assert res.returncode == 1 and b"already paused" in res.stderr
        assert daemon.cli("unpause", name).returncode == 0
        res = daemon.cli("stats", "--no-stream", "--format", "{{.Name}} {{.PIDs}}", name)
        assert res.stdout.decode().split() == [name, "1"], res.stdout
    finally:
        daemon.cli("rm", "-f", name)


def test_exec_with_a_terminal(daemon):
    name = f"cli-{uuid.uuid4().hex[:8]}"
    assert daemon.cli("run", "-d", "--name", name, "busybox", "sleep", "300").returncode == 0
    try:
        cmd = f"stty rows 25 cols 70; {daemon.args[0]} -m dockyard.cli.main -H {daemon.host} exec -it {name} sh -c 'tty; stty size'"
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        out = res.stdout.decode().replace("\r", "")
        assert res.returncode == 0 and out.startswith("/dev/pts/") and out.endswith("25 70\n"), out
    finally:
        daemon.cli("rm", "-f", name)
