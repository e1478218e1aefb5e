#!/usr/bin/env bash
# Kubernetes' CRI validation suite (critest v1.26.1) against a private Dockyard daemon:
#   scripts/critest.sh [--runtime dockyard|containerd] [--benchmark] [--focus REGEX] [--keep]
#   scripts/critest.sh --prepare     # only install the Debian packages and build cri-tools
#
# It builds crictl/critest (once, offline, from ../shared/cri-tools beside the repo, into
# /var/cache/cri-tools/bin), builds critest's stand-in images offline and serves them
# from a local docker-registry, starts the daemon with a private root, CRI socket,
# registry mirrors (registry.k8s.io, gcr.io) and a CNI configuration of its own, runs
# critest skipping only the specs that cannot work offline (listed with their reason),
# and cleans up (daemon, registry, bridge, netns, nat chains, the HostIpc specs' shm
# segments).  Exit status: 0 when no spec failed.  `--runtime containerd` runs the same
# against Debian's containerd 1.6 (private root and socket): the reference, 79 passed.
# Python side: dockyard.testing.crirun (the harness) and dockyard.testing.criimages.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
# golang-go: builds cri-tools offline; containernetworking-plugins: bridge, host-local, portmap;
# docker-registry: serves the stand-ins; catatonit: the pods' pause process; iptables: portmap (busybox's .deb is
# downloaded, not installed; containerd, for --runtime containerd only, is not installed here)
for pkg in golang-go containernetworking-plugins docker-registry catatonit iptables; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "critest.sh: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
# ../shared beside the repo (the workplace's layout), else DOCKYARD_SHARED, else /work/shared
shared=$(cd .. && pwd)/shared/cri-tools
for cand in "$shared" "${DOCKYARD_SHARED:-/nonexistent}/cri-tools" /work/shared/cri-tools; do
    if [ -f "$cand/build.sh" ]; then shared=$cand; break; fi
done
bin=${CRI_TOOLS_BIN:-/var/cache/cri-tools/bin}
if [ ! -x "$bin/critest" ] || [ ! -x "$bin/crictl" ]; then
    if [ ! -f "$shared/build.sh" ]; then
        echo "critest.sh: no cri-tools in $bin and no $shared/build.sh to build them from: skipping critest" >&2
        exit 0
    fi
    bash "$shared/build.sh" "$bin" >/dev/null
fi
if [ "${1:-}" = "--prepare" ]; then
    exit 0
fi
py=.venv/bin/python
[ -x "$py" ] || py=python3
exec "$py" -m dockyard.testing.crirun "$@"
