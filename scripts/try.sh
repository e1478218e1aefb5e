#!/usr/bin/env bash
# One container end to end on a fresh Debian machine, as root: install only what
# running a container needs, make a busybox image offline, run it.
#   scripts/try.sh [MESSAGE]
# (The test suite needs much more: scripts/setup.sh, run by scripts/test.sh,
# installs it, the devicemapper tests' qemu guest and kernel included.)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'try: %s\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
    echo "try: run me as root: the daemon makes namespaces, mounts and network interfaces" >&2
    exit 1
fi

# busybox-static: the image is made from the host's static busybox (no registry needed);
# libseccomp2: the native runtime compiles each container's seccomp filter with it;
# nftables: the default bridge network's NAT and isolation rules;
# python3-venv: the virtualenv Dockyard is installed into.
packages=(busybox-static libseccomp2 nftables python3-venv)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]} (apt-get update, then install)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    say "Debian packages present: ${packages[*]}"
fi

if [ ! -x .venv/bin/python ]; then
    say "making the virtualenv .venv"
    python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import dockyard, pluggy, stevedore, aiohttp' 2>/dev/null; then
    say "installing Dockyard and its Python dependencies into .venv (pip install -e .)"
    .venv/bin/pip install -q --disable-pip-version-check -e . 2>&1 | grep -v '^WARNING: Location' || true
    .venv/bin/python -c 'import dockyard, pluggy, stevedore, aiohttp'
fi
export PATH="$PWD/.venv/bin:$PATH"

# the CLI starts a daemon on /run/dockyard/dockyard.sock when none answers (and says so)
if ! dockyard images -q busybox 2>/dev/null | grep -q .; then
    say "making a busybox image offline from the host's static busybox, imported as 'busybox'"
    tar=$(mktemp --suffix=.tar)
    trap 'rm -f "$tar"' EXIT
    python -m dockyard.testing.busybox "$tar" >/dev/null
    dockyard import "$tar" busybox >/dev/null
fi
say "running: dockyard run --rm busybox echo \"${1:-hello from dockyard}\""
dockyard run --rm busybox echo "${1:-hello from dockyard}"
