#!/usr/bin/env python3
"""The cost of container output, Dockyard beside dockerd and podman (private
roots), in one run:

    sudo .venv/bin/python bench/logs.py [--runs 5] [--lines 1000000] [--peers docker,podman]

1. ``logs --tail 5`` of a container whose log (json-file; podman's k8s-file)
   holds ``--lines`` lines (``seq``): over the Docker API alone (``GET
   /containers/{id}/logs?tail=5``; not podman) and through the CLI (the docker
   CLI for Dockyard and dockerd, its start-up included: the same on both);
2. ``run -d`` of a container printing ``--lines`` lines, timed until ``wait``
   says it exited (the shim's per-line cost: read, cut, stamp, encode, write);
3. an attached ``run --rm`` of the same (output to /dev/null): the per-line
   cost of the whole path to the client (shim, log, daemon, framing).

:func:`measure` is the entry point bench/perf.py calls: it returns the medians
(ms) as ``{engine: {"tail5_api": ms, "tail5_cli": ms, "detached": ms,
"attached": ms}}``, a value being ``"n/a: why"`` where it cannot be measured;
:func:`table` renders them with the ratios to Dockyard.  The ways run round
robin (:func:`common.measure`), so a noisy moment hits all.  Nothing here is
pass/fail.  Needs root; everything lives in one temp directory and is removed
at the end.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import engines  # noqa: E402
from common import NotAvailable  # noqa: E402

ROWS = (("tail5_api", "logs --tail 5 of the log (API)"), ("tail5_cli", "logs --tail 5 of the log (CLI)"),
        ("detached", "run -d printing the lines, until exited"), ("attached", "run (attached) printing the lines"))


class _Engine:
    """What the rows need of one engine: its CLI (``cli``: the command before the
    verb), the flags of its ``run``, the image it has busybox under, and its
    Docker API socket (``None``: podman, measured through its CLI only)."""

    def __init__(self, cli, image, env, sock=None, run_flags=("--network", "none")):
        self.cli, self.image, self.env, self.sock, self.run_flags = list(cli), image, env, sock, list(run_flags)

    def docker(self, *args, timeout=300, stdout=subprocess.PIPE):
        res = subprocess.run([*self.cli, *args], stdout=stdout, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, timeout=timeout, env={**os.environ, **self.env})
        if res.returncode != 0:
            raise NotAvailable(f"{args[0]} exited {res.returncode}: {common.last_line(res.stderr.decode())}")
        return (res.stdout or b"").decode()

    def tail_api(self, cid):
        status, body = engines.api(self.sock, "GET", f"/containers/{cid}/logs?stdout=1&stderr=1&tail=5")
        if status != 200 or not body.endswith(b"\n"):
            raise NotAvailable(f"logs: {status} {body[-80:]!r}")
        return body


def _rows(engine, lines):
    """``(key, prepare)`` for :func:`common.measure`: a prepared log, then the timed calls."""
    cmd = ["seq", str(lines)]
    made = []

    def run_detached():
        cid = engine.docker("run", "-d", *engine.run_flags, engine.image, *cmd).strip()
        made.append(cid)
        if engine.docker("wait", cid).strip() != "0":
            raise NotAvailable("seq failed")
        return cid

    def prepare_tail(through_cli):
        def prepare():
            cid = made[0] if made else run_detached()
            want = f"{lines - 4}\n{lines - 3}\n{lines - 2}\n{lines - 1}\n{lines}\n"
            if engine.docker("logs", "--tail", "5", cid) != want:
                raise NotAvailable("logs --tail 5 printed something else")
            if through_cli:
                return lambda: engine.docker("logs", "--tail", "5", cid) and None
            if engine.sock is None:
                raise NotAvailable("no Docker API socket (its CLI only)")
            return lambda: engine.tail_api(cid) and None
        return prepare

    def prepare_detached():
        def once():
            cid = run_detached()
            engine.docker("rm", cid)
            made.remove(cid)
        once()
        return once

    def prepare_attached():
        def once():
            subprocess.run([*engine.cli, "run", "--rm", *engine.run_flags, engine.image, *cmd],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL, check=True, timeout=600, env={**os.environ, **engine.env})
        once()
        return once

    return [("tail5_api", prepare_tail(False)), ("tail5_cli", prepare_tail(True)),
            ("detached", prepare_detached), ("attached", prepare_attached)]


def _engines(ws, peers, baseline=None):
    """``[(name, _Engine | "n/a: why")]``: Dockyard, then the peers asked for;
    the docker CLI drives Dockyard and dockerd alike."""
    tar, _ = ws.busybox()
    docker = ["docker", "-H"]
    out = []
    try:
        d = engines.DockyardDaemon(ws).start(tar)
        out.append(("dockyard", _Engine([*docker, d.host], "busybox", {"DOCKER_CONFIG": str(ws.tmp / "cli-config")},
                                        d.sock)))
    except NotAvailable as exc:
        out.append(("dockyard", f"n/a: {exc}"))
    if baseline:  # another checkout's Dockyard, e.g. the commit before a change
        try:
            b = engines.DockyardDaemon(ws, name="dockyard-baseline", python=baseline).start(tar)
            out.append(("baseline", _Engine([*docker, b.host], "busybox", {"DOCKER_CONFIG": str(ws.tmp / "cli-config")},
                                            b.sock)))
        except NotAvailable as exc:
            out.append(("baseline", f"n/a: {exc}"))
    if "docker" in peers:
        try:
            dd = engines.Dockerd(ws).start(tar)
            out.append(("docker", _Engine([*docker, f"unix://{dd.sock}"], dd.image, dd.env, dd.sock)))
        except NotAvailable as exc:
            out.append(("docker", f"n/a: {exc}"))
    if "podman" in peers:
        try:
            pm = engines.Podman(ws).start(tar)
            out.append(("podman", _Engine(pm.cli(), pm.image, {}, None, pm.run_args())))
        except NotAvailable as exc:
            out.append(("podman", f"n/a: {exc}"))
    return out


def measure(ws=None, runs=5, lines=1_000_000, peers=("docker", "podman"), baseline=None):
    """Medians in ms: ``{engine: {row key: ms | "n/a: why"}}`` (keys: :data:`ROWS`).
    ``baseline``: the interpreter of another checkout (it runs that checkout's
    Dockyard), measured as engine ``baseline``.
    ``ws``: a :class:`common.Workspace` to start the engines in (cleaned up by the
    caller); without one, this makes its own and removes it before returning."""
    own = ws is None
    ws = ws or common.Workspace()
    try:
        sections = []
        for name, engine in _engines(ws, peers, baseline):
            ways = [(key, engine if isinstance(engine, str) else prep) for key, prep in _rows(engine, lines)] \
                if not isinstance(engine, str) else [(key, engine) for key, _ in ROWS]
            sections.append((name, ways))
        results = common.measure(sections, runs)
    finally:
        if own:
            for line in ws.cleanup():
                print(f"cleanup: {line}", file=sys.stderr)
    return {name: {key: statistics.median(v) if isinstance(v, list) and v else (v or "n/a: no runs")
                   for key, v in rows.items()} for name, rows in results.items()}


def table(medians, lines=1_000_000):
    names = list(medians)
    header = ["what (median ms)", *names, *([f"{n}/{names[0]}" for n in names[1:]])]
    rows = []
    for key, label in ROWS:
        cells = [medians[n][key] for n in names]
        base = cells[0] if isinstance(cells[0], float) else None
        out = [f"{c:.0f}" if isinstance(c, float) else str(c)[:40] for c in cells]
        out += [f"{c / base:.2f}" if base and isinstance(c, float) else "-" for c in cells[1:]]
        rows.append((label, out))
    return common.format_table(f"container output: {lines} lines ({time.strftime('%Y-%m-%d %H:%M')})", header,
                               [("", rows)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--peers", default="docker,podman", help="comma-separated: docker, podman ('' for none)")
    parser.add_argument("--baseline", metavar="PYTHON", help="also another checkout's Dockyard, run by this interpreter")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/logs: needs root", file=sys.stderr)
        return 1
    medians = measure(runs=args.runs, lines=args.lines, peers=tuple(p for p in args.peers.split(",") if p),
                      baseline=args.baseline)
    print(table(medians, args.lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
