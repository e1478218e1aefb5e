"""Exits of many containers at once, through the docker CLI: one watcher thread
records each with its own code (also after a daemon restart, also under restart
policies), and the daemon's threads do not grow with its running containers."""

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from dockyard.testing.daemon import Daemon
from dockyard.testing.driver import wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]

N = 24


@pytest.fixture(scope="module")
def own_daemon(session_root, busybox_tar):
    """A daemon of this module's own: its threads are counted, it is restarted."""
    d = Daemon(session_root / f"watcher-{time.monotonic_ns()}").start()
    assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
    yield d
    ids = _ok(d.docker("ps", "-aq")).split()
    if ids:
        _ok(d.docker("rm", "-f", *ids, timeout=120))
    d.stop()
    d.remove_network_objects()  # its default bridge and nft table, which a stopped daemon keeps
    assert d.leaks() == []


def _ok(res):
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode().strip()


def _threads(d):
    with open(f"/proc/{d.proc.pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))


def _run_all(d, argvs):
    """``docker run -d`` of each argv, 8 at a time; the ids in order."""
    with ThreadPoolExecutor(8) as pool:
        return [_ok(r) for r in pool.map(lambda a: d.docker("run", "-d", "--network", "none", *a), argvs)]


def _states(d, ids):
    import json

    return {c["Id"]: c["State"] for c in json.loads(_ok(d.docker("inspect", *ids)))}


def _all_exited(d, ids):
    return all(s["Status"] == "exited" for s in _states(d, ids).values())


def test_threads_stay_bounded_and_concurrent_exits_keep_their_codes(own_daemon):
    d = own_daemon
    first = _run_all(d, [("busybox", "sleep", "300")] * 8)  # the API's worker threads grown to a burst's
    base = _threads(d)
    sleepers = _run_all(d, [("busybox", "sleep", "300")] * N)
    assert _threads(d) <= base + N // 4, "a thread per running container"
    # N end at once on their own, each with its own code; the sleepers are killed together
    enders = _run_all(d, [("busybox", "sh", "-c", f"sleep 2; exit {i + 1}") for i in range(N)])
    _ok(d.docker("kill", *sleepers, *first, timeout=120))
    wait_for(lambda: _all_exited(d, enders + sleepers), 60, "every container recorded as exited", every=0.2)
    states = _states(d, enders + sleepers + first)
    assert [states[c]["ExitCode"] for c in enders] == [i + 1 for i in range(N)]
    assert {states[c]["ExitCode"] for c in sleepers + first} == {137}
    assert all(not s["Running"] and s["Pid"] == 0 for s in states.values())
    _ok(d.docker("rm", *enders, *sleepers, *first, timeout=120))


def test_exits_after_a_daemon_restart_are_recorded_by_the_new_daemon(own_daemon):
    d = own_daemon
    # each ends with its own code on SIGTERM, which comes only once the new daemon runs
    ids = _run_all(d, [("busybox", "sh", "-c", f"trap 'exit {i + 10}' TERM; sleep 300 & wait")
                       for i in range(N)])
    killed = _run_all(d, [("busybox", "sleep", "300")])
    d.stop()  # containers keep running
    d.start()
    assert _threads(d) < N, "a thread per re-adopted container"  # N + 1 of them run
    assert all(s["Running"] for s in _states(d, ids + killed).values())
    _ok(d.docker("kill", "-s", "TERM", *ids, timeout=120))
    _ok(d.docker("kill", *killed))
    wait_for(lambda: _all_exited(d, ids + killed), 60, "the exits after the restart recorded", every=0.2)
    states = _states(d, ids + killed)
    assert [states[c]["ExitCode"] for c in ids] == [i + 10 for i in range(N)]
    assert states[killed[0]]["ExitCode"] == 137
    _ok(d.docker("rm", *ids, *killed, timeout=120))


def test_restart_policies_of_containers_failing_together(own_daemon):
    d = own_daemon
    ids = _run_all(d, [("--restart", "on-failure:2", "busybox", "sh", "-c", "exit 3")] * 8)

    def settled():
        states = _states(d, ids)
        counts = {c: int(_ok(d.docker("inspect", "-f", "{{.RestartCount}}", c))) for c in ids}
        return all(s["Status"] == "exited" for s in states.values()) and set(counts.values()) == {2}

    wait_for(settled, 60, "two restarts each, then exited", every=0.3)
    assert {s["ExitCode"] for s in _states(d, ids).values()} == {3}
    _ok(d.docker("rm", *ids, timeout=120))
