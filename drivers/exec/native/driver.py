"""The ``native`` exec driver: runs OCI bundles itself, libcontainer-style.

Each started container is supervised by a shim (``shim.py``, a stdlib-only
Python process in its own session) that outlives the daemon.  Per-container
state lives in ``<home>/<id>/``:

``state.json``    written by :meth:`exec_create`: bundle, log path, created time
``running.json``  written by the shim once the process has exec'd: pids and their
                  start times (to tell a live pid from a reused one), started_at
``exit.json``     written by the shim when the process ended and its output is in
                  the log: exit code, finished_at, oom_killed

Not done yet: cgroups (limits, pause/resume, stats, OOM detection), terminals,
stdin, ``exec_exec``, user namespaces.
"""

import json
import os
import select
import shutil
import signal as _signal
import subprocess
import sys
import threading
import time

from dockyard.errors import ContainerNotFound, ExecError
from dockyard.hookspecs import hookimpl

HERE = os.path.dirname(os.path.abspath(__file__))
# The shim runs as a stdlib-only interpreter (-E -S: no site, no venv, no env
# tweaks).  It is imported rather than run by path so its bytecode is cached
# (compiling shim.py on every start costs several ms).
SHIM_CMD = [sys.executable, "-E", "-S", "-c",
            f"import sys; sys.path[0] = {HERE!r}; import shim; shim.main(sys.argv)"]
START_TIMEOUT = 30.0  # seconds; a healthy start takes milliseconds


