"""The ``lxc`` exec driver: the bundle the native driver runs, translated to LXC.

Each started process (a container's init, or an extra process from
:meth:`exec_exec`) is supervised by a shim (the ``dockyard.driverkit.shim`` kit with this
driver's :mod:`.lxcspawn`) in its own session, which outlives the daemon.  The
init's shim runs ``lxc-start -F`` (LXC's monitor) as its child; an extra
process is attached by the shim itself through liblxc (:mod:`.attach`).  State:

``<home>/<id>/``             the container: ``state.json``, the shim's files
``<home>/<id>/lxc/``         LXC's: ``config``, ``lxc.log``, ``seccomp.lxc``, ``oom``
                             (the stop hook's copy of memory.oom_control), ``hook-error``
                             (the lxcpath is ``<home>/<id>``, the container's name ``lxc``)
``<home>/<id>/exec/<eid>/``  one extra process, the shim's files

Cgroups: LXC makes the container's (``lxc.cgroup.dir.container``: a relative
``linux.cgroupsPath`` under the ``cgroup_parent`` option, default
``dockyard``) when it starts and removes it when it stops; its monitor's go to
``<path>.lxc/``.  The shim removes both after lxc-start exits, and
:meth:`exec_delete` again, with LXC's lock directory under ``/run/lxc/lock``.
So unlike the native driver, a created container holds no cgroup until it runs.
"""

import fcntl
import os
import shutil
import sys

from dockyard.errors import ExecError
from dockyard.hookspecs import hookimpl
from dockyard.driverkit.shim import client as shim
from dockyard.driverkit.shim.driver import ShimDriver

from . import translate

HERE = os.path.dirname(os.path.abspath(__file__))
KIT = os.path.dirname(os.path.abspath(shim.__file__))
# Shims are forked by the kit's zygote, a stdlib-only interpreter (-E -S: no
# site, no venv, no env tweaks) started once per daemon with the shim modules imported.
ZYGOTE_CMD = [sys.executable, "-E", "-S", "-c",
              f"import sys; sys.path[0:1] = [{HERE!r}, {KIT!r}]; import lxcspawn, zygote; "
              "zygote.main(sys.argv, lxcspawn.spawn, lxcspawn.finish)"]
LXC_START = "/usr/bin/lxc-start"
LXC_NAME = "lxc"
LOCK_ROOT = "/run/lxc/lock"

#: What this driver refuses that the native driver does: feature -> a fragment of
#: the ExecError's text (every refusal also says "not supported by the lxc exec driver").
UNSUPPORTED = {
    "linux.namespaces user, linux.uidMappings/gidMappings": "not supported by the lxc exec driver: user namespaces",
    "process.capabilities.inheritable": "process.capabilities.inheritable: not supported by the lxc exec driver",
    "process.capabilities.ambient": "process.capabilities.ambient: not supported by the lxc exec driver",
    "process.env container=<not lxc>": "LXC always sets container=lxc",
    "process.env LD_*/LXC_* value with a newline or edge white space": "changes lxc-start itself",
    "process.cwd with edge white space": "process.cwd: not supported by the lxc exec driver",
    "domainname": "domainname: not supported by the lxc exec driver",
    "hostname without a UTS namespace": "a hostname needs a UTS namespace",
    "linux.rootfsPropagation other than rslave": "LXC always makes the root rslave",
    "mounts: devpts on /dev/pts with other options": "LXC mounts /dev/pts with",
    "mounts: cgroup without a cgroup namespace": "a cgroup mount without a cgroup namespace",
    "mounts: cgroup elsewhere than /sys/fs/cgroup": "LXC mounts them on /sys/fs/cgroup",
    "mounts: LXC's own options (create=, optional, relative)": "means something else to LXC",
    "process.terminal without a devpts on /dev/pts": "allocates the terminal in the container's devpts",
    "linux.devices: FIFOs": "devices are bind mounts of the host's nodes",
    "linux.devices: a node the host does not have": "LXC cannot make device nodes of its own",
    "linux.devices: fileMode/uid/gid other than the host node's": "differs from the host's",
    "linux.resources.blockIO.weightDevice[].leafWeight": "leafWeight: not supported by the lxc exec driver",
    "linux.seccomp: SCMP_ACT_KILL_PROCESS, SCMP_ACT_LOG, SCMP_ACT_TRACE":
        "LXC profiles know kill, trap, errno and allow",
    "linux.seccomp.flags": "linux.seccomp.flags: not supported by the lxc exec driver",
    # the conformance kit's feature: a profile without "architectures" filters only the
    # native one (other architectures' calls kill), and LXC always filters x86, x32 too
    "seccomp_profile": "linux.seccomp.architectures: not supported by the lxc exec driver",
    "exec: capabilities other than the container's or all": "an extra process gets its container's capabilities",
    "exec: noNewPrivileges off in a no_new_privs container": "noNewPrivileges: not supported by the lxc exec driver",
}


