"""The real ``docker`` CLI against a Dockyard daemon, unchanged."""

import os
import shutil
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
