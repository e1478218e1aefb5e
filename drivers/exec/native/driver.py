"""The ``native`` exec driver: runs OCI bundles itself, libcontainer-style.

Each started process (a container's init, or an extra process from
:meth:`exec_exec`) is supervised by a shim (the ``dockyard.shim`` kit with this
driver's :mod:`.spawn`) in its own session, which outlives the daemon.  State:

``<home>/<id>/``             the container: ``state.json`` (bundle, log, cgroup,
                             seccomp filter), the shim's files (see ``dockyard.shim``)
``<home>/<id>/exec/<eid>/``  one extra process, the same files
``<home>/seccomp/<sha>.bpf`` compiled seccomp filters, shared by equal profiles

Cgroups are made at :meth:`exec_create` (under the ``cgroup_parent`` option,
default ``dockyard``, for a relative ``linux.cgroupsPath``) and removed by the
shim when the init ends, and again by :meth:`exec_delete`.
"""

import hashlib
import json
import os
import shutil
import signal as _signal
import sys
import threading

from dockyard.errors import ContainerNotFound, ExecError
from dockyard.hookspecs import hookimpl
from dockyard.shim import client as shim

from . import checks

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.path.dirname(os.path.abspath(shim.__file__))
# Shims are forked by a zygote, a stdlib-only interpreter (-E -S: no site, no
# venv, no env tweaks) started once per daemon with every shim module imported.
ZYGOTE_CMD = [sys.executable, "-E", "-S", "-c",
              f"import sys; sys.path[0:1] = [{HERE!r}, {KIT!r}]; import spawn, zygote; "
              "zygote.main(sys.argv, spawn.spawn, spawn.finish)"]


