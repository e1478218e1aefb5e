"""bench/perf.py's own measurement of each row of issue 17's table, every engine
side by side (see perf_engines for the engines and ways, perf_table for the goals).
Each function returns one row (perf_table's shape); a way that cannot run is
``n/a: <reason>`` in its row.
"""

import concurrent.futures
import os
import shutil
import sys
import time
import types

import common
import exec_memory
from common import NotAvailable
from perf_table import DOCKER_ON_DOCKERD, DOCKER_ON_OURS, DOCKYARD_CLI, PODMAN


def timed_ways(peers, labels, title, args_of, runs, check=None):
    """``common.measure`` of ``way.run(*args_of(way))`` for each label: one warm-up,
    then ``runs`` round-robin rounds; ms per run.  ``check(way, stdout)`` may raise."""
    def prepare(label):
        def ready():
            way = peers.way(label)

            def once():
                out = way.run(*args_of(way))
                if check:
                    check(way, out)
            once()
            return once
        return ready
    return common.measure([(title, [(label, prepare(label)) for label in labels])], runs)[title]


def run_rm(peers, runs):
    title = "run --rm --network none busybox true"
    return {"key": "run_rm", "title": title, "unit": "ms", "digits": 0,
            "engines": timed_ways(peers, (DOCKYARD_CLI, DOCKER_ON_OURS, PODMAN, DOCKER_ON_DOCKERD), title,
                                  lambda w: ("run", "--rm", *w.run_flags, w.image, "true"), runs)}


def ps_and_version(peers, runs):
    """Two rows from one round robin: ``ps`` (no containers) and ``--version``."""
    labels = (DOCKYARD_CLI, DOCKER_ON_OURS, PODMAN, DOCKER_ON_DOCKERD)
    sections = []
    for what, args in (("ps", ("ps",)), ("--version", ("--version",))):
        ways = []
        for label in labels:
            def ready(label=label, args=args):
                way = peers.way(label)
                way.run(*args)
                return lambda: way.run(*args)
            ways.append((f"{label}: {what}", ready))
        sections.append((what, ways))
    res = common.measure(sections, runs)
    return [{"key": "ps", "title": "ps (no containers)", "unit": "ms", "digits": 0, "engines": res["ps"]},
            {"key": "version", "title": "--version", "unit": "ms", "digits": 0, "engines": res["--version"]}]


# --- memory ---------------------------------------------------------------------------
def parents():
    table = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            table[int(p)] = exec_memory.ppid(int(p))
    return table


def descendants(roots, table):
    found, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        for child, parent in table.items():
            if parent == p and child not in found:
                found.add(child)
                todo.append(child)
    return found


def engine_side(daemon_pids, mentioning):
    """The engine's own processes now: its daemons (``daemon_pids()``), their descendants, and whatever
    names its private directory (a supervisor that left the daemon's tree)."""
    table = parents()
    roots = set(daemon_pids()) | (set(common.processes_mentioning(mentioning)) if mentioning else set())
    return roots | descendants(roots, table)


def host_cost(start, daemon_pids, mentioning, n, settle):
    """Start ``n`` idle containers (``start(n)`` -> their pids); return (kB the
    engine's own processes grew by, how many of them are new, the new ones' kB).
    The engine's own: every new process between a container and an older process
    (shims, conmon), plus the engine's daemons and their trees, minus the
    containers and their children.  PSS is summed over the whole set, so pages a
    zygote shares with its forks count once."""
    time.sleep(settle)
    before = set(parents())
    side0 = engine_side(daemon_pids, mentioning)
    pss0 = exec_memory.pss_kb(side0)
    pids = start(n)
    time.sleep(settle)
    alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    if len(alive) != n:
        raise NotAvailable(f"only {len(alive)} of {n} containers are running after {settle}s")
    table = parents()
    payload = set(pids) | descendants(pids, table)
    added = set()
    for pid in pids:
        p = table.get(pid, 0)
        while p > 1 and p not in before:
            added.add(p)
            p = table.get(p, 0)
    side1 = (engine_side(daemon_pids, mentioning) | added) - payload
    total = exec_memory.pss_kb(side1) - pss0
    return total, len(side1 - side0), exec_memory.pss_kb(side1 - side0)


