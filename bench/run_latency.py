#!/usr/bin/env python3
"""Latency of ``dockyard run --rm busybox true`` against real peers, side by side.

    sudo .venv/bin/python bench/run_latency.py [--runs 20] [--storage-driver vfs]

Everything runs in one temp directory that is removed at the end: a private
Dockyard daemon (its own socket, data root and exec root) with a busybox image
made offline (``dockyard.testing.busybox``) and imported with ``dockyard import``.
Measured, N runs each after one unmeasured warm-up run:

* ``dockyard run --rm busybox true``: the CLI, through the daemon (the number
  users see, including the CLI's Python start-up);
* ``dockyard API``: create + start + wait + delete over HTTP on the daemon's
  socket from this process (the daemon's own path, no CLI start-up);
* ``dockyard --version``: start-up of the CLI process alone, for reference;
* ``unshare --fork --pid --mount --uts --ipc --net --mount-proc true``: the
  floor: the same namespaces, no engine at all;
* ``crun run`` / ``runc run`` where installed: an OCI bundle on the same busybox
  rootfs (``crun spec``/``runc spec``, args ``["true"]``, no terminal);
* ``podman run --rm`` / ``docker run --rm`` only if such an engine answers (the
  busybox tar is imported there under a private name and removed afterwards).

A tool that cannot run here is reported as ``n/a: <reason>``.  Nothing is timed
as a pass/fail; this prints a table (and ``--json`` writes the raw numbers).
Needs root (the daemon and unshare do).
"""

import argparse
import http.client
import json
import math
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

PY = sys.executable
FLOOR = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--mount-proc", "true"]


class NotAvailable(Exception):
    """This tool cannot be measured here (the message says why)."""


# --- HTTP on a unix socket ---------------------------------------------------
class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def api(sock, method, path, body=None, raw=None, headers=None):
    """One request; returns (status, parsed JSON or bytes)."""
    conn = UnixHTTPConnection(sock)
    try:
        hdrs = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        payload = resp.read()
    finally:
        conn.close()
    try:
        return resp.status, json.loads(payload) if payload else None
    except ValueError:
        return resp.status, payload


def ping(sock):
    try:
        return api(sock, "GET", "/_ping")[0] == 200
    except OSError:
        return False


# --- helpers ------------------------------------------------------------------
def percentile(values, p):
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def last_line(text):
    lines = [x for x in (text or "").strip().splitlines() if x.strip()]
    return lines[-1].strip() if lines else "no output"


def run_cmd(cmd, timeout=60, cwd=None):
    res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         timeout=timeout, cwd=cwd, text=True)
    if res.returncode != 0:
        raise NotAvailable(f"{os.path.basename(cmd[0])} exited {res.returncode}: {last_line(res.stderr or res.stdout)}")
    return res


def time_runs(fn, runs):
    """Run ``fn`` once unmeasured (it may raise NotAvailable), then ``runs`` times."""
    fn()
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def mounts_under(prefix):
    prefix = str(prefix).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(prefix):
                found.append(target)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


