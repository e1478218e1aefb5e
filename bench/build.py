#!/usr/bin/env python3
"""What ``build`` costs, side by side with real peers, in one run:

    sudo .venv/bin/python bench/build.py --reps 10 [--json FILE] [--storage-driver vfs]
                                          [--buildah-driver overlay|vfs]

Two Dockerfiles on a small context (two files and a directory):

* **3 steps**: ``FROM busybox`` and two ``RUN`` (Docker 20.10 here: ~100 ms cached,
  ~1 s uncached);
* **10 steps**: ``FROM`` and a mix of ``ENV``, ``RUN``, ``COPY`` and ``WORKDIR``.

each built **uncached** (``--no-cache``) and **cached** (the same build again with
everything in the cache; one unmeasured warm-up build fills it, and its output is
checked for a "Using cache" on every step after ``FROM``), by:

1. ``dockyard build`` against a private Dockyard daemon;
2. ``DOCKER_BUILDKIT=0 docker build`` (the classic builder) against the same daemon;
3. ``DOCKER_BUILDKIT=0 docker build`` against a private dockerd (Debian's 20.10);
4. ``buildah bud --layers`` (cached) / ``--layers --no-cache`` with a private
   ``--root``/``--runroot`` (``--buildah-driver``, overlay by default), OCI isolation
   with runc (chroot isolation if that cannot run here: said in the notes).

All RUN steps use ``--network none`` (the private dockerd has no bridge).  The base
image is busybox made offline from Debian's busybox-static
(:func:`dockyard.testing.busybox.make_busybox_tar`), imported into each engine.  Every
tool gets its warm-up, then the tools take turns (round robin) for ``--reps`` rounds.
The table shows the median and p90 wall time of the whole command in ms and the
ratio of the median to ``dockyard build``'s in the same section.  What cannot run is
``n/a: <reason>``.  Everything (daemons, images, roots, cgroups
``dockyard-bench-<token>*``, dockerd's leftovers) lives in one workspace and is
removed at the end.  Needs root.
"""

import argparse
import sys

import common
import engines
from common import NotAvailable, mounts_under, need, run_cmd

THREE = """FROM {base}
RUN echo one > /one
RUN echo two > /two
"""
TEN = """FROM {base}
ENV APP=/app GREETING=hello
RUN mkdir -p $APP && echo $GREETING > $APP/greeting
COPY file1.txt $APP/
ENV LEVEL=2
RUN cat $APP/file1.txt $APP/greeting > $APP/both
COPY dir/ $APP/dir/
RUN ls -lR $APP > /listing
ENV DONE=yes
COPY file2.txt /etc/
"""
BUILDS = (("3 steps", THREE), ("10 steps", TEN))
MODES = ("uncached (--no-cache)", "cached (all steps cached)")


