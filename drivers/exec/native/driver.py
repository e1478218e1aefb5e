"""The ``native`` exec driver: runs OCI bundles itself, libcontainer-style.

Each started process (a container's init, or an extra process from
:meth:`exec_exec`) is supervised by a shim (the ``dockyard.driverkit.shim`` kit with this
driver's :mod:`.spawn`) in its own session, which outlives the daemon.  State:

``<home>/<id>/``             the container: ``state.json`` (bundle, log, cgroup,
                             seccomp filter), the shim's files (see ``dockyard.driverkit.shim``)
``<home>/<id>/exec/<eid>/``  one extra process, the same files
``<home>/seccomp/<sha>.bpf`` compiled seccomp filters, shared by equal profiles

Cgroups are made at :meth:`exec_create` (under the ``cgroup_parent`` option,
default ``dockyard``, for a relative ``linux.cgroupsPath``) and removed by the
shim when the init ends, and again by :meth:`exec_delete`.
"""

import hashlib
import json
import logging
import os
import sys
import threading

from dockyard.errors import ExecError
from dockyard.hookspecs import hookimpl
from dockyard.driverkit.shim import client as shim
from dockyard.driverkit.shim.driver import ShimDriver

from . import checks

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.path.dirname(os.path.abspath(shim.__file__))
# Shims are forked by a zygote, a stdlib-only interpreter (-E -S: no site, no
# venv, no env tweaks) started once per daemon with every shim module imported.
ZYGOTE_CMD = [sys.executable, "-E", "-S", "-c",
              f"import sys; sys.path[0:1] = [{HERE!r}, {KIT!r}]; import spawn, zygote; "
              "zygote.main(sys.argv, spawn.spawn, spawn.finish)"]


# supervisor = "hub": one keeper (and its hub) per daemon home instead of a shim per process
HUB_CMD = [sys.executable, "-E", "-S", "-c",
           f"import sys; sys.path[0:1] = [{HERE!r}, {KIT!r}]; import spawn, keeper; "
           "keeper.main(sys.argv, spawn.spawn, spawn.finish)"]


class NativeDriver(ShimDriver):
    name = "native"
    zygote_cmd = ZYGOTE_CMD
    hub_cmd = HUB_CMD
    default_supervisor = "hub"

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
        self.init_home(home, options)

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    def exec_create(self, id, bundle, log_path, stdin=None, log=None):
        bundle = os.path.abspath(bundle)
        cfg = checks.load_config(id, bundle)
        sdir = self.clear_for_create(id, stdin)
        lx = cfg.get("linux") or {}
        seccomp = self._seccomp(id, lx.get("seccomp"))
        os.makedirs(sdir, 0o700)
        st = {"id": id, "bundle": bundle, "log_path": os.path.abspath(log_path), "stdin": stdin,
              "terminal": bool(cfg["process"].get("terminal")), "seccomp": seccomp,
              "console_size": checks.console_size(cfg["process"]), "created_at": shim.now(), "log": log}
        try:
            st["cgroup"] = self._make_cgroup(id, lx)
            shim.write_json(os.path.join(sdir, "state.json"), st)
        except BaseException:
            self.forget(id, sdir, st)
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
        from dockyard.driverkit import cgroups

        path = self.cgroup_path(id, lx)
        cg = cgroups.Cgroup(self.layout, path)
        try:
            cg.create(lx.get("resources") or {})
        except cgroups.CgroupError as exc:
            raise ExecError(f"container {id}: linux.resources: {exc}") from None
        return {"path": path, "procs": cg.procs_files(), "dirs": cg.dirs(), "mounts": cg.mounts(),
                "oom_file": cg.oom_file()}

    @hookimpl
    def exec_start(self, id):
        sdir, st = self.load(id)
        if os.path.exists(os.path.join(sdir, "running.json")):
            raise ExecError(f"container {id} has already been started")
        try:
            return shim.start(self.launcher(st), sdir, self.what(id))
        except BaseException:
            self._kill_strays(st)
            raise

    def _kill_strays(self, st):
        """A start that failed leaves nothing running in the container's cgroup:
        e.g. a hub killed while it started the container would leave the child
        its stager made running unsupervised (orphaned to the keeper, not held)."""
        cg = self.cgroup_of(st)
        if cg is None:
            return
        try:
            if cg.exists():
                cg.kill_all(timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - the start's own error is the one to report
            logging.getLogger("dockyard.exec.native").warning(
                "killing what a failed start left in %s: %s", st["cgroup"]["path"], exc)

    # ---------------------------------------------------------- extra processes
    @hookimpl
    def exec_exec(self, id, exec_id, process, log_path, stdin=None):
        checks.check_process(f"exec {exec_id}", process)

        def extra(st, state):
            return {"seccomp": st.get("seccomp"),
                    "cgroup": {"procs": (st.get("cgroup") or {}).get("procs") or []},
                    "exec": {"pid": state["pid"], "process": process}}
        return self.start_exec(id, exec_id, process, log_path, stdin, extra)

    # ------------------------------------------------------------------ cgroups
    @hookimpl
    def exec_update(self, id, resources):
        from dockyard.driverkit import cgroups

        sdir, st = self.load(id)
        cg = self.cgroup_of(st)
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