# --- the bench ----------------------------------------------------------------
class Bench:
    def __init__(self, args):
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="dockyard-bench-"))
        self.sock = str(self.tmp / "dockyard.sock")
        self.host = f"unix://{self.sock}"
        self.daemon = None
        self.daemon_log = self.tmp / "daemon.log"
        self.tag = f"dockyard-bench-{uuid.uuid4().hex[:8]}"
        self.cleanups = []  # (description, callable), run last-in first-out
        self.results = []   # (tool, [ms] or "n/a: reason")
        self.notes = []     # lines printed above the table

    # setup
    def make_images(self):
        from dockyard.testing.busybox import make_busybox_rootfs, make_busybox_tar

        self.tar = make_busybox_tar(self.tmp / "busybox.tar")
        self.rootfs = make_busybox_rootfs(self.tmp / "rootfs")

    def start_daemon(self):
        cmd = [PY, "-m", "dockyard.daemon.main", "-H", self.host, "--data-root", str(self.tmp / "data"),
               "--exec-root", str(self.tmp / "exec")]
        if self.args.storage_driver:
            cmd += ["--storage-driver", self.args.storage_driver]
        if self.args.config:
            cmd += ["--config", self.args.config]
        with open(self.daemon_log, "ab") as log:
            self.daemon = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.daemon.poll() is not None:
                raise NotAvailable(f"daemon exited {self.daemon.returncode}: {last_line(self.daemon_log.read_text())}")
            if ping(self.sock):
                return
            time.sleep(0.05)
        raise NotAvailable("daemon did not answer in 30s")

    def has_cli(self):
        import importlib.util

        return importlib.util.find_spec("dockyard.cli.main") is not None

    def dockyard(self, *args):
        return [PY, "-m", "dockyard.cli.main", "-H", self.host, *args]

    def import_image(self):
        if self.has_cli():
            run_cmd(self.dockyard("import", str(self.tar), "busybox"), timeout=300)
            return "dockyard import"
        status, body = api(self.sock, "POST", "/images/create?fromSrc=-&repo=busybox", raw=self.tar.read_bytes(),
                           headers={"Content-Type": "application/tar"})
        if status != 200:
            raise NotAvailable(f"import over the API failed ({status}): {body!r}")
        return "the API (dockyard.cli.main is not installed)"

    def stop_daemon(self):
        if self.daemon is None or self.daemon.poll() is not None:
            return
        try:  # remove whatever containers are left (a failed run may leave one)
            status, rows = api(self.sock, "GET", "/containers/json?all=1")
            for row in rows if status == 200 else []:
                api(self.sock, "DELETE", f"/containers/{row['Id']}?force=1")
        except OSError:
            pass
        self.daemon.send_signal(signal.SIGTERM)
        try:
            self.daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()

    # measurements
    def measure(self, tool, fn):
        try:
            values = time_runs(fn, self.args.runs)
        except NotAvailable as exc:
            self.results.append((tool, f"n/a: {exc}"))
        except subprocess.TimeoutExpired as exc:
            self.results.append((tool, f"n/a: timed out after {exc.timeout}s"))
        else:
            self.results.append((tool, values))
        print(f"  {tool}: {'done' if isinstance(self.results[-1][1], list) else self.results[-1][1]}",
              file=sys.stderr)

    def api_run(self):
        status, body = api(self.sock, "POST", "/containers/create", {"Image": "busybox", "Cmd": ["true"]})
        if status != 201:
            raise NotAvailable(f"create: {status} {body!r}")
        cid = body["Id"]
        try:
            status, body = api(self.sock, "POST", f"/containers/{cid}/start")
            if status not in (204, 304):
                raise NotAvailable(f"start: {status} {body!r}")
            status, body = api(self.sock, "POST", f"/containers/{cid}/wait")
            if status != 200 or body.get("StatusCode") != 0:
                raise NotAvailable(f"wait: {status} {body!r}")
        finally:
            status, body = api(self.sock, "DELETE", f"/containers/{cid}?force=1")
        if status != 204:
            raise NotAvailable(f"delete: {status} {body!r}")

    def oci_runtime(self, tool):
        exe = shutil.which(tool)
        if exe is None:
            raise NotAvailable(f"{tool} is not installed")
        bundle = self.tmp / f"bundle-{tool}"
        bundle.mkdir()
        run_cmd([exe, "spec"], cwd=bundle)
        spec_path = bundle / "config.json"
        spec = json.loads(spec_path.read_text())
        spec["process"]["args"] = ["true"]
        spec["process"]["terminal"] = False
        spec["root"] = {"path": str(self.rootfs), "readonly": True}
        spec_path.write_text(json.dumps(spec, indent=2))
        state = self.tmp / f"state-{tool}"
        state.mkdir()

        def once():
            name = f"bench-{uuid.uuid4().hex[:12]}"
            try:
                run_cmd([exe, "--root", str(state), "run", "--bundle", str(bundle), name])
            except NotAvailable:
                subprocess.run([exe, "--root", str(state), "delete", "--force", name],
                               capture_output=True, timeout=30)
                raise

        return once

    def engine(self, tool):
        exe = shutil.which(tool)
        if exe is None:
            raise NotAvailable(f"{tool} is not installed")
        probe = subprocess.run([exe, "info"], capture_output=True, text=True, timeout=30)
        if probe.returncode != 0:
            raise NotAvailable(f"no {tool} engine answers ({last_line(probe.stderr)})")
        image = f"{self.tag}:latest" if tool == "docker" else f"localhost/{self.tag}:latest"
        run_cmd([exe, "import", str(self.tar), image], timeout=300)
        self.cleanups.append((f"{tool} rmi {image}", lambda: subprocess.run(
            [exe, "rmi", "-f", image], capture_output=True, timeout=120)))
        return lambda: run_cmd([exe, "run", "--rm", "--network", "none", image, "true"])

    def run(self):
        print(f"bench: {self.args.runs} runs each in {self.tmp}", file=sys.stderr)
        self.make_images()
        daemon_error = None
        try:
            self.start_daemon()
            how = self.import_image()
            print(f"  busybox imported with {how}", file=sys.stderr)
            status, info = api(self.sock, "GET", "/info")
            if status == 200:
                drivers = info.get("Drivers") or {}
                self.notes.append(f"dockyard daemon: storage {info.get('Driver')}, exec {drivers.get('exec', '?')}, "
                                  f"network {','.join(drivers.get('network') or []) or '?'}; "
                                  f"{self.args.runs} runs per tool, after one warm-up run")
        except (NotAvailable, subprocess.TimeoutExpired) as exc:
            daemon_error = f"n/a: {exc}"
        if daemon_error:
            self.results.append(("dockyard run --rm", daemon_error))
            self.results.append(("dockyard API create+start+wait+rm", daemon_error))
        else:
            if self.has_cli():
                self.measure("dockyard run --rm", lambda: run_cmd(self.dockyard("run", "--rm", "busybox", "true")))
                self.measure("dockyard --version", lambda: run_cmd([PY, "-m", "dockyard.cli.main", "--version"]))
            else:
                self.results.append(("dockyard run --rm", "n/a: dockyard.cli.main is not installed"))
            self.measure("dockyard API create+start+wait+rm", self.api_run)
        self.measure("unshare (floor)", lambda: run_cmd(FLOOR))
        for tool in ("crun", "runc"):
            try:
                fn = self.oci_runtime(tool)
            except NotAvailable as exc:
                self.results.append((f"{tool} run", f"n/a: {exc}"))
                continue
            self.measure(f"{tool} run", fn)
        for tool in ("podman", "docker"):
            try:
                fn = self.engine(tool)
            except (NotAvailable, subprocess.TimeoutExpired) as exc:
                self.results.append((f"{tool} run --rm", f"n/a: {exc}"))
                continue
            self.measure(f"{tool} run --rm", fn)

    def cleanup(self):
        problems = []
        try:
            self.stop_daemon()
        except Exception as exc:
            problems.append(f"stopping the daemon: {exc}")
        for what, fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as exc:
                problems.append(f"{what}: {exc}")
        for target in mounts_under(self.tmp):
            problems.append(f"mount left behind: {target} (unmounted)")
            subprocess.run(["umount", "-l", target], capture_output=True)
        shutil.rmtree(self.tmp, ignore_errors=True)
        if self.tmp.exists():
            problems.append(f"could not remove {self.tmp}")
        return problems

    # report
    def table(self):
        base = next((v for t, v in self.results if t == "dockyard run --rm" and isinstance(v, list)), None)
        base_median = statistics.median(base) if base else None
        rows = [("tool", "median ms", "p90 ms", "ratio to dockyard")]
        for tool, values in self.results:
            if isinstance(values, list):
                med = statistics.median(values)
                ratio = f"{med / base_median:.2f}" if base_median else "-"
                rows.append((tool, f"{med:.1f}", f"{percentile(values, 90):.1f}", ratio))
            else:
                rows.append((tool, values, "", ""))
        widths = [max(len(r[0]) for r in rows)] + [
            max(len(r[i]) for r in rows if not r[1].startswith("n/a")) for i in range(1, 4)]
        lines = []
        for i, r in enumerate(rows):
            if r[1].startswith("n/a"):
                lines.append(f"{r[0]:<{widths[0]}}  {r[1]}")
            else:
                lines.append(f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}")
            if i == 0:
                lines.append("-" * len(lines[0]))
        return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="measured runs per tool (default 20)")
    p.add_argument("--storage-driver", help="storage driver for the bench daemon (default: plugins.toml's)")
    p.add_argument("--config", help="plugins.toml for the bench daemon")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (ms) as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if os.geteuid() != 0:
        print("bench/run_latency.py: needs root (the daemon and unshare create namespaces)", file=sys.stderr)
        return 1
    bench = Bench(args)
    interrupted = False
    try:
        bench.run()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        problems = bench.cleanup()
    for line in problems:
        print(f"cleanup: {line}", file=sys.stderr)
    if interrupted:
        return 130
    for note in bench.notes:
        print(note)
    print(bench.table())
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": args.runs, "results": {t: v for t, v in bench.results}}, fh, indent=2)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
