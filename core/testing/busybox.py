"""Offline base images: a busybox root filesystem from Debian's ``busybox-static``.

Docker Hub is out of reach on our machines, so tests (and users, see README) make
their first image from the host's static busybox binary::

    python -m dockyard.testing.busybox /tmp/busybox.tar && dockyard import /tmp/busybox.tar busybox
"""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def _is_static(path):
    """True if the ELF file at ``path`` has no program interpreter (PT_INTERP)."""
    import struct

    with open(path, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def find_busybox():
    """Return the path of a *static* busybox binary, or raise FileNotFoundError."""
    for cand in BUSYBOX_CANDIDATES:
        if os.path.exists(cand) and _is_static(cand):
            return cand
    raise FileNotFoundError(
        "no static busybox found: install Debian's busybox-static (apt-get install busybox-static)"
    )


def make_busybox_rootfs(dest):
    """Fill directory ``dest`` with a minimal busybox userland; return ``dest``."""
    dest = Path(dest)
    for d in ("bin", "sbin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "usr/bin"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    os.chmod(dest / "tmp", 0o1777)
    shutil.copy2(find_busybox(), dest / "bin/busybox")
    applets = subprocess.run(
        [str(dest / "bin/busybox"), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    for applet in applets:
        link = dest / "bin" / applet
        if applet != "busybox" and not link.exists():
            link.symlink_to("busybox")
    (dest / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
    )
    (dest / "etc/group").write_text("root:x:0:\nnogroup:x:65534:\n")
    return dest


def make_busybox_tar(path):
    """Write a rootfs tarball of busybox to ``path`` (for ``dockyard import``)."""
    with tempfile.TemporaryDirectory() as tmp:
        make_busybox_rootfs(tmp)
        with tarfile.open(path, "w") as tar:
            for entry in sorted(os.listdir(tmp)):
                tar.add(os.path.join(tmp, entry), arcname=entry)
    return path


def main(argv=None):
    """``python -m dockyard.testing.busybox OUTPUT.tar``: argparse, so ``--help``
    is help and an option is never taken for the name of the tar to write."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m dockyard.testing.busybox",
        description="Write a busybox root file system, made offline from the host's static busybox "
                    "(Debian's busybox-static), as a tar for `dockyard import OUTPUT.tar busybox`.")
    parser.add_argument("output", metavar="OUTPUT.tar", help="the tar file to write")
    args = parser.parse_args(argv)
    try:
        make_busybox_tar(args.output)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"python -m dockyard.testing.busybox: {exc}", file=sys.stderr)
        return 1
    print(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
