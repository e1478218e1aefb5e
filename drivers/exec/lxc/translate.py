"""An OCI bundle's ``config.json`` -> an LXC 5 container configuration (daemon side).

:func:`load_config` reads and checks ``config.json``; :func:`plan` turns it into a
:class:`Plan`: the text of the LXC config file plus what ``lxc-start`` needs
besides (its command line and environment, the umask, directories to make).
Everything LXC cannot do exactly as the runtime spec (and the native driver)
does is refused with an :class:`~dockyard.errors.ExecError` naming the field and
saying "not supported by the lxc exec driver: ...".  The one difference LXC
imposes and that cannot be refused is the environment variable
``container=lxc``, which LXC gives every container's init (a bundle that sets
``container`` to anything else is refused).

Mapping (runtime spec -> LXC key):

* ``root.path``, ``root.readonly`` -> ``lxc.rootfs.path = dir:...``; read-only
  roots are remounted read-only by an ``lxc.hook.mount`` after all mounts, as
  runc does (so mount points can still be made)
* ``process.args`` -> the command after ``lxc-start ... --`` (exact argv)
* ``process.env`` -> ``lxc.environment`` (values LXC's config syntax cannot
  carry, with newlines or edge whitespace, are inherited from lxc-start's own
  environment by name)
* ``process.cwd``, ``user`` -> ``lxc.init.cwd``, ``lxc.init.uid``/``gid``/
  ``groups``; ``user.umask`` -> lxc-start's umask, which the init inherits
* ``process.capabilities.bounding`` -> ``lxc.cap.keep`` (effective and
  permitted follow from it as with runc; inheritable/ambient are refused)
* ``noNewPrivileges``, ``oomScoreAdj`` -> ``lxc.no_new_privs``,
  ``lxc.proc.oom_score_adj``; ``rlimits`` -> ``prlimit --pid`` in an
  ``lxc.hook.start-host``, once the init is set up (``lxc.prlimit.*`` would
  apply to LXC's own setup of the container too)
* ``terminal`` -> LXC's console, allocated in the container's own devpts
* ``hostname`` -> ``lxc.uts.name``; ``linux.namespaces`` ->
  ``lxc.namespace.keep`` (what is not private) and ``lxc.namespace.share.*``
  (joined by path); a private network gets ``lxc.net.0.type = empty`` (lo up)
* ``mounts`` (:mod:`.mounts`) -> ``lxc.mount.entry`` in order (with a terminal, the devpts on
  /dev/pts is LXC's own, ``lxc.pty.max``; ``cgroup`` is ``lxc.mount.auto =
  cgroup:ro|rw:force``); after a /dev mount the default devices as bind mounts
  of the host's nodes (not ``lxc.autodev``, which adds a tmpfs and a fake
  boot_id) and /dev/ptmx -> pts/ptmx (an ``lxc.hook.mount``); then
  ``maskedPaths`` and ``readonlyPaths`` as entries
* ``linux.devices`` -> bind mounts of the host's node of that number
* ``linux.resources`` -> ``lxc.cgroup.*`` (:mod:`.resources`),
  ``linux.cgroupsPath`` -> ``lxc.cgroup.dir.container``
* ``linux.seccomp`` -> ``lxc.seccomp.profile`` (:mod:`.seccomp`),
  ``linux.sysctl`` -> written by the ``lxc.hook.mount`` (``lxc.sysctl.*`` would
  come after the read-only /proc/sys)
"""

import os
import stat

from dockyard.errors import ExecError
from dockyard.driverkit.shim import oci, rootpath
from dockyard.driverkit.shim.runtime import CAPS, cap_numbers

from . import mounts as _mounts
from . import resources as _resources
from . import seccomp as _seccomp
from .mounts import refuse as _no
from .mounts import sh as _sh
from .mounts import step as _step

#: OCI namespace type -> LXC's (/proc/PID/ns) name; user and time are refused
NAMESPACES = {"pid": "pid", "network": "net", "mount": "mnt", "ipc": "ipc", "uts": "uts", "cgroup": "cgroup"}
INFINITY = 2**64 - 1
# variables that change lxc-start itself, so they are never handed over through its environment
UNSAFE_ENV = ("LD_", "LXC_", "GCONV_PATH", "GLIBC_TUNABLES", "MALLOC_", "HOSTALIASES", "LOCALDOMAIN",
              "RES_OPTIONS", "NLSPATH")
LXC_START_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
PRLIMIT = "/usr/bin/prlimit"


