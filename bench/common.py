"""What the benchmarks in bench/ share: a private workspace that is torn down at the
end, the OCI bundle the exec-layer benches run, and small helpers (commands,
/proc, percentiles, tables).  The private engines are in :mod:`engines`.

Each engine lives in the workspace's temp directory and under cgroups named
``dockyard-bench-<token>[-<what>]``; :meth:`Workspace.cleanup` stops what was
started (last in, first out), then reports and removes whatever is still there:
mounts under the temp directory, processes naming it, cgroups of the token, and the
files that dockerd and podman write outside their roots (``/etc/docker/key.json``,
``/run/docker``, ``/var/lib/containers/cache`` ...) if they were not there before.
"""

import copy
import ctypes
import json
import math
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PY = sys.executable
CGROUP_ROOT = "/sys/fs/cgroup"
# Files peers write outside the roots we give them (removed only if they appeared).
HOST_TRAIL = ("/etc/docker/key.json", "/run/docker", "/run/containers", "/run/libpod",
              "/var/lib/containers", "/var/lib/cni")


class NotAvailable(Exception):
    """This tool cannot be measured here (the message says why)."""


# --- small helpers ----------------------------------------------------------------
def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def last_line(text):
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no output"


def run_cmd(cmd, timeout=60, cwd=None, env=None):
    """Run ``cmd``; raise NotAvailable with the last line of its output if it fails."""
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=cwd, text=True, stdin=subprocess.DEVNULL,
                             env=None if env is None else {**os.environ, **env})
    except FileNotFoundError:
        raise NotAvailable(f"{cmd[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise NotAvailable(f"{os.path.basename(cmd[0])} timed out after {timeout}s") from None
    if res.returncode != 0:
        raise NotAvailable(f"{os.path.basename(cmd[0])} exited {res.returncode}: {last_line(res.stderr or res.stdout)}")
    return res


def need(tool):
    exe = shutil.which(tool)
    if exe is None:
        raise NotAvailable(f"{tool} is not installed")
    return exe


def version(cmd):
    try:
        return last_line(run_cmd(cmd, timeout=20).stdout.splitlines()[0])
    except (NotAvailable, IndexError):
        return "?"


def cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def processes_mentioning(text):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and text in cmdline(p)]


def mounts_under(prefix):
    prefix = str(prefix).rstrip("/")
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix + "/"):
                found.append(target)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def load_line():
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} CPUs"


# --- one OCI bundle for drivers and runtimes ----------------------------------------
MEMORY_LIMIT = 64 << 20