def memory(peers, n, settle):
    """PSS per idle container (``sleep 3600``) of all that is not the containers' payload."""
    row = {"key": "memory", "title": f"host PSS per idle container ({n} x sleep 3600): daemon growth + supervisors",
           "unit": "MiB", "digits": 2, "engines": {}, "notes": []}

    def dockyard():
        dy = peers.dy
        if dy is None:
            raise NotAvailable(f"dockyard: {peers.why.get('dockyard')}")

        def start(k):
            ids = []
            for _ in range(k):
                ids.append(dy.create(["sleep", "3600"]))
                dy.start_container(ids[-1])
            return [dy.pid_of(cid) for cid in ids]
        return start, lambda: [dy.proc.pid], str(dy.base), peers.way(DOCKER_ON_OURS)

    def cli_engine(label):
        way = peers.way(label)

        def start(k):
            ids = [way.run("run", "-d", *way.run_flags, way.image, "sleep", "3600") for _ in range(k)]
            return [int(x) for x in way.run("inspect", "-f", "{{.State.Pid}}", *ids).split()]
        if label == PODMAN:
            return start, list, None, way
        return start, peers.docker.daemon_pids, None, way

    for label, make in (("dockyard", dockyard), ("podman (conmon)", lambda: cli_engine(PODMAN)),
                        ("docker (containerd-shim)", lambda: cli_engine(DOCKER_ON_DOCKERD))):
        way = None
        try:
            start, daemon_pids, mentioning, way = make()
            kb, procs, new_kb = host_cost(start, daemon_pids, mentioning, n, settle)
            row["engines"][label] = [kb / n / 1024]
            row["notes"].append(f"{label}: {kb / 1024:.1f} MiB for {n} containers: {procs} new processes "
                                f"{new_kb / n / 1024:.2f} MiB/ctr, the engine's older processes "
                                f"{(kb - new_kb) / n / 1024:+.2f} MiB/ctr")
        except Exception as exc:
            row["engines"][label] = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"n/a: {exc!r}"
        finally:
            if way is not None:
                try:
                    way.remove_all()
                except NotAvailable as exc:
                    row["notes"].append(f"{label}: removing the containers failed: {exc}")
        print(f"  memory / {label}: {row['engines'][label]}", file=sys.stderr)
    return row


# --- bursts -----------------------------------------------------------------------------
def burst(peers, n, concurrency, key):
    """``n`` x ``run -d ... sleep 3600``, ``concurrency`` at a time; seconds for all of them."""
    row = {"key": key, "title": f"{n} x run -d, {concurrency} at a time", "unit": "s", "digits": 2,
           "engines": {}, "failed": {}, "notes": []}
    for label in (DOCKER_ON_OURS, PODMAN, DOCKER_ON_DOCKERD):
        try:
            way = peers.way(label)
            way.remove_all()
        except NotAvailable as exc:
            row["engines"][label] = f"n/a: {exc}"
            continue
        args = ("run", "-d", *way.run_flags, way.image, "sleep", "3600")
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            outcomes = list(pool.map(lambda _: way.try_run(*args, timeout=300), range(n)))
        took = time.perf_counter() - start
        errors = [out for ok, out in outcomes if not ok]
        row["engines"][label] = [took]
        if errors:
            kinds = sorted(set(errors), key=errors.count, reverse=True)
            row["failed"][label] = f"{len(errors)} of {n} failed: " + " | ".join(k[:160] for k in kinds[:3])
        try:
            running = len(way.run("ps", "-q").split())
            removal = way.remove_all()
            row["notes"].append(f"{label}: {running} running after the burst; removing them all took {removal:.1f} s")
        except NotAvailable as exc:
            row["notes"].append(f"{label}: counting or removing the containers failed: {exc}")
        print(f"  {key} / {label}: {took:.1f} s, {len(errors)} failed", file=sys.stderr)
    return row