class LxcDriver(ShimDriver):
    name = "lxc"
    zygote_cmd = ZYGOTE_CMD

    # ------------------------------------------------------------------ setup
    @hookimpl
    def exec_supported(self, home, options):
        if not sys.platform.startswith("linux"):
            return f"lxc exec driver needs Linux (running on {sys.platform})"
        if not os.access(LXC_START, os.X_OK):
            return "lxc-start not found (apt-get install lxc)"
        if os.geteuid() != 0:
            return f"lxc exec driver needs root (running as uid {os.geteuid()})"
        if not hasattr(os, "pidfd_open"):
            return "lxc exec driver needs os.pidfd_open (Python 3.9+, Linux 5.3+)"
        try:
            import ctypes

            lib = ctypes.CDLL("liblxc.so.1")
            lib.lxc_get_version.restype = ctypes.c_char_p
            version = lib.lxc_get_version().decode()
        except (OSError, AttributeError) as exc:
            return f"lxc exec driver cannot load liblxc.so.1 ({exc}; apt-get install liblxc1)"
        if tuple(int(x) if x.isdigit() else 0 for x in version.split(".")[:3]) < (4, 0, 9):
            return f"lxc exec driver needs LXC 4.0.9 or newer (liblxc {version})"
        from dockyard.driverkit import cgroups

        try:
            layout = cgroups.detect()
        except cgroups.CgroupError as exc:
            return f"lxc exec driver needs cgroups: {exc}"
        if layout.version != "v1":
            return "lxc exec driver translates resources to cgroup v1 keys only (this host uses cgroup v2)"
        return None

    @hookimpl
    def exec_init(self, home, options):
        self.init_home(home, options)

    # ---------------------------------------------------------------- helpers
    def cgroup_of(self, st, key="path"):
        """The container's cgroup (``key="lxc"``: its monitor's)."""
        if not st or not st.get("cgroup"):
            return None
        from dockyard.driverkit import cgroups

        return cgroups.Cgroup(self.layout, st["cgroup"][key])

    def _where_to(self, sdir, path):
        return {"dir": os.path.join(sdir, LXC_NAME), "cgroup": path, "lxc_cgroup": path + ".lxc",
                "layout": self.layout}

    def _hierarchies(self):
        return list(self.layout.hierarchies) + ([self.layout.unified] if self.layout.unified else [])

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    def exec_create(self, id, bundle, log_path, stdin=None, log=None):
        bundle = os.path.abspath(bundle)
        cfg = translate.load_config(id, bundle)
        sdir = self.clear_for_create(id, stdin)
        path = self.cgroup_path(id, cfg.get("linux") or {})
        translate.plan(id, cfg, bundle, self._where_to(sdir, path))  # every refusal, before anything is made
        busy = [os.path.join(h, p) for h in self._hierarchies() for p in (path, path + ".lxc")
                if os.path.isdir(os.path.join(h, p))]
        if busy:
            raise ExecError(f"container {id}: cgroup {busy[0]} already exists (another container's?)")
        os.makedirs(os.path.join(sdir, LXC_NAME), 0o700)
        st = {"id": id, "bundle": bundle, "log_path": os.path.abspath(log_path), "stdin": stdin,
              "terminal": bool(cfg["process"].get("terminal")), "created_at": shim.now(), "log": log,
              "console_size": translate.console_size(cfg["process"]),
              "lxc": {"path": sdir, "name": LXC_NAME, "log": os.path.join(sdir, LXC_NAME, "lxc.log")},
              "cgroup": {"path": path, "lxc": path + ".lxc",
                         "dirs": [os.path.join(h, path) for h in self._hierarchies()],
                         "lxc_dirs": [os.path.join(h, path + ".lxc") for h in self._hierarchies()],
                         "oom": os.path.join(sdir, LXC_NAME, "oom")}}
        shim.write_json(os.path.join(sdir, "state.json"), st)

    @hookimpl
    def exec_start(self, id):
        sdir, st = self.load(id)
        if os.path.exists(os.path.join(sdir, "running.json")):
            raise ExecError(f"container {id} has already been started")
        cfg = translate.load_config(id, st["bundle"])  # again: exec_update may have changed it
        p = translate.plan(id, cfg, st["bundle"], self._where_to(sdir, st["cgroup"]["path"]))
        bad = translate.script_without_interpreter(cfg, st["bundle"])
        if bad is not None:
            raise ExecError(f"container {id}: {bad}", exit_code=bad.exit_code)
        ldir = os.path.join(sdir, LXC_NAME)
        if p.seccomp is not None:
            _write(os.path.join(ldir, "seccomp.lxc"), p.seccomp)
        _write(os.path.join(ldir, "config"), p.config)
        st["terminal"] = p.terminal
        st["console_size"] = translate.console_size(cfg["process"])
        st["lxc"].update(argv=p.argv, env=p.env, umask=p.umask, mkdirs=p.mkdirs, own_pidns=p.own_pidns)
        shim.write_json(os.path.join(sdir, "state.json"), st)
        return shim.start(self.zygote, sdir, self.what(id))

    def forget(self, id, sdir, st):
        from dockyard.driverkit import cgroups

        problem = None
        if st and st.get("cgroup"):
            for key in ("path", "lxc"):
                try:
                    self.cgroup_of(st, key).destroy()
                except cgroups.CgroupError as exc:
                    problem = problem or exc
            for d in (st["cgroup"].get("dirs") or []) + (st["cgroup"].get("lxc_dirs") or []):
                _rmdir_tree(d)  # the cgroup2 (unified) ones, which the v1 manager leaves alone
        shutil.rmtree(sdir, ignore_errors=True)
        _remove_locks(sdir)
        if problem is not None:
            raise ExecError(f"container {id}: removing its cgroups: {problem}")

    # ---------------------------------------------------------- extra processes
    @hookimpl
    def exec_exec(self, id, exec_id, process, log_path, stdin=None):
        where = f"exec {exec_id}"
        translate.check_process(where, process)
        sdir, st = self.load(id)
        drop = self._exec_caps(id, where, st, process)

        def extra(st, state):
            return {"exec": {"pid": state["pid"], "process": process, "drop_caps": drop,
                             "lxc": {"path": st["lxc"]["path"], "name": st["lxc"]["name"]}}}
        return self.start_exec(id, exec_id, process, log_path, stdin, extra)

    def _exec_caps(self, id, where, st, process):
        """liblxc gives an attached process the container's capabilities (its
        lxc.cap.keep) or, without dropping, the shim's (all): True to drop."""
        cfg = translate.load_config(id, st["bundle"])
        base = cfg["process"]
        if process.get("noNewPrivileges") is not None and not process["noNewPrivileges"] \
                and base.get("noNewPrivileges"):
            raise ExecError(f"{where}: process.noNewPrivileges: not supported by the lxc exec driver: the "
                            "container runs with no_new_privs, which liblxc gives every attached process")
        caps = process.get("capabilities")
        if caps is None:
            return base.get("capabilities") is not None
        for kind in ("inheritable", "ambient"):
            if caps.get(kind):
                raise ExecError(f"{where}: process.capabilities.{kind}: not supported by the lxc exec driver")
        want = set(translate.cap_names(where, caps.get("bounding")))
        mine = (base.get("capabilities") or {}).get("bounding")
        if base.get("capabilities") is not None and want == set(translate.cap_names(where, mine)):
            return True
        with open("/proc/self/status") as fh:
            held = next(int(line.split()[1], 16) for line in fh if line.startswith("CapBnd:"))
        everything = {translate.CAPS[i].lower() for i in range(len(translate.CAPS)) if held >> i & 1}
        if want == everything:
            return False
        raise ExecError(f"{where}: process.capabilities: not supported by the lxc exec driver: an extra process "
                        "gets its container's capabilities (or all of them, privileged), not "
                        f"{sorted(want)}")

    # ------------------------------------------------------------------ cgroups
    @hookimpl
    def exec_update(self, id, resources):
        from dockyard.driverkit import cgroups

        sdir, st = self.load(id)
        path = os.path.join(st["bundle"], "config.json")
        cfg = shim.read_json(path)
        if cfg is None:
            raise ExecError(f"container {id}: cannot read {path}")
        res = dict((cfg.get("linux") or {}).get("resources") or {})
        for key, value in resources.items():
            res[key] = {**res.get(key, {}), **value} if isinstance(value, dict) else value
        cfg.setdefault("linux", {})["resources"] = res
        translate.plan(id, cfg, st["bundle"], self._where_to(sdir, st["cgroup"]["path"]))  # refusals first
        cg = self.cgroup_of(st)
        try:
            if cg.exists():
                cg.update(resources)
        except cgroups.CgroupError as exc:
            raise ExecError(f"updating container {id}: {exc}") from None
        shim.write_json(path, cfg)  # so the next start keeps them


def _write(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _rmdir_tree(top):
    if not os.path.isdir(top):
        return
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
        try:
            os.rmdir(dirpath)
        except OSError:
            pass


def _remove_locks(lxcpath):
    """LXC's lock files for ``lxcpath`` (``/run/lxc/lock/<lxcpath>/.<name>``) and
    the directories above them that became empty, under the exclusive flock of
    ``LOCK_ROOT``: a start holds it shared until lxc-start has made its own lock
    directory, which may share those parents (lxcspawn's ``_hold_lock_root``)."""
    try:
        guard = os.open(LOCK_ROOT, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)
        lock = os.path.normpath(LOCK_ROOT + "/" + os.path.abspath(lxcpath))
        shutil.rmtree(lock, ignore_errors=True)
        cur = os.path.dirname(lock)
        while cur.startswith(LOCK_ROOT + "/"):
            try:
                os.rmdir(cur)
            except OSError:
                break
            cur = os.path.dirname(cur)
    finally:
        os.close(guard)
