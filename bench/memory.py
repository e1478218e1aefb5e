#!/usr/bin/env python3
"""Host memory per idle container that is not the container's payload: the
daemon's growth plus the supervisors, side by side with podman's conmon and
docker's shim where they are installed:

    sudo .venv/bin/python bench/memory.py [--containers 50] [--settle 2] [--breakdown] [--json FILE]

For each engine, ``n`` containers running ``sleep 3600`` (network none) are
started; the figure is

    (PSS of the engine's long-lived processes after - before) + PSS of the
    per-container supervisors, divided by ``n``

read from ``/proc/PID/smaps_rollup``.  For Dockyard the long-lived processes
are the daemon and its children (the exec driver's zygote), the supervisors
are the shims (from the ``running.json`` each writes); for docker, dockerd and
containerd, and ``containerd-shim-runc-v2``; for podman (no daemon), ``conmon``.
``--breakdown`` adds, for one Dockyard shim, where its private pages are
(``/proc/PID/smaps`` by mapping).  :func:`measure` and :func:`table` are what
``bench/perf.py --details`` calls.  Nothing here is pass/fail.  Needs root.
"""

import argparse
import os
import sys
import time

import common
import exec_memory
from common import NotAvailable

MIB = 1024  # /proc reports kB


def rollup(pid):
    """``{Pss, Pss_Anon, Private_Dirty, Private_Clean, Rss, ...}`` in kB (empty if gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if len(parts) == 3 and parts[2] == "kB":
                    out[parts[0].rstrip(":")] = int(parts[1])
    except OSError:
        pass
    return out


def summed(pids, key="Pss"):
    return sum(rollup(p).get(key, 0) for p in pids)


def uss(pid):
    r = rollup(pid)
    return r.get("Private_Dirty", 0) + r.get("Private_Clean", 0)


def breakdown(pid):
    """Private kB of ``pid`` by mapping (``[heap]``, ``[stack]``, anonymous, each file)."""
    by = {}
    name = None
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                name = head[5] if len(head) > 5 else "[anon]"
                name = os.path.basename(name) if name.startswith("/") else name
            elif head[0] in ("Private_Dirty:", "Private_Clean:"):
                by[name] = by.get(name, 0) + int(head[1])
    return dict(sorted(((k, v) for k, v in by.items() if v), key=lambda kv: -kv[1]))


class _Dockyard(exec_memory.Dockyard):
    def long_lived(self):
        return self.daemon_pids()


class _Docker(exec_memory.Docker):
    def long_lived(self):
        return self.daemon_pids()


class _Podman(exec_memory.Podman):
    def long_lived(self):
        return []


class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {}
        self.tar = self.rootfs = None

    def engines(self):
        rows = [("dockyard", lambda: _Dockyard(self, "dockyard")),
                ("dockyard, supervisor=hub", lambda: _Dockyard(self, "dockyard-hub", exec_opts=["supervisor=hub"]))]
        if not self.args.dockyard_only:
            rows += [("docker + containerd-shim", lambda: _Docker(self)), ("podman + conmon", lambda: _Podman(self))]
        return rows

    def measure(self, engine):
        n, settle = self.args.containers, self.args.settle
        time.sleep(settle)
        before = [rollup(p) for p in engine.long_lived()]
        pids = engine.start(n)
        time.sleep(settle)
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if len(alive) != n:
            raise NotAvailable(f"only {len(alive)} of {n} containers are running after {settle}s")
        sups = exec_memory.with_intermediates(engine.supervisors(), pids)
        after = [rollup(p) for p in engine.long_lived()]
        sup = [rollup(p) for p in sups]
        res = {"containers": n, "supervisor_procs": len(sups)}
        for key, name in (("Pss", "pss"), ("Pss_Anon", "anon")):
            res[f"daemon_growth_{name}_kb"] = sum(r.get(key, 0) for r in after) - sum(r.get(key, 0) for r in before)
            res[f"supervisor_{name}_kb"] = sum(r.get(key, 0) for r in sup)
            res[f"per_container_{name}_kb"] = (res[f"daemon_growth_{name}_kb"] + res[f"supervisor_{name}_kb"]) / n
        res["supervisor_uss_kb"] = sum(r.get("Private_Dirty", 0) + r.get("Private_Clean", 0) for r in sup)
        if self.args.breakdown and sups:
            res["one_supervisor"] = {"pid": sups[0], "rollup": rollup(sups[0]), "private_by_mapping": breakdown(sups[0])}
        return res

    def run(self):
        self.notes.append(f"before: {common.load_line()}")
        self.tar, self.rootfs = self.ws.busybox()
        for label, make in self.engines():
            engine = None
            try:
                engine = make()
                self.ws.on_cleanup(f"stopping {label}", engine.stop)
                self.notes.append(engine.setup())
                self.results[label] = self.measure(engine)
            except Exception as exc:  # NotAvailable, or an engine error: reported, not hidden
                self.results[label] = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"n/a: {exc!r}"
            finally:
                if engine is not None:
                    try:
                        engine.stop()
                    except Exception as exc:
                        self.notes.append(f"{label}: stopping it failed: {exc!r}")
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        return table(self.results, self.args.containers)


def table(results, n=None):
    """The results of :func:`measure` (or of a run) as text."""
    rows = []
    for label, r in results.items():
        if isinstance(r, str):
            rows.append((label, r))
            continue
        k = r["containers"]
        rows.append((label, [str(r["supervisor_procs"]), f"{r['daemon_growth_pss_kb'] / k / MIB:.3f}",
                             f"{r['supervisor_pss_kb'] / k / MIB:.3f}", f"{r['supervisor_uss_kb'] / k / MIB:.3f}",
                             f"{r['per_container_pss_kb'] / MIB:.3f}", f"{r['per_container_anon_kb'] / MIB:.3f}"]))
    title = f"host memory per idle container, not the payload ({n or '?'} containers), MiB"
    header = ("engine", "supervisors", "daemon growth/ctr", "supervisor PSS/ctr", "supervisor USS/ctr",
              "total PSS/ctr", "total anon PSS/ctr")
    text = common.format_table(title, header, [("", rows)]) + (
        "\ntotal = (growth of the long-lived processes + the supervisors) / containers; anon counts only "
        "anonymous pages (file pages are shared with every process on the host mapping the same files, "
        "so their PSS moves with whatever else runs)")
    for label, r in results.items():
        if isinstance(r, dict) and "one_supervisor" in r:
            one = r["one_supervisor"]
            text += f"\n{label}: one supervisor (pid {one['pid']}): " + ", ".join(
                f"{k} {v}" for k, v in one["rollup"].items() if k in ("Rss", "Pss", "Private_Dirty", "Private_Clean"))
            text += "\n  private kB by mapping: " + ", ".join(
                f"{k} {v}" for k, v in list(one["private_by_mapping"].items())[:12])
    return text


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=50, help="idle containers per engine (default 50)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds to wait before each reading (default 2)")
    p.add_argument("--dockyard-only", action="store_true", help="skip docker and podman")
    p.add_argument("--breakdown", action="store_true", help="where one Dockyard shim's private pages are")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (kB) as JSON")
    args = p.parse_args(argv)
    # exec_memory's engines read these
    args.storage_driver, args.config = None, None
    return p, args


def measure(n=50, peers=True):
    """Memory per idle container by engine, kB: ``{"dockyard": {"per_container_pss_kb":
    ..., "per_container_anon_kb": ..., ...}, "podman + conmon": {...}}`` (a string
    says why an engine was not measured); :func:`table` prints it."""
    _, args = _args(["--containers", str(n)] + ([] if peers else ["--dockyard-only"]))
    ws = common.Workspace()
    bench = Bench(args, ws)
    try:
        bench.run()
    finally:
        for line in ws.cleanup():
            print(f"cleanup: {line}", file=sys.stderr)
    return bench.results


def main(argv=None):
    p, args = _args(argv)
    if args.containers < 1:
        p.error("--containers must be at least 1")
    return common.run_bench("memory.py", args, Bench, f"{args.containers} containers per engine",
                            {"containers": args.containers})


if __name__ == "__main__":
    sys.exit(main())
