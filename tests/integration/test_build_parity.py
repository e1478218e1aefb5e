"""The classic builder as dockerd 20.10's, through the docker CLI (``DOCKER_BUILDKIT=0``)
and the SDK: RUN's stderr in the stream, ``--cache-from`` images as cache sources,
the modes of the directories COPY makes, ``HOME`` in RUN steps, and a quiet daemon
log after the step containers go."""

import io
import os
import re
import shutil
import subprocess
import tarfile
import time

import pytest

from build_common import build_ok, context, post_build, text, uniq

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")]


def classic(daemon, *args, timeout=120):
    """``docker ARGS`` with the classic builder; fails the test if docker fails."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(daemon.base / "docker-config")}
    res = subprocess.run(["docker", "-H", daemon.host, *args], capture_output=True, env=env, timeout=timeout,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr.decode() + res.stdout.decode()
    return res.stdout.decode()


def _cache_flags(log):
    """Per step after FROM: True if it used the cache."""
    return [" ---> Using cache\n" in p for p in re.split(r"^Step \d+/\d+ : .*$", log, flags=re.M)[2:]]


def test_run_stderr_is_in_the_stream_as_dockerd_sends_it(daemon):
    marker = uniq("err")
    status, msgs = post_build(daemon, context({"Dockerfile": f"FROM busybox\nRUN echo out-{marker}; "
                                                             f"echo {marker} >&2\n"}), nocache=True)
    assert status == 200, msgs
    streams = [m.get("stream", "") for m in msgs]
    assert f"out-{marker}\n" in streams  # stdout as it is
    assert f"\x1b[91m{marker}\n\x1b[0m" in streams  # stderr in moby's NewStderrWriter red


def test_cache_from_uses_a_loaded_image_history(daemon, tmp_path):
    client = daemon.sdk()
    stamp = uniq()
    (tmp_path / "Dockerfile").write_text(f"FROM busybox\nRUN echo {stamp} > /a\nCOPY f /f\nENV X=1\n"
                                         "RUN echo b > /b\nCMD [\"cat\", \"/a\"]\n")
    (tmp_path / "f").write_text("f\n")
    src, copy = uniq("cf-src"), uniq("cf-copy")
    try:
        classic(daemon, "build", "-q", "-t", src, str(tmp_path))
        saved = tmp_path.parent / f"{src}.tar"
        classic(daemon, "save", "-o", str(saved), src)
        classic(daemon, "rmi", src)  # its intermediate images and cached steps go with it
        classic(daemon, "load", "-i", str(saved))
        saved.unlink()
        loaded = client.images.get(src).id
        # without --cache-from nothing matches: a loaded image has no parent chain
        log = classic(daemon, "build", "--cache-from", "nothing-by-this-name", str(tmp_path))
        assert _cache_flags(log) == [False] * 5
        # --cache-from: every step from the loaded image's history, no container run
        log = classic(daemon, "build", "--cache-from", src, "-t", copy, str(tmp_path))
        assert _cache_flags(log) == [True] * 5 and "Running in" not in log, log
        assert client.images.get(copy).id == loaded
        assert client.containers.run(copy, remove=True) == f"{stamp}\n".encode()
        history = client.api.history(copy)
        assert history[-1]["Id"] == client.images.get("busybox").id, "the restored steps chain to FROM's image"
        assert all(h["Id"] != "<missing>" for h in history)
        # a local step that is no ancestor of a named source is not used (dockerd's rule)
        log = classic(daemon, "build", "--cache-from", "busybox", str(tmp_path))
        assert _cache_flags(log) == [False] * 5
        # the SDK's cache_from: the same sources
        image, logs = client.images.build(path=str(tmp_path), cache_from=[src], rm=True)
        assert image.id == loaded and sum(" ---> Using cache" in c.get("stream", "") for c in logs) == 5
    finally:
        subprocess.run(["docker", "-H", daemon.host, "rmi", "-f", src, copy], capture_output=True)
        client.close()


def test_copy_makes_directories_0755_that_a_later_user_reads(daemon):
    dockerfile = ("FROM busybox\nRUN mkdir -m 700 /exist700\nCOPY . /newdir\nCOPY sub700 /newsub700\n"
                  "COPY sub700/ /exist700/\nADD sub700 /addsub700\nCOPY f /a/b/f\nUSER nobody\n"
                  "RUN cat /newdir/f && ls /newsub700\n"
                  "RUN stat -c '%a %n' /newdir /newsub700 /exist700 /addsub700 /a /a/b /newdir/sub700 /newsub700/g\n")
    files = {"Dockerfile": dockerfile, "f": "f\n", "sub700": None, "sub700/g": ("g\n", 0o600)}
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w") as tar:  # sub700 is 0700 in the context
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o700
                tar.addfile(ti)
                continue
            data, mode = data if isinstance(data, tuple) else (data, 0o644)
            ti.size, ti.mode = len(data), mode
            tar.addfile(ti, io.BytesIO(data.encode()))
    status, msgs = post_build(daemon, body.getvalue(), nocache=True)
    log = text(msgs)
    assert status == 200 and not [m for m in msgs if "error" in m], log
    modes = dict(reversed(line.split()) for line in log.splitlines() if re.match(r"^\d{3} /", line))
    # made by the copy: 0755 whatever the source's mode; there before: kept; inside: the source's
    assert modes == {"/newdir": "755", "/newsub700": "755", "/exist700": "700", "/addsub700": "755",
                     "/a": "755", "/a/b": "755", "/newdir/sub700": "700", "/newsub700/g": "600"}, log


def test_run_steps_get_home_from_the_users_passwd_entry(daemon):
    files = {"Dockerfile": "FROM busybox\nRUN echo app:x:1000:1000::/home/app:/bin/sh >> /etc/passwd && "
                           "mkdir -p /home/app && chown 1000 /home/app\nUSER app\nRUN touch ~/x && "
                           "echo home=$HOME\nUSER 4242\nRUN echo home=$HOME\nUSER root\nRUN echo home=$HOME\n"
                           "ENV HOME=/custom\nRUN echo home=$HOME\n"}
    _, log = build_ok(daemon, files, nocache=True)
    assert re.findall(r"^home=(.*)$", log, flags=re.M) == ["/home/app", "/", "/root", "/custom"], log


def test_removed_step_containers_leave_no_traceback_in_the_log(daemon):
    """A RUN's container exits, the build records it and removes it, and the
    container's own waiter then finds it gone: that is no error (before, a
    ContainerNotFound traceback; builds side by side make the race likely)."""
    from concurrent.futures import ThreadPoolExecutor

    def one(n):
        steps = "".join(f"RUN echo {uniq('quiet')}-{n}-{k}\n" for k in range(8))
        return build_ok(daemon, {"Dockerfile": "FROM busybox\n" + steps}, nocache=True)[1]

    with ThreadPoolExecutor(3) as pool:
        logs = list(pool.map(one, range(3)))
    ids = [cid for log in logs for cid in re.findall(r" ---> Running in ([0-9a-f]{12})", log)]
    assert len(ids) == 24
    time.sleep(1)  # the containers' waiter threads are done with them
    daemon_log = daemon.log.read_text(errors="replace")
    for cid in ids:
        assert not re.search(rf"waiting for {cid}[0-9a-f]* failed", daemon_log), daemon_log[-3000:]
        assert f"No such container: {cid}" not in daemon_log
