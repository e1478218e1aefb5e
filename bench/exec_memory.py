#!/usr/bin/env python3
"""Host memory per idle container, side by side with real peers, in one run:

    sudo .venv/bin/python bench/exec_memory.py [--containers 20] [--settle 3] [--json FILE]

For each engine in turn (Dockyard native; Dockyard lxc when a daemon with
``--exec-driver lxc`` starts; docker with its own dockerd + containerd; podman with
private roots; ``crun run -d`` and ``runc run -d`` alone on an OCI bundle), start
``--containers`` containers running ``sleep 3600`` and measure:

* **supervisor PSS / ctr**: the summed PSS (``/proc/PID/smaps_rollup``) of the
  per-container processes the engine added, divided by the number of containers:
  Dockyard's shims (found from the running.json each writes in the exec root, other than
  the daemon and the containers), Docker's ``containerd-shim-runc-v2``, podman's
  ``conmon``; crun and runc leave none.  Any process between such a supervisor and
  the container's process counts as a supervisor too (the ``procs`` column says
  how many were found in all);
* **container PSS / ctr**: the PSS of the containers' own processes (for crun
  alone this is the whole cost), and **total** = the two together, with its ratio
  to Dockyard native's;
* **MemAvailable drop / ctr**: ``MemAvailable`` in /proc/meminfo before the
  containers were started and after (each after ``--settle`` seconds), divided by
  the number of containers: a whole-host figure that includes kernel memory
  (namespaces, cgroups, page tables) and whatever else the host did meanwhile;
* **idle daemon RSS** for reference: Dockyard's daemon, dockerd + its containerd;
  podman, crun and runc have none.

Sizes are MiB.  Each engine's containers (and its daemon) are removed before the
next engine starts; everything lives in one temp directory and cgroups named
``dockyard-bench-<token>*``, removed at the end.  Nothing here is pass/fail.
Needs root.
"""

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import time
import uuid

import common
import engines
from common import NotAvailable, bundle_config, need, run_cmd, without_unified, write_bundle

MIB = 1024  # /proc reports kB


def proc_kb(pid, path, key):
    try:
        with open(f"/proc/{pid}/{path}") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pids):
    return sum(proc_kb(p, "smaps_rollup", "Pss") for p in pids)


def rss_kb(pids):
    return sum(proc_kb(p, "status", "VmRSS") for p in pids)


def mem_available_kb(samples=5):
    """Median of a few readings 0.2 s apart (a single one jumps with the host's other work)."""
    values = []
    for i in range(samples):
        time.sleep(0.2 if i else 0)
        with open("/proc/meminfo") as fh:
            values.append(next(int(line.split()[1]) for line in fh if line.startswith("MemAvailable:")))
    return statistics.median(values)