class Bench:
    def __init__(self, args, ws):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {}
        self.sections = []  # (title, [(label, prepare)]); prepare() warms up and returns fn

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # --- contexts ------------------------------------------------------------------------
    def context(self, engine, name, dockerfile, base):
        """A context directory for ``engine``'s base image name (the files are the same)."""
        root = self.ws.tmp / "contexts" / engine / name.replace(" ", "-")
        (root / "dir" / "sub").mkdir(parents=True)
        (root / "Dockerfile").write_text(dockerfile.format(base=base))
        (root / "file1.txt").write_text("first file\n" * 100)
        (root / "file2.txt").write_text("second file\n")
        (root / "dir" / "a").write_bytes(bytes(range(256)) * 64)
        (root / "dir" / "sub" / "b").write_text("b\n")
        (root / ".dockerignore").write_text("*.tmp\n")
        (root / "ignored.tmp").write_text("never sent\n")
        return root

    def check_cached(self, label, name, output):
        steps = sum(1 for line in BUILDS_BY_NAME[name].splitlines() if line.strip()) - 1
        hits = output.count("Using cache")
        if hits < steps:
            self.note(f"WARNING {label} / {name}: the cached build hit the cache on {hits} of {steps} steps")
        else:
            self.note(f"{label} / {name}: cached builds hit the cache on all {steps} steps after FROM")

    def tool(self, label, name, mode, make_cmd, env=None):
        """``make_cmd(cached)`` → the command line; the row's prepare()."""
        def prepare():
            cmd = make_cmd(mode == MODES[1])
            if isinstance(cmd, str):
                raise NotAvailable(cmd[len("n/a: "):])
            res = run_cmd(cmd, timeout=300, env=env)  # the warm-up (fills the cache)
            if mode == MODES[1]:
                res = run_cmd(cmd, timeout=300, env=env)
                self.check_cached(label, name, res.stdout + res.stderr)
            return lambda: run_cmd(cmd, timeout=300, env=env)
        return prepare

    # --- engines ------------------------------------------------------------------------------
    def dockyard(self):
        daemon = engines.DockyardDaemon(self.ws, storage_driver=self.args.storage_driver, config=self.args.config)
        try:
            daemon.start(self.tar)
        except NotAvailable as exc:
            return f"n/a: {exc}"
        self.note(f"dockyard daemon: {daemon.drivers()}")
        return daemon

    def dockerd(self):
        try:
            engine = engines.Dockerd(self.ws).start(self.tar)
            self.note(f"docker: CLI {common.version([need('docker'), '--version'])}, dockerd "
                      f"{engine.run('version', '--format', '{{.Server.Version}}')} (private roots, no bridge), "
                      "DOCKER_BUILDKIT=0")
        except NotAvailable as exc:
            return f"n/a: {exc}"
        return engine

    def buildah(self):
        try:
            return Buildah(self.ws, self.args.buildah_driver).start(self.tar, self.note)
        except NotAvailable as exc:
            return f"n/a: {exc}"

    # --- the plan ---------------------------------------------------------------------------
    def plan(self):
        self.tar, _ = self.ws.busybox()
        dockyard, docker, buildah = self.dockyard(), self.dockerd(), self.buildah()
        docker_env = {"DOCKER_BUILDKIT": "0", "DOCKER_CONFIG": str(self.ws.tmp / "docker-cli-config")}
        for name, dockerfile in BUILDS:
            ctx = {"dockyard": self.context("dockyard", name, dockerfile, "busybox"),
                   "dockerd": self.context("dockerd", name, dockerfile,
                                           docker.image if not isinstance(docker, str) else "busybox"),
                   "buildah": self.context("buildah", name, dockerfile,
                                           buildah.image if not isinstance(buildah, str) else "busybox")}
            tag = f"bench-{name.replace(' ', '-')}:latest"
            for mode in MODES:
                def dy(cached, c=ctx["dockyard"], tag=tag):
                    return dockyard if isinstance(dockyard, str) else dockyard.cli(
                        "build", *no_cache(cached), "--network", "none", "-t", tag, str(c))

                def dk_dy(cached, c=ctx["dockyard"], tag=tag):
                    return dockyard if isinstance(dockyard, str) else [
                        need("docker"), "-H", dockyard.host, "build", *no_cache(cached), "--network", "none",
                        "-t", tag, str(c)]

                def dk(cached, c=ctx["dockerd"], tag=tag):
                    return docker if isinstance(docker, str) else docker.cli(
                        "build", *no_cache(cached), "--network", "none", "-t", tag, str(c))

                def bh(cached, c=ctx["buildah"], tag=tag):
                    return buildah if isinstance(buildah, str) else buildah.bud(c, tag, cached)

                self.sections.append((f"{name}, {mode}", [
                    ("dockyard build", self.tool("dockyard build", name, mode, dy, PYC)),
                    ("docker build -> dockyard daemon", self.tool("docker -> dockyard", name, mode, dk_dy, docker_env)),
                    ("docker build -> dockerd 20.10", self.tool("docker -> dockerd", name, mode, dk,
                                                                {**docker_env, **getattr(docker, "env", {})})),
                    ("buildah bud", self.tool("buildah", name, mode, bh)),
                ]))
        floor = [("dockyard --version", self.simple([common.PY, "-m", "dockyard.cli.main", "--version"]))]
        if not isinstance(dockyard, str):
            floor.append(("dockyard version (parser + one request)", self.simple(dockyard.cli("version"))))
        self.sections.append(("the dockyard CLI alone", floor))
        self.note("the dockyard CLI runs with PYTHONDONTWRITEBYTECODE unset, so that its modules' byte code is "
                  "cached as in an ordinary install (this environment sets it)")

    @staticmethod
    def simple(cmd):
        def prepare():
            run_cmd(cmd, env=PYC)
            return lambda: run_cmd(cmd, env=PYC)
        return prepare

    def run(self):
        self.notes.append(f"before: {common.load_line()}")
        self.plan()
        self.results = common.measure(self.sections, self.args.reps, lambda label, value, ms: ms, word="rep",
                                      progress=True)
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        sections = common.ratio_sections(self.results, 0)  # x: over dockyard build in the section
        title = (f"build wall time: {self.args.reps} reps each after a warm-up, round robin; "
                 "x dockyard = median / dockyard build's median in the same section")
        return common.format_table(title, ("tool", "median ms", "p90 ms", "x dockyard"), sections)


