"""``POST /build`` through real clients (``DOCKER_BUILDKIT=0 docker build``, the
docker SDK's ``images.build``) and the build cache, including across a daemon
restart."""

import os
import re
import shutil
import time

import docker
import pytest

from build_common import build_ok, context, post_build, text, uniq
from dockyard.testing.daemon import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

DOCKERFILE = """\
FROM busybox
ARG WHO=world
COPY app.txt /app/
RUN echo "hello $WHO" > /greeting
COPY conf/ /conf/
CMD ["sh", "-c", "cat /greeting /app/app.txt /conf/c"]
"""


@pytest.fixture
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


def _write(root, files):
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(data)


def _cache_flags(log):
    """Per step after FROM: True if it used the cache."""
    parts = re.split(r"^Step \d+/\d+ : .*$", log, flags=re.M)[2:]
    return [" ---> Using cache\n" in p for p in parts]


def test_docker_cli_legacy_builder(daemon, client, tmp_path, monkeypatch):
    if not shutil.which("docker"):
        pytest.skip("no docker CLI")
    monkeypatch.setenv("DOCKER_BUILDKIT", "0")
    _write(tmp_path, {"Dockerfile": DOCKERFILE, "app.txt": "app\n", "conf/c": "conf\n", "junk.log": "x",
                      ".dockerignore": "*.log\n"})
    tag = uniq("cli")
    res = daemon.docker("build", "-t", tag, "--build-arg", "WHO=cli", str(tmp_path), timeout=120)
    out = res.stdout.decode()
    assert res.returncode == 0, res.stderr.decode() + out
    assert "Step 4/6 : RUN echo \"hello $WHO\" > /greeting" in out and f"Successfully tagged {tag}:latest" in out
    assert client.containers.run(tag, remove=True) == b"hello cli\napp\nconf\n"
    # again: every step from the cache; -q prints only the id
    res = daemon.docker("build", "-q", "-t", tag, "--build-arg", "WHO=cli", str(tmp_path), timeout=120)
    assert res.returncode == 0 and res.stdout.decode().strip() == client.images.get(tag).id
    # a failing RUN: the CLI shows the output and Docker's message, exits non-zero
    (tmp_path / "Dockerfile").write_text("FROM busybox\nRUN echo broken-step && false\n")
    res = daemon.docker("build", "--force-rm", "-t", tag, str(tmp_path), timeout=120)
    assert res.returncode != 0 and "broken-step" in res.stdout.decode()
    assert "The command '/bin/sh -c echo broken-step && false' returned a non-zero code: 1" in res.stderr.decode()
    res = daemon.docker("build", "-f", "-", str(tmp_path), input=b"FROM busybox\nBOGUS x\n", timeout=120)
    assert res.returncode != 0 and "unknown instruction: BOGUS" in res.stderr.decode()
    assert client.containers.run(tag, remove=True) == b"hello cli\napp\nconf\n"  # the tag did not move


def test_sdk_images_build(daemon, client):
    import io

    tag = uniq("sdk")
    body = io.BytesIO(context({"Dockerfile": DOCKERFILE, "app.txt": "sdk-app\n", "conf/c": "c\n"}, "gzip"))
    image, logs = client.images.build(fileobj=body, custom_context=True, encoding="gzip", tag=tag,
                                      buildargs={"WHO": "sdk"}, rm=True)
    assert image.tags == [f"{tag}:latest"]
    assert any("Successfully built" in chunk.get("stream", "") for chunk in logs)
    assert client.containers.run(tag, remove=True) == b"hello sdk\nsdk-app\nc\n"
    bad = io.BytesIO(context({"Dockerfile": "FROM busybox\nRUN echo sdk-fails; exit 7\n"}))
    with pytest.raises(docker.errors.BuildError) as info:
        client.images.build(fileobj=bad, custom_context=True, forcerm=True)
    assert "returned a non-zero code: 7" in str(info.value)
    assert any("sdk-fails" in chunk.get("stream", "") for chunk in info.value.build_log)


def test_cache_hits_and_misses(daemon, client):
    files = {"Dockerfile": DOCKERFILE.replace("WHO=world", f"WHO={uniq()}"), "app.txt": "a\n", "conf/c": "c\n",
             "unrelated": "1"}
    first, log = build_ok(daemon, files)
    assert _cache_flags(log) == [False] * 5
    again, log = build_ok(daemon, files)
    assert again == first and _cache_flags(log) == [True] * 5
    files["unrelated"] = "2"  # not copied by any step: everything still cached
    assert build_ok(daemon, files)[0] == first
    files["conf/c"] = "changed\n"  # the second COPY and what follows rebuild
    changed, log = build_ok(daemon, files)
    assert changed != first and _cache_flags(log) == [True, True, True, False, False]
    _, log = build_ok(daemon, files, buildargs={"WHO": "other"})  # the RUN sees another build arg
    assert _cache_flags(log) == [True, True, False, False, False]
    _, log = build_ok(daemon, files, nocache=True)
    assert _cache_flags(log) == [False] * 5
    assert client.containers.run(changed, remove=True).endswith(b"changed\n")


def test_cache_survives_restart_and_ignores_removed_images(tmp_path, busybox_tar):
    d = Daemon(tmp_path / "d").start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        files = {"Dockerfile": "FROM busybox\nRUN echo one > /one\nLABEL x=1\n"}
        first, _ = build_ok(d, files, t="cached")
        d.stop()
        d.start()
        again, log = build_ok(d, files, t="cached")
        assert again == first and _cache_flags(log) == [True, True]
        c = d.sdk()
        c.images.remove("cached")  # the images (and their cache entries) are gone
        assert not [i for i in c.api.images(all=True) if i["Id"] == first]
        rebuilt, log = build_ok(d, files)
        assert _cache_flags(log) == [False, False]
        c.close()
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []


def test_client_disconnect_cancels_the_build(daemon, client):
    import socket

    marker = uniq("slow")
    body = context({"Dockerfile": f"FROM busybox\nRUN echo {marker} && sleep 30\n"})
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(f"POST /v1.41/build?forcerm=1 HTTP/1.1\r\nHost: d\r\nContent-Length: {len(body)}\r\n\r\n".encode()
              + body)
    seen = b""
    deadline = time.monotonic() + 30
    while marker.encode() not in seen and time.monotonic() < deadline:
        seen += s.recv(65536)
    assert marker.encode() in seen
    s.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the RUN's container goes, then the build ends and its context
        left = [c for c in client.containers.list(all=True) if marker in " ".join(c.attrs["Args"])]
        contexts = [p for p in (daemon.data_root / "tmp").iterdir() if p.name.startswith("build-")]
        if not left and not contexts:
            break
        time.sleep(0.2)
    assert not left
    assert not contexts
    status, msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\n"}))
    assert status == 200 and "Successfully built" in text(msgs)