def _read_json(path):
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, ValueError):  # missing, or half-written by a crash
        return None


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _now():
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + ".%06dZ" % (ns % 10**9 // 1000)


def _state(status, pid=None, exit_code=None, started_at=None, finished_at=None, error="", oom=False):
    return {"status": status, "pid": pid, "exit_code": exit_code, "oom_killed": oom,
            "started_at": started_at, "finished_at": finished_at, "error": error}


class NativeDriver:
    def __init__(self):
        self.home = None
        self._shims = {}  # id -> Popen of the shims this process started (to reap them)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ setup
    @hookimpl
    def exec_supported(self, home, options):
        if not sys.platform.startswith("linux"):
            return f"native exec driver needs Linux (running on {sys.platform})"
        if os.geteuid() != 0:
            return f"native exec driver needs root (running as uid {os.geteuid()})"
        for ns in ("pid", "mnt", "uts", "ipc", "net"):
            if not os.path.exists(f"/proc/self/ns/{ns}"):
                return f"native exec driver needs {ns} namespaces (no /proc/self/ns/{ns})"
        if not hasattr(os, "pidfd_open"):
            return "native exec driver needs os.pidfd_open (Python 3.9+, Linux 5.3+)"
        try:
            from . import linux  # noqa: F401  (loads libc through ctypes)
        except OSError as exc:
            return f"native exec driver cannot load libc: {exc}"
        return None

    @hookimpl
    def exec_init(self, home, options):
        os.makedirs(home, 0o711, exist_ok=True)
        self.home = home

    # ---------------------------------------------------------------- helpers
    def _dir(self, id):
        if self.home is None:
            raise ExecError("native exec driver used before exec_init")
        if not id or "/" in id or id in (".", ".."):
            raise ExecError(f"invalid container id {id!r}")
        return os.path.join(self.home, id)

    def _load(self, id):
        sdir = self._dir(id)
        state = _read_json(os.path.join(sdir, "state.json"))
        if state is None:
            raise ContainerNotFound(f"No such container: {id}")
        return sdir, state

    def _reap(self, id):
        with self._lock:
            proc = self._shims.get(id)
            if proc is not None and proc.poll() is not None:
                del self._shims[id]

    def _current(self, id, sdir, state):
        from .linux import alive

        self._reap(id)
        ext = _read_json(os.path.join(sdir, "exit.json"))
        run = _read_json(os.path.join(sdir, "running.json"))
        if ext is None and run is None:
            return _state("created")
        started = run.get("started_at") if run else None
        if ext is None and alive(run["shim_pid"], run.get("shim_start")):
            return _state("running", pid=run["pid"], started_at=started)
        ext = ext or _read_json(os.path.join(sdir, "exit.json"))  # it may just have ended
        if ext is None:
            return _state("stopped", exit_code=255, started_at=started, finished_at=_now(),
                          error=f"container {id}: its shim died without recording an exit")
        return _state("stopped", exit_code=ext["exit_code"], started_at=started,
                      finished_at=ext.get("finished_at"), oom=bool(ext.get("oom_killed")))

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    def exec_create(self, id, bundle, log_path):
        sdir = self._dir(id)
        bundle = os.path.abspath(bundle)
        path = os.path.join(bundle, "config.json")
        try:
            with open(path) as fh:
                cfg = json.load(fh)
        except (OSError, ValueError) as exc:
            raise ExecError(f"container {id}: cannot read config.json ({path}): {exc}") from None
        if not isinstance(cfg, dict):
            raise ExecError(f"container {id}: config.json is not a JSON object")
        proc = cfg.get("process")
        if not isinstance(proc, dict):
            raise ExecError(f"container {id}: config.json: process is missing")
        args = proc.get("args")
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args) or not args[0]:
            raise ExecError(f"container {id}: config.json: process.args must be a non-empty list of strings")
        if not str(proc.get("cwd", "/")).startswith("/"):
            raise ExecError(f"container {id}: config.json: process.cwd must be an absolute path")
        if not isinstance(proc.get("env", []), list):
            raise ExecError(f"container {id}: config.json: process.env must be a list")
        root = (cfg.get("root") or {}).get("path") if isinstance(cfg.get("root"), dict) else None
        if not isinstance(root, str) or not os.path.isdir(os.path.join(bundle, root)):
            raise ExecError(f"container {id}: config.json: root.path {root!r} is not a directory")
        nss = (cfg.get("linux") or {}).get("namespaces") or []
        if "mount" not in {ns.get("type") for ns in nss if isinstance(ns, dict)}:
            raise ExecError(f"container {id}: config.json: linux.namespaces must include a mount namespace")
        if os.path.isdir(sdir):
            if self._current(id, sdir, _read_json(os.path.join(sdir, "state.json")) or {})["status"] == "running":
                raise ExecError(f"container {id} already exists and is running")
            shutil.rmtree(sdir, ignore_errors=True)
        os.makedirs(sdir, 0o700)
        _write_json(os.path.join(sdir, "state.json"), {
            "id": id, "bundle": bundle, "log_path": os.path.abspath(log_path),
            "created_at": _now()})

    @hookimpl
    def exec_start(self, id):
        sdir, state = self._load(id)
        if os.path.exists(os.path.join(sdir, "running.json")):
            raise ExecError(f"container {id} has already been started")
        rfd, wfd = os.pipe()
        try:
            with open(os.path.join(sdir, "shim.log"), "ab") as errlog:  # the shim's own tracebacks
                proc = subprocess.Popen([*SHIM_CMD, sdir, str(wfd)], pass_fds=(wfd,),
                                        start_new_session=True, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=errlog,
                                        close_fds=True, cwd="/")
        except OSError as exc:
            os.close(rfd)
            raise ExecError(f"container {id}: cannot start the shim: {exc}") from None
        finally:
            os.close(wfd)
        with self._lock:
            self._shims[id] = proc
        chunks = []
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([rfd], [], [], left)[0]:
                    proc.kill()  # the init dies with it (PDEATHSIG)
                    proc.wait()
                    raise ExecError(f"container {id}: the process did not start within {START_TIMEOUT:.0f}s")
                data = os.read(rfd, 65536)
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(rfd)
        try:
            msg = json.loads(b"".join(chunks))
        except ValueError:
            msg = {"error": f"the shim exited ({proc.wait()}) without reporting; see {sdir}/shim.log"}
        if "pid" in msg:
            return msg["pid"]
        proc.wait()  # it exits right after reporting an error, with its init reaped
        self._reap(id)
        raise ExecError(f"container {id}: {msg.get('error') or 'start failed'}", exit_code=msg.get("exit_code"))

    @hookimpl
    def exec_state(self, id):
        sdir, state = self._load(id)
        return self._current(id, sdir, state)

    @hookimpl
    def exec_kill(self, id, signal):
        from .linux import alive

        sdir, state = self._load(id)
        run = _read_json(os.path.join(sdir, "running.json"))
        if run is None:
            raise ExecError(f"container {id} is not running (never started)")
        if os.path.exists(os.path.join(sdir, "exit.json")) or not alive(run["pid"], run.get("pid_start")):
            return None
        try:
            os.kill(run["pid"], int(signal))
        except ProcessLookupError:
            pass
        except OSError as exc:
            raise ExecError(f"container {id}: kill {signal}: {exc.strerror}") from None

    @hookimpl
    def exec_wait(self, id, timeout):
        sdir, state = self._load(id)
        run = _read_json(os.path.join(sdir, "running.json"))
        if run is None or os.path.exists(os.path.join(sdir, "exit.json")):
            return self._current(id, sdir, state)
        self._wait_shim(run, timeout)
        return self._current(id, sdir, state)

    def _wait_shim(self, run, timeout):
        """Block until the shim of ``run`` ended (True) or ``timeout`` passed."""
        from .linux import proc_stat

        try:
            pidfd = os.pidfd_open(run["shim_pid"])
        except ProcessLookupError:
            return True
        try:
            st = proc_stat(run["shim_pid"])  # checked after the pidfd pins the process
            if st is None or st[0] in "ZX" or st[1] != run.get("shim_start"):
                return True
            return bool(select.select([pidfd], [], [], timeout)[0])
        finally:
            os.close(pidfd)

    @hookimpl
    def exec_delete(self, id):
        try:
            sdir, state = self._load(id)
        except ContainerNotFound:
            if self.home is not None and os.path.isdir(self._dir(id)):
                shutil.rmtree(self._dir(id), ignore_errors=True)
            return None
        run = _read_json(os.path.join(sdir, "running.json"))
        if run is not None and self._current(id, sdir, state)["status"] == "running":
            self.exec_kill(id=id, signal=_signal.SIGKILL)  # not meant to happen: never leak
            self._wait_shim(run, 10)
        self._reap(id)
        shutil.rmtree(sdir, ignore_errors=True)
        return None

    @hookimpl
    def exec_restore(self, id):
        try:
            sdir, state = self._load(id)
        except ContainerNotFound:
            return None
        return self._current(id, sdir, state)
