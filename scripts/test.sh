#!/usr/bin/env bash
# The whole test suite, set-up included: `scripts/test.sh [pytest args]`.
#
# It runs in parallel (pytest-xdist): DOCKYARD_TEST_WORKERS processes (default 2; 0
# runs it serially), each a test session of its own, with its own daemons, data roots
# and leak checks (tests/conftest.py).  --dist loadgroup keeps the tests of one
# xdist_group on one worker, one after another: a module's (its daemons start once),
# and the "host" group's (what is the host's as a whole: routes, the cgroup2 root, the
# qemu guest).  On our 2 cores -n 2 takes about half the serial time, and -n 3 about
# as long as -n 2 (the run is bound by the CPUs) with more tests racing for them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the CRI tests' packages and cri-tools (built offline from ../shared/cri-tools; where that
# source is absent, critest.sh says so and tests/cri skip critest, naming the reason)
bash scripts/critest.sh --prepare
workers="${DOCKYARD_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
    exec .venv/bin/python -m pytest -ra "$@"
fi
exec .venv/bin/python -m pytest -ra -n "$workers" --dist loadgroup "$@"
