"""The engines of one bench/perf.py run, and the ways of driving them that its rows
compare: Dockyard's daemon and CLI from a given source tree (``--tree``: the
before/after of a change in one session), the docker CLI on that same daemon,
a private dockerd with the docker CLI, and podman on private roots.

Each *way* is a CLI command prefix with its environment, its image name and the
``run`` flags it needs (``--network none``; podman's also its ulimits and cgroup
parent, see :class:`engines.Podman`).  An engine that cannot start makes every way
on it raise :class:`common.NotAvailable` with the reason, so a row says
``n/a: <reason>`` instead of failing the run.
"""

import os
import subprocess
import time
from pathlib import Path

import engines
from common import NotAvailable, last_line, need, run_cmd
from perf_table import DOCKER_ON_DOCKERD, DOCKER_ON_OURS, DOCKYARD_CLI, PODMAN

WAYS = (DOCKYARD_CLI, DOCKER_ON_OURS, PODMAN, DOCKER_ON_DOCKERD)


def tree_python(tree):
    """The interpreter of ``tree``'s own venv (it imports that tree's Dockyard)."""
    python = Path(tree) / ".venv" / "bin" / "python"
    if not python.exists():
        raise SystemExit(f"{python} does not exist: make the tree's venv first "
                         f"(python3 -m venv {tree}/.venv && {tree}/.venv/bin/pip install -e '{tree}[test]')")
    return str(python)


def tree_cli(tree):
    """How a user starts that tree's CLI: its installed ``dockyard`` script."""
    exe = Path(tree) / ".venv" / "bin" / "dockyard"
    return [str(exe)] if exe.exists() else [tree_python(tree), "-m", "dockyard.cli.main"]


def installed_cli(tree, where):
    """The ``dockyard`` script of a fresh, non-editable install of ``tree`` in a venv
    at ``where`` (what a user runs; the CLI needs only the stdlib and itself)."""
    python = tree_python(tree)
    for cmd in ([python, "-m", "venv", str(where)],
                [str(where / "bin" / "pip"), "install", "-q", "--no-deps", str(tree)]):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise NotAvailable(f"{' '.join(cmd[:3])}: {last_line(done.stderr or done.stdout)}")
    return str(where / "bin" / "dockyard")


def editable(script):
    """" (an editable install)" if ``script``'s venv holds an editable install's hook, else ""."""
    lib = Path(script).resolve().parent.parent / "lib"
    return " (an editable install)" if any(lib.glob("python3*/site-packages/__editable__*dockyard*")) else ""


def describe_tree(tree):
    """``<tree> at <commit>`` plus how many files differ from it (uncommitted work)."""
    def git(*args):
        try:
            return subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    dirty = [x for x in git("status", "--porcelain", "--untracked-files=no").splitlines() if x.strip()]
    return f"{tree} at {git('rev-parse', '--short', 'HEAD')}" + (f", {len(dirty)} files changed" if dirty else "")


class Way:
    """One CLI on one engine."""

    def __init__(self, label, prefix, image, run_flags, env=None):
        self.label, self.prefix, self.image, self.run_flags = label, list(prefix), image, list(run_flags)
        self.env = env

    def cmd(self, *args):
        return [*self.prefix, *args]

    def run(self, *args, timeout=120):
        return run_cmd(self.cmd(*args), timeout=timeout, env=self.env).stdout.strip()

    def try_run(self, *args, timeout=120):
        """(ok, stdout or the error's last line), never raising (a burst counts failures)."""
        try:
            res = subprocess.run(self.cmd(*args), capture_output=True, text=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL, env=None if self.env is None else {**os.environ, **self.env})
        except subprocess.TimeoutExpired:
            return False, f"timed out after {timeout}s"
        if res.returncode != 0:
            return False, f"exit {res.returncode}: {last_line(res.stderr or res.stdout)}"
        return True, res.stdout.strip()

    def remove_all(self, timeout=900):
        """Remove every container of this way's engine; the seconds it took."""
        start = time.perf_counter()
        if self.label == PODMAN:
            self.run("rm", "-af", "-t", "0", timeout=timeout)
        else:
            ids = self.run("ps", "-aq").split()
            if ids:
                self.run("rm", "-f", *ids, timeout=timeout)
        return time.perf_counter() - start


