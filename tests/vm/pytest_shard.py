"""pytest plugin to split one test run over several pytest processes.

The VM harness runs such processes side by side in the guest, one per virtual
CPU: under TCG each vCPU is a host thread, and one pytest process keeps only one
of them busy.  Needs ``tests/vm`` on ``PYTHONPATH``; ``-p pytest_shard`` and:

``--shard-queue DIR``
    every process collects the same tests and, in order, runs those no other
    process has claimed yet (a claim is a file created with ``O_EXCL`` in
    ``DIR``): long tests do not end up all in one process.  A test claimed
    elsewhere is not reported here at all.
``--shard-first NAME,...``
    run the tests with these function names first, in this order (the
    longest ones: with ``--shard-queue`` the processes then finish together).
``--shard K/N``
    static split: only every N-th collected test from the K-th (0-based).
"""

import hashlib
import os

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("shard", "splitting a run over several processes (tests/vm/pytest_shard.py)")
    group.addoption("--shard", default=None, metavar="K/N", help="run only every N-th test, from the K-th (0-based)")
    group.addoption("--shard-queue", default=None, metavar="DIR",
                    help="run the tests that no other process sharing DIR has claimed yet")
    group.addoption("--shard-first", default="", metavar="NAME,...",
                    help="run the tests with these function names first (the longest ones)")


def pytest_collection_modifyitems(config, items):
    first = [n for n in config.getoption("--shard-first").split(",") if n]
    if first:
        rank = {name: i for i, name in enumerate(first)}
        items.sort(key=lambda item: rank.get(getattr(item, "originalname", item.name), len(first)))  # stable
    spec = config.getoption("--shard")
    if not spec:
        return
    k, _, n = spec.partition("/")
    k, n = int(k), int(n)
    if not 0 <= k < n:
        raise pytest.UsageError(f"--shard {spec}: K must be in 0..N-1")
    keep = [item for i, item in enumerate(items) if i % n == k]
    drop = [item for i, item in enumerate(items) if i % n != k]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item, nextitem):
    queue = item.config.getoption("--shard-queue")
    if not queue:
        return None
    os.makedirs(queue, exist_ok=True)
    claim = os.path.join(queue, hashlib.sha256(item.nodeid.encode()).hexdigest())
    try:
        os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
    except FileExistsError:
        return True  # another process runs it: nothing to do or report here
    return None
