#!/usr/bin/env python3
"""Every row of issue 17's performance table, side by side with podman and docker,
in one run, with each row's ratio to its goal's peer and whether the goal is met:

    sudo .venv/bin/python bench/perf.py [--quick] [--json FILE] [--tree DIR] [--cli PATH]
        [--scale 1000] [--only run_rm,ps,memory,burst,pull,logs,scale] [--details]

Rows (perf_rows.py measures them, perf_table.py holds the goals):

* ``run --rm --network none busybox true``: the dockyard CLI and the docker CLI on
  our daemon, podman, and the docker CLI on a private dockerd; one warm-up each,
  then ``--runs`` round-robin rounds; goal: dockyard <= 0.5x podman;
* ``ps`` (no containers) and ``--version``: the same four ways; goal: ``dockyard ps``
  <= 1.5x ``docker ps`` on our daemon;
* host PSS per idle container (``--containers`` x ``sleep 3600``): the PSS the
  engine's own processes grew by (its daemons, their process trees, whatever names
  its private directory, and every new process between a container and an older
  one: shims, conmon, supervisors), containers' payload excluded, per container;
  goal: at most 0.4 MiB; ratio to podman's (conmon);
* ``--burst`` (100) x ``run -d ... sleep 3600``, ``--concurrency`` (20) at a time:
  the docker CLI on our daemon (the issue's row), podman, docker on dockerd;
  seconds for all, failures counted; goal: <= 0.2x podman;
* pull of a ``--pull-mb`` (200) MB random layer from a local ``docker-registry``
  into empty stores (bench/registry.py's image and peers): dockyard pull into a
  fresh daemon per rep, ``skopeo copy docker:// dir:`` (no extraction), podman
  pull, docker pull; MB/s; goal: dockyard >= 0.9x skopeo;
* ``logs --tail 5`` of a container that printed 1M lines (``seq``): goal <= 50 ms;
* ``--scale`` (300; the issue's 1000 with ``--scale 1000``) x ``run -d``, 20 at a
  time: goal: all succeed and <= 0.2x podman.

``--tree DIR`` runs the Dockyard side (daemon and CLI) from another checkout's
venv (``DIR/.venv``): the same bench prints "before" and "after" tables in one
session (e.g. ``--tree /work/base17``, a worktree of the commit before the change).
The CLI timed is a non-editable install of the tree, made in the workspace
(``venv`` + ``pip install --no-deps``: the CLI needs only the stdlib and itself),
because users run an installed package and the issue asks to measure one.  The
tree's own venv is an editable install, whose import hook (setuptools' finder,
run from a .pth file at every start) costs every command ~6 ms: ``--cli editable``
times it instead, ``--cli PATH`` any other ``dockyard`` script.
``--details`` also runs the per-row helper modules (bench/cli_startup.py,
logs.py, memory.py, pull.py, scale.py: more columns, e.g. the daemon's threads and
fds at scale) after the table, each "n/a: why" when missing or when it cannot
measure ``--tree``.  ``--quick``: fewer runs and containers (a smoke run; its
numbers are noisier).  Everything lives in one workspace (private roots, sockets,
cgroups ``dockyard-bench-<token>*``) and is removed at the end.  The machine is
shared: read the load lines.  Nothing here is pass/fail.  Needs root.
"""

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import common
import perf_rows
import perf_table
from perf_engines import Peers

HERE = Path(__file__).resolve().parent
ROWS = ("run_rm", "ps", "memory", "burst", "pull", "logs", "scale")


def plan(args):
    """``[(key, fn(peers) -> row | [rows])]`` in the order they run (memory before
    the bursts, so no burst's aftermath is in its reading)."""
    return [(key, fn) for key, fn in (
        ("run_rm", lambda p: perf_rows.run_rm(p, args.runs)),
        ("ps", lambda p: perf_rows.ps_and_version(p, args.runs)),
        ("memory", lambda p: perf_rows.memory(p, args.containers, args.settle)),
        ("logs", lambda p: perf_rows.logs(p, args.runs, args.log_lines)),
        ("burst", lambda p: perf_rows.burst(p, args.burst, args.concurrency, "burst")),
        ("scale", lambda p: perf_rows.burst(p, args.scale, args.concurrency, "scale")),
        ("pull", lambda p: perf_rows.pull(p, args.pull_reps, args.pull_mb)),
    ) if key in args.only]


