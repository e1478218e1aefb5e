#!/usr/bin/env python3
"""Start-up of the ``dockyard`` CLI against the Go ``docker`` CLI on the same daemon,
with the interpreter's own start-up as the floor, in one run:

    .venv/bin/python bench/cli_startup.py --sock /run/dockyard/dockyard.sock [--runs 20]
        [--dockyard PATH] [--run]

Rows: ``python -S -E -c pass`` (the bare interpreter), ``python -I -c pass`` and
``python -c pass`` (with ``site``: the venv's .pth files, an editable install's
import hook), ``dockyard --version``, ``dockyard ps`` and ``docker ps``; with
``--run`` (a ``busybox`` image on the daemon) also ``run --rm --network none busybox
true`` through both CLIs.  ``python`` is the interpreter the ``dockyard`` console
script names on its ``#!`` line.  Each command gets one unmeasured warm-up, then
the commands take turns in a new order each round; every run is a posix_spawn with
stdout and stderr on /dev/null, timed to its exit.  ``PYTHONDONTWRITEBYTECODE`` is
dropped from their environment, so the warm-up leaves the .pyc files that a user's
first run (or pip, installing a wheel) leaves: compiling every module at each start
is not start-up.  Nothing here is pass/fail.

bench/perf.py calls :func:`measure`; its ``__main__`` prints the medians.
"""

import argparse
import os
import random
import shutil
import statistics
import sys
import time

PYTHON_FLOORS = (("python -S -E -c pass", ("-S", "-E", "-c", "pass")),
                 ("python -I -c pass", ("-I", "-c", "pass")),
                 ("python -c pass", ("-c", "pass")))


def default_dockyard():
    """The console script beside this interpreter (the venv's), else the one on $PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "dockyard")
    return here if os.access(here, os.X_OK) else shutil.which("dockyard")


def script_python(script):
    """The interpreter a console script runs under (its ``#!`` line)."""
    with open(script, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    return first[2:].split()[0] if first.startswith("#!") else sys.executable


def commands(sock, dockyard=None, docker="docker", run=False):
    """``[(label, argv)]``: the floors, our CLI's and docker's (None: not installed)."""
    dockyard = dockyard or default_dockyard()
    docker = shutil.which(docker)
    host = f"unix://{sock}"
    out = [(label, (script_python(dockyard), *args)) for label, args in PYTHON_FLOORS] if dockyard else []
    out += [("dockyard --version", dockyard and (dockyard, "--version")),
            ("dockyard ps", dockyard and (dockyard, "-H", host, "ps")),
            ("docker ps", docker and (docker, "-H", host, "ps"))]
    if run:
        tail = ("run", "--rm", "--network", "none", "busybox", "true")
        out += [("dockyard run --rm", dockyard and (dockyard, "-H", host, *tail)),
                ("docker run --rm", docker and (docker, "-H", host, *tail))]
    return out


def _spawn(argv, devnull, env, cpu=False):
    """Run ``argv`` to its end; its wall time in ms, or with ``cpu`` the CPU time it
    used (user + system, from wait4: steadier than the wall on a busy machine, and
    blind to waits, e.g. on the daemon); an exit status != 0 raises."""
    start = time.perf_counter()
    pid = os.posix_spawn(argv[0], list(argv), env, file_actions=[
        (os.POSIX_SPAWN_DUP2, devnull, 1), (os.POSIX_SPAWN_DUP2, devnull, 2)])
    _, status, usage = os.wait4(pid, 0)
    ms = (time.perf_counter() - start) * 1000
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {os.waitstatus_to_exitcode(status)}")
    return (usage.ru_utime + usage.ru_stime) * 1000 if cpu else ms


def measure(sock, runs=20, dockyard=None, docker="docker", run=False, raw=False, cpu=False):
    """Medians in ms ``{label: ms | "n/a: why"}`` of each of :func:`commands`, ``runs``
    rounds round robin (wall time; with ``cpu`` the CPU time the command used); ``raw``
    returns every run's times ``{label: [ms, ...]}`` instead."""
    times = time_commands(commands(sock, dockyard, docker, run), runs, cpu)
    if raw:
        return times
    return {label: statistics.median(v) if isinstance(v, list) and v else v for label, v in times.items()}


def time_commands(cmds, runs, cpu=False):
    """``{label: [ms, ...] | "n/a: why"}`` of ``cmds`` (``[(label, argv | None)]``): one
    warm-up each, then ``runs`` rounds, each in a new (seeded) order."""
    # a user's environment: bytecode is cached (the warm-up writes any .pyc missing,
    # as a first run does; an installed wheel has them from pip), no host from outside
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKYARD_HOST", "PYTHONDONTWRITEBYTECODE")}
    times, live = {}, []
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for label, argv in cmds:
            if not argv:
                times[label] = "n/a: not installed"
                continue
            try:
                _spawn(argv, devnull, env)  # warm-up: page cache, .pyc files
            except (OSError, RuntimeError) as exc:
                times[label] = f"n/a: {exc}"
                continue
            times[label] = []
            live.append((label, argv))
        shuffler = random.Random(1)
        for _ in range(runs):
            order = list(live)
            shuffler.shuffle(order)
            for label, argv in order:
                if isinstance(times[label], list):
                    try:
                        times[label].append(_spawn(argv, devnull, env, cpu))
                    except (OSError, RuntimeError) as exc:
                        times[label] = f"n/a: {exc}"
    finally:
        os.close(devnull)
    return times


def table(medians):
    """The medians as lines, with ``dockyard ps`` over ``docker ps`` (the goal: <= 1.5)."""
    lines = [f"{label:<24} {v:8.1f} ms" if isinstance(v, float) else f"{label:<24} {v}"
             for label, v in medians.items()]
    ours, theirs = medians.get("dockyard ps"), medians.get("docker ps")
    if isinstance(ours, float) and isinstance(theirs, float):
        lines.append(f"{'ps: dockyard / docker':<24} {ours / theirs:8.2f} x")
    ours, theirs = medians.get("dockyard run --rm"), medians.get("docker run --rm")
    if isinstance(ours, float) and isinstance(theirs, float):
        lines.append(f"{'run: dockyard / docker':<24} {ours / theirs:8.2f} x")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sock", required=True, help="the daemon's unix socket (our daemon, as docker's peer)")
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--dockyard", help="the console script to time (default: the venv's)")
    ap.add_argument("--run", action="store_true", help="also run --rm busybox true through both CLIs")
    ap.add_argument("--cpu", action="store_true", help="CPU time (user + system) instead of the wall's")
    args = ap.parse_args(argv)
    print(table(measure(args.sock, args.runs, args.dockyard, run=args.run, cpu=args.cpu)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
