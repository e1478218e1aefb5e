#!/usr/bin/env python3
"""Start latency of a trivial container (``true``) at three levels, side by side with
real peers, in one run:

    sudo .venv/bin/python bench/exec_latency.py --runs 20 [--json FILE] [--storage-driver vfs]

1. **driver** on one prepared OCI bundle (the busybox rootfs of
   ``dockyard.testing.busybox`` and a config.json with Docker's standard mounts,
   masked/read-only paths, default capabilities and pid/mount/uts/ipc/network
   namespaces): Dockyard's ``native`` exec driver (and ``lxc`` when its entry point
   is installed), loaded through pluggy as tests/integration/test_exec_native.py
   does, running exec_create + exec_start + exec_wait + exec_delete; ``crun run``
   and ``runc run`` on a copy of the same config.json (only ``linux.cgroupsPath``
   added; their own ``spec`` if ours is refused, said so in the notes);
   ``lxc-execute`` with an equivalent LXC config on the same rootfs.  Floors:
   ``unshare`` with the same five namespaces and ``os.posix_spawn("/bin/true")``.
   Once more with Docker's default seccomp profile and a 64 MiB memory limit
   (lxc-execute is n/a there: its seccomp format differs).
2. **API**: create + start + wait + delete over HTTP on a private daemon's socket
   (native; lxc through a second daemon with ``--exec-driver lxc``).
3. **CLI**: ``dockyard run --rm --network none busybox true`` against
   ``podman run --rm`` and ``docker run --rm`` (same flags), plus the start-up of
   ``dockyard --version`` alone.

Every tool gets one unmeasured warm-up run, then the tools take turns (round robin)
for ``--runs`` rounds so that a noisy moment hits all of them.  The table shows the
median and p90 in ms and the ratio of the median to Dockyard native's at the same
level.  A tool that cannot run is ``n/a: <reason>``.  Nothing here is pass/fail.
All of it (daemons: Dockyard, dockerd + containerd, podman with private roots;
images; cgroups ``dockyard-bench-<token>*``) lives in one temp directory and is
removed at the end.  Needs root.
"""

import argparse
import copy
import json
import os
import sys
import time
import uuid

import common
import engines
from common import NotAvailable, bundle_config, need, run_cmd, without_unified, write_bundle

FLOOR = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--mount-proc", "true"]
DRIVER, SECURE, API, CLI = ("driver on one bundle", "driver + Docker seccomp profile + 64 MiB memory limit",
                            "API: create+start+wait+delete on the socket",
                            "CLI: run --rm --network none busybox true")


def load_driver(name, home, options):
    """The exec driver ``name`` (its entry point) through pluggy, as the driver tests load it."""
    from importlib.metadata import entry_points

    from dockyard.errors import DriverUnsupported
    from dockyard.testing.driver import load_exec

    eps = [ep for ep in entry_points(group="dockyard.exec") if ep.name == name]
    if not eps:
        raise NotAvailable(f"no {name!r} entry point in group dockyard.exec (not installed)")
    try:
        return load_exec(eps[0].load()(), home, options, name)
    except DriverUnsupported as exc:
        raise NotAvailable(exc.reason) from None


