#!/usr/bin/env python3
"""Run a shell command inside a throwaway qemu guest with Debian's stock kernel.

The machines that run Dockyard's tests have a kernel without device-mapper;
Debian's kernel has it.  This harness boots that kernel under qemu (TCG:
software emulation, since this host's /dev/kvm cannot run a stock kernel) with
a small busybox initramfs, shares the host's ``/`` read-only over virtio-9p,
puts a tmpfs overlay on it and runs the command chrooted into it: the host's
Python, the project's venv and its tests run against the guest kernel.

    python3 tests/vm/harness.py build            # (re)build the guest, cached
    python3 tests/vm/harness.py run -- 'uname -r; dmsetup targets'

From Python::

    from harness import run_in_vm
    rc, output = run_in_vm("cd /work/main && .venv/bin/python -m pytest ...", timeout=600)

Pieces (all in ``$DOCKYARD_VM_CACHE``, default ``/var/cache/dockyard-vm``):

* ``kernel/current/`` -- the unpacked ``linux-image-*`` package, fetched by
  ``scripts/vm-deps.sh`` (``apt-get download`` + ``dpkg -x`` + ``depmod``);
* ``guest/vmlinux`` -- the uncompressed kernel, so qemu boots it through its
  PVH entry point (no BIOS, no decompression: ~4 s less under TCG);
* ``guest/initramfs.cpio`` -- uncompressed (gunzip costs ~2 s under TCG):
  busybox, dmsetup, mke2fs, the modules and ``guest-init.sh`` as ``/init``.

The command travels as a second cpio archive appended to the initramfs; its
output comes back on the second serial port (a file here), its exit status as
a ``DOCKYARD_VM_RC=`` line on the console.  The command's ``TMPDIR`` is
``/vmtmp``, ext4 on a sparse loop file in the guest's RAM (this kernel's tmpfs
lacks ``user.*`` xattrs; ``dockyard.tmp=tmpfs`` on the kernel command line makes
it a tmpfs); the host's ``/tmp`` stays visible, as the rest of its ``/``.

Knobs for experiments: ``DOCKYARD_VM_APPEND`` (extra kernel command line),
``DOCKYARD_VM_CPU`` (qemu ``-cpu``, default ``max``).  Stdlib only.
"""

import argparse
import hashlib
import os
import re
import selectors
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent.parent
INIT = HERE / "guest-init.sh"
QEMU = "qemu-system-x86_64"

#: loaded at boot, in this order (crc32c_generic first: dm-persistent-data needs crc32c)
MODULES = ["crc32c_generic", "libcrc32c", "dm-mod", "dm-bufio", "dm-thin-pool", "loop", "ext4",
           "virtio_pci", "9pnet_virtio", "9p", "overlay"]
#: dynamic binaries copied (with their libraries) into the initramfs; busybox does the rest
BINARIES = ["/usr/sbin/dmsetup", "/usr/sbin/mke2fs"]
LINKS = {"/usr/sbin/mkfs.ext4": "mke2fs"}
#: bump to force a rebuild of cached guests when the build logic changes
BUILD_VERSION = "1"


class VMError(Exception):
    """The guest could not be booted or gave no exit status."""


class VMUnavailable(VMError):
    """qemu or the guest kernel is missing (run ``scripts/vm-deps.sh``)."""


def cache_dir():
    return Path(os.environ.get("DOCKYARD_VM_CACHE", "/var/cache/dockyard-vm"))


def _kernel():
    """``(unpacked package dir, kernel version)``."""
    kdir = cache_dir() / "kernel" / "current"
    mods = kdir / "lib" / "modules"
    if not (kdir / ".complete").exists() or not mods.is_dir():
        raise VMUnavailable(f"no guest kernel in {kdir} (run scripts/vm-deps.sh)")
    versions = sorted(os.listdir(mods))
    if not versions:
        raise VMUnavailable(f"no kernel modules in {mods}")
    return kdir.resolve(), versions[0]


