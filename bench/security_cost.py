#!/usr/bin/env python3
"""What the isolation fixes cost: the same operations on this checkout's Dockyard
and on an earlier one's, side by side in one run.

    sudo .venv/bin/python bench/security_cost.py --before /work/baseline/.venv/bin/python \\
        [--runs 5] [--tree-mb 200] [--json FILE]

``--before`` is the interpreter of another checkout (its own venv with its
Dockyard installed, e.g. a ``git worktree`` of the commit before the fixes); each
checkout runs its own private daemon (overlay, native exec driver) with the same
busybox image and, in one running container, the same tree put there by
``PUT /archive``: many 16 KiB files and a few big ones, random content.  Then, round
robin in a new (seeded) order each round, ``--runs`` rounds of:

1. **cp out**: ``GET /containers/{id}/archive?path=/data`` read to the end (MB/s).
   The fixed walker resolves every component relative to a directory fd.
2. **export**: ``GET /containers/{id}/export`` read to the end (MB/s).
3. **exec**: ``POST /containers/{id}/exec`` of ``true`` + ``POST /exec/{id}/start``
   until its output ends (ms).  The fixed process is non-dumpable, closes every
   inherited fd and resets its signals before it enters the container.
4. **run**: create + start + wait + delete of ``true`` (ms), the init's path.

The table shows medians, p90 and the ratio to this checkout's median (for MB/s a
ratio below 1 means the earlier one was slower).  Without ``--before`` only this
checkout is measured.  Nothing is pass/fail; everything lives in one temp
directory and is removed at the end.  Needs root.
"""

import argparse
import io
import json
import os
import sys
import tarfile
import time

import common
import engines
from common import NotAvailable

CP, EXPORT, EXEC, RUN = ("cp out: GET /archive of the tree (MB/s)", "export of the container (MB/s)",
                         "exec of true: create + start + output end (ms)",
                         "run: create + start + wait + delete of true (ms)")


def make_tree_tar(path, total_mb, small_kib=16, big=4):
    """A tar of ``data/``: half the bytes in ``small_kib`` KiB files, half in ``big`` files."""
    half = total_mb << 19
    with tarfile.open(path, "w") as tar:
        def add(name, size):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode = size, 0o644
            tar.addfile(ti, io.BytesIO(os.urandom(size)))

        for i in range(half // (small_kib << 10)):
            add(f"data/d{i // 100:03d}/f{i:05d}", small_kib << 10)
        for i in range(big):
            add(f"data/big{i}", half // big)
    return os.path.getsize(path)


def read_all(sock, method, path, body=None):
    """Stream one response to the end; return the byte count."""
    conn = engines.UnixHTTPConnection(sock, timeout=600)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
        resp = conn.getresponse()
        if resp.status >= 300:
            raise NotAvailable(f"{method} {path}: {resp.status} {resp.read()[:200]!r}")
        n = 0
        while chunk := resp.read(1 << 20):
            n += len(chunk)
        return n
    finally:
        conn.close()


class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {}

    def daemon(self, name, python):
        d = engines.DockyardDaemon(self.ws, name=name, python=python).start(self.busybox)
        cid = d.create(["sleep", "3600"])
        d.start_container(cid)
        with open(self.tree, "rb") as fh:
            conn = engines.UnixHTTPConnection(d.sock, timeout=600)
            conn.request("PUT", f"/containers/{cid}/archive?path=/", body=fh,
                         headers={"Content-Type": "application/x-tar", "Content-Length": str(self.tree_size)})
            status = conn.getresponse().status
            conn.close()
        if status != 200:
            raise NotAvailable(f"{name}: putting the tree in the container answered {status}")
        return d, cid

    def ways(self, name, python):
        """``(cp, export, exec, run)`` prepare functions of one checkout's daemon."""
        state = {}

        def ready():
            if not state:
                state["d"], state["cid"] = self.daemon(name, python)
            return state["d"], state["cid"]

        def throughput(path):
            def prepare():
                d, _ = ready()
                n = read_all(d.sock, "GET", path.format(cid=state["cid"]))  # warm-up

                def once():
                    start = time.perf_counter()
                    got = read_all(d.sock, "GET", path.format(cid=state["cid"]))
                    return float(got / (time.perf_counter() - start) / 1e6)
                state.setdefault("sizes", {})[path] = n
                return once
            return prepare

        def exec_prepare():
            d, cid = ready()

            def once():
                status, body = d.api("POST", f"/containers/{cid}/exec",
                                     {"Cmd": ["true"], "AttachStdout": True, "AttachStderr": True})
                if status != 201:
                    raise NotAvailable(f"exec create: {status} {body!r}")
                read_all(d.sock, "POST", f"/exec/{body['Id']}/start", {"Detach": False, "Tty": False})
            once()
            return once

        def run_prepare():
            d, _ = ready()

            def once():
                cid = d.create(["true"])
                d.start_container(cid)
                d.api("POST", f"/containers/{cid}/wait")
                d.remove(cid)
            once()
            return once

        return (throughput("/containers/{cid}/archive?path=/data"), throughput("/containers/{cid}/export"),
                exec_prepare, run_prepare)

    def run(self):
        a = self.args
        self.busybox, _ = self.ws.busybox()
        self.tree = self.ws.tmp / "tree.tar"
        self.tree_size = make_tree_tar(self.tree, a.tree_mb)
        self.notes.append(f"tree: {self.tree_size / 1e6:.0f} MB tar, {a.tree_mb // 2} MB in 16 KiB files "
                          f"and {a.tree_mb // 2} MB in 4 files; {a.runs} rounds, round robin")
        checkouts = [("this checkout", "dockyard", common.PY)]
        if a.before:
            if not os.access(a.before, os.X_OK):
                raise SystemExit(f"bench/security_cost: --before {a.before}: not an executable interpreter")
            checkouts.append((f"before ({a.before})", "before", a.before))
        per = {label: self.ways(name, py) for label, name, py in checkouts}
        sections = [(title, [(label, per[label][i]) for label, _, _ in checkouts])
                    for i, title in enumerate((CP, EXPORT, EXEC, RUN))]
        self.results = common.measure(sections, a.runs, progress=True)

    def table(self):
        return common.format_table("isolation fixes: this checkout against an earlier one",
                                   ["way", "median", "p90", "x this"], common.ratio_sections(self.results, 1))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", help="python of another checkout's venv (the code before the fixes)")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--tree-mb", type=int, default=200)
    p.add_argument("--json")
    args = p.parse_args(argv)
    return common.run_bench("security_cost.py", args, Bench, "isolation fixes' cost", {"tree_mb": args.tree_mb})


if __name__ == "__main__":
    sys.exit(main())
