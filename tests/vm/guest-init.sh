#!/bin/sh
# PID 1 of the test guest (busybox sh, from the initramfs built by harness.py).
#
# Serial ports: ttyS0 is the kernel console and carries the harness's markers
# (DOCKYARD_VM_READY, DOCKYARD_VM_RC=<code>); ttyS1 carries the command's
# stdout+stderr.  The command is /dockyard-vm/cmd, a shell script the host appends
# to the initramfs as a second cpio archive.
#
# With dockyard.hostroot=1 on the kernel command line the host's / (exported
# read-only over virtio-9p, tag "hostroot") is mounted, made writable with a
# tmpfs overlay and the command runs chrooted into it: the host's Python, the
# project's venv and its tests then run against this kernel.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export DM_DISABLE_UDEV=1      # no udev here: libdevmapper makes /dev/mapper nodes itself

say() { echo "$*" > /dev/ttyS0; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run

# modules, in dependency order (crc32c_generic before dm-thin-pool)
while read -r mod; do
    [ -n "$mod" ] && insmod "$mod" 2>&1 | sed 's/^/DOCKYARD_VM_INSMOD /' > /dev/ttyS0
done < /dockyard-vm/modules
say "DOCKYARD_VM_MODULES $(uptime_s)"

# /vmtmp (the command's TMPDIR): ext4 on a sparse loop file in RAM, not a plain
# tmpfs, whose xattr support on this kernel lacks user.*, which the tests (and
# real data roots) need.  The host's own /tmp stays visible as it is: the
# project may be checked out there.
mkdir -p /scratch /vmtmp
mount -t tmpfs -o mode=700,size=90% tmpfs /scratch
truncate -s 16G /scratch/vmtmp.img
if ! grep -q 'dockyard.tmp=tmpfs' /proc/cmdline &&
        loopdev=$(losetup -f) && losetup "$loopdev" /scratch/vmtmp.img &&
        /usr/sbin/mke2fs -q -t ext4 -O ^has_journal -E nodiscard,lazy_itable_init=1 "$loopdev" &&
        mount -o noinit_itable,discard "$loopdev" /vmtmp; then
    say "DOCKYARD_VM_TMP ext4"
else
    mount -t tmpfs tmpfs /vmtmp
    say "DOCKYARD_VM_TMP tmpfs"
fi
chmod 1777 /vmtmp
cp /dockyard-vm/cmd /run/.dockyard-vm-cmd

ROOT=/
if grep -q 'dockyard.hostroot=1' /proc/cmdline; then
    mkdir -p /hostro /ovl /host
    if ! mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose hostroot /hostro; then
        say "DOCKYARD_VM_ERROR cannot mount the host's / over 9p"
        say "DOCKYARD_VM_RC=125"
        poweroff -f
    fi
    mount -t tmpfs -o mode=755 tmpfs /ovl
    mkdir -p /ovl/upper /ovl/work
    if mount -t overlay overlay -o lowerdir=/hostro,upperdir=/ovl/upper,workdir=/ovl/work /host; then
        say "DOCKYARD_VM_HOSTROOT overlay"
    else
        mount --bind /hostro /host
        say "DOCKYARD_VM_HOSTROOT read-only"
    fi
    mkdir -p /host/vmtmp 2>/dev/null
    for d in proc sys dev dev/pts dev/shm run vmtmp; do
        mount --bind "/$d" "/host/$d"
    done
    ROOT=/host
else
    mount -t tmpfs -o mode=1777 tmpfs /tmp
fi

say "DOCKYARD_VM_READY $(uptime_s)"
cd /
chroot "$ROOT" /bin/sh /run/.dockyard-vm-cmd > /dev/ttyS1 2>&1 < /dev/null
rc=$?
say "DOCKYARD_VM_RC=$rc $(uptime_s)"
sync
poweroff -f
