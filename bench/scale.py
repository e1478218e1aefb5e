"""Scale on one host: N ``docker run -d`` at C concurrent, then what N running
containers cost the daemon and how fast it answers about them.

For Dockyard (driven by the Go ``docker`` CLI, as a user would) and podman (its own
CLI; no daemon, so no restart row) side by side in one run, each in a private
:class:`common.Workspace`:

* the wall time of N ``run -d busybox sleep`` at C concurrent, and how many failed;
* the daemon's threads and open fds with N running (its ``/proc`` entry);
* ``ps -a``, ``inspect`` of all N (one command), ``stats --no-stream``;
* a daemon restart (SIGTERM, start, first answer): it re-adopts all N before it answers;
* ``rm -f`` of all N (one command; the docker CLI removes them 50 at a time).

``measure(n, concurrency)`` returns the numbers (bench/perf.py calls it); run as
a script it prints them::

    .venv/bin/python bench/scale.py [-n 100] [-c 20] [--no-podman] [--json out.json]
"""

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PY, NotAvailable, Workspace, load_line  # noqa: E402
from engines import DockyardDaemon, Podman, ping, stop_process, wait_until  # noqa: E402

DOCKER = "/usr/local/bin/docker"
PAYLOAD = ("sleep", "100000")


def _timed(cmd, env=None, timeout=600):
    """``(seconds, CompletedProcess)`` of ``cmd``."""
    start = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                         env=None if env is None else {**os.environ, **env})
    return time.perf_counter() - start, res


def _proc_counts(pid):
    """(threads, open fds) of process ``pid``."""
    with open(f"/proc/{pid}/status") as fh:
        threads = next(int(line.split()[1]) for line in fh if line.startswith("Threads:"))
    return threads, len(os.listdir(f"/proc/{pid}/fd"))


def _burst(cli, run_args, image, n, concurrency, env=None):
    """N ``run -d`` at ``concurrency``: (seconds, ids, failures [(i, message)])."""
    def one(i):
        return i, _timed([*cli, "run", "-d", *run_args, image, *PAYLOAD], env)[1]
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(n)))
    elapsed = time.perf_counter() - start
    ids = [res.stdout.strip() for _, res in results if res.returncode == 0]
    failures = [(i, (res.stderr or res.stdout).strip()[-200:]) for i, res in results if res.returncode != 0]
    return elapsed, ids, failures


def _queries(cli, ids, env=None):
    """Times of ``ps -a``, ``inspect`` of ``ids`` and ``stats --no-stream``."""
    out = {}
    for key, args in (("ps_a", ["ps", "-a"]), ("inspect", ["inspect", *ids]),
                      ("stats_no_stream", ["stats", "--no-stream"])):
        t, res = _timed([*cli, *args], env)
        out[key] = round(t, 3) if res.returncode == 0 else f"failed: {(res.stderr or '').strip()[-200:]}"
    return out


def _remove_all(cli, ids, env=None, extra=()):
    t, res = _timed([*cli, "rm", "-f", *extra, *ids], env)
    return round(t, 3) if res.returncode == 0 else f"failed: {(res.stderr or '').strip()[-200:]}"