class Peers:
    """Dockyard (from ``tree``), dockerd and podman, started in a workspace."""

    def __init__(self, ws, tree, tar, cli=None):
        """``cli``: the dockyard script to time; "editable": the tree's own (its
        venv's editable install); None: a non-editable install made in ``ws``."""
        self.ws, self.tree, self.tar = ws, Path(tree), tar
        self.python, self.notes = tree_python(tree), []
        if cli is None:
            try:
                cli = installed_cli(tree, ws.tmp / "cli-venv")
            except NotAvailable as exc:
                self.notes.append(f"dockyard: no installed CLI ({exc}); timing the tree's editable one")
                cli = "editable"
        self.cli = tree_cli(tree) if cli == "editable" else [cli]
        self.dy = self.docker = self.podman = None
        self.why = {}  # engine -> why it is not available

    def start(self):
        def attempt(name, fn):
            try:
                return fn()
            except Exception as exc:  # NotAvailable or an engine error: the rows say why
                self.why[name] = str(exc) if isinstance(exc, NotAvailable) else repr(exc)
                self.notes.append(f"{name}: n/a: {self.why[name]}")
                return None
        self.dy = attempt("dockyard", lambda: self.dockyard_daemon("dockyard").start(self.tar))
        if self.dy:
            self.notes.append(f"dockyard: {describe_tree(self.tree)}; daemon {self.dy.drivers()}; "
                              f"CLI {' '.join(self.cli)}{editable(self.cli[0])}")
        self.docker = attempt("dockerd", lambda: engines.Dockerd(
            self.ws, extra_args=["--insecure-registry", "127.0.0.0/8"]).start(self.tar))
        if self.docker:
            self.notes.append(f"docker: dockerd {self.docker.run('version', '--format', '{{.Server.Version}}')}, "
                              "private roots, no bridge; docker CLI "
                              f"{self.docker.run('version', '--format', '{{.Client.Version}}')}")
        self.podman = attempt("podman", lambda: engines.Podman(self.ws).start(self.tar))
        if self.podman:
            self.notes.append(f"podman: {self.podman.run('--version')} with runc, cgroupfs, private roots; "
                              f"run flags {' '.join(self.podman.RUN_FLAGS)}")
        return self

    def dockyard_daemon(self, name):
        """A Dockyard daemon of the tree (not started), that may pull from 127.0.0.1 over HTTP."""
        d = engines.DockyardDaemon(self.ws, name, python=self.python)
        d.cmd += ["--insecure-registry", "127.0.0.1"]
        return d

    def dockyard_cli(self, d):
        return [*self.cli, "-H", d.host]

    def way(self, label):
        """The :class:`Way` ``label``, or NotAvailable saying why not."""
        flags = ["--network", "none"]
        if label in (DOCKYARD_CLI, DOCKER_ON_OURS):
            if self.dy is None:
                raise NotAvailable(f"dockyard: {self.why.get('dockyard')}")
            if label == DOCKYARD_CLI:
                return Way(label, self.dockyard_cli(self.dy), "busybox", flags)
            config = self.ws.tmp / "docker-cli-on-dockyard"
            return Way(label, [need("docker"), "-H", self.dy.host], "busybox", flags,
                       env={"DOCKER_CONFIG": str(config)})
        if label == DOCKER_ON_DOCKERD:
            if self.docker is None:
                raise NotAvailable(f"dockerd: {self.why.get('dockerd')}")
            return Way(label, self.docker.cli(), self.docker.image, flags, env=self.docker.env)
        if label == PODMAN:
            if self.podman is None:
                raise NotAvailable(f"podman: {self.why.get('podman')}")
            return Way(label, self.podman.cli(), self.podman.image, self.podman.run_args())
        raise KeyError(label)