class Plan:
    """What starting one container takes: ``config`` (LXC config text), ``seccomp``
    (LXC profile text or None), ``argv`` (the init's command), ``env`` (lxc-start's
    environment), ``umask``, ``mkdirs`` (host directories to make first: the cwd),
    ``own_pidns`` and ``terminal``."""

    def __init__(self):
        self.lines, self.seccomp, self.argv, self.env = [], None, [], {"PATH": LXC_START_PATH}
        self.umask, self.mkdirs, self.own_pidns, self.terminal = 0o022, [], False, False
        self.mount_steps = []  # shell commands of the lxc.hook.mount, in order
        self.lxc_dir = None  # where the hooks leave their error

    def add(self, key, value):
        value = str(value)
        if "\n" in value or "\0" in value:
            raise ExecError(f"{key}: {value!r}: a value with a newline cannot be written to an LXC config")
        self.lines.append(f"{key} = {value}")

    @property
    def config(self):
        return "\n".join(self.lines) + "\n"


# ----------------------------------------------------------------- reading
def load_config(id, bundle):
    """Read ``bundle/config.json`` and check what every driver checks
    (:mod:`dockyard.driverkit.shim.oci`); the LXC-specific refusals come from :func:`plan`."""
    return oci.load_config(id, bundle)


def cap_names(field, names):
    """``["CAP_CHOWN", ...]`` -> LXC's names (``chown``), checked, in order."""
    out = []
    for name in names or ():
        try:
            (number,) = cap_numbers([name])
        except ValueError as exc:
            raise ExecError(f"{field}: {exc}") from None
        if CAPS[number].lower() not in out:
            out.append(CAPS[number].lower())
    return out


check_process = oci.check_process
console_size = oci.console_size


def script_without_interpreter(cfg, bundle):
    """The ExecError native exec would give for ``process.args[0]`` being a file
    that is neither ELF nor ``#!``: LXC's execvp() runs such a file with /bin/sh
    instead.  Judged on the rootfs; None when fine or when a mount covers it."""
    proc = cfg["process"]
    root = os.path.realpath(os.path.join(bundle, cfg["root"]["path"]))
    name = proc["args"][0]
    env = dict(item.partition("=")[::2] for item in proc.get("env") or () if "=" in item)
    covered = [os.path.normpath(m["destination"]) for m in cfg.get("mounts") or ()]
    dirs = [""] if "/" in name else (env.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
                                     ).split(":")
    for d in dirs:
        path = os.path.normpath(os.path.join(proc.get("cwd") or "/", d, name))
        if any(path == c or path.startswith(c.rstrip("/") + "/") for c in covered):
            return None  # the file is on a mount: whatever it is, it is not known here
        host = rootpath.join(root, path)
        try:
            st = os.stat(host)
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
            continue
        try:
            with open(host, "rb") as fh:
                head = fh.read(4)
        except OSError:
            return None
        if head[:2] == b"#!" or head == b"\x7fELF":
            return None
        return ExecError(f'exec: "{name}": exec format error', exit_code=126)
    return None


# ------------------------------------------------------------------ plan
def plan(id, cfg, bundle, where_to):
    """The :class:`Plan` for container ``id``.  ``where_to``: ``{"dir": the
    container's state directory (LXC log, profile, OOM record), "cgroup": the
    container's cgroup path, "lxc_cgroup": the cgroup tree of its LXC monitor,
    "layout": dockyard.driverkit.cgroups layout}``."""
    where = f"container {id}: config.json"
    p = Plan()
    lx = cfg.get("linux") or {}
    proc = cfg["process"]
    _refuse_unsupported(where, cfg, lx, proc)
    root = os.path.realpath(os.path.join(bundle, cfg["root"]["path"]))
    sdir = p.lxc_dir = where_to["dir"]
    log = os.path.join(sdir, "lxc.log")
    p.add("lxc.rootfs.path", "dir:" + root)
    p.add("lxc.rootfs.managed", 0)
    p.add("lxc.log.file", log)
    p.add("lxc.log.level", "INFO")  # the init's exit status is logged at INFO
    p.add("lxc.hook.version", 1)
    p.add("lxc.apparmor.profile", "unconfined")
    p.add("lxc.keyring.session", 0)
    p.add("lxc.tty.max", 0)
    types = _namespaces(where, p, lx, cfg)
    p.terminal = bool(proc.get("terminal"))
    if not p.terminal:
        p.add("lxc.console.path", "none")
    _mounts.translate(where, p, cfg, bundle, root, types, where_to)
    _process(where, p, proc, root, cfg)
    _cgroups(where, p, lx, where_to)
    # the sysctls go first in the mount hook: LXC's own lxc.sysctl keys are written
    # after the readonlyPaths binds made /proc/sys read-only
    steps = [_sysctl(where, key, value, sdir) for key, value in (lx.get("sysctl") or {}).items()]
    steps += p.mount_steps
    if len(steps) == 1 and steps[0].startswith("/bin/ln "):
        p.add("lxc.hook.mount", steps[0])  # LXC runs "exec HOOK" in a shell: the usual case, one exec
    elif steps:
        p.add("lxc.hook.mount", "/bin/sh -c " + _sh(" && ".join(steps)))
    if lx.get("seccomp"):
        p.seccomp = _seccomp.profile(where, lx["seccomp"])
        p.add("lxc.seccomp.profile", os.path.join(sdir, "seccomp.lxc"))
        p.add("lxc.seccomp.allow_nesting", 1)  # a confined daemon must not mean an unconfined container
    # the OOM record (the cgroup is gone when lxc-start returns), and no reboot:
    # a SIGHUP-killed init (reboot(2), or any kill without a pid namespace) would
    # make lxc-start start the container again
    oom = _resources.oom_file(where_to["layout"], where_to["cgroup"])
    hook = f"cat {_sh(oom)} > {_sh(os.path.join(sdir, 'oom'))} 2>/dev/null; " if oom else ""
    script = hook + '[ "$LXC_TARGET" != reboot ] || kill -KILL $PPID; exit 0'
    p.add("lxc.hook.stop", "/bin/sh -c " + _sh(script))  # LXC runs "exec HOOK": one command
    return p