def _dockyard(ws, tar, n, concurrency, name="dockyard", python=PY):
    d = DockyardDaemon(ws, name=name, python=python).start(tar)
    env = {"DOCKER_HOST": d.host, "DOCKER_CONFIG": str(ws.tmp / "docker-cli-config")}
    cli = [DOCKER]
    elapsed, ids, failures = _burst(cli, ["--network", "none"], "busybox", n, concurrency, env)
    out = {"run_d_s": round(elapsed, 3), "failures": len(failures), "failure_sample": failures[:3]}
    out["threads"], out["fds"] = _proc_counts(d.proc.pid)
    out.update(_queries(cli, ids, env))
    t0 = time.perf_counter()  # a restart: the new daemon re-adopts every container before it answers
    stop_process(d.proc)
    out["daemon_stop_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    with open(d.log, "ab") as log:
        d.proc = subprocess.Popen(d.cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_until(lambda: ping(d.sock), d.proc, d.log, "dockyard daemon", timeout=300)
    out["restart_readopt_s"] = round(time.perf_counter() - t0, 3)
    _, res = _timed([*cli, "ps", "-q"], env)
    out["running_after_restart"] = len(res.stdout.split())
    out["threads_after_restart"], out["fds_after_restart"] = _proc_counts(d.proc.pid)
    out["rm_f_s"] = _remove_all(cli, ids, env)
    stop_process(d.proc)  # the next engine runs on a quiet machine
    return out


def _podman(ws, tar, n, concurrency):
    p = Podman(ws).start(tar)
    cli = p.cli()
    elapsed, ids, failures = _burst(cli, p.run_args(), p.image, n, concurrency)
    out = {"run_d_s": round(elapsed, 3), "failures": len(failures), "failure_sample": failures[:3]}
    out.update(_queries(cli, ids))
    out["rm_f_s"] = _remove_all(cli, ids, extra=("-t", "0"))  # SIGKILL at once, as docker's rm -f
    return out


def measure(n=100, concurrency=20, podman=True, baseline_python=None):
    """``{"dockyard": {...}, "podman": {...} | "n/a: why", "n", "concurrency", "load"}``:
    seconds (``*_s``, and ``ps_a``/``inspect``/``stats_no_stream``), failures, the
    daemon's threads and fds with ``n`` running (before and after a restart).
    ``baseline_python``: an interpreter that imports another checkout's Dockyard
    (e.g. a wrapper setting PYTHONPATH): measured too, as ``baseline``."""
    ws = Workspace()
    results = {"n": n, "concurrency": concurrency, "load": load_line()}
    try:
        tar, _ = ws.busybox()
        engines = [("dockyard", _dockyard)]
        if baseline_python:  # right after ours: the machine's load the most alike
            engines.append(("baseline", lambda *a: _dockyard(*a, name="baseline", python=baseline_python)))
        engines += [("podman", _podman)] if podman else []
        for name, fn in engines:
            try:
                results[name] = fn(ws, tar, n, concurrency)
            except NotAvailable as exc:
                results[name] = f"n/a: {exc}"
            print(f"  {name}: {results[name]}", file=sys.stderr)
    finally:
        problems = ws.cleanup()
    results["cleanup_problems"] = problems
    return results


def table(results):
    rows = ["run_d_s", "failures", "threads", "fds", "ps_a", "inspect", "stats_no_stream", "daemon_stop_s",
            "restart_readopt_s", "running_after_restart", "threads_after_restart", "fds_after_restart", "rm_f_s"]
    dy, pm, base = results.get("dockyard"), results.get("podman"), results.get("baseline")
    lines = [f"scale: {results['n']} containers, `run -d` {results['concurrency']} at a time ({results['load']})",
             f"{'what':<24}{'dockyard':>12}{'podman':>12}{'ratio':>8}" + (f"{'baseline':>12}" if base else ""),
             "-" * (56 + (12 if base else 0))]

    def cell(engine, key):
        return engine.get(key, "-") if isinstance(engine, dict) else "-"

    for key in rows:
        a, b = cell(dy, key), cell(pm, key)
        ratio = f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "-"
        lines.append(f"{key:<24}{str(a)[:11]:>12}{str(b)[:11]:>12}{ratio:>8}"
                     + (f"{str(cell(base, key))[:11]:>12}" if base else ""))
    for name in ("dockyard", "podman", "baseline"):
        if isinstance(results.get(name), str):
            lines.append(f"{name}: {results[name]}")
        elif results.get(name, {}).get("failure_sample"):
            lines.append(f"{name} failures, e.g.: {results[name]['failure_sample']}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("-c", "--concurrency", type=int, default=20)
    ap.add_argument("--no-podman", action="store_true")
    ap.add_argument("--baseline-python", help="an interpreter importing another checkout's Dockyard, measured too")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/scale: needs root", file=sys.stderr)
        return 1
    results = measure(args.n, args.concurrency, podman=not args.no_podman, baseline_python=args.baseline_python)
    print(table(results))
    for line in results["cleanup_problems"]:
        print(f"cleanup: {line}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 1 if results["cleanup_problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
