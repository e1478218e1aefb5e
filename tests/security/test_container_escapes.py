"""Escapes from a default container that fail today, performed for real so that
they keep failing (issue 13, "keep them failing").

Each test runs ``tests/security/c/attack.c`` (static, bind-mounted read-only at
/h) in a default busybox container of the session daemon and asserts both the
errno the kernel answered and, where the attack aims at the host, that nothing
changed there.  What blocks each one, as in Docker: no CAP_SYS_ADMIN (nor
SYS_MODULE, SYS_PTRACE, SYSLOG, DAC_READ_SEARCH...), the default seccomp profile
(Docker's, ../shared/reference/moby-seccomp-default.json: EPERM), read-only
/proc/sys, /proc/sysrq-trigger and /sys, masked paths, the devices cgroup, a pid
namespace and pivot_root.  Where a control is cheap, the same attempt is shown
to work when the defence is taken away (e.g. ``seccomp=unconfined``), so the
test can fail.

The CVE-2024-21626 pattern (``-w /proc/self/fd/N``) is here for run and exec;
ptrace of exec'd processes, their inherited fds and signal dispositions are in
test_exec_process.py, hostile tars in test_hostile_tars.py.
"""

import os
import shutil
import subprocess
from pathlib import Path

import docker.errors
import pytest

pytestmark = pytest.mark.root

HERE = Path(__file__).resolve().parent
BLOCKED = "EPERM"  # the default seccomp profile's errno, and the kernel's without the capability


@pytest.fixture(scope="module")
def attack(cc):
    return cc("attack", (HERE / "c" / "attack.c").read_text())


@pytest.fixture(scope="module")
def client(daemon):
    c = daemon.sdk()
    yield c
    c.close()


def run(client, attack, cmd, **kw):
    """Run ``cmd`` in a default busybox container with the attack helper at
    /h/attack; return ``(exit code, stdout and stderr)``."""
    volumes = {str(attack.parent): {"bind": "/h", "mode": "ro"}, **kw.pop("volumes", {})}
    c = client.containers.create("busybox", cmd, volumes=volumes, **kw)
    try:
        c.start()
        code = c.wait(timeout=60)["StatusCode"]
        return code, c.logs().decode(errors="replace")
    finally:
        c.remove(force=True)


def results(out):
    """``{name: result}`` of the helper's ``NAME RESULT`` lines."""
    return dict(line.split(None, 1) for line in out.splitlines() if " " in line)


def attack_results(client, attack, *args, **kw):
    code, out = run(client, attack, ["/h/attack", *args], **kw)
    assert code == 0, out
    return results(out)


def test_mounts_are_refused(client, attack):
    """Mount-based breakouts: a new proc or cgroup mount, a bind of /, /proc/sys
    remounted read-write, a masked path unmasked by unmounting it, the new mount
    API (fsopen, open_tree).  None is allowed and the mount table is unchanged."""
    code, out = run(client, attack, ["sh", "-c", "cat /proc/self/mountinfo | wc -l; /h/attack mounts; "
                                                 "cat /proc/self/mountinfo | wc -l"])
    lines = out.split("\n")
    got = results(out)
    assert code == 0 and lines[0] == lines[-2], out
    assert got == {k: BLOCKED for k in ("mount_proc", "mount_tmpfs", "mount_bind_root", "mount_cgroup",
                                         "remount_proc_sys_rw", "umount_masked_kcore", "fsopen", "open_tree")}


def test_proc_sys_and_sys_writes_are_refused(client, attack):
    """The core_pattern escape class: a container that sets the host kernel's
    core_pattern to ``|/path`` gets that program run as root on the host by the
    next crash.  /proc/sys and /sys are read-only; the helper writes each file's
    own content back (a real write that would change nothing even if allowed),
    and the host's values stay as they were."""
    paths = ["/proc/sys/kernel/core_pattern", "/proc/sys/kernel/core_uses_pid", "/proc/sys/vm/overcommit_memory",
             "/proc/sys/net/ipv4/ip_forward"]
    if os.path.exists("/sys/kernel/mm/transparent_hugepage/enabled"):
        paths.append("/sys/kernel/mm/transparent_hugepage/enabled")
    before = {p: Path(p).read_text() for p in paths}
    got = attack_results(client, attack, "sysctl", *paths)
    assert got == {p: "EROFS" for p in paths}
    assert {p: Path(p).read_text() for p in paths} == before


@pytest.mark.skipif(not os.path.exists("/proc/sysrq-trigger"), reason="this kernel has no magic SysRq")
def test_sysrq_trigger_is_refused(client, attack):
    """/proc/sysrq-trigger reaches the host kernel (reboot, crash, OOM kill):
    read-only in a container (Docker's readonlyPaths).  The key tried is "h",
    help, in case it ever got through."""
    assert attack_results(client, attack, "sysrq") == {"sysrq_trigger": "EROFS"}


