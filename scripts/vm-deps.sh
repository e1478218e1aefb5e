#!/usr/bin/env bash
# Prepares the qemu guest that runs the devicemapper tests (tests/vm/), as root:
#   1. Debian packages: qemu (TCG only), dmsetup, thin tools, mkfs, busybox, ...
#   2. Debian's stock kernel (the package linux-image-amd64 depends on), fetched
#      with `apt-get download` and unpacked with `dpkg -x` into the cache
#      (nothing goes to /boot), its modules indexed with depmod;
#   3. the guest itself: uncompressed vmlinux + busybox initramfs
#      (`python3 tests/vm/harness.py build`).
# Idempotent and cached in $DOCKYARD_VM_CACHE (default /var/cache/dockyard-vm):
# a second run installs and downloads nothing.  Exits non-zero if the VM cannot
# be prepared; the tests then skip the in-VM run with the reason.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${DOCKYARD_VM_CACHE:-/var/cache/dockyard-vm}
APT=(apt-get -o DPkg::Lock::Timeout=600 -qq)
export DEBIAN_FRONTEND=noninteractive

log() { echo "vm-deps: $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "vm-deps: must run as root (apt-get, /var/cache)" >&2
    exit 1
fi

# 1. packages ------------------------------------------------------------------
packages=(qemu-system-x86 dmsetup thin-provisioning-tools e2fsprogs util-linux
          busybox-static kmod xz-utils)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$pkg")
done
updated=0
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    if ! "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
        "${APT[@]}" update && updated=1
        "${APT[@]}" install -y --no-install-recommends "${missing[@]}" >/dev/null
    fi
fi

# 2. kernel --------------------------------------------------------------------
mkdir -p "$CACHE/kernel"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
if [ -z "$kpkg" ] && [ "$updated" = 0 ]; then
    "${APT[@]}" update && updated=1
    kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
fi
if [ -z "$kpkg" ]; then
    # offline: keep whatever kernel is cached
    [ -L "$CACHE/kernel/current" ] || { echo "vm-deps: cannot resolve linux-image-amd64" >&2; exit 1; }
    kpkg=$(readlink "$CACHE/kernel/current")
    log "linux-image-amd64 unresolved; using cached $kpkg"
fi
kdir=$CACHE/kernel/$kpkg
if [ ! -e "$kdir/.complete" ]; then
    log "downloading $kpkg"
    work=$(mktemp -d "$CACHE/kernel/.dl-XXXXXX")
    trap 'rm -rf "$work"' EXIT
    if ! (cd "$work" && apt-get -qq download "$kpkg" 2>/dev/null); then
        [ "$updated" = 1 ] || "${APT[@]}" update
        (cd "$work" && apt-get -qq download "$kpkg")
    fi
    dpkg -x "$work"/"$kpkg"_*.deb "$work/root"
    rm -rf "$kdir"
    mv "$work/root" "$kdir"
    rm -rf "$work"
    trap - EXIT
    kver=$(ls "$kdir/lib/modules" | head -1)
    depmod -b "$kdir" "$kver"
    touch "$kdir/.complete"
fi
ln -sfn "$kpkg" "$CACHE/kernel/current"
for old in "$CACHE"/kernel/linux-image-*; do   # a newer Debian kernel replaced these
    [ "$(basename "$old")" = "$kpkg" ] || rm -rf "$old"
done

# 3. guest ----------------------------------------------------------------------
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
DOCKYARD_VM_CACHE=$CACHE "$PY" tests/vm/harness.py build