# --------------------------------------------------------------------------- cpio
def newc(entries):
    """An uncompressed cpio archive (``newc``) of ``[(name, mode, bytes)]``."""
    out = bytearray()
    for ino, (name, mode, data) in enumerate(list(entries) + [("TRAILER!!!", 0, b"")], start=1):
        raw = name.encode() + b"\0"
        nlink = 2 if stat.S_ISDIR(mode) else 1
        fields = (ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(raw), 0)
        out += b"070701" + "".join(f"{v:08X}" for v in fields).encode() + raw
        out += b"\0" * (-len(out) % 4)
        out += data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


class _Tree:
    """The initramfs being assembled: parent directories are added first."""

    def __init__(self):
        self.entries, self.seen = [], set()

    def dir(self, path):
        path = path.strip("/")
        if not path or path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self.entries.append((path, stat.S_IFDIR | 0o755, b""))

    def file(self, path, data, mode=0o644):
        path = path.strip("/")
        if path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self.entries.append((path, stat.S_IFREG | mode, data))

    def copy(self, src, dest=None, mode=None):
        data = Path(src).read_bytes()
        self.file(dest or src, data, mode if mode is not None else stat.S_IMODE(os.stat(src).st_mode))

    def symlink(self, path, target):
        path = path.strip("/")
        if path in self.seen:
            return
        self.dir(os.path.dirname(path))
        self.seen.add(path)
        self.entries.append((path, stat.S_IFLNK | 0o777, target.encode()))


def _libraries(binary):
    res = subprocess.run(["ldd", binary], capture_output=True, text=True)
    libs = []
    for line in res.stdout.splitlines():
        m = re.search(r"=>\s*(/\S+)", line) or re.match(r"\s*(/\S+)", line)
        if m:
            libs.append(m.group(1))
    return libs


def _module_files(kdir, kver):
    """Module files to insmod, in dependency order, for :data:`MODULES`."""
    order = []
    for mod in MODULES:
        res = subprocess.run(["modprobe", "-d", str(kdir), "-S", kver, "--show-depends", mod],
                             capture_output=True, text=True)
        if res.returncode != 0:
            raise VMError(f"guest kernel {kver} has no module {mod}: {res.stderr.strip()}")
        for line in res.stdout.splitlines():
            parts = line.split()
            if parts[:1] == ["insmod"] and parts[1] not in order:
                order.append(parts[1])
    return order


