#!/usr/bin/env python3
"""Storage drivers side by side: snapshots, apply_diff against GNU tar, diffs.

    sudo .venv/bin/python bench/storage.py [--big-mb 1024] [--diff-mb 100] [--runs 3] [--json FILE]

Everything lives in one temp directory (``--dir``, default under /var/tmp) that is
removed at the end; btrfs runs on a loop-mounted file system made for the bench
(sparse file, ``mkfs.btrfs``, ``losetup``) and torn down again.  Per driver (vfs,
overlay, btrfs when it can run here; each says why not otherwise):

* **snapshot**: ``storage_create(child, parent)`` of a child of a 1 MiB parent and
  of a ``--big-mb`` parent (median of ``--runs``, each child removed after);
* **apply_diff**: the ``--big-mb`` layer tar applied to a new layer by the driver
  (MB/s), and by the core's layer store (``LayerStore.register``: that adds the
  diff ID check and the tar-split record, i.e. one more read of the tar), next to
  GNU ``tar -xf`` of the same file into a directory on the same file system
  (medians of ``--runs``: the first write of a run is often slower);
* **diff**: a layer that wrote ``--diff-mb`` (100 files) on top of the 1 MiB parent:
  ``storage_diff`` (the driver's native diff where it has one, else the naive
  fallback) read to the end, and the canonical (naive) diff; ``podman commit`` of
  the same writes if podman is installed.

The page cache is flushed (``sync``) before each timed step, never inside one;
timings are wall clock.  Nothing here is a pass/fail.  Needs root (mounts).
"""

import argparse
import hashlib
import io
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

BLOCK = os.urandom(4 << 20)
MB = 1 << 20


class NotAvailable(Exception):
    """This driver or peer cannot be measured here (the message says why)."""


