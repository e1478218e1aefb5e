"""The environment dockerd gives a container's process and an exec, through the
docker CLI and the SDK: ``HOME`` from the user's passwd entry (``/`` without one)
unless the config sets it, ``TERM=xterm`` with a terminal; an exec's ``HOME`` and
``TERM`` are its own user's and terminal's."""

import os
import shutil
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def env_of(res):
    assert res.returncode == 0, (res.stdout, res.stderr)
    pairs = [line.split("=", 1) for line in res.stdout.decode().replace("\r\n", "\n").splitlines() if "=" in line]
    return dict(pairs)


@pytest.mark.parametrize("args, home, term", [
    ((), "/root", None),
    (("-u", "nobody"), "/nonexistent", None),   # busybox's passwd: nobody's home
    (("-u", "4242"), "/", None),                 # no passwd entry
    (("-u", "65534:0"), "/nonexistent", None),   # by uid, whatever the group
    (("-e", "HOME=/mine", "-u", "nobody"), "/mine", None),
    (("-t",), "/root", "xterm"),
    (("-t", "-e", "TERM=dumb"), "/root", "dumb"),
])
def test_run_environment(daemon, args, home, term):
    env = env_of(daemon.docker("run", "--rm", *args, "busybox", "env"))
    assert env.get("HOME") == home and env.get("TERM") == term, env
    assert env["PATH"] and env["HOSTNAME"]


def test_exec_environment_is_the_execs_own(daemon):
    name = f"env-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "-d", "-t", "-u", "nobody", "--name", name, "busybox", "sleep", "60")
    assert res.returncode == 0, res.stderr
    try:
        env = env_of(daemon.docker("exec", name, "env"))
        assert env.get("HOME") == "/nonexistent" and "TERM" not in env, env  # no terminal: no TERM
        env = env_of(daemon.docker("exec", "-t", "-u", "root", name, "env"))
        assert env.get("HOME") == "/root" and env.get("TERM") == "xterm", env
        assert env_of(daemon.docker("exec", "-u", "4242", name, "env")).get("HOME") == "/"
        assert env_of(daemon.docker("exec", "-e", "HOME=/x", name, "env")).get("HOME") == "/x"
        client = daemon.sdk()
        try:
            out = client.containers.get(name).exec_run("sh -c 'echo $HOME'", user="root")
            assert out.output == b"/root\n"
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", name)


def test_home_set_at_run_stays_in_every_exec(daemon):
    name = f"env-{uuid.uuid4().hex[:8]}"
    res = daemon.docker("run", "-d", "-e", "HOME=/data", "-e", "TERM=vt100", "--name", name, "busybox",
                        "sleep", "60")
    assert res.returncode == 0, res.stderr
    try:
        env = env_of(daemon.docker("exec", "-t", "-u", "nobody", name, "env"))
        assert env.get("HOME") == "/data" and env.get("TERM") == "vt100", env
    finally:
        daemon.docker("rm", "-f", name)
