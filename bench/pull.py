#!/usr/bin/env python3
"""Pull throughput of one big gzip layer from a local registry: ``dockyard pull``
against ``skopeo copy docker:// dir:`` (download and digest check, no
extraction: the floor the registry and the loopback give), side by side in one
run:

    sudo .venv/bin/python bench/pull.py [--reps 3] [--size-mb 200]

The pull half of ``bench/registry.py`` (same image, registry, checks and
timing: see its docstring), alone, so that the one-command table
(``bench/perf.py``) can call :func:`measure`.  Needs root.
"""

import argparse
import os
import statistics
import sys

import common
import registry

DOCKYARD, SKOPEO = "dockyard pull", "skopeo copy docker:// -> dir: (no extraction)"


class _Args:
    def __init__(self, reps, size_mb):
        self.reps, self.size_mb = reps, size_mb


def _run(ws, reps, size_mb):
    bench = registry.Bench(_Args(reps, size_mb), ws)
    bench.make_payload()
    bench.fill_pull_registry()
    bench.section(registry.PULL, [((DOCKYARD,), bench.pull_dockyard), ((SKOPEO,), bench.pull_skopeo)])
    return bench


def measure(reps=3, size_mb=200, ws=None):
    """``{"dockyard pull": MB/s median, "skopeo ...": MB/s median, "ratio":
    dockyard / skopeo}`` (a value is a string ``"n/a: why"`` when a tool could
    not run); ``ws``: a :class:`common.Workspace` (default: a new one, cleaned
    up before returning)."""
    own = ws is None
    ws = ws or common.Workspace()
    try:
        bench = _run(ws, reps, size_mb)
    finally:
        if own:
            for line in ws.cleanup():
                print(f"cleanup: {line}", file=sys.stderr)
    out = {}
    for label in (DOCKYARD, SKOPEO):
        values = bench.results[registry.PULL].get(label)
        out[label] = statistics.median(values) if isinstance(values, list) and values else values or "n/a"
    if all(isinstance(out[k], float) for k in (DOCKYARD, SKOPEO)):
        out["ratio"] = out[DOCKYARD] / out[SKOPEO]
    return out


def table(res):
    """:func:`measure`'s result as text (``bench/perf.py --details`` shows it)."""
    lines = []
    for label in (DOCKYARD, SKOPEO):
        value = res[label]
        lines.append(f"{label:<48} {value:8.1f} MB/s" if isinstance(value, float) else f"{label:<48} {value}")
    if "ratio" in res:
        lines.append(f"{'dockyard / skopeo (goal: >= 0.9)':<48} {res['ratio']:8.2f}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="measured pulls per tool (default 3)")
    p.add_argument("--size-mb", type=int, default=200, help="random payload in MB of 10^6 bytes (default 200)")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/pull.py: needs root (the daemons)", file=sys.stderr)
        return 1
    print(table(measure(args.reps, args.size_mb)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
