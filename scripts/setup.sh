#!/usr/bin/env bash
# Installs what Dockyard and its tests need on a fresh Debian machine (as root):
# Debian packages that are missing, and the virtualenv .venv with Dockyard in it.
# Safe to re-run: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
# gcc, libc6-dev: tests/security compiles static attack helpers; tini: docker run --init (tini-static, as Docker's docker-init); lxc: the lxc exec driver;
# libseccomp2: the native driver compiles seccomp filters with it; nftables: the bridge driver's rules;
# catatonit: the static init of the CRI's pause image (core/cri/pause.py)
for pkg in busybox-static iproute2 util-linux e2fsprogs btrfs-progs libbtrfsutil-dev gcc libc6-dev tini lxc libseccomp2 nftables docker-registry skopeo apache2-utils openssl catatonit; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# qemu guest with Debian's kernel for the devicemapper tests (tests/vm); without it they retry, then skip
bash scripts/vm-deps.sh || echo "setup: scripts/vm-deps.sh failed; the devicemapper VM test will retry or skip" >&2

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,btrfs,docs]' 2>&1 | grep -v '^WARNING: Location' || true
.venv/bin/python -c 'import dockyard, pluggy, stevedore, aiohttp' 