def _fingerprint(kdir, kver):
    h = hashlib.sha256()
    for part in (BUILD_VERSION, str(kdir), kver, " ".join(MODULES), " ".join(BINARIES), INIT.read_text()):
        h.update(part.encode() + b"\0")
    for b in ["/bin/busybox"] + BINARIES:
        st = os.stat(b)
        h.update(f"{b}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def guest_paths():
    g = cache_dir() / "guest"
    return g / "vmlinux", g / "initramfs.cpio", g / "stamp"


def build(force=False, quiet=False):
    """Build the uncompressed kernel and the initramfs unless they are current."""
    kdir, kver = _kernel()
    vmlinux, initramfs, stamp = guest_paths()
    fp = _fingerprint(kdir, kver)
    if not force and stamp.exists() and stamp.read_text() == fp and vmlinux.exists() and initramfs.exists():
        return vmlinux, initramfs
    vmlinux.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    # 1. the kernel: Debian's bzImage carries an XZ-compressed ELF vmlinux (CONFIG_PVH=y)
    import lzma

    data = (kdir / "boot" / f"vmlinuz-{kver}").read_bytes()
    start = data.find(b"\xfd7zXZ\x00")
    if start < 0:
        raise VMError("vmlinuz has no XZ payload (not a Debian CONFIG_KERNEL_XZ kernel?)")
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[start:])
    if not elf.startswith(b"\x7fELF"):
        raise VMError("the XZ payload of vmlinuz is not an ELF vmlinux")
    _write_atomic(vmlinux, elf)

    # 2. the initramfs
    tree = _Tree()
    for d in ("proc", "sys", "dev", "tmp", "run", "mnt", "root", "etc", "usr/bin", "usr/sbin", "sbin"):
        tree.dir(d)
    tree.copy("/bin/busybox", "bin/busybox", 0o755)
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True, check=True)
    for applet in applets.stdout.split():
        if applet != "busybox":  # busybox lists itself: never link the binary to itself
            tree.symlink(f"bin/{applet}", "busybox")
    tree.symlink("sbin/modprobe", "../bin/busybox")  # the kernel's request_module() runs it
    for binary in BINARIES:
        tree.copy(binary, mode=0o755)
        for lib in _libraries(binary):
            tree.copy(os.path.realpath(lib), lib, 0o755)
    for link, target in LINKS.items():
        tree.symlink(link, target)
    if os.path.exists("/etc/mke2fs.conf"):
        tree.copy("/etc/mke2fs.conf")
    mods = _module_files(kdir, kver)
    guest_mods = []
    for path in mods:
        rel = os.path.relpath(path, kdir)
        tree.copy(path, rel, 0o644)
        guest_mods.append("/" + rel)
    base = kdir / "lib" / "modules" / kver
    wanted = {os.path.relpath(p, base) for p in mods}
    dep = [line for line in (base / "modules.dep").read_text().splitlines() if line.split(":")[0] in wanted]
    tree.file(f"lib/modules/{kver}/modules.dep", ("\n".join(dep) + "\n").encode())
    tree.file("dockyard-vm/modules", ("\n".join(guest_mods) + "\n").encode())
    tree.copy(str(INIT), "init", 0o755)
    _write_atomic(initramfs, newc(tree.entries))
    stamp.write_text(fp)
    if not quiet:
        print(f"vm: guest for {kver} built in {time.monotonic() - t0:.1f}s: {vmlinux} "
              f"({len(elf) >> 20} MiB), {initramfs} ({initramfs.stat().st_size >> 20} MiB)")
    return vmlinux, initramfs