def test_devices_cannot_be_opened(client, attack):
    """Device access: mknod is allowed (CAP_MKNOD, as in Docker) but the devices
    cgroup refuses to open the host's root disk, /dev/mem and /dev/kmsg; and
    syslog(2) (the kernel log) is refused by seccomp."""
    st = os.stat("/")
    got = attack_results(client, attack, "devices", str(os.major(st.st_dev)), str(os.minor(st.st_dev)))
    assert {k: v for k, v in got.items() if k.startswith(("open_", "syslog"))} == {
        "open_root_disk": BLOCKED, "open_dev_mem": BLOCKED, "open_dev_kmsg": BLOCKED, "syslog_read_all": BLOCKED}


def test_kernel_modules_cannot_be_loaded(client, attack):
    """Module loading is code in the host kernel: init_module, finit_module and
    delete_module need CAP_SYS_MODULE and are refused by seccomp."""
    assert attack_results(client, attack, "modules") == {
        "init_module": BLOCKED, "finit_module": BLOCKED, "delete_module": BLOCKED}


def test_kernel_keyring_is_out_of_reach(client, attack):
    """The kernel keyring is not namespaced (keys of other containers and the
    host; CVE-2016-0728 was a keyctl bug): keyctl, add_key and request_key are
    refused by seccomp."""
    assert attack_results(client, attack, "keys") == {"keyctl": BLOCKED, "add_key": BLOCKED, "request_key": BLOCKED}


def test_new_namespaces_are_refused(client, attack):
    """A user namespace gives back every capability inside it, the first step of
    many kernel exploits (CVE-2022-0185, CVE-2022-0492's variant): unshare and
    clone of user, mount and cgroup namespaces and setns are refused."""
    assert attack_results(client, attack, "namespaces") == {
        "unshare_user": BLOCKED, "unshare_mount": BLOCKED, "unshare_cgroup": BLOCKED, "clone_newuser": BLOCKED,
        "setns_mnt": BLOCKED}


def _release_agents():
    found = {}
    for hier in sorted(os.listdir("/sys/fs/cgroup")):
        path = f"/sys/fs/cgroup/{hier}/release_agent"
        if os.path.exists(path):
            found[path] = Path(path).read_text()
    return found


def test_cgroup_release_agent_escape_is_refused(client, attack):
    """CVE-2022-0492: mount a cgroup v1 hierarchy, set its release_agent to a
    program and notify_on_release, and the host kernel runs that program as
    root when the cgroup empties.  No cgroup file system can be mounted, the
    container's /sys/fs/cgroup is read-only, and the host's agents are as they
    were."""
    before = _release_agents()
    got = attack_results(client, attack, "release_agent")
    assert got.pop("mount_cgroup_rdma") == BLOCKED and got.pop("mount_cgroup2") == BLOCKED
    assert got and set(got.values()) <= {"EROFS", "EACCES", BLOCKED}, got
    assert _release_agents() == before


def test_shocker_open_by_handle_at_is_refused(client, attack):
    """Shocker (the CVE-2014-3519 class): open_by_handle_at with a guessed handle
    opens any inode of the file system under the container's root, the host's
    included.  Refused (seccomp, and no CAP_DAC_READ_SEARCH)."""
    assert attack_results(client, attack, "shocker") == {"open_by_handle_at": BLOCKED}


def test_host_processes_cannot_be_traced(client, attack, daemon):
    """ptrace, kill and process_vm_readv of processes outside the container (the
    daemon, the shim's host, a host sleep): the host pid namespace is invisible,
    so every pid is ESRCH, not EPERM (not even its existence leaks)."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        pids = [str(p) for p in (daemon.proc.pid, os.getpid(), sleeper.pid)]
        got = attack_results(client, attack, "ptrace", *pids)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert got == {f"{what}:{p}": "ESRCH" for p in pids
                   for what in ("ptrace_attach", "ptrace_seize", "kill0", "process_vm_readv")}


def test_kallsyms_addresses_are_zeroed(client, attack):
    """Kernel addresses defeat KASLR for a kernel exploit: without CAP_SYSLOG
    /proc/kallsyms shows every address as zero."""
    got = attack_results(client, attack, "kallsyms")
    assert got["kallsyms_nonzero"] == "0", got


def test_kernel_attack_surface_is_refused(client, attack):
    """The system calls behind most kernel exploits of recent years, blocked by
    Docker's default profile: bpf, perf_event_open, userfaultfd (race
    widening), io_uring_setup, kexec_load, iopl.  Control: unconfined, the
    kernel lets the unprivileged ones through (so it is the profile that
    refuses them)."""
    got = attack_results(client, attack, "kernel")
    assert got == {k: BLOCKED for k in ("bpf_map_create", "perf_event_open", "userfaultfd", "io_uring_setup",
                                         "kexec_load", "iopl")}
    loose = attack_results(client, attack, "kernel", security_opt=["seccomp=unconfined"])
    assert (loose["userfaultfd"], loose["io_uring_setup"], loose["perf_event_open"]) == ("ok", "ok", "ok"), loose


def test_chroot_breakout_stays_in_the_container(client, attack):
    """The chroot breakout: chroot into a subdirectory while keeping a directory
    fd outside it, climb "..", chroot "." again.  Under pivot_root, ".." stops
    at the container's root (a runtime that only chroots would let it out)."""
    got = attack_results(client, attack, "chroot")
    assert got == {"chroot_jail": "ok", "chroot_dot": "ok", "chroot_reached": "container_root"}