def timed(fn):
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes = []
        self.sections = []  # (title, [(label, prepare)]); prepare() warms up and returns fn
        self.results = {}

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # --- level 1: drivers and runtimes on one bundle -------------------------------
    def driver_tool(self, name, bundle):
        def prepare():
            hook = load_driver(name, self.ws.tmp / f"driver-{name}",
                               {"cgroup_parent": self.ws.cgroup(f"driver-{name}")})
            logs = self.ws.tmp / "driver-logs"
            logs.mkdir(exist_ok=True)

            def once():
                cid = uuid.uuid4().hex[:12]
                log = logs / f"{cid}.log"
                hook.exec_create(id=cid, bundle=str(bundle), log_path=str(log), stdin=None)
                try:
                    hook.exec_start(id=cid)
                    state = hook.exec_wait(id=cid, timeout=30)
                finally:
                    hook.exec_delete(id=cid)
                if state["status"] != "stopped" or state["exit_code"] != 0:
                    raise NotAvailable(f"container ended {state['status']}, exit {state['exit_code']}: "
                                       f"{state['error'] or log.read_text()[-200:]}")
                if log.exists():
                    log.unlink()
            once()
            return once
        return prepare

    def oci_tool(self, tool, cfg, variant):
        def prepare():
            exe = need(tool)
            state = self.ws.tmp / f"state-{tool}"
            state.mkdir(exist_ok=True)
            spec = copy.deepcopy(cfg)
            spec["linux"]["cgroupsPath"] = f"/{self.ws.cgroup(tool)}/{variant}"
            bundle = write_bundle(self.ws.tmp / f"bundle-{tool}-{variant}", spec)
            private = False

            def once():
                name = f"bench-{uuid.uuid4().hex[:12]}"
                try:
                    run_cmd([exe, "--root", str(state), "run", "--bundle", str(bundle), name])
                except NotAvailable:
                    run_cmd_quiet([exe, "--root", str(state), "delete", "--force", name])
                    raise

            def measured():
                return without_unified(lambda: timed(once)) if private else once()
            try:
                once()
            except NotAvailable as exc:
                if "hybrid mode" in str(exc):
                    private = True
                    self.note(f"{tool} on this host: {exc}; so {tool} is measured in a private mount namespace "
                              "without /sys/fs/cgroup/unified (cgroup v1 only, as runc uses here; the fork into "
                              "it is not timed)")
                else:
                    bundle = self.own_spec(exe, tool, variant, spec)
                    self.note(f"{tool} refused our config.json ({exc}); measured with its own `{tool} spec` "
                              "on the same rootfs")
                measured()
            return measured
        return prepare

    def own_spec(self, exe, tool, variant, ours):
        bundle = self.ws.tmp / f"bundle-{tool}-{variant}-own"
        bundle.mkdir()
        run_cmd([exe, "spec"], cwd=bundle)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"].update(args=ours["process"]["args"], terminal=False)
        spec["root"] = {"path": ours["root"]["path"], "readonly": False}
        spec["linux"].update({k: v for k, v in ours["linux"].items() if k in ("seccomp", "resources", "cgroupsPath")})
        return write_bundle(bundle, spec)

    def lxc_execute(self, rootfs):
        def prepare():
            from dockyard.engine import bundle

            exe = need("lxc-execute")
            lxcpath = self.ws.tmp / "lxcpath"
            lxcpath.mkdir()
            keep = " ".join(c[len("CAP_"):].lower() for c in bundle.DEFAULT_CAPS)
            conf = self.ws.tmp / "lxc-execute.conf"
            conf.write_text(f"lxc.rootfs.path = dir:{rootfs}\nlxc.uts.name = box\n"
                            "lxc.mount.auto = proc:mixed sys:ro cgroup:mixed\nlxc.net.0.type = empty\n"
                            f"lxc.cap.keep = {keep}\nlxc.cgroup.dir = {self.ws.cgroup('lxc-execute')}/c\n")

            def once():
                run_cmd([exe, "-P", str(lxcpath), "-n", f"bench-{uuid.uuid4().hex[:8]}", "-f", str(conf), "--", "true"])
            once()
            return once
        return prepare

    @staticmethod
    def simple(fn):
        def prepare():
            fn()
            return fn
        return prepare

    # --- levels 2 and 3: daemons --------------------------------------------------
    def daemon(self, name, exec_driver=None):
        daemon = engines.DockyardDaemon(self.ws, name, exec_driver=exec_driver,
                                       storage_driver=self.args.storage_driver, config=self.args.config)
        try:
            daemon.start(self.tar)
        except NotAvailable as exc:
            return f"n/a: {exc}"
        self.notes.append(f"{name} daemon: {daemon.drivers()}, cgroup parent {daemon.cgroup_parent}")
        return daemon

    def api_tool(self, daemon):
        def once():
            cid = daemon.create(["true"])
            try:
                daemon.start_container(cid)
                status, body = daemon.api("POST", f"/containers/{cid}/wait")
                if status != 200 or body.get("StatusCode") != 0:
                    raise NotAvailable(f"wait: {status} {body!r}")
            finally:
                daemon.remove(cid)
        return self.from_daemon(daemon, once)

    def from_daemon(self, daemon, fn):
        def prepare():
            if isinstance(daemon, str):
                raise NotAvailable(daemon[len("n/a: "):])
            fn()
            return fn
        return prepare

    def engine_tool(self, kind):
        def prepare():
            if kind == "docker":
                engine = engines.Dockerd(self.ws).start(self.tar)
                self.notes.append(f"docker: CLI {common.version([need('docker'), '--version'])}, dockerd "
                                  f"{engine.run('version', '--format', '{{.Server.Version}}')} (private, no bridge)")
                cmd = engine.cli("run", "--rm", "--network", "none", engine.image, "true")
                env = engine.env
            else:
                engine = engines.Podman(self.ws).start(self.tar)
                self.notes.append(f"podman: {common.version([need('podman'), '--version'])} with --runtime runc, "
                                  f"cgroupfs, private roots; run flags {' '.join(engine.RUN_FLAGS)}")
                cmd, env = engine.cli("run", "--rm", *engine.run_args(), engine.image, "true"), None
            run_cmd(cmd, env=env)
            return lambda: run_cmd(cmd, env=env)
        return prepare

    # --- the run --------------------------------------------------------------------
    def plan(self):
        self.tar, rootfs = self.ws.busybox()
        plain = bundle_config(rootfs, ["true"], secure=False)
        secure = bundle_config(rootfs, ["true"], secure=True)
        ours = {v: write_bundle(self.ws.tmp / f"bundle-{v}", c) for v, c in (("plain", plain), ("secure", secure))}
        self.sections.append((DRIVER, [
            ("dockyard native", self.driver_tool("native", ours["plain"])),
            ("dockyard lxc", self.driver_tool("lxc", ours["plain"])),
            ("crun run", self.oci_tool("crun", plain, "plain")),
            ("runc run", self.oci_tool("runc", plain, "plain")),
            ("lxc-execute", self.lxc_execute(rootfs)),
            ("unshare (floor)", self.simple(lambda: run_cmd(FLOOR))),
            ("posix_spawn /bin/true (floor)", self.simple(spawn_true)),
        ]))
        self.sections.append((SECURE, [
            ("dockyard native", self.driver_tool("native", ours["secure"])),
            ("dockyard lxc", self.driver_tool("lxc", ours["secure"])),
            ("crun run", self.oci_tool("crun", secure, "secure")),
            ("runc run", self.oci_tool("runc", secure, "secure")),
            ("lxc-execute", "n/a: LXC takes seccomp in its own format; not translated here"),
        ]))
        native, lxc = self.daemon("dockyard"), self.daemon("dockyard-lxc", exec_driver="lxc")
        self.sections.append((API, [("dockyard native", self.api_tool(native)), ("dockyard lxc", self.api_tool(lxc))]))
        cli = [] if isinstance(native, str) else native.cli("run", "--rm", "--network", "none", "busybox", "true")
        self.sections.append((CLI, [
            ("dockyard run --rm", self.from_daemon(native, lambda: run_cmd(cli))),
            ("podman run --rm", self.engine_tool("podman")),
            ("docker run --rm", self.engine_tool("docker")),
            ("dockyard --version (start-up)", self.simple(lambda: run_cmd([common.PY, "-m", "dockyard.cli.main",
                                                                           "--version"]))),
        ]))

    def run(self):
        self.notes.append(f"before: {common.load_line()}")
        self.plan()
        self.results = common.measure(self.sections, self.args.runs)
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        sections = common.ratio_sections(self.results, 2)  # x: over Dockyard native at the same level
        title = (f"start latency of `true`: {self.args.runs} runs each after one warm-up, round robin; "
                 "x native = median / Dockyard native's median at the same level")
        return common.format_table(title, ("tool", "median ms", "p90 ms", "x native"), sections)


def spawn_true():
    pid = os.posix_spawn("/bin/true", ["true"], {})
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise NotAvailable(f"/bin/true: wait status {status}")


def run_cmd_quiet(cmd):
    try:
        run_cmd(cmd, timeout=30)
    except NotAvailable:
        pass


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="measured runs per tool (default 20)")
    p.add_argument("--storage-driver", help="storage driver for the bench daemons (default: plugins.toml's)")
    p.add_argument("--config", help="plugins.toml for the bench daemons")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (ms) as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    return common.run_bench("exec_latency.py", args, Bench, f"{args.runs} runs each", {"runs": args.runs})


if __name__ == "__main__":
    sys.exit(main())
