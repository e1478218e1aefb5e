"""Shared fixtures: a private daemon per test session, offline images, leak checks.

Each session gets its own data root, exec root and socket under a unique temp
directory, so several runs (and a real daemon) can live side by side.  At the end
of the session the run fails if a mount, network namespace or container process
was left behind.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

pytest.register_assert_rewrite("dockyard.testing")  # the conformance kits' asserts explain themselves

from dockyard.testing.daemon import PY, Daemon, cgroups_under, mounts_under, processes_mentioning, ping  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def session_root():
    base = Path(tempfile.mkdtemp(prefix=f"dockyard-test-{uuid.uuid4().hex[:8]}-"))
    yield base
    leaked_mounts = mounts_under(base)
    leaked_procs = processes_mentioning(str(base))
    for target in reversed(leaked_mounts):
        subprocess.run(["umount", "-l", target], check=False)
    for line in leaked_procs:
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(base, ignore_errors=True)
    if leaked_mounts or leaked_procs:
        pytest.fail("leaked by the test session:\n" + "\n".join(
            [f"mount {m}" for m in leaked_mounts] + [f"process {p}" for p in leaked_procs]))


def _veths():
    return {n for n in os.listdir("/sys/class/net") if n.startswith("veth")} if os.path.isdir("/sys/class/net") else set()


@pytest.fixture(scope="session", autouse=True)
def no_leaked_netns():
    """No network namespace or veth outlives the session; the default bridges and
    nft tables the session's daemons keep (as dockerd keeps docker0) are removed."""
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    veths = _veths()
    yield
    from dockyard.testing.daemon import remove_all_network_objects

    remove_all_network_objects()
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    leaked = sorted(after - before) + sorted(_veths() - veths)
    if leaked:
        pytest.fail(f"network namespaces or veths leaked: {leaked}")


def _test_cgroup_parents():
    found = set()
    for hier in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else ():
        try:
            found |= {d for d in os.listdir(os.path.join("/sys/fs/cgroup", hier)) if d.startswith("dockyard-test-")}
        except OSError:
            continue
    return found


@pytest.fixture(scope="session", autouse=True)
def no_leaked_cgroups():
    """Every daemon (and driver test) of the session uses a ``dockyard-test-*``
    cgroup parent of its own: none may keep a cgroup after the session."""
    before = _test_cgroup_parents()
    yield
    leaked = []
    for parent in sorted(_test_cgroup_parents() - before):
        leaked += cgroups_under(parent)
    if leaked:
        pytest.fail("cgroups leaked: " + ", ".join(leaked))


@pytest.fixture(scope="session")
def busybox_tar(session_root):
    from dockyard.testing.busybox import make_busybox_tar

    return make_busybox_tar(session_root / "busybox.tar")


@pytest.fixture(scope="session")
def daemon(session_root, busybox_tar):
    """The session's daemon with a ``busybox`` image imported."""
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = Daemon(session_root / "main").start()
    try:
        res = d.cli("import", str(busybox_tar), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        yield d
    finally:
        _remove_all_containers(d)
        d.stop()
        d.remove_network_objects()


def _remove_all_containers(d):
    try:
        client = d.sdk()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()
    except Exception as exc:  # report, but let the leak check have the last word
        print(f"cleanup of containers failed: {exc}", file=sys.stderr)