def _sysctl(where, key, value, sdir):
    """A shell step writing sysctl ``key`` through the host's /proc (still there
    before pivot_root): namespaced sysctls are those of the writer, and the mount
    hook runs in the container's namespaces."""
    if not isinstance(key, str) or not key or ".." in key or not all(c.isalnum() or c in "._-" for c in key):
        raise ExecError(f"{where}: linux.sysctl: bad name {key!r}")
    value = str(value)
    if "\n" in value or "\0" in value:
        raise ExecError(f"{where}: linux.sysctl: {key}: a value with a newline")
    path = "/proc/sys/" + key.replace(".", "/")
    return _step(f"printf %s {_sh(value)} > {_sh(path)}", f"linux.sysctl: setting {key}={value}", sdir)


def _refuse_unsupported(where, cfg, lx, proc):
    if cfg.get("hooks"):
        raise _no(where, "hooks", "OCI hooks are not run")
    for key in ("uidMappings", "gidMappings"):
        if lx.get(key):
            raise _no(where, f"linux.{key}", "user namespaces (lxc.idmap is not translated)")
    for key in ("intelRdt", "personality", "mountLabel", "timeOffsets"):
        if lx.get(key):
            raise _no(where, f"linux.{key}", "LXC runs no such setting for an OCI bundle")
    for key in ("apparmorProfile", "selinuxLabel", "ioPriority", "scheduler", "execCPUAffinity"):
        if proc.get(key):
            raise _no(where, f"process.{key}", "not translated to LXC")
    if cfg.get("domainname"):
        raise _no(where, "domainname", "LXC sets only the host name (lxc.uts.name)")
    prop = lx.get("rootfsPropagation") or ""
    if prop not in ("", "rslave"):
        raise _no(where, "linux.rootfsPropagation", f"{prop!r}: LXC always makes the root rslave")


def _namespaces(where, p, lx, cfg):
    """lxc.namespace.keep/share; returns {type: "new"|"joined"}."""
    types = {}
    for ns in lx.get("namespaces") or ():
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind == "user":
            raise _no(where, "linux.namespaces", "user namespaces (lxc.idmap is not translated)")
        if kind not in NAMESPACES:
            raise ExecError(f"{where}: linux.namespaces: unknown type {kind!r}")
        path = ns.get("path")
        if path:
            if kind == "mount":
                raise ExecError(f"{where}: linux.namespaces: joining an existing mount namespace is not supported")
            if not os.path.exists(path):
                raise ExecError(f"{where}: linux.namespaces: {kind} namespace {path} does not exist")
            if any(c.isspace() for c in path):
                raise _no(where, "linux.namespaces", f"namespace path {path!r} with white space")
            p.add(f"lxc.namespace.share.{NAMESPACES[kind]}", path)
        types[kind] = "joined" if path else "new"
    if "mount" not in types:
        raise ExecError(f"{where}: linux.namespaces must include a mount namespace")
    keep = [NAMESPACES[k] for k in ("cgroup", "ipc", "network", "pid", "uts") if k not in types]
    p.add("lxc.namespace.keep", " ".join(keep + ["user", "time"]))
    if types.get("network") == "new":
        p.add("lxc.net.0.type", "empty")  # a network namespace with only lo, up
        p.add("lxc.net.0.flags", "up")
    p.own_pidns = types.get("pid") == "new"
    if cfg.get("hostname"):
        if "uts" not in types:
            raise _no(where, "hostname", "a hostname needs a UTS namespace of the container's own (LXC would "
                      "set the host's)")
        p.add("lxc.uts.name", cfg["hostname"])
    return types