def ppid(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def with_intermediates(supervisors, containers):
    """``supervisors`` plus every process between one of them and a container."""
    found = set(supervisors)
    for pid in containers:
        chain, p = [], ppid(pid)
        while p > 1 and p not in found:
            chain.append(p)
            p = ppid(p)
        if p in found:
            found.update(chain)
    return sorted(found - set(containers))


# --- the engines: start(n) -> container pids; supervisors(); daemon_pids(); stop() --------
class Dockyard:
    def __init__(self, bench, name, exec_driver=None, exec_opts=()):
        self.daemon = engines.DockyardDaemon(bench.ws, name, exec_driver=exec_driver, exec_opts=exec_opts,
                                            storage_driver=bench.args.storage_driver, config=bench.args.config)
        self.tar, self.ids = bench.tar, []

    def setup(self):
        self.daemon.start(self.tar)
        return f"{self.daemon.base.name} daemon: {self.daemon.drivers()}"

    def start(self, n):
        for _ in range(n):
            cid = self.daemon.create(["sleep", "3600"])
            self.ids.append(cid)
            self.daemon.start_container(cid)
        return [self.daemon.pid_of(cid) for cid in self.ids]

    def daemon_pids(self):
        """The daemon and its children (the exec driver's zygote, which forks the shims)."""
        me = self.daemon.proc.pid
        kids = [int(p) for p in os.listdir("/proc") if p.isdigit() and ppid(int(p)) == me]
        return [me, *kids]

    def supervisors(self):
        """Every shim, from the running.json it writes (shims forked by the zygote
        carry its command line, not the exec root), or the hub and its keeper,
        and whatever the driver runs between shim and container (lxc-start)."""
        found = []
        for path in glob.glob(str(self.daemon.exec_root / "exec" / "*" / "*" / "running.json")):
            with open(path) as fh:
                run = json.load(fh)
            # supervisor=hub: one hub and its keeper for all, each counted once
            for pid in (run["shim_pid"], run.get("keeper_pid")):
                if pid and pid not in found:
                    found.append(pid)
        return found

    def stop(self):
        self.daemon.stop()


class Docker:
    def __init__(self, bench):
        self.engine, self.tar = engines.Dockerd(bench.ws), bench.tar

    def setup(self):
        self.engine.start(self.tar)
        return f"docker: dockerd {self.engine.run('version', '--format', '{{.Server.Version}}')}, private, no bridge"

    def start(self, n):
        ids = [self.engine.run("run", "-d", "--network", "none", self.engine.image, "sleep", "3600") for _ in range(n)]
        return [int(x) for x in self.engine.run("inspect", "-f", "{{.State.Pid}}", *ids).split()]

    def daemon_pids(self):
        return self.engine.daemon_pids()

    def supervisors(self):
        return self.engine.shim_pids()

    def stop(self):
        self.engine.stop()


class Podman:
    def __init__(self, bench):
        self.engine, self.tar = engines.Podman(bench.ws), bench.tar

    def setup(self):
        self.engine.start(self.tar)
        return (f"podman: {common.version([need('podman'), '--version'])} with runc, cgroupfs, private roots; "
                f"run flags {' '.join(self.engine.RUN_FLAGS)}")

    def start(self, n):
        ids = [self.engine.run("run", "-d", *self.engine.run_args(), self.engine.image, "sleep", "3600")
               for _ in range(n)]
        return [int(x) for x in self.engine.run("inspect", "-f", "{{.State.Pid}}", *ids).split()]

    def daemon_pids(self):
        return []

    def supervisors(self):
        return self.engine.conmon_pids()

    def stop(self):
        self.engine.stop()


class OciRuntime:
    """``crun``/``runc run -d`` alone: no daemon, no supervisor.  crun runs in a
    private mount namespace without /sys/fs/cgroup/unified (it refuses this host's
    hybrid cgroups otherwise; see common.without_unified)."""

    def __init__(self, bench, tool):
        self.ws, self.tool, self.rootfs = bench.ws, tool, bench.rootfs
        self.state = self.ws.tmp / f"state-{tool}"
        self.names = []

    def call(self, fn):
        return without_unified(fn) if self.tool == "crun" else fn()

    def setup(self):
        self.exe = need(self.tool)
        self.state.mkdir()
        return f"{self.tool}: {common.version([self.exe, '--version'])}" + (
            " (in a private mount namespace without /sys/fs/cgroup/unified)" if self.tool == "crun" else "")

    def start(self, n):
        names = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(n)]
        self.names += names

        def run_all():
            pids = []
            for name in names:
                cfg = bundle_config(self.rootfs, ["sleep", "3600"], secure=False)
                cfg["linux"]["cgroupsPath"] = f"/{self.ws.cgroup(self.tool)}/{name}"
                bundle = write_bundle(self.ws.tmp / f"bundle-{name}", cfg)
                err = bundle / "stderr"
                with open(err, "w") as fh:  # the detached container keeps stdio: no pipes
                    res = subprocess.run([self.exe, "--root", str(self.state), "run", "-d", "--bundle", str(bundle),
                                          name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh,
                                         timeout=60)
                if res.returncode != 0:
                    raise NotAvailable(f"{self.tool} run -d exited {res.returncode}: {common.last_line(err.read_text())}")
                state = run_cmd([self.exe, "--root", str(self.state), "state", name]).stdout
                pids.append(json.loads(state)["pid"])
            return pids
        return self.call(run_all)

    def daemon_pids(self):
        return []

    def supervisors(self):
        return []

    def stop(self):
        names, self.names = self.names, []

        def remove_all():  # --force kills a running container first
            for name in names:
                subprocess.run([self.exe, "--root", str(self.state), "delete", "--force", name],
                               capture_output=True, timeout=60)
        if names:
            self.call(remove_all)


# --- the bench ---------------------------------------------------------------------
class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {}

    def engines(self):
        return [("dockyard native", lambda: Dockyard(self, "dockyard")),
                ("dockyard lxc", lambda: Dockyard(self, "dockyard-lxc", exec_driver="lxc")),
                ("docker + containerd-shim", lambda: Docker(self)),
                ("podman + conmon", lambda: Podman(self)),
                ("crun alone", lambda: OciRuntime(self, "crun")),
                ("runc alone", lambda: OciRuntime(self, "runc"))]

    def measure(self, engine):
        n, settle = self.args.containers, self.args.settle
        time.sleep(settle)
        idle = rss_kb(engine.daemon_pids())
        before = mem_available_kb()
        pids = engine.start(n)
        time.sleep(settle)
        after = mem_available_kb()
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
        if len(alive) != n:
            raise NotAvailable(f"only {len(alive)} of {n} containers are running after {settle}s")
        sups = with_intermediates(engine.supervisors(), pids)
        return {"containers": n, "supervisor_procs": len(sups), "supervisor_pss_kb": pss_kb(sups),
                "container_pss_kb": pss_kb(pids), "memavailable_drop_kb": before - after,
                "idle_daemon_rss_kb": idle if engine.daemon_pids() else None}

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
            print(f"  {label}: {self.results[label] if isinstance(self.results[label], str) else 'done'}",
                  file=sys.stderr)
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        base = self.results.get("dockyard native")
        base_total = (base["supervisor_pss_kb"] + base["container_pss_kb"]) if isinstance(base, dict) else None
        rows = []
        for label, r in self.results.items():
            if isinstance(r, str):
                rows.append((label, r))
                continue
            n, total = r["containers"], r["supervisor_pss_kb"] + r["container_pss_kb"]
            idle = r["idle_daemon_rss_kb"]
            rows.append((label, [str(r["supervisor_procs"]), f"{r['supervisor_pss_kb'] / n / MIB:.2f}",
                                 f"{r['container_pss_kb'] / n / MIB:.2f}", f"{total / n / MIB:.2f}",
                                 f"{total / base_total:.2f}" if base_total else "-",
                                 f"{r['memavailable_drop_kb'] / n / MIB:.2f}",
                                 "none" if idle is None else f"{idle / MIB:.2f}"]))
        title = (f"memory per idle container (sleep 3600), {self.args.containers} containers per engine, MiB; "
                 "x native = total / Dockyard native's total")
        header = ("engine", "procs", "supervisor PSS/ctr", "container PSS/ctr", "total/ctr", "x native",
                  "MemAvailable drop/ctr", "idle daemon RSS")
        return common.format_table(title, header, [("", rows)]) + (
            "\nMemAvailable is host-wide: whatever else runs on the host moves it too (a negative drop means "
            "the host freed memory meanwhile); PSS is the per-process figure.")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--containers", type=int, default=20, help="idle containers per engine (default 20)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds to wait before each reading (default 3)")
    p.add_argument("--storage-driver", help="storage driver for the bench daemons (default: plugins.toml's)")
    p.add_argument("--config", help="plugins.toml for the bench daemons")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (kB) as JSON")
    args = p.parse_args(argv)
    if args.containers < 1:
        p.error("--containers must be at least 1")
    return common.run_bench("exec_memory.py", args, Bench, f"{args.containers} containers per engine", {"containers": args.containers})


if __name__ == "__main__":
    sys.exit(main())