def _write_atomic(path, data):
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def ensure_guest():
    """Check that qemu and the guest are there (building a stale guest); raise
    :class:`VMUnavailable` with the reason otherwise."""
    if shutil.which(QEMU) is None:
        raise VMUnavailable(f"{QEMU} not found (scripts/vm-deps.sh installs qemu-system-x86)")
    for tool in ("modprobe", "ldd"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise VMUnavailable(f"{tool} not found (scripts/vm-deps.sh installs it)")
    for binary in ["/bin/busybox"] + BINARIES:
        if not os.path.exists(binary):
            raise VMUnavailable(f"{binary} not found (run scripts/vm-deps.sh)")
    return build(quiet=True)


# --------------------------------------------------------------------------- run
@dataclass
class VMRun:
    rc: int
    output: str
    console: list = field(default_factory=list)
    wall: float = 0.0          # seconds from qemu start to its exit
    ready: float = None        # seconds from qemu start until the command started
    guest_uptime: float = None  # guest uptime when the command finished


def _script(command, env, cwd):
    lines = ["export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "export HOME=/root LANG=C.UTF-8 DM_DISABLE_UDEV=1 TMPDIR=/vmtmp"]
    lines += [f"export {k}={shlex.quote(str(v))}" for k, v in (env or {}).items()]
    if cwd:
        lines.append(f"cd {shlex.quote(str(cwd))} || exit 125")
    lines.append(command)
    return "\n".join(lines) + "\n"


def boot(command, timeout=600, env=None, cwd=None, hostroot=True, mem=3072, smp=None, verbose=False):
    """Boot the guest, run ``command`` (``sh`` syntax) in it; return a :class:`VMRun`.

    :raises VMUnavailable: qemu or the guest is missing.
    :raises VMError: the guest gave no exit status within ``timeout`` seconds.
    """
    vmlinux, initramfs = ensure_guest()
    smp = smp or min(2, os.cpu_count() or 1)
    tmp = Path(tempfile.mkdtemp(prefix="dockyard-vm-"))
    try:
        base = initramfs.read_bytes()
        extra = newc([("dockyard-vm", stat.S_IFDIR | 0o755, b""),
                      ("dockyard-vm/cmd", stat.S_IFREG | 0o755, _script(command, env, cwd).encode())])
        initrd = tmp / "initrd"
        initrd.write_bytes(base + b"\0" * (-len(base) % 4) + extra)
        out = tmp / "output"
        append = "console=ttyS0 panic=-1 quiet loglevel=3 " + os.environ.get("DOCKYARD_VM_APPEND", "")
        if hostroot:
            append += " dockyard.hostroot=1"
        cpu = os.environ.get("DOCKYARD_VM_CPU", "max")
        argv = [QEMU, "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
                "-no-reboot", "-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", cpu,
                "-m", str(mem), "-smp", str(smp),
                "-kernel", str(vmlinux), "-initrd", str(initrd), "-append", append,
                "-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console",
                "-serial", f"file:{out}"]
        if hostroot:
            argv += ["-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                                "multidevs=remap,id=hostroot"]
        return _supervise(argv, out, timeout, verbose)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _supervise(argv, out, timeout, verbose):
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    run = VMRun(rc=None, output="")
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    pending, timed_out = b"", False
    try:
        while True:
            if time.monotonic() - t0 > timeout:
                timed_out = True
                break
            if not sel.select(timeout=0.5):
                if proc.poll() is not None:
                    break
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for raw in lines:
                line = raw.decode(errors="replace").rstrip("\r")
                run.console.append(line)
                if verbose:
                    print(f"[console] {line}", file=sys.stderr)
                if line.startswith("DOCKYARD_VM_READY"):
                    run.ready = time.monotonic() - t0
                m = re.match(r"DOCKYARD_VM_RC=(\d+)(?: (\S+))?", line)
                if m:
                    run.rc = int(m.group(1))
                    run.guest_uptime = float(m.group(2)) if m.group(2) else None
    finally:
        if proc.poll() is None:
            try:
                proc.wait(timeout=0 if timed_out else 15)
            except subprocess.TimeoutExpired:
                pass
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        sel.close()
        proc.stdout.close()
    run.wall = time.monotonic() - t0
    run.output = out.read_text(errors="replace") if out.exists() else ""
    if run.rc is None:
        why = f"timed out after {timeout:.0f}s" if timed_out else f"qemu exited with {proc.returncode}"
        tail = "\n  ".join(run.console[-30:])
        raise VMError(f"the guest gave no exit status ({why}); console tail:\n  {tail}\n"
                      f"output tail:\n{run.output[-3000:]}")
    return run


def run_in_vm(command, timeout=600, **kwargs):
    """Run ``command`` in a fresh guest; return ``(exit_code, output)``.  See :func:`boot`."""
    run = boot(command, timeout=timeout, **kwargs)
    return run.rc, run.output


# --------------------------------------------------------------------------- CLI
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the guest (vmlinux + initramfs) unless current")
    b.add_argument("--force", action="store_true")
    r = sub.add_parser("run", help="run a shell command in a guest")
    r.add_argument("--timeout", type=float, default=600)
    r.add_argument("--no-hostroot", action="store_true", help="run in the initramfs, not the host's /")
    r.add_argument("--cwd", default=None)
    r.add_argument("-v", "--verbose", action="store_true", help="echo the guest console")
    r.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            build(force=a.force)
            return 0
        words = a.command[1:] if a.command[:1] == ["--"] else a.command
        if not words:
            ap.error("no command")
        run = boot(" ".join(words), timeout=a.timeout, cwd=a.cwd, hostroot=not a.no_hostroot, verbose=a.verbose)
    except VMError as exc:
        print(f"vm: {exc}", file=sys.stderr)
        return 125
    sys.stdout.write(run.output)
    print(f"vm: rc={run.rc} ready={run.ready and round(run.ready, 2)}s wall={run.wall:.2f}s", file=sys.stderr)
    return run.rc


if __name__ == "__main__":
    sys.exit(main())