@pytest.fixture(scope="module")
def setuid_attack(attack, tmp_path_factory):
    """A copy of the helper, setuid root, in a directory of its own."""
    d = tmp_path_factory.mktemp("setuid")
    os.chmod(d, 0o755)
    exe = d / "attack"
    shutil.copy(attack, exe)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    return exe


def test_setuid_binary_under_no_new_privileges_stays_unprivileged(client, setuid_attack):
    """Privilege escalation by a setuid-root binary: as user nobody with
    ``no-new-privileges`` the binary runs with nobody's euid.  Control: without
    it the same binary gets euid 0 (so the test can fail)."""
    got = attack_results(client, setuid_attack, "whoami", user="nobody", security_opt=["no-new-privileges"])
    assert got == {"euid": "65534"}
    assert attack_results(client, setuid_attack, "whoami", user="nobody") == {"euid": "0"}


# -- CVE-2024-21626: leaked fds and a working directory on them ------------------------

@pytest.fixture(scope="module")
def running(client, attack):
    c = client.containers.run("busybox", ["sleep", "300"], detach=True,
                              volumes={str(attack.parent): {"bind": "/h", "mode": "ro"}})
    yield c
    c.remove(force=True)


def test_stdio_of_run_and_exec_names_no_host_file(client, attack, running):
    """CVE-2024-21626 leaked a host directory fd into the container; a host file
    as stdin/stdout (a log file, say) would be as bad: reopened through
    /proc/self/fd/N it reads or writes the host's file.  Every fd of `run`'s
    init (a shell, pid 1), of what it starts and of an exec'd process names the
    container's own file, a pipe or the same device (stdin is the host's
    /dev/null, as in Docker).  That nothing but stdio is inherited is
    test_exec_process.py's."""
    got = results(run(client, attack, ["sh", "-c", "/h/attack fds 1 self; true"])[1])
    code, out = running.exec_run(["/h/attack", "fds", "self"])
    got.update({f"exec-{k}": v for k, v in results(out.decode()).items()})
    assert {"fd:1:0", "fd:1:1", "fd:1:2", "fd:self:0", "exec-fd:self:0", "exec-fd:self:1"} <= set(got), got
    assert not [k for k, v in got.items() if v.startswith("OUTSIDE")], got


@pytest.mark.parametrize("fd", range(3, 10))
def test_run_with_workdir_on_a_leaked_fd(client, attack, fd):
    """CVE-2024-21626: ``run -w /proc/self/fd/N``; chdir happens in the runtime
    before execve, so a leaked fd N gave a working directory on the host.  The
    start fails, or the working directory is inside the container."""
    try:
        code, out = run(client, attack, ["/h/attack", "cwd"], working_dir=f"/proc/self/fd/{fd}")
    except docker.errors.APIError as e:  # refused at start: fine
        assert e.status_code in (400, 500), e
        return
    got = results(out)
    assert code != 0 or got.get("cwd_reached") == "container_root", out
    assert "(unreachable)" not in out, out


@pytest.mark.parametrize("fd", range(3, 10))
def test_exec_with_workdir_on_a_leaked_fd(running, fd):
    """CVE-2024-21626 through exec (``exec -w /proc/self/fd/N``): the exec fails,
    or its working directory is inside the container."""
    try:
        code, out = running.exec_run(["/h/attack", "cwd"], workdir=f"/proc/self/fd/{fd}")
    except docker.errors.APIError as e:
        assert e.status_code in (400, 500), e
        return
    out = out.decode(errors="replace")
    assert code != 0 or results(out).get("cwd_reached") == "container_root", out
    assert "(unreachable)" not in out, out