# --- the per-row helper modules (--details) ------------------------------------------------
def details(args, peers):
    """``[(module, text)]``: each helper module's own table, or "n/a: why"."""
    own_tree = Path(args.tree).resolve() == HERE.parent
    not_tree = "n/a: it measures this checkout's Dockyard, not --tree"
    specs = [("cli_startup", lambda m: m.measure(peers.dy.sock, args.runs, dockyard=peers.cli[0], run=True)
              if peers.dy and len(peers.cli) == 1 else "n/a: no daemon or no console script"),
             ("logs", lambda m: m.measure(runs=args.runs, lines=args.log_lines) if own_tree else not_tree),
             ("memory", lambda m: m.measure(args.containers) if own_tree else not_tree),
             ("pull", lambda m: m.measure(args.pull_reps, args.pull_mb) if own_tree else not_tree),
             ("scale", lambda m: m.measure(args.scale, args.concurrency) if own_tree else not_tree)]
    out = []
    for name, call in specs:
        try:
            module = __import__(name)
        except ImportError as exc:
            out.append((name, None, f"n/a: bench/{name}.py: {exc}"))
            continue
        try:
            result = call(module)
            text = result if isinstance(result, str) else (
                module.table(result) if hasattr(module, "table") else json.dumps(result, indent=1, default=str))
        except Exception as exc:  # a helper's failure is reported, the table stands
            result, text = None, f"n/a: {exc!r}"
        out.append((name, result, text))
        print(f"  details / {name}: done", file=sys.stderr)
    return out


# --- the run -------------------------------------------------------------------------------
def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer runs and containers (a smoke run)")
    p.add_argument("--json", metavar="FILE", help="also write every value as JSON")
    p.add_argument("--tree", default=str(HERE.parent),
                   help="the checkout whose Dockyard is measured (its .venv); default: this one")
    p.add_argument("--cli", help="the dockyard script to time: PATH, or 'editable' (the tree's venv's); "
                                 "default: a non-editable install of the tree, made for the run")
    p.add_argument("--only", default=",".join(ROWS), help=f"rows to run, comma separated ({','.join(ROWS)})")
    p.add_argument("--runs", type=int, help="rounds of the timed rows (default 10; quick 5)")
    p.add_argument("--containers", type=int, help="idle containers per engine for PSS (default 20; quick 10)")
    p.add_argument("--settle", type=float, default=3.0, help="seconds before each PSS reading (default 3)")
    p.add_argument("--burst", type=int, default=100, help="containers of the burst row (default 100)")
    p.add_argument("--scale", type=int, help="containers of the scale row (default 300; quick 150; issue: 1000)")
    p.add_argument("--concurrency", type=int, default=20, help="run -d at a time in bursts (default 20)")
    p.add_argument("--pull-mb", type=int, default=200, help="the pulled layer's MB (default 200)")
    p.add_argument("--pull-reps", type=int, help="pulls per tool (default 3; quick 1)")
    p.add_argument("--log-lines", type=int, default=1_000_000, help="lines of the logs row's log (default 1M)")
    p.add_argument("--details", action="store_true", help="also run the per-row helper modules")
    args = p.parse_args(argv)
    quick = args.quick
    args.runs = args.runs or (5 if quick else 10)
    args.containers = args.containers or (10 if quick else 20)
    args.scale = args.scale or (150 if quick else 300)
    args.pull_reps = args.pull_reps or (1 if quick else 3)
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = set(args.only) - set(ROWS)
    if unknown:
        p.error(f"--only: unknown rows {sorted(unknown)} (rows: {', '.join(ROWS)})")
    if min(args.runs, args.containers, args.scale, args.burst, args.concurrency, args.pull_reps) < 1:
        p.error("counts must be at least 1")
    if args.log_lines < 5:
        p.error("--log-lines must be at least 5")
    return args


def main(argv=None):
    args = parse(argv)
    if os.geteuid() != 0:
        print("bench/perf.py: needs root (namespaces, cgroups, daemons)", file=sys.stderr)
        return 1
    me = os.getpid()

    def on_term(signum, frame):  # clean up on kill too, but only here: a forked helper just exits
        if os.getpid() != me:
            os._exit(143)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    ws = common.Workspace()
    print(f"bench/perf.py in {ws.tmp}", file=sys.stderr)
    notes, rows, extra, interrupted = [f"before: {common.load_line()}"], [], [], False
    started = time.monotonic()
    try:
        tar, _ = ws.busybox()
        peers = Peers(ws, args.tree, tar, cli=args.cli).start()
        notes += peers.notes
        for key, fn in plan(args):
            print(f"row {key} ...", file=sys.stderr)
            got = fn(peers)
            rows += got if isinstance(got, list) else [got]
        if args.details:
            extra = details(args, peers)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        problems = ws.cleanup()
    notes.append(f"after: {common.load_line()}; {time.monotonic() - started:.0f} s in all")
    for line in problems:
        print(f"cleanup: {line}", file=sys.stderr)
    if interrupted:
        return 130
    title = (f"issue 17: Dockyard ({args.tree}) side by side with podman and docker "
             f"({time.strftime('%Y-%m-%d %H:%M')}{', quick' if args.quick else ''}); "
             "median, min-max (n), x peer = median / the goal's peer's")
    print("\n".join(notes))
    print(perf_table.table(rows, title))
    print("\ngoals:\n" + perf_table.summary(rows))
    for name, _, text in extra:
        print(f"\n--- bench/{name}.py ---\n{text}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"tree": args.tree, "args": vars(args), "notes": notes, "rows": rows,
                       "verdicts": {r["key"]: perf_table.verdict(r) for r in rows},
                       "details": {name: result for name, result, _ in extra}, "cleanup_problems": problems},
                      fh, indent=1, default=str)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