def bundle_config(rootfs, args, secure):
    """config.json for ``args`` on ``rootfs``: Docker's standard mounts, masked and
    read-only paths and default capabilities, five new namespaces; ``secure`` adds
    Docker's default seccomp profile and a memory limit (the cgroup path)."""
    from dockyard.engine import bundle
    from dockyard.engine.bundle import ocispec, seccomp
    from dockyard.testing.driver import oci_config

    cfg = copy.deepcopy(oci_config(rootfs, args))
    cfg["process"]["capabilities"] = {k: list(bundle.DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    cfg["linux"].update(maskedPaths=list(ocispec.MASKED_PATHS), readonlyPaths=list(ocispec.READONLY_PATHS))
    if secure:
        cfg["linux"]["seccomp"] = seccomp.linux_seccomp(None, bundle.DEFAULT_CAPS)
        cfg["linux"]["resources"] = {"memory": {"limit": MEMORY_LIMIT}}
    return cfg


def write_bundle(path, cfg):
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps(cfg, indent=1))
    return path


# --- a private view of the cgroup mounts for crun --------------------------------
CLONE_NEWNS, MS_REC, MS_PRIVATE, MNT_DETACH = 0x20000, 0x4000, 1 << 18, 2


def without_unified(fn):
    """Run ``fn()`` in a forked child whose private mount namespace lacks the
    (controller-less) cgroup2 mount at /sys/fs/cgroup/unified, and return its result.

    crun 1.8 refuses this host's hybrid layout ("cgroups in hybrid mode not
    supported"); without that mount it sees plain cgroup v1, as runc and LXC use it.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(rfd)
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNS) or libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None):
                raise OSError(ctypes.get_errno(), "unshare/mount")
            libc.umount2(b"/sys/fs/cgroup/unified", MNT_DETACH)
            out = ("ok", fn())
        except BaseException as exc:  # handed to the parent
            out = ("error", exc if isinstance(exc, NotAvailable) else NotAvailable(repr(exc)))
        with os.fdopen(wfd, "wb") as fh:
            pickle.dump(out, fh)
        os._exit(0)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    kind, value = pickle.loads(data) if data else ("error", NotAvailable("the forked child died"))
    if kind == "error":
        raise value
    return value


# --- the workspace ------------------------------------------------------------------
class Workspace:
    """A temp directory, a random token for cgroup names, and a LIFO of cleanups."""

    def __init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.token = uuid.uuid4().hex[:8]
        self.cgroup_prefix = f"dockyard-bench-{self.token}"
        self.cleanups = []
        self.trail = [p for p in HOST_TRAIL if not os.path.lexists(p)]

    def cgroup(self, what=None):
        return self.cgroup_prefix if what is None else f"{self.cgroup_prefix}-{what}"

    def on_cleanup(self, what, fn):
        self.cleanups.append((what, fn))

    def busybox(self):
        """(rootfs tar for image imports, unpacked rootfs directory), made offline."""
        from dockyard.testing.busybox import make_busybox_rootfs, make_busybox_tar

        return make_busybox_tar(self.tmp / "busybox.tar"), make_busybox_rootfs(self.tmp / "rootfs")

    def cleanup(self):
        """Undo everything; return a list of problems (what had to be removed by force)."""
        problems = []
        for what, fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:
                problems.append(f"{what}: {exc}")
        for pid in processes_mentioning(str(self.tmp)):
            problems.append(f"process left behind: {pid} {cmdline(pid)[:120]} (killed)")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for target in mounts_under(self.tmp):
            problems.append(f"mount left behind: {target} (unmounted)")
            subprocess.run(["umount", "-l", target], capture_output=True)
        problems += self.remove_cgroups()
        for path in self.trail:
            if os.path.lexists(path):
                shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.unlink(path)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"could not remove {self.tmp}")
        return problems

    def remove_cgroups(self):
        """Remove the token's cgroups (deepest first); a non-empty child is a leftover."""
        problems = []
        for _ in range(20):  # processes may still be leaving their cgroups
            left = []
            for hier in sorted(os.listdir(CGROUP_ROOT)):
                for top in Path(CGROUP_ROOT, hier).glob(f"{self.cgroup_prefix}*"):
                    dirs = sorted((Path(d) for d, _, _ in os.walk(top)), key=lambda p: len(p.parts), reverse=True)
                    for d in dirs:
                        try:
                            d.rmdir()
                        except OSError:
                            left.append(d)
            if not left:
                return problems
            time.sleep(0.1)
        return [f"cgroup left behind: {d}" for d in left]


def measure(sections, runs, value_of=None, word="run", progress=False):
    """Prepare every way of ``sections`` (``[(title, [(label, prepare | "n/a: why")])]``),
    then time the ready ones round robin, ``runs`` rounds, each in a new order.

    ``prepare()`` warms the way up and returns the function to time; a failure,
    there or in a round, is the row's "n/a: ..." (reported, not hidden).
    ``value_of(label, returned, ms)`` gives the number to record; by default a
    float the function returned (its own measurement), else the wall time in ms.
    Returns ``{title: {label: [values] | "n/a: ..."}}`` in the sections' order.
    """
    results, live = {}, []
    shuffler = random.Random(1)
    for title, ways in sections:
        result = results[title] = {}
        for label, prepare in ways:
            if isinstance(prepare, str):
                result[label] = prepare
            else:
                try:
                    fn = prepare()
                except Exception as exc:  # NotAvailable, or a driver/engine error
                    result[label] = f"n/a: {exc}" if isinstance(exc, NotAvailable) else f"n/a: {exc!r}"
                else:
                    result[label] = []
                    live.append((title, label, fn))
            print(f"  {title} / {label}: {'ready' if result[label] == [] else result[label]}", file=sys.stderr)
    for i in range(runs):
        # a new order each round (seeded: runs repeat): what runs right after another
        # way (its aftermath: a shim exiting, a daemon collecting garbage) slows the
        # next, and in a fixed order that next is always the same way
        order = list(live)
        shuffler.shuffle(order)
        for title, label, fn in order:
            if not isinstance(results[title][label], list):
                continue
            start = time.perf_counter()
            try:
                value = fn()
            except Exception as exc:
                results[title][label] = f"n/a: failed on {word} {i + 1}: {exc}"
                continue
            ms = (time.perf_counter() - start) * 1000
            results[title][label].append(value_of(label, value, ms) if value_of
                                         else value if isinstance(value, float) else ms)
        if progress:
            print(f"  {word} {i + 1}/{runs} done", file=sys.stderr)
    return results


def ratio_sections(results, digits):
    """``format_table`` sections of ``measure``'s results: median, p90, and the
    median over the section's first row's median."""
    import statistics

    sections = []
    for title, result in results.items():
        base = next(iter(result.values()))
        base = statistics.median(base) if isinstance(base, list) and base else None
        rows = []
        for label, values in result.items():
            if isinstance(values, list) and values:
                med = statistics.median(values)
                rows.append((label, [f"{med:.{digits}f}", f"{percentile(values, 90):.{digits}f}",
                                     f"{med / base:.2f}" if base else "-"]))
            else:
                rows.append((label, values if isinstance(values, str) else "n/a: no runs"))
        sections.append((title, rows))
    return sections


def format_table(title, header, sections):
    """``sections``: [(section title, [(label, [cells] | "n/a: why")])] -> text."""
    rows = [r for _, rs in sections for r in rs if not isinstance(r[1], str)]
    width0 = max([len(header[0])] + [len(r[0]) + 2 for _, rs in sections for r in rs])
    widths = [max([len(h)] + [len(r[1][i]) for r in rows]) for i, h in enumerate(header[1:])]
    line = "  ".join([f"{header[0]:<{width0}}"] + [f"{h:>{w}}" for h, w in zip(header[1:], widths)])
    out = [title, line, "-" * len(line)]
    for name, rs in sections:
        if name:
            out.append(name)
        for label, cells in rs:
            if isinstance(cells, str):
                out.append(f"  {label:<{width0 - 2}}  {cells}")
            else:
                out.append("  ".join([f"  {label:<{width0 - 2}}"] + [f"{c:>{w}}" for c, w in zip(cells, widths)]))
    return "\n".join(out)


def run_bench(name, args, make_bench, what, extra_json):
    """The shared body of a bench script's main: root check, a workspace that is
    always cleaned up (SIGTERM too), the notes and table, ``--json``."""
    if os.geteuid() != 0:
        print(f"bench/{name}: needs root (namespaces, cgroups, daemons)", file=sys.stderr)
        return 1
    me = os.getpid()

    def on_term(signum, frame):  # clean up on kill too, but only here: a forked helper just exits
        if os.getpid() != me:
            os._exit(143)
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    ws = Workspace()
    bench = make_bench(args, ws)
    print(f"bench: {what} in {ws.tmp}", file=sys.stderr)
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        problems = ws.cleanup()
    for line in problems:
        print(f"cleanup: {line}", file=sys.stderr)
    if interrupted:
        return 130
    print("\n".join(bench.notes))
    print(bench.table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({**extra_json, "notes": bench.notes, "results": bench.results}, fh, indent=2)
    return 1 if problems else 0
