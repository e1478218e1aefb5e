"""The last steps of a container process before ``execve``: limits, identity,
capabilities, no_new_privs and seccomp (stdlib only).

Order matters.  The seccomp filter goes in right after no_new_privs, before
the identity and the capabilities change, with or without no_new_privs:
without it, loading needs CAP_SYS_ADMIN, which is about to go; with it, runc
loads last, right before ``execve``, which left a window where the process
already had the container's capabilities and uid but no filter, and container
root could make it run what the filter refuses (issue 13).  The process is
non-dumpable as well (``sanitize``), so nothing should reach it at all; the
filter first is the second wall.  What runs after the filter is the same
either way and the default profile allows it: setgroups, setgid, setuid,
capset, prctl, chdir, umask, rt_sigaction, rt_sigprocmask, execve (a custom
profile has to allow them too, as it always had to without no_new_privs).
"""

import os
import resource

# Everything is imported up front: after pivot_root the host's modules are gone.
import linux
import sanitize
import seccomp
from runtime import DEFAULT_PATH, INFINITY, environment, exec_failure, find_executable
from supervisor import StartError

def set_rlimits(rlimits):
    for r in rlimits or ():
        kind = linux.RLIMITS[r["type"]]
        soft, hard = (resource.RLIM_INFINITY if v >= INFINITY else v for v in (r["soft"], r["hard"]))
        try:
            resource.setrlimit(kind, (soft, hard))
        except (OSError, ValueError) as exc:
            have = resource.getrlimit(kind)[1]
            why = exc.strerror if isinstance(exc, OSError) else str(exc)
            raise StartError(f"setting {r['type']} to {r['soft']}:{r['hard']} failed: {why} "
                             f"(the hard limit here is {have}; raising it needs CAP_SYS_RESOURCE)") from None


def set_oom_score_adj(value):
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write(str(value))
    except OSError as exc:
        raise StartError(f"setting oom_score_adj to {value}: {exc.strerror}"
                         + (" (lowering it needs CAP_SYS_RESOURCE)" if int(value) < 0 else "")) from None


def load_seccomp(filter_spec):
    """``filter_spec``: ``(compiled BPF bytes, seccomp(2) flags)``."""
    bpf, flags = filter_spec
    try:
        seccomp.load(bpf, flags)
    except OSError as exc:
        raise StartError(f"loading the seccomp filter: {exc.strerror}") from None


def exec_process(proc, filter_spec=None):
    """Become the configured process and ``execve`` it; never returns."""
    if proc.get("rlimits"):
        set_rlimits(proc["rlimits"])
    if proc.get("oomScoreAdj") is not None:
        set_oom_score_adj(proc["oomScoreAdj"])
    env = environment(proc)
    args = proc["args"]
    exe = find_executable(args[0], env.get("PATH", DEFAULT_PATH))
    caps = proc.get("capabilities")
    nnp = bool(proc.get("noNewPrivileges"))
    if caps is not None:
        linux.drop_bounding(linux.cap_numbers(caps.get("bounding")))
    if nnp:
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    if filter_spec:
        load_seccomp(filter_spec)
    user = proc.get("user") or {}
    try:
        linux.prctl(linux.PR_SET_KEEPCAPS, 1)
        os.setgroups([int(g) for g in user.get("additionalGids") or ()])
        os.setgid(int(user.get("gid", 0)))
        os.setuid(int(user.get("uid", 0)))
        linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    except OSError as exc:
        raise StartError(f"setting user {user.get('uid', 0)}:{user.get('gid', 0)}: {exc.strerror}") from None
    if caps is not None:
        try:
            linux.capset(linux.cap_numbers(caps.get("effective")), linux.cap_numbers(caps.get("permitted")),
                         linux.cap_numbers(caps.get("inheritable")))
            for cap in sorted(linux.cap_numbers(caps.get("ambient"))):
                linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, cap)
        except OSError as exc:
            raise StartError(f"setting capabilities: {exc.strerror}") from None
    cwd = proc.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as exc:
        raise StartError(f'chdir to cwd ("{cwd}") set in config.json failed: {exc.strerror.lower()}') from None
    umask = user.get("umask")
    os.umask(0o022 if umask is None else int(umask))
    # a set*id that changed an id made us fs.suid_dumpable, which a host may set to 1
    sanitize.undumpable()
    sanitize.default_signals()
    try:
        os.execve(exe, args, env)
    except OSError as exc:
        raise exec_failure(exc, args[0], exe) from None
