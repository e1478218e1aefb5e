#!/usr/bin/env bash
# One container end to end on a fresh machine: install, start the daemon, make a
# busybox image offline, run it.  `scripts/try.sh [MESSAGE]`
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
if ! dockyard images -q busybox 2>/dev/null | grep -q .; then
    # the CLI starts a daemon on /run/dockyard/dockyard.sock if none answers
    python -m dockyard.testing.busybox /tmp/dockyard-busybox.tar >/dev/null
    dockyard import /tmp/dockyard-busybox.tar busybox
    rm -f /tmp/dockyard-busybox.tar
fi
dockyard run --rm busybox echo "${1:-hello from dockyard}"