def make_layer_tar(path, total, files):
    """An uncompressed layer tar of ``files`` files holding ``total`` bytes."""
    per = max(1, total // files)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        d = tarfile.TarInfo("data")
        d.type, d.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(d)
        for i in range(files):
            ti = tarfile.TarInfo(f"data/f{i:05}")
            ti.size, ti.mode, ti.mtime = per, 0o644, 1_700_000_000
            tar.addfile(ti, _Repeat(per, i))
    return path


class _Repeat(io.RawIOBase):
    """``size`` bytes of incompressible data without holding them."""

    def __init__(self, size, salt):
        self.left, self.pos = size, salt * 4099 % len(BLOCK)

    def readable(self):
        return True

    def read(self, n=-1):
        n = self.left if n is None or n < 0 else min(n, self.left)
        out = bytearray()
        while len(out) < n:
            take = min(n - len(out), len(BLOCK) - self.pos)
            out += BLOCK[self.pos:self.pos + take]
            self.pos = (self.pos + take) % len(BLOCK)
        self.left -= n
        return bytes(out)


def timed(fn):
    os.sync()
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


@contextmanager
def loop_btrfs(base, size_gb):
    """A btrfs file system on a sparse loop file, mounted below ``base``."""
    for tool in ("mkfs.btrfs", "losetup", "truncate"):
        if shutil.which(tool) is None:
            raise NotAvailable(f"{tool} is not installed")
    img, mnt = base / "btrfs.img", base / "btrfs-mnt"
    mnt.mkdir()
    run("truncate", "-s", f"{size_gb}G", img)
    dev = None
    try:
        run("mkfs.btrfs", "-q", img)
        dev = run("losetup", "--find", "--show", img).stdout.strip()
        run("mount", "-t", "btrfs", dev, mnt)
        try:
            yield mnt
        finally:
            subprocess.run(["umount", "-l", str(mnt)], check=False)
    except subprocess.CalledProcessError as exc:
        raise NotAvailable(f"cannot make a loop btrfs: {exc.stderr.strip() or exc}") from None
    finally:
        if dev:
            subprocess.run(["losetup", "-d", dev], check=False)
        img.unlink(missing_ok=True)


@contextmanager
def driver(name, home):
    from dockyard.driverkit.naivediff import NaiveDiff
    from dockyard.errors import DockyardError
    from dockyard.plugins import load_driver

    try:
        slot = load_driver("storage", name, home)
    except DockyardError as exc:
        raise NotAvailable(str(exc)) from None
    reason = slot.supported()
    if reason is not None:
        raise NotAvailable(reason)
    slot.init()
    slot.pm.register(NaiveDiff(slot.hook), name="naive-diff")
    made = []

    def create(parent=None):
        id = secrets.token_hex(32)
        slot.hook.storage_create(id=id, parent=parent)
        made.append(id)
        return id

    try:
        yield slot, create, made
    finally:
        for id in reversed(made):
            slot.hook.storage_remove(id=id)
        slot.hook.storage_cleanup()


def bench_driver(name, home, tars, args):
    from dockyard.engine.layers.store import LayerStore
    from dockyard.store import Store
    from dockyard.testing.storage import canonical_diff

    row = {}
    with driver(name, home) as (slot, create, made):
        hook = slot.hook
        small = create()
        with open(tars["small"], "rb") as f:
            hook.storage_apply_diff(id=small, parent=None, stream=f)
        times, big = [], None
        for _ in range(args.runs):  # the first layer stays: the big parent
            layer = create()
            with open(tars["big"], "rb") as f:
                times.append(timed(lambda: hook.storage_apply_diff(id=layer, parent=None, stream=f))[0])
            if big is None:
                big = layer
            else:
                hook.storage_remove(id=made.pop())
        row["apply_s"] = statistics.median(times)
        for label, parent in (("snap_small_s", small), ("snap_big_s", big)):
            times = []
            for _ in range(args.runs):
                id = secrets.token_hex(32)
                t, _ = timed(lambda: hook.storage_create(id=id, parent=parent))
                times.append(t)
                hook.storage_remove(id=id)
            row[label] = statistics.median(times)
        # the core's register: diff ID check + tar-split record + apply
        times = []
        for i in range(args.runs):
            store = Store(home.parent / f"{name}-{i}.db")
            try:
                layers = LayerStore(slot, store)
                t, chain = timed(lambda: layers.register(tars["big"], tars["big_diff_id"]))
                times.append(t)
                hook.storage_remove(id=layers.driver_id(chain))
            finally:
                store.close()
        row["register_s"] = statistics.median(times)
        # a layer that wrote --diff-mb
        writer = create(small)
        root = hook.storage_mount(id=writer)
        try:
            for i in range(100):
                with open(os.path.join(root, f"w{i:03}"), "wb") as f:
                    f.write(_Repeat(args.diff_mb * MB // 100, i).read())
        finally:
            hook.storage_unmount(id=writer)

        def native():
            with hook.storage_diff(id=writer, parent=small) as d:
                return sum(iter(lambda: len(d.read(MB)), 0))

        row["diff_s"], size = timed(native)
        row["canonical_diff_s"], _ = timed(lambda: len(canonical_diff(hook, writer, small)))
        row["diff_mb"] = size / MB
    return row


def bench_tar(target_dir, tar_path, runs):
    times = []
    for _ in range(runs):
        target_dir.mkdir()
        times.append(timed(lambda: run("tar", "-xf", tar_path, "-C", target_dir, "--same-owner", "--xattrs"))[0])
        shutil.rmtree(target_dir)
    return statistics.median(times)


def bench_podman(args):
    if shutil.which("podman") is None:
        raise NotAvailable("podman is not installed")
    name = f"dockyard-bench-{secrets.token_hex(4)}"
    try:
        run("podman", "run", "--name", name, "docker.io/library/busybox", "sh", "-c",
            f"for i in $(seq 100); do head -c {args.diff_mb * MB // 100} /dev/urandom > /w$i; done")
        t, _ = timed(lambda: run("podman", "commit", name, name))
        return t
    except subprocess.CalledProcessError as exc:
        raise NotAvailable(f"podman failed: {exc.stderr.strip()[:80]}") from None
    finally:
        subprocess.run(["podman", "rm", "-f", name], capture_output=True)
        subprocess.run(["podman", "rmi", "-f", name], capture_output=True)


def fmt(v, unit):
    if isinstance(v, str):
        return v
    if unit == "ms":
        return f"{v * 1000:.1f} ms"
    if unit == "s":
        return f"{v:.2f} s"
    return f"{v:.0f} MB/s"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--big-mb", type=int, default=1024, help="size of the big parent layer (MiB)")
    p.add_argument("--diff-mb", type=int, default=100, help="what the committed layer wrote (MiB)")
    p.add_argument("--runs", type=int, default=3, help="snapshot creations per parent")
    p.add_argument("--dir", default="/var/tmp", help="where the temp directory goes")
    p.add_argument("--drivers", default="vfs,overlay,btrfs", help="drivers to measure, in this order")
    p.add_argument("--json", help="write the raw numbers here")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        sys.exit("bench/storage.py needs root (overlay and btrfs mount)")
    base = Path(tempfile.mkdtemp(prefix="dockyard-bench-storage-", dir=args.dir))
    results, notes = {}, {}
    try:
        tars = {"small": make_layer_tar(base / "small.tar", MB, 16),
                "big": make_layer_tar(base / "big.tar", args.big_mb * MB, max(16, args.big_mb // 4))}
        with open(tars["big"], "rb") as f:
            tars["big_diff_id"] = "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
        bench_tar(base / "warm-up", tars["big"], 1)  # unmeasured: the first big write is slower
        for name in dict.fromkeys(args.drivers.split(",")):
            try:
                if name == "btrfs":
                    with loop_btrfs(base, max(4, 3 * args.big_mb // 1024 + 3)) as mnt:
                        results[name] = bench_driver(name, mnt / "home", tars, args)
                        results[name]["tar_s"] = bench_tar(mnt / "tar-x", tars["big"], args.runs)
                else:
                    results[name] = bench_driver(name, base / name / "home", tars, args)
                    results[name]["tar_s"] = bench_tar(base / name / "tar-x", tars["big"], args.runs)
            except NotAvailable as exc:
                notes[name] = str(exc)
        try:
            results["podman commit"] = {"diff_s": bench_podman(args)}
        except NotAvailable as exc:
            notes["podman commit"] = str(exc)
    finally:
        for line in open("/proc/self/mountinfo"):
            if str(base) in line.split()[4]:
                subprocess.run(["umount", "-l", line.split()[4]], check=False)
        shutil.rmtree(base, ignore_errors=True)
    big = args.big_mb * MB
    cols = [("driver", None), ("snapshot of 1 MiB", "snap_small_s"), (f"snapshot of {args.big_mb} MiB", "snap_big_s"),
            ("apply_diff", "apply"), ("register", "register"), ("GNU tar -x", "tar"),
            (f"diff of {args.diff_mb} MiB", "diff_s"), ("canonical diff", "canonical_diff_s")]
    table = []
    for name, r in results.items():
        line = [name]
        for _, key in cols[1:]:
            if key in ("apply", "register", "tar"):
                v = r.get(f"{key}_s")
                line.append(fmt(big / MB / v, "MB/s") + f" ({v:.2f} s)" if v else "-")
            elif key in r:
                line.append(fmt(r[key], "ms" if key.startswith("snap") else "s"))
            else:
                line.append("-")
        table.append(line)
    widths = [max(len(str(x)) for x in col) for col in zip(*([[c for c, _ in cols]] + table))]
    for line in [[c for c, _ in cols]] + table:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, widths)))
    for name, why in notes.items():
        print(f"{name}: n/a: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results, "notes": notes}, indent=2))


if __name__ == "__main__":
    main()
