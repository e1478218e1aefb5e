"""``POST /build`` failures: Docker's messages, and nothing left behind (no
container, mount or temp directory; no tag moved; no new image where no step
succeeded)."""

import os
import re

import pytest

from build_common import Snapshot, build_ok, context, post_build, text, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


@pytest.fixture
def tagged(daemon, client):
    """A tag that must not move when a build for it fails."""
    tag = uniq("kept")
    image_id, _ = build_ok(daemon, {"Dockerfile": "FROM busybox\nLABEL kept=1\n"}, t=tag)
    return tag, image_id


@pytest.mark.parametrize("dockerfile, status, message", [
    ("FROM busybox\nFOO bar\n", 400, "Dockerfile parse error line 2: unknown instruction: FOO"),
    ("RUN echo\n", 400, "Dockerfile parse error line 1: no build stage in current context"),
    ("FROM busybox\nCOPY --bogus=1 a b\n", 400, "Dockerfile parse error line 2: unknown flag: bogus"),
    ("FROM busybox\nENV\n", 400, "Dockerfile parse error line 2: ENV requires at least one argument"),
])
def test_syntax_errors_are_plain_400s(daemon, client, tagged, dockerfile, status, message):
    snap = Snapshot(daemon, client)
    got, msgs = post_build(daemon, context({"Dockerfile": dockerfile}), t=tagged[0])
    assert got == status and msgs == [{"message": message}]
    snap.assert_unchanged()


def test_bad_query_and_missing_target_or_dockerfile(daemon, client):
    snap = Snapshot(daemon, client)
    body = context({"Dockerfile": "FROM busybox\n"})
    assert post_build(daemon, body, t="Bad:Tag")[0] == 400
    assert post_build(daemon, body, buildargs="{nope")[1][0]["message"].startswith("invalid JSON in buildargs")
    assert post_build(daemon, body, target="nosuch")[1] == [
        {"message": "failed to reach build target nosuch in Dockerfile"}]
    assert post_build(daemon, body, dockerfile="Nope")[1] == [
        {"message": "Cannot locate specified Dockerfile: Nope"}]
    assert "not supported" in post_build(daemon, b"", remote="http://127.0.0.1:1/x")[1][0]["message"]
    assert post_build(daemon, body, networkmode="nosuchnet")[0] == 404
    snap.assert_unchanged()


def _stream_error(msgs):
    assert "error" in msgs[-1], msgs
    assert msgs[-1]["errorDetail"]["message"] == msgs[-1]["error"]
    return msgs[-1]["error"]


def test_missing_copy_source(daemon, client, tagged):
    snap = Snapshot(daemon, client)
    status, msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nCOPY missing.txt /x\n"}), t=tagged[0])
    assert status == 200
    assert _stream_error(msgs) == ("Dockerfile:2: COPY failed: file not found in build context or excluded by .dockerignore: "
                                   "stat missing.txt: file does not exist")
    status, msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nCOPY *.nothing /x/\n"}))
    assert "no source files were specified" in _stream_error(msgs)
    assert client.images.get(tagged[0]).id == tagged[1]
    snap.assert_unchanged()


@pytest.mark.parametrize("rm,forcerm", [(True, False), (True, True), (False, False)])
def test_failing_run(daemon, client, tagged, rm, forcerm):
    snap = Snapshot(daemon, client)
    df = "FROM busybox\nENV X=1\nRUN echo visible-output && echo to-stderr >&2 && exit 3\nCMD [\"sh\"]\n"
    status, msgs = post_build(daemon, context({"Dockerfile": df}), t=tagged[0], rm=rm, forcerm=forcerm)
    assert status == 200
    err = _stream_error(msgs)
    assert err == "Dockerfile:3: The command '/bin/sh -c echo visible-output && echo to-stderr >&2 && exit 3' " \
                  "returned a non-zero code: 3"
    assert msgs[-1]["errorDetail"]["code"] == 3
    log = text(msgs)
    assert "visible-output\n" in log and "to-stderr\n" in log and "Step 4/4" not in log
    cid = re.search(r"Running in ([0-9a-f]{12})", log).group(1)
    assert client.images.get(tagged[0]).id == tagged[1]
    if rm:  # the default: nothing is left behind, the failed step's container included
        assert f"Removing intermediate container {cid}" in log
        snap.assert_unchanged(allow_new_images=True)  # the ENV step's image stays (cached), as in Docker
    else:  # rm=false keeps the containers, the failed one too, for a look inside
        kept = [c for c in client.containers.list(all=True) if c.id.startswith(cid)]
        assert len(kept) == 1 and kept[0].attrs["State"]["ExitCode"] == 3
        kept[0].remove()
        snap.assert_unchanged(allow_new_images=True)


def test_missing_base_image_and_stage(daemon, client, tagged):
    snap = Snapshot(daemon, client)
    status, msgs = post_build(daemon, context({"Dockerfile": "FROM nosuchimage-xyz\nRUN true\n"}), t=tagged[0])
    assert status == 200
    assert _stream_error(msgs).startswith("Dockerfile:1: pull access denied for nosuchimage-xyz, repository does not exist")
    df = "FROM busybox\nCOPY --from=nostage /x /y\n"
    status, msgs = post_build(daemon, context({"Dockerfile": df}), t=tagged[0])
    assert _stream_error(msgs).startswith("Dockerfile:2: invalid from flag value nostage: pull access denied for nostage")
    df = "FROM busybox AS a\nFROM a\nCOPY --from=5 /x /y\n"
    assert _stream_error(post_build(daemon, context({"Dockerfile": df}))[1]) == \
        "Dockerfile:3: invalid from flag value 5: index out of bounds"
    assert client.images.get(tagged[0]).id == tagged[1]
    snap.assert_unchanged()


def test_bad_chown_and_multi_source_dest(daemon, client):
    snap = Snapshot(daemon, client)
    msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nCOPY --chown=nobody-here a /a\n", "a": "a"}))[1]
    assert _stream_error(msgs) == "Dockerfile:2: can't find uid for user nobody-here: no such user: nobody-here"
    msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nCOPY a b /dir\n", "a": "a", "b": "b"}))[1]
    assert _stream_error(msgs) == ("Dockerfile:2: When using COPY with more than one source file, the destination must be a "
                                   "directory and end with a /")
    snap.assert_unchanged()


def test_workdir_and_copy_onto_a_file(daemon, client):
    snap = Snapshot(daemon, client)
    msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nWORKDIR /etc/passwd/sub\n"}))[1]
    assert _stream_error(msgs) == "Dockerfile:2: mkdir /etc/passwd/sub: not a directory"
    msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nWORKDIR /bin/sh\n"}))[1]
    assert _stream_error(msgs) == "Dockerfile:2: mkdir /bin/sh: not a directory"
    msgs = post_build(daemon, context({"Dockerfile": "FROM busybox\nCOPY a /bin/sh/\n", "a": "a"}))[1]
    assert _stream_error(msgs) == "Dockerfile:2: cannot copy to non-directory: /bin/sh/"
    snap.assert_unchanged(allow_new_images=True)