# --- logs -------------------------------------------------------------------------------
def logs(peers, runs, lines):
    """``logs --tail 5`` of a container that printed ``lines`` lines and exited."""
    made = {}
    expected = [str(i) for i in range(lines - 4, lines + 1)]

    def container(way):
        engine = DOCKYARD_CLI if way.label == DOCKER_ON_OURS else way.label  # one container on our daemon
        if engine not in made:
            cid = way.run("run", "-d", *way.run_flags, way.image, "seq", "1", str(lines))
            code = way.run("wait", cid, timeout=900)
            if code.split()[-1:] != ["0"]:
                raise NotAvailable(f"seq exited {code!r}")
            made[engine] = cid
        return made[engine]

    def check(way, out):
        if out.split() != expected:
            raise NotAvailable(f"logs --tail 5 printed {out[-200:]!r}")

    title = f"logs --tail 5 of a {lines}-line log"
    row = {"key": "logs", "title": title, "unit": "ms", "digits": 0,
           "engines": timed_ways(peers, (DOCKYARD_CLI, DOCKER_ON_OURS, PODMAN, DOCKER_ON_DOCKERD), title,
                                 lambda w: ("logs", "--tail", "5", container(w)), runs, check)}
    for label in (DOCKYARD_CLI, PODMAN, DOCKER_ON_DOCKERD):
        try:
            peers.way(label).remove_all()
        except NotAvailable:
            pass
    return row


# --- pull -------------------------------------------------------------------------------
def pull(peers, reps, size_mb):
    """MB/s of pulling one ``size_mb`` MB random layer from a local registry into
    empty stores (bench/registry.py's image, registry and peer reps)."""
    import registry

    row = {"key": "pull", "title": f"pull of a {size_mb} MB layer from a local registry", "unit": "MB/s",
           "digits": 1, "engines": {}, "notes": []}
    rb = registry.Bench(types.SimpleNamespace(size_mb=size_mb, reps=reps), peers.ws)
    try:
        rb.make_payload()
        rb.fill_pull_registry()
    except NotAvailable as exc:
        row["engines"]["dockyard pull"] = f"n/a: the registry: {exc}"
        return row
    row["notes"] += rb.notes
    ref = f"{rb.reg.host}/pull-%s:latest"

    def dockyard(i):
        d = peers.dockyard_daemon(f"dy-pull-{i}")
        try:
            d.start(peers.tar)
            cli = peers.dockyard_cli(d)
            secs, _ = registry.timed([*cli, "pull", ref % "dockyard"])
            inspect = [*cli, "image", "inspect", "-f", "{{json .RootFS.Layers}}", ref % "dockyard"]
            layers = common.run_cmd(inspect).stdout
            if rb.diff_id not in layers:
                raise NotAvailable(f"the pulled image lacks the layer {rb.diff_id}: {layers[:200]}")
            return secs
        finally:
            d.stop()
            d.remove_network_objects()
            shutil.rmtree(d.base, ignore_errors=True)

    def docker(i):
        if peers.docker is None:
            raise NotAvailable(f"dockerd: {peers.why.get('dockerd')}")
        rb.docker = peers.docker
        if rb.docker_has_layer():
            raise NotAvailable("dockerd holds the layer before the pull")
        secs, _ = registry.timed(peers.docker.cli("pull", ref % "docker"), env=peers.docker.env)
        if not rb.docker_has_layer():
            raise NotAvailable("dockerd does not hold the layer after the pull")
        peers.docker.run("rmi", ref % "docker")
        return secs

    def from_registry_bench(make):
        def rep(i):
            return make()(i)[0][1]
        return rep

    tools = [("dockyard pull", dockyard), ("skopeo copy docker:// dir:", from_registry_bench(rb.pull_skopeo)),
             ("podman pull", from_registry_bench(rb.pull_podman)), ("docker pull (dockerd)", docker)]
    for label, _ in tools:
        row["engines"][label] = []
    for i in range(reps):
        for label, rep in tools:
            if not isinstance(row["engines"][label], list):
                continue
            try:
                secs = rep(i)
            except Exception as exc:
                row["engines"][label] = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"n/a: {exc!r}"
                continue
            row["engines"][label].append(rb.pull_blob["size"] / 1e6 / secs)
            print(f"  pull / {label} rep {i + 1}: {secs:.2f} s", file=sys.stderr)
    return row