BUILDS_BY_NAME = dict(BUILDS)
PYC = {"PYTHONDONTWRITEBYTECODE": ""}  # empty is unset: Python writes and reuses .pyc files


def no_cache(cached):
    return [] if cached else ["--no-cache"]


class Buildah:
    """buildah with a private --root/--runroot and storage driver; the base image is
    made from the busybox rootfs tar (``from scratch`` + ``add`` + ``commit``)."""

    def __init__(self, ws, driver):
        self.ws, self.base, self.driver = ws, ws.tmp / "buildah", driver
        self.image = f"localhost/dockyard-bench-{ws.token}:latest"
        self.isolation = ["--isolation", "oci", "--runtime", "runc"]
        self.used = False

    def cmd(self, *args):
        return [need("buildah"), "--root", str(self.base / "root"), "--runroot", str(self.base / "run"),
                "--storage-driver", self.driver, "--cgroup-manager", "cgroupfs", *args]

    def run(self, *args, timeout=120):
        return run_cmd(self.cmd(*args), timeout=timeout, env={"TMPDIR": str(self.base / "tmp")}).stdout.strip()

    def start(self, tar, note):
        need("buildah")
        (self.base / "tmp").mkdir(parents=True)
        self.used = True
        self.ws.on_cleanup("removing buildah's containers, images and mounts", self.stop)
        cid = self.run("from", "scratch")
        self.run("add", cid, str(tar), "/")
        self.run("commit", "--rm", cid, self.image, timeout=300)
        probe = self.base / "probe"
        probe.mkdir()
        (probe / "Dockerfile").write_text(f"FROM {self.image}\nRUN true\n")
        try:
            run_cmd(self.bud(probe, "probe:latest", True), timeout=300, env={"TMPDIR": str(self.base / "tmp")})
        except NotAvailable as exc:
            self.isolation = ["--isolation", "chroot"]
            run_cmd(self.bud(probe, "probe:latest", True), timeout=300, env={"TMPDIR": str(self.base / "tmp")})
            note(f"buildah: OCI isolation with runc failed here ({exc}); measured with --isolation chroot")
        note(f"buildah: {common.version([need('buildah'), '--version'])}, storage driver {self.driver}, "
             f"{' '.join(self.isolation)}, cgroupfs, --network none, --layers")
        return self

    def bud(self, context, tag, cached):
        return self.cmd("bud", "--layers", *([] if cached else ["--no-cache"]), *self.isolation,
                        "--network", "none", "--ulimit", "nofile=1024:20000", "--ulimit", "nproc=4096:4096",
                        "--cgroup-parent", f"/{self.ws.cgroup('buildah')}", "-t", tag, str(context))

    def stop(self):
        if not self.used:
            return
        for args in (("rm", "--all"), ("rmi", "--all", "--force")):
            try:
                self.run(*args, timeout=120)
            except NotAvailable:
                pass
        for target in mounts_under(self.base):  # containers/storage keeps its driver home mounted
            run_cmd(["umount", "-l", target])
        self.used = False


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=10, help="measured builds per tool and section (default 10)")
    p.add_argument("--storage-driver", help="storage driver for the Dockyard daemon (default: plugins.toml's)")
    p.add_argument("--config", help="plugins.toml for the Dockyard daemon")
    p.add_argument("--buildah-driver", default="overlay", choices=("overlay", "vfs"),
                   help="buildah's storage driver (default overlay)")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (ms) as JSON")
    args = p.parse_args(argv)
    if args.reps < 1:
        p.error("--reps must be at least 1")
    return common.run_bench("build.py", args, Bench, f"{args.reps} reps each", {"reps": args.reps})


if __name__ == "__main__":
    sys.exit(main())
