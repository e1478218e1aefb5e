"""The real ``docker`` CLI against a Dockyard daemon, unchanged."""

import os
import shutil
import subprocess
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def test_docker_run_rm_prints_hi(daemon):
    res = daemon.docker("run", "--rm", "busybox", "echo", "hi")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b"hi\n"
    assert b"hi" not in res.stderr


def test_docker_run_exit_code_and_stderr(daemon):
    res = daemon.docker("run", "--rm", "busybox", "sh", "-c", "echo oops >&2; exit 7")
    assert res.returncode == 7
    assert res.stderr.strip().endswith(b"oops")


def test_docker_ps_logs_rm_images(daemon):
    name = f"dk-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo logged-line")
    assert res.returncode == 0, res.stderr.decode()
    ps = daemon.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}").stdout.decode()
    assert any(line.startswith(name + " Exited (0)") for line in ps.splitlines()), ps
    logs = daemon.docker("logs", name)
    assert logs.returncode == 0 and logs.stdout == b"logged-line\n"
    inspect = daemon.docker("inspect", "-f", "{{.State.ExitCode}} {{.Config.Image}}", name)
    assert inspect.stdout.decode().strip() == "0 busybox"
    assert daemon.docker("rm", name).returncode == 0
    assert name not in daemon.docker("ps", "-a").stdout.decode()
    images = daemon.docker("images").stdout.decode()
    assert any(line.split()[:2] == ["busybox", "latest"] for line in images.splitlines()[1:]), images


def test_docker_detached_stop_and_errors(daemon):
    name = f"dk-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "-d", "--name", name, "busybox", "sleep", "60")
    assert res.returncode == 0, res.stderr.decode()
    cid = res.stdout.decode().strip()
    assert len(cid) == 64
    assert name in daemon.docker("ps").stdout.decode()
    assert daemon.docker("stop", "-t", "1", name).returncode == 0
    res = daemon.docker("rm", "no-such-container-xyz")
    assert res.returncode != 0 and b"No such container" in res.stderr
    res = daemon.docker("run", "--rm", "busybox", "no-such-cmd")
    assert res.returncode == 127, (res.returncode, res.stderr)
    assert daemon.docker("rm", "-f", name).returncode == 0


def test_docker_run_i_pipes_stdin_and_ends_at_eof(daemon):
    res = daemon.docker("run", "--rm", "-i", "busybox", "sh", "-c", "cat; echo eof", input=b"one\ntwo\n")
    assert res.returncode == 0, res.stderr.decode()
    assert res.stdout == b"one\ntwo\neof\n"


def test_docker_run_t_gives_a_terminal(daemon):
    # `script` gives the docker CLI a terminal of its own, as a user's shell would
    # the CLI sends the size right after the start: wait for it (at most 5 s)
    wait = "i=0; until stty size 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && break; sleep 0.05; done"
    cmd = f"stty rows 30 cols 90; docker -H {daemon.host} run --rm -t busybox sh -c 'tty; {wait}'"
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL, env={**os.environ, "DOCKER_CONFIG": str(daemon.base / "docker-config")})
    out = res.stdout.decode().replace("\r", "")
    assert res.returncode == 0 and out == "/dev/pts/0\n30 90\n", (out, res.stderr)


def test_docker_exec_pause_stats_and_limits(daemon):
    name = f"dk-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "-d", "--name", name, "-m", "64m", "--pids-limit", "50", "--cpus", "0.5",
                        "--hostname", "web", "busybox", "sleep", "300")
    assert res.returncode == 0, res.stderr.decode()
    try:
        res = daemon.docker("exec", "-e", "A=b c", "-u", "nobody", "-w", "/tmp", name,
                            "sh", "-c", "hostname; echo $A; id -u; pwd; cat /sys/fs/cgroup/pids/pids.max")
        assert res.returncode == 0 and res.stdout == b"web\nb c\n65534\n/tmp\n50\n", (res.stdout, res.stderr)
        assert daemon.docker("exec", name, "sh", "-c", "exit 5").returncode == 5
        res = daemon.docker("exec", name, "no-such-program")
        assert res.returncode == 126 and b"executable file not found" in res.stdout + res.stderr
        res = daemon.docker("exec", "-i", name, "wc", "-c", input=b"12345")
        assert res.stdout.strip() == b"5"
        assert daemon.docker("pause", name).returncode == 0
        assert daemon.docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip() == b"paused"
        assert b"is paused" in daemon.docker("exec", name, "true").stderr
        assert daemon.docker("unpause", name).returncode == 0
        res = daemon.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", name)
        fields = res.stdout.decode().split()
        assert fields[0] == name and fields[3] == "64MiB" and fields[-1] == "1", res.stdout
        res = daemon.docker("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}", name)
        assert res.stdout.split() == [b"67108864", b"500000000"]
    finally:
        daemon.docker("rm", "-f", name)


def test_docker_run_oom_and_init(daemon):
    name = f"dk-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "--name", name, "-m", "32m", "busybox", "sh", "-c", "head -c 200m /dev/zero | tail")
    try:
        assert res.returncode == 137
        assert daemon.docker("inspect", "-f", "{{.State.OOMKilled}}", name).stdout.strip() == b"true"
    finally:
        daemon.docker("rm", "-f", name)
    res = daemon.docker("run", "--rm", "--init", "busybox", "ps", "-o", "pid,args")
    assert res.returncode == 0 and b"1 /sbin/docker-init -- ps" in res.stdout, res.stdout
