"""``docker logs --tail`` through the docker CLI and SDK, as dockerd 20.10
answers (compared side by side with a private dockerd): the last N entries
whatever their stream, counted before ``--since``/``--until`` filter them;
``--tail 0`` nothing, ``--tail all`` everything; across files rotated by
``max-size``/``max-file`` (json-file and local); with ``-f``, the tail and then
what comes next, nothing twice and nothing lost."""

import os
import shutil
import time
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def _name():
    return f"tl-{uuid.uuid4().hex[:8]}"


def _ok(res):
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return res


def _lines(data):
    return data.decode().splitlines()


@pytest.fixture
def named(daemon):
    names = []
    yield lambda: names.append(_name()) or names[-1]
    if names:
        daemon.docker("rm", "-f", *names)


def test_tail_counts_both_streams_zero_and_all(daemon, named):
    name = named()
    _ok(daemon.docker("run", "--name", name, "busybox", "sh", "-c",
                      "seq 1 3000; echo \u00e9-\u4e2d-1 >&2; echo \u00e9-\u4e2d-2 >&2"))
    res = _ok(daemon.docker("logs", "--tail", "3", name))
    assert (_lines(res.stdout), _lines(res.stderr)) == (["3000"], ["\u00e9-\u4e2d-1", "\u00e9-\u4e2d-2"])
    res = _ok(daemon.docker("logs", "--tail", "0", name))
    assert (res.stdout, res.stderr) == (b"", b"")
    res = _ok(daemon.docker("logs", "--tail", "all", name))
    assert _lines(res.stdout) == [str(i) for i in range(1, 3001)] and len(_lines(res.stderr)) == 2
    assert _lines(_ok(daemon.docker("logs", "--tail", "2500", name)).stdout) == [str(i) for i in range(503, 3001)]
    sdk = daemon.sdk()
    try:
        assert sdk.containers.get(name).logs(tail=4, stderr=False) == b"2999\n3000\n"
    finally:
        sdk.close()


@pytest.mark.parametrize("driver", ["json-file", "local"])
def test_tail_across_rotated_files(daemon, named, driver):
    name = named()
    _ok(daemon.docker("run", "--name", name, "--log-driver", driver, "--log-opt", "max-size=4k",
                      "--log-opt", "max-file=3", "busybox", "sh", "-c", "seq 1 5000"))
    kept = _lines(_ok(daemon.docker("logs", name)).stdout)
    assert 100 < len(kept) < 5000 and kept[-1] == "5000"  # the oldest files rotated away
    for n in (1, 7, len(kept) - 5, len(kept), len(kept) + 100):
        assert _lines(_ok(daemon.docker("logs", "--tail", str(n), name)).stdout) == kept[-n:], n


def test_tail_before_since_and_until(daemon, named):
    name = named()
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                      "seq 1 5; sleep 2; seq 6 8; echo err >&2"))
    time.sleep(1)
    mark = str(int(time.time()))  # between the two bursts
    assert _ok(daemon.docker("wait", name)).stdout.strip() == b"0"

    def logs(*args):
        res = _ok(daemon.docker("logs", *args, name))
        return _lines(res.stdout) + _lines(res.stderr)

    assert logs("--since", mark, "--tail", "10") == ["6", "7", "8", "err"]
    assert logs("--since", mark, "--tail", "2") == ["8", "err"]
    assert logs("--until", mark, "--tail", "2") == []  # the tail first, then the filter, as dockerd
    assert logs("--until", mark, "--tail", "6") == ["4", "5"]


def test_follow_starts_at_the_tail_and_misses_nothing(daemon, named):
    name = named()
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                      "seq 1 100; i=0; while [ $i -lt 15 ]; do echo more-$i; i=$((i+1)); sleep 0.1; done"))
    time.sleep(0.5)
    got = _lines(_ok(daemon.docker("logs", "-f", "--tail", "2", name, timeout=60)).stdout)
    full = _lines(_ok(daemon.docker("logs", name)).stdout)
    assert full[-1] == "more-14" and len(got) >= 3
    start = full.index(got[0])
    assert got == full[start:] and start >= 99  # a contiguous suffix from the tail at that moment