class NativeDriver:
    def __init__(self):
        self.home = None
        self.options = {}
        self._zygote = None
        self._cgroups = None

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
        self.home = str(home)
        self.options = dict(options or {})
        parent = str(self.options.get("cgroup_parent", "dockyard")).strip("/")
        if not parent or ".." in parent.split("/"):
            raise ExecError(f"exec option cgroup_parent {parent!r} must be a relative cgroup path")
        self.cgroup_parent = parent
        self._zygote = shim.Zygote(ZYGOTE_CMD, os.path.join(self.home, "zygote.log"))

    # ---------------------------------------------------------------- helpers
    def _dir(self, id):
        if self.home is None:
            raise ExecError("native exec driver used before exec_init")
        if not id or "/" in id or id in (".", ".."):
            raise ExecError(f"invalid container id {id!r}")
        return os.path.join(self.home, id)

    def _load(self, id):
        sdir = self._dir(id)
        st = shim.read_json(os.path.join(sdir, "state.json"))
        if st is None:
            raise ContainerNotFound(f"No such container: {id}")
        return sdir, st

    def _exec_dir(self, id, exec_id):
        sdir, _ = self._load(id)
        if not exec_id or "/" in exec_id or exec_id in (".", ".."):
            raise ExecError(f"invalid exec id {exec_id!r}")
        edir = os.path.join(sdir, "exec", exec_id)
        if not os.path.isdir(edir):
            raise ContainerNotFound(f"No such exec instance: {exec_id}")
        return edir

    def _proc_dir(self, id, exec_id):
        return self._load(id)[0] if exec_id is None else self._exec_dir(id, exec_id)

    def _cgroup(self, st):
        if not st.get("cgroup"):
            return None
        from dockyard import cgroups

        if self._cgroups is None:
            self._cgroups = cgroups.detect()
        return cgroups.Cgroup(self._cgroups, st["cgroup"]["path"])

    def _current(self, id, sdir, st):
        state = shim.current(sdir, f"container {id}")
        if state["status"] == "running" and _frozen(self._cgroup(st)):
            state["status"] = "paused"
        return state

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    def exec_create(self, id, bundle, log_path, stdin=None):
        sdir = self._dir(id)
        bundle = os.path.abspath(bundle)
        cfg = checks.load_config(id, bundle)
        if os.path.isdir(sdir):
            old = shim.read_json(os.path.join(sdir, "state.json")) or {}
            if self._current(id, sdir, old)["status"] in ("running", "paused"):
                raise ExecError(f"container {id} already exists and is running")
            self._forget(id, sdir, old)
        if stdin not in (None, "open", "once"):
            raise ExecError(f"container {id}: stdin must be None, 'open' or 'once', not {stdin!r}")
        lx = cfg.get("linux") or {}
        seccomp = self._seccomp(id, lx.get("seccomp"))
        os.makedirs(sdir, 0o700)
        st = {"id": id, "bundle": bundle, "log_path": os.path.abspath(log_path), "stdin": stdin,
              "terminal": bool(cfg["process"].get("terminal")), "seccomp": seccomp,
              "console_size": checks.console_size(cfg["process"]), "created_at": shim.now()}
        try:
            st["cgroup"] = self._make_cgroup(id, lx)
            shim.write_json(os.path.join(sdir, "state.json"), st)
        except BaseException:
            self._forget(id, sdir, st)
            raise

    def _seccomp(self, id, profile):
        """Compile ``linux.seccomp`` once per distinct profile: ``{"path": its BPF
        file, "flags": for seccomp(2)}``."""
        if not profile:
            return None
        from . import seccomp

        raw = json.dumps(profile, sort_keys=True).encode()
        path = os.path.join(self.home, "seccomp", hashlib.sha256(raw).hexdigest() + ".bpf")
        if not os.path.exists(path):
            try:
                bpf = seccomp.compile_bpf(profile)
            except (ValueError, OSError) as exc:
                raise ExecError(f"container {id}: config.json: linux.seccomp: {exc}") from None
            os.makedirs(os.path.dirname(path), 0o700, exist_ok=True)
            tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
            with open(tmp, "wb") as fh:
                fh.write(bpf)
            os.replace(tmp, path)
        return {"path": path, "flags": seccomp.filter_flags(profile)}

    def _make_cgroup(self, id, lx):
        from dockyard import cgroups

        rel = (lx.get("cgroupsPath") or id).strip()
        path = rel.strip("/") if rel.startswith("/") else f"{self.cgroup_parent}/{rel.strip('/')}"
        if ".." in path.split("/"):
            raise ExecError(f"container {id}: config.json: linux.cgroupsPath {rel!r} must not contain '..'")
        if self._cgroups is None:
            self._cgroups = cgroups.detect()
        cg = cgroups.Cgroup(self._cgroups, path)
        try:
            cg.create(lx.get("resources") or {})
        except cgroups.CgroupError as exc:
            raise ExecError(f"container {id}: linux.resources: {exc}") from None
        return {"path": path, "procs": cg.procs_files(), "dirs": cg.dirs(), "mounts": cg.mounts(),
                "oom_file": cg.oom_file()}

    @hookimpl
    def exec_start(self, id):
        sdir, st = self._load(id)
        if os.path.exists(os.path.join(sdir, "running.json")):
            raise ExecError(f"container {id} has already been started")
        return shim.start(self._zygote, sdir, f"container {id}")

    @hookimpl
    def exec_state(self, id):
        sdir, st = self._load(id)
        return self._current(id, sdir, st)

    @hookimpl
    def exec_kill(self, id, signal):
        sdir, st = self._load(id)
        shim.kill(sdir, signal, f"container {id}")
        cg = self._cgroup(st)
        if int(signal) == _signal.SIGKILL and _frozen(cg):
            cg.thaw()  # a frozen process cannot die

    @hookimpl
    def exec_wait(self, id, timeout):
        sdir, st = self._load(id)
        shim.wait(sdir, timeout)
        return self._current(id, sdir, st)

    @hookimpl
    def exec_delete(self, id):
        try:
            sdir, st = self._load(id)
        except ContainerNotFound:
            if self.home is not None and os.path.isdir(self._dir(id)):
                shutil.rmtree(self._dir(id), ignore_errors=True)
            return None
        if self._current(id, sdir, st)["status"] in ("running", "paused"):
            self.exec_kill(id=id, signal=_signal.SIGKILL)  # not meant to happen: never leak
            shim.wait(sdir, 10)
        self._forget(id, sdir, st)
        return None

    def _forget(self, id, sdir, st):
        cg = self._cgroup(st)
        if cg is not None:
            cg.destroy()
        shutil.rmtree(sdir, ignore_errors=True)

    @hookimpl
    def exec_restore(self, id):
        try:
            sdir, st = self._load(id)
        except ContainerNotFound:
            return None
        return self._current(id, sdir, st)

    # ---------------------------------------------------------- extra processes
    @hookimpl
    def exec_exec(self, id, exec_id, process, log_path, stdin=None):
        sdir, st = self._load(id)
        state = self._current(id, sdir, st)
        if state["status"] != "running":
            raise ExecError(f"container {id} is not running" if state["status"] != "paused"
                            else f"container {id} is paused, unpause the container before exec")
        checks.check_process(f"exec {exec_id}", process)
        edir = os.path.join(sdir, "exec", str(exec_id))
        if not exec_id or "/" in str(exec_id) or os.path.exists(edir):
            raise ExecError(f"exec id {exec_id!r} is invalid or already used")
        os.makedirs(edir, 0o700)
        shim.write_json(os.path.join(edir, "state.json"), {
            "id": id, "exec_id": exec_id, "log_path": os.path.abspath(log_path), "stdin": stdin,
            "terminal": bool(process.get("terminal")), "console_size": checks.console_size(process),
            "seccomp": st.get("seccomp"), "cgroup": {"procs": (st.get("cgroup") or {}).get("procs") or []},
            "exec": {"pid": state["pid"], "process": process}})
        try:
            pid = shim.start(self._zygote, edir, f"exec {exec_id} in container {id}")
        except ExecError:
            shutil.rmtree(edir, ignore_errors=True)
            raise
        return pid

    @hookimpl
    def exec_exec_wait(self, id, exec_id, timeout):
        edir = self._exec_dir(id, exec_id)
        if timeout != 0:
            shim.wait(edir, timeout)
        return shim.current(edir, f"exec {exec_id}")

    @hookimpl
    def exec_attach_stdin(self, id, exec_id):
        return shim.attach_stdin(self._proc_dir(id, exec_id), f"container {id}" if exec_id is None
                                 else f"exec {exec_id}")

    @hookimpl
    def exec_resize(self, id, exec_id, height, width):
        shim.resize(self._proc_dir(id, exec_id), height, width,
                    f"container {id}" if exec_id is None else f"exec {exec_id}")

    # ------------------------------------------------------------------ cgroups
    def _running_cgroup(self, id, verb):
        sdir, st = self._load(id)
        cg = self._cgroup(st)
        if cg is None or not cg.exists():
            raise ExecError(f"cannot {verb} container {id}: it is not running")
        return cg

    @hookimpl
    def exec_pause(self, id):
        from dockyard import cgroups

        try:
            self._running_cgroup(id, "pause").freeze()
        except cgroups.CgroupError as exc:
            raise ExecError(f"pausing container {id}: {exc}") from None

    @hookimpl
    def exec_resume(self, id):
        from dockyard import cgroups

        try:
            self._running_cgroup(id, "unpause").thaw()
        except cgroups.CgroupError as exc:
            raise ExecError(f"unpausing container {id}: {exc}") from None

    @hookimpl
    def exec_pids(self, id):
        from dockyard import cgroups

        sdir, st = self._load(id)
        cg = self._cgroup(st)
        try:
            pids = cg.pids() if cg is not None and cg.exists() else []
        except cgroups.CgroupError:
            pids = []  # it ended meanwhile
        state = self._current(id, sdir, st)
        init = state["pid"] if state["status"] in ("running", "paused") else None
        return ([init] if init in pids else []) + sorted(p for p in pids if p != init)

    @hookimpl
    def exec_stats(self, id):
        from dockyard import cgroups

        sdir, st = self._load(id)
        cg = self._cgroup(st)
        try:
            return cg.stats() if cg is not None and cg.exists() else {}
        except cgroups.CgroupError:
            return {}  # it ended meanwhile

    @hookimpl
    def exec_update(self, id, resources):
        from dockyard import cgroups

        sdir, st = self._load(id)
        cg = self._cgroup(st)
        if cg is None:
            raise ExecError(f"container {id} has no cgroup to update")
        try:
            if cg.exists():
                cg.update(resources)
        except cgroups.CgroupError as exc:
            raise ExecError(f"updating container {id}: {exc}") from None
        path = os.path.join(st["bundle"], "config.json")  # so the next start keeps them
        cfg = shim.read_json(path)
        if cfg is not None:
            res = cfg.setdefault("linux", {}).setdefault("resources", {})
            for key, value in resources.items():
                res[key] = {**res.get(key, {}), **value} if isinstance(value, dict) else value
            shim.write_json(path, cfg)


def _frozen(cg):
    """Is the cgroup frozen?  False when there is none, or it is going away."""
    from dockyard import cgroups

    try:
        return cg is not None and cg.exists() and cg.frozen()
    except cgroups.CgroupError:
        return False
