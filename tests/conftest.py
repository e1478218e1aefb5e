"""Shared fixtures: a private daemon per test session, offline images, leak checks.

Each session (each pytest-xdist worker is one) gets its own data root, exec root
and socket under a unique temp directory, so several runs (and a real daemon) can
live side by side.  At the end of the session the run fails if a mount, network
namespace, veth, cgroup or container process of the session's own was left
behind: the checks look only at what the session's daemons and tests made (its
tag, see :mod:`dockyard.testing.leaks`), never at a session beside it.

scripts/test.sh runs the suite on two pytest-xdist workers (``-n 2 --dist
loadgroup``): each module's tests on one worker, and the tests that touch what is
the host's as a whole in the ``host`` group, one after another
(:func:`pytest_collection_modifyitems`).

Fixtures of one directory's tests are in that directory's ``conftest.py``
(``tests/integration``: registries, images; ``tests/unit``: the linked tree;
``tests/security``: attack helpers).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytest.register_assert_rewrite("dockyard.testing")  # the conformance kits' asserts explain themselves

from dockyard.testing import leaks  # noqa: E402 (after the assert rewrite is registered)
from dockyard.testing.daemon import MADE, Daemon, remove_all_network_objects  # noqa: E402

#: the xdist_group of the tests that touch what is the host's, not a session's (its
#: bridges, routes and tables as a whole, the cgroup2 root, the qemu guest's cores)
HOST_GROUP = "host"


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Under ``--dist loadgroup`` (scripts/test.sh) a module's tests go to one worker,
    so that its module-scoped daemons and registries start once: each module is a
    group, unless its tests name one.  The host group, the longest, goes first, so
    that it does not end the run alone on one worker."""
    if getattr(config.option, "dist", "no") != "loadgroup":
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items.sort(key=lambda item: _group(item) != HOST_GROUP)  # stable


def _group(item):
    mark = item.get_closest_marker("xdist_group")
    return mark.args[0] if mark.args else mark.kwargs.get("name", "default")  # as pytest-xdist reads it


@pytest.fixture(scope="session")
def session_root():
    base = Path(tempfile.mkdtemp(prefix=leaks.CGROUP_PREFIX))
    yield base
    leaked_mounts = leaks.mounts_under(base)
    leaked_procs = leaks.processes_mentioning(str(base))
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


@pytest.fixture(scope="session", autouse=True)
def no_leaks_of_the_session(session_root):
    """No network namespace, veth or cgroup of the session's outlives it, and none of
    its daemons' default bridges and nft tables, which they keep (as dockerd keeps
    docker0) until they are removed here.  Runs before ``session_root``'s own check
    (mounts, processes), while whatever holds a leaked veth is still there."""
    yield
    found = leaks.of_session(dirs=[session_root, *(d.base for d in MADE)])
    remove_all_network_objects()
    found += leaks.network_objects_of_session()
    if found:
        pytest.fail("leaked by the test session: " + ", ".join(found))


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