# --------------------------------------------------------------- process
def _process(where, p, proc, root, cfg):
    p.argv = list(proc["args"])
    cwd = proc.get("cwd") or "/"
    if cwd != cwd.strip() or "\n" in cwd:
        raise _no(where, "process.cwd", f"{cwd!r}: LXC's config cannot hold edge white space")
    p.add("lxc.init.cwd", cwd)
    covered = [os.path.normpath(m["destination"]) for m in cfg.get("mounts") or ()]
    norm = os.path.normpath(cwd)
    if not any(norm == d or norm.startswith(d.rstrip("/") + "/") for d in covered):
        p.mkdirs.append(rootpath.join(root, norm))  # as runc, a missing cwd is made
    user = proc.get("user") or {}
    p.add("lxc.init.uid", int(user.get("uid", 0)))
    p.add("lxc.init.gid", int(user.get("gid", 0)))
    groups = [int(g) for g in user.get("additionalGids") or ()]
    if groups:
        p.add("lxc.init.groups", ",".join(str(g) for g in groups))
    if user.get("umask") is not None:
        p.umask = int(user["umask"])
    _environment(where, p, proc)
    caps = proc.get("capabilities")
    if caps is not None:
        for kind in ("inheritable", "ambient"):
            if caps.get(kind):
                raise _no(where, f"process.capabilities.{kind}", "LXC sets only the bounding set (lxc.cap.keep)")
        keep = cap_names(f"{where}: process.capabilities.bounding", caps.get("bounding"))
        p.add("lxc.cap.keep", " ".join(keep) or "none")
    if proc.get("noNewPrivileges"):
        p.add("lxc.no_new_privs", 1)
    if proc.get("rlimits"):
        # not lxc.prlimit.*: LXC sets those before it sets the container up, which
        # a low limit (nofile 10) then breaks; the init gets them from outside once
        # it is set up and waits to exec, as runc sets them last
        if not os.access(PRLIMIT, os.X_OK):
            raise _no(where, "process.rlimits", f"{PRLIMIT} (util-linux) is missing")
        args = []
        for r in proc["rlimits"]:
            soft, hard = ("unlimited" if v >= INFINITY else v for v in (r["soft"], r["hard"]))
            args.append(f"--{r['type'][len('RLIMIT_'):].lower()}={soft}:{hard}")
        p.add("lxc.hook.start-host", "/bin/sh -c " + _sh(_step(f'{PRLIMIT} --pid "$LXC_PID" ' + " ".join(args),
                                                              "process.rlimits", p.lxc_dir)))
    if proc.get("oomScoreAdj") is not None:
        p.add("lxc.proc.oom_score_adj", int(proc["oomScoreAdj"]))


def _environment(where, p, proc):
    env = {}
    for item in proc.get("env") or ():
        if not isinstance(item, str):
            raise ExecError(f"{where}: process.env: {item!r} is not a string")
        key, sep, value = item.partition("=")
        if sep:  # an entry without "=" is not a variable (skipped, as execve's callers do)
            env[key] = value
    for key, value in env.items():
        if not key or any(c.isspace() for c in key) or "\0" in key + value:
            raise ExecError(f"{where}: process.env: bad variable name {key!r}")
        if key == "container":
            if value != "lxc":
                raise _no(where, "process.env", f"container={value}: LXC always sets container=lxc")
            continue
        if "\n" in value or value != value.strip():
            if key.startswith(UNSAFE_ENV) or key in UNSAFE_ENV:
                raise _no(where, "process.env", f"{key}: a value with newlines or edge white space is handed "
                          "over through lxc-start's environment, where this variable changes lxc-start itself")
            p.env[key] = value
            p.add("lxc.environment", key)  # inherited from lxc-start's environment, byte for byte
        else:
            p.add("lxc.environment", f"{key}={value}")


# --------------------------------------------------------------- cgroups
def _cgroups(where, p, lx, where_to):
    p.add("lxc.cgroup.dir.container", where_to["cgroup"])
    p.add("lxc.cgroup.dir.monitor", where_to["lxc_cgroup"] + "/monitor")
    p.add("lxc.cgroup.dir.monitor.pivot", where_to["lxc_cgroup"])
    for key, value in _resources.lines(where, lx.get("resources") or {}, where_to["layout"]):
        p.add(key, value)
