"""The ``lxc`` exec driver, driven directly through its hooks (needs root and LXC)."""

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest

from dockyard.drivers.exec.lxc.driver import LOCK_ROOT, UNSUPPORTED, LxcDriver
from dockyard.errors import ContainerNotFound, ExecError
from dockyard.testing.daemon import mounts_under, processes_mentioning
from dockyard.testing.driver import DriverConformance, ExecEnv, load_exec, new_cgroup_parent
from dockyard.testing.driver import cgroups_left as _cgroups_left
from dockyard.testing.driver import oci_config, pid_alive, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/usr/bin/lxc-start"),
                                reason="the lxc exec driver needs root and lxc-start")

CGROUP_PARENT = new_cgroup_parent()
NOT_LXC = "not supported by the lxc exec driver"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
                "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]


def make_hook(home):
    return load_exec(LxcDriver(), home, {"cgroup_parent": CGROUP_PARENT})


def cgroups_left():
    """Under this module's cgroup parent, in every hierarchy (cgroup2's too: LXC
    makes its cgroups there as well)."""
    return _cgroups_left(CGROUP_PARENT)


class Env(ExecEnv):
    def __init__(self, tmp_path):
        super().__init__(tmp_path, make_hook)

    def refused(self, change, cid="refused", args=("true",), **kw):
        """The ExecError exec_create gives for a config that ``change`` edits."""
        bundle = self.bundle(cid, list(args), change, **kw)
        with pytest.raises(ExecError) as info:
            try:
                self.hook.exec_create(id=cid, bundle=str(bundle), log_path=str(self.tmp / f"{cid}.log"), stdin=None, log=None)
            except ExecError:
                raise
            except BaseException:
                self.ids.append(cid)
                raise
            self.ids.append(cid)  # created after all: cleaned up, then the test fails
        assert not (self.home / cid).exists()
        return str(info.value)


def locks_left(home):
    path = os.path.normpath(LOCK_ROOT + "/" + str(home))
    return [os.path.join(d, f) for d, _, files in os.walk(path) for f in files] + ([path] if os.path.isdir(path) else [])


@contextlib.contextmanager
def started_like_nohup():
    """While the driver starts its zygote, this process is as ``nohup`` or a
    background shell leaves a daemon: SIGHUP and SIGQUIT ignored, and a signal
    blocked for good measure.  The zygote, its shims and lxc-start inherit that."""
    old = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGHUP, signal.SIGQUIT)}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in old.items():
            signal.signal(sig, handler)


@pytest.fixture
def env(tmp_path):
    yield from _checked_env(tmp_path)


@pytest.fixture
def nohup_env(tmp_path):
    yield from _checked_env(tmp_path, started_like_nohup())


def _checked_env(tmp_path, starting=None):
    with starting or contextlib.nullcontext():
        e = Env(tmp_path)
    try:
        yield e
    finally:
        e.cleanup()
    assert mounts_under(tmp_path) == []
    assert [p for p in processes_mentioning(str(tmp_path)) if "zygote" not in p] == []
    assert processes_mentioning(f"-P {e.home}") == []  # no lxc-start
    assert [p for p in e.pids if pid_alive(p)] == []
    assert cgroups_left() == []  # containers', and LXC's monitor cgroups (<path>.lxc/)
    assert locks_left(e.home) == []
    assert sorted(os.listdir(e.home)) in ([], ["zygote.log"])


def status_field(text, name):
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


# ------------------------------------------------------------------ output


def test_stdout_and_stderr_are_separate(env):
    state, logs = env.run(["sh", "-c", "printf 'a\\nb'; echo oops >&2; printf tail"])
    out = [e["log"] for e in logs if e["stream"] == "stdout"]
    assert "".join(out) == "a\nbtail" and out[0] == "a\n"
    assert [e["log"] for e in logs if e["stream"] == "stderr"] == ["oops\n"]


def test_unsupported_is_declared():
    assert all(isinstance(k, str) and isinstance(v, str) and v for k, v in UNSUPPORTED.items())


# --------------------------------------------------------- exit codes, kill


def test_sigkill_is_137_and_leaves_no_process(env):
    cid, pid = env.start(["sleep", "100"])
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert fh.read() == b"sleep\x00100\x00"  # the pid is the container's init, not lxc-start
    with open(f"/proc/{pid}/status") as fh:
        assert next(line for line in fh if line.startswith("NSpid:")).split()[-1] == "1"
    state = env.hook.exec_state(id=cid)
    assert state["status"] == "running" and state["pid"] == pid and state["exit_code"] is None
    t0 = time.monotonic()
    assert env.hook.exec_wait(id=cid, timeout=0.3)["status"] == "running"
    assert 0.25 <= time.monotonic() - t0 < 5
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["status"] == "stopped" and state["exit_code"] == 137
    assert not pid_alive(pid)
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)  # already gone: not an error


def test_sigterm_without_a_pid_namespace_is_143(env):
    cid, pid = env.start(["sleep", "100"], namespaces=("mount", "uts", "ipc", "network"))
    env.hook.exec_kill(id=cid, signal=signal.SIGTERM)
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 143


def test_sighup_without_a_pid_namespace_is_129_not_a_reboot(nohup_env):
    env = nohup_env  # a daemon under nohup must not give its containers SIGHUP ignored
    cid, pid = env.start(["sh", "-c", "echo up; exec sleep 100"], namespaces=("mount", "uts", "ipc", "network"))
    wait_for(lambda: "up" in env.output(cid))
    env.hook.exec_kill(id=cid, signal=signal.SIGHUP)  # LXC restarts a container whose init died of SIGHUP
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["exit_code"] == 129 and env.output(cid) == "up\n"


CLEAN_SIGNALS = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"


def test_clean_process_attributes_of_init_and_exec(nohup_env):
    """lxc-start and liblxc's attach pass their dispositions and mask on: the
    shim resets every one, and gives neither more fds than stdio."""
    env = nohup_env
    cid, _ = env.start(["sh", "-c", "grep -E '^Sig(Ign|Blk)' /proc/self/status; ls /proc/$$/fd; exec sleep 100"])
    wait_for(lambda: env.output(cid).count("\n") >= 5)
    assert env.output(cid) == CLEAN_SIGNALS + "0\n1\n2\n"
    for eid, args, want in (("fds", ["ls", "/proc/self/fd"], "0\n1\n2\n3\n"),
                            ("sig", ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], CLEAN_SIGNALS)):
        log = env.tmp / f"{eid}.log"
        env.hook.exec_exec(id=cid, exec_id=eid, process={"args": args, "env": ["PATH=/bin"]}, log_path=str(log),
                           stdin=None)
        assert env.hook.exec_exec_wait(id=cid, exec_id=eid, timeout=10)["exit_code"] == 0
        assert "".join(json.loads(line)["log"] for line in log.read_text().splitlines()) == want


def test_sigterm_reaches_a_handler(env):
    cid, _ = env.start(["sh", "-c", "trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"])
    wait_for(lambda: "ready" in env.output(cid))
    env.hook.exec_kill(id=cid, signal=signal.SIGTERM)
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["exit_code"] == 7 and env.output(cid) == "ready\nterm\n"


def test_background_processes_die_with_init(env):
    sleep = f"sleep {100000 + int.from_bytes(os.urandom(3), 'big') % 800000}"  # this test's own, not a neighbour's
    cid, pid = env.start(["sh", "-c", f"{sleep} & {sleep} & echo started; wait"])
    wait_for(lambda: "started" in env.output(cid))
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 137
    assert processes_mentioning(sleep) == []


def test_missing_executable_raises_127_and_leaves_nothing(env):
    cid = env.create(["nosuchprog", "arg"])
    with pytest.raises(ExecError) as info:
        env.hook.exec_start(id=cid)
    assert info.value.exit_code == 127
    assert 'exec: "nosuchprog": executable file not found in $PATH' in str(info.value)
    assert env.hook.exec_state(id=cid)["status"] == "created"
    assert processes_mentioning(str(env.home)) == []
    assert cgroups_left() == []  # a failed start leaves no lxc.monitor cgroup either


def test_a_script_without_interpreter_is_126_as_with_execve(env):
    (env.rootfs / "bin" / "script").write_text("echo ran-by-a-shell\n")
    (env.rootfs / "bin" / "script").chmod(0o755)  # execvp() would hand it to /bin/sh
    cid = env.create(["script"])
    with pytest.raises(ExecError) as info:
        env.hook.exec_start(id=cid)
    assert info.value.exit_code == 126 and 'exec: "script": exec format error' in str(info.value)


def test_a_failing_start_says_why(env, tmp_path):
    cid = env.create(["true"], change=lambda c: c["linux"].update(sysctl={"net.ipv4.no_such_knob": "1"}))
    with pytest.raises(ExecError, match="linux.sysctl: setting net.ipv4.no_such_knob=1"):
        env.hook.exec_start(id=cid)
    cid = env.create(["true"], mounts=[{"destination": "/x", "type": "bind", "source": str(tmp_path / "gone"),
                                        "options": ["rbind"]}])
    with pytest.raises(ExecError, match=r"lxc-start: .*gone"):
        env.hook.exec_start(id=cid)
    assert cgroups_left() == [] and processes_mentioning(str(env.home)) == []


def test_supported_says_why_not(tmp_path, monkeypatch):
    from dockyard.drivers.exec.lxc import driver

    monkeypatch.setattr(driver, "LXC_START", str(tmp_path / "no-lxc-start"))
    assert LxcDriver().exec_supported(home=str(tmp_path), options={}) == "lxc-start not found (apt-get install lxc)"
    monkeypatch.undo()
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in LxcDriver().exec_supported(home=str(tmp_path), options={})


# ------------------------------------------------------------- the process
def test_args_and_env_with_spaces_are_exact(env):
    _, logs = env.run(["sh", "-c", 'printf "[%s]" "$@"; echo; echo "[$FOO]"; echo "[$EDGE]"; env | sort',
                       "zero", "a b", "  c  ", ""],
                      env=["FOO=bar baz", "EDGE=  two\nlines  ", "EMPTY=", "IGNORED"])
    out = "".join(e["log"] for e in logs)
    lines = out.split("\n")
    assert lines[0] == "[a b][  c  ][]" and lines[1] == "[bar baz]"
    assert "[  two\nlines  ]" in out
    names = [line.split("=", 1)[0] for line in out.split("\n") if "=" in line and not line.startswith("[")]
    # exactly the bundle's variables, and the one LXC always adds; sh adds PWD and SHLVL
    assert sorted(set(names) - {"PWD", "SHLVL", "lines  ]"}) == ["EDGE", "EMPTY", "FOO", "PATH", "container"]


def test_cwd_user_groups_and_umask(env):
    _, logs = env.run(["sh", "-c", "pwd; id -u; id -g; id -G; umask"], cwd="/made/up",
                      user={"uid": 65534, "gid": 65534, "additionalGids": [7, 8], "umask": 0o027})
    assert "".join(e["log"] for e in logs) == "/made/up\n65534\n65534\n65534 7 8\n0027\n"


def test_hostname_pid_namespace_and_proc(env):
    _, logs = env.run(["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline; echo; ls /proc"], hostname="myhost")
    lines = "".join(e["log"] for e in logs).splitlines()
    assert lines[0] == "myhost" and lines[1] == "1"
    assert lines[2].replace("\0", " ").startswith("sh -c hostname")
    pids = sorted(int(x) for x in lines[3:] if x.isdigit())
    assert pids and pids[0] == 1 and len(pids) <= 2, pids


def test_host_namespaces_are_shared(env):
    own = {ns: os.readlink(f"/proc/self/ns/{ns}") for ns in ("net", "cgroup", "user", "ipc")}
    _, logs = env.run(["sh", "-c", "for n in net cgroup user ipc; do readlink /proc/self/ns/$n; done"],
                      namespaces=("pid", "mount", "uts"))
    assert "".join(e["log"] for e in logs).split() == [own["net"], own["cgroup"], own["user"], own["ipc"]]


def test_joining_a_namespace_by_path(env):
    other = subprocess.Popen(["unshare", "--net", "--ipc", "sleep", "60"])
    try:
        wait_for(lambda: os.readlink(f"/proc/{other.pid}/ns/net") != os.readlink("/proc/self/ns/net"))
        theirs = [os.readlink(f"/proc/{other.pid}/ns/{ns}") for ns in ("net", "ipc")]
        cid, pid = env.start(["sleep", "100"], change=lambda c: c["linux"]["namespaces"].extend(
            [{"type": "network", "path": f"/proc/{other.pid}/ns/net"},
             {"type": "ipc", "path": f"/proc/{other.pid}/ns/ipc"}]),
            namespaces=("pid", "mount", "uts"))
        assert [os.readlink(f"/proc/{pid}/ns/{ns}") for ns in ("net", "ipc")] == theirs
        log = env.tmp / "join-exec.log"
        env.hook.exec_exec(id=cid, exec_id="j1", process={"args": ["readlink", "/proc/self/ns/net"],
                                                          "env": ["PATH=/bin"]}, log_path=str(log), stdin=None)
        assert env.hook.exec_exec_wait(id=cid, exec_id="j1", timeout=10)["exit_code"] == 0
        assert json.loads(log.read_text().splitlines()[0])["log"].strip() == theirs[0]
    finally:
        other.kill()
        other.wait()


def test_capabilities_no_new_privs_and_default_seccomp(env):
    from dockyard.engine.bundle import seccomp

    caps = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    cid = env.create(["grep", "-E", "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):", "/proc/self/status"],
                     change=lambda c: (c["process"].update(capabilities=caps, noNewPrivileges=True),
                                       c["linux"].update(seccomp=seccomp.linux_seccomp(None, DEFAULT_CAPS))))
    env.hook.exec_start(id=cid)
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 0
    status = dict(line.split(":\t") for line in env.output(cid).splitlines())
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "00000000a80425fb"
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_exec_gets_the_containers_seccomp_filter_and_no_new_privs(env):
    from dockyard.engine.bundle import seccomp

    caps = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    cid, _ = env.start(["sleep", "100"], change=lambda c: (
        c["process"].update(capabilities=caps, noNewPrivileges=True),
        c["linux"].update(seccomp=seccomp.linux_seccomp(None, DEFAULT_CAPS))))
    log = env.tmp / "sc.log"
    env.hook.exec_exec(id=cid, exec_id="sc", process={
        "args": ["grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"], "env": ["PATH=/bin"],
        "capabilities": caps, "noNewPrivileges": True}, log_path=str(log), stdin=None)
    assert env.hook.exec_exec_wait(id=cid, exec_id="sc", timeout=10)["exit_code"] == 0
    status = dict(json.loads(line)["log"].strip().split(":\t") for line in log.read_text().splitlines())
    assert status == {"CapEff": "00000000a80425fb", "NoNewPrivs": "1", "Seccomp": "2"}


def test_capabilities_of_an_unprivileged_user_and_without_nnp(env):
    caps = {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    _, logs = env.run(["grep", "-E", "^(CapEff|CapBnd|NoNewPrivs):", "/proc/self/status"],
                      change=lambda c: c["process"].update(capabilities=caps),
                      user={"uid": 65534, "gid": 65534})
    status = dict(e["log"].strip().split(":\t") for e in logs)
    assert status == {"CapEff": "0000000000000000", "CapBnd": "0000000000000021", "NoNewPrivs": "0"}


def test_a_custom_seccomp_profile_is_enforced(env):
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86",
                                                                    "SCMP_ARCH_X32"],
               "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
                            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                             "args": [{"index": 1, "value": 0o777, "op": "SCMP_CMP_EQ"}]},
                            {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                             "args": [{"index": 2, "value": 0o777, "op": "SCMP_CMP_EQ"}]}]}
    _, logs = env.run(["sh", "-c", "mkdir /tmp/x && echo MADE; touch /tmp/f; chmod 777 /tmp/f || echo NO777; "
                                   "chmod 600 /tmp/f && echo OK600"],
                      change=lambda c: c["linux"].update(seccomp=profile))
    out = "".join(e["log"] for e in logs)
    assert "MADE" not in out and "Permission denied" in out and "NO777" in out and "OK600" in out, out


def test_rlimits_and_oom_score_adj(env):
    _, logs = env.run(["sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"],
                      change=lambda c: c["process"].update(
                          rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}], oomScoreAdj=400))
    assert "".join(e["log"] for e in logs) == "100\n200\n400\n"


def test_sysctl(env):
    _, logs = env.run(["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"],
                      change=lambda c: c["linux"].update(sysctl={"net.ipv4.ip_unprivileged_port_start": "99"}))
    assert "".join(e["log"] for e in logs) == "99\n"


# ------------------------------------------------------------- file system
def test_devices_and_mounts(env):
    _, logs = env.run(["sh", "-c", "ls /dev; ls -l /dev/ptmx; echo x > /dev/null && head -c 4 /dev/zero | wc -c; "
                                   "touch /dev/shm/f && echo shm-ok; wc -c < /proc/timer_list; ls /sys/firmware | "
                                   "wc -l; echo x > /proc/sys/kernel/domainname || echo proc-sys-ro; cat /proc/mounts"])
    out = "".join(e["log"] for e in logs)
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "mqueue", "fd", "stdout"):
        assert name in out.split(), name
    assert "pts/ptmx" in out and "\n4\n" in out and "shm-ok" in out and "proc-sys-ro" in out
    assert "\n0\n0\n" in out  # masked: an empty file and an empty directory
    mounts = {line.split()[1]: line.split() for line in out.splitlines() if line.count(" ") >= 5}
    assert mounts["/proc"][2] == "proc" and mounts["/dev"][2] == "tmpfs"
    assert mounts["/dev"][3] == "rw,nosuid,size=65536k,mode=755"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro")
    assert mounts["/proc/sys"][3].startswith("ro")
    assert mounts["/dev/pts"][2] == "devpts" and "ptmxmode=666" in mounts["/dev/pts"][3]
    assert ".lxc-boot-id" not in out


def test_bind_mounts_and_readonly_root(env, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    data = tmp_path / "data dir"
    data.mkdir()
    mounts = [{"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind", "rprivate", "ro"]},
              {"destination": "/data dir", "type": "bind", "source": str(data), "options": ["rbind"]},
              {"destination": "/run/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}]
    _, logs = env.run(["sh", "-c", "cat /etc/hosts; echo x >> /etc/hosts || echo hosts-ro; "
                                   "touch /newfile || echo root-ro; echo hello > '/data dir/f'; touch /dev/shm/ok && "
                                   "echo dev-rw; touch /run/scratch/f && grep -c '/run/scratch tmpfs rw,nosuid' "
                                   "/proc/mounts"],
                      mounts=mounts, readonly=True)
    out = "".join(e["log"] for e in logs if e["stream"] == "stdout")
    assert out == "127.0.0.1 localhost\nhosts-ro\nroot-ro\ndev-rw\n1\n"
    assert (data / "f").read_text() == "hello\n"
    assert not (env.rootfs / "newfile").exists()


def test_cgroup_namespace_shows_the_container_cgroup(env):
    mounts = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}]
    _, logs = env.run(["sh", "-c", "cat /proc/self/cgroup | grep memory; cat /sys/fs/cgroup/pids/pids.max; "
                                   "touch /sys/fs/cgroup/pids/x || echo ro"],
                      mounts=mounts, namespaces=("pid", "mount", "uts", "ipc", "network", "cgroup"))
    out = "".join(e["log"] for e in logs if e["stream"] == "stdout")
    assert out.splitlines()[0].endswith(":memory:/") and "\nmax\n" in out and out.endswith("ro\n"), out


def test_a_device_is_the_hosts_node(env):
    st = os.stat("/dev/full")
    device = {"path": "/dev/myfull", "type": "c", "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
              "fileMode": st.st_mode & 0o7777, "uid": 0, "gid": 0}
    _, logs = env.run(["sh", "-c", "ls -l /dev/myfull; echo x > /dev/myfull || echo full"],
                      change=lambda c: c["linux"].update(devices=[device]))
    out = "".join(e["log"] for e in logs)
    assert "1,   7" in out and "No space left on device" in out and "\nfull\n" in out, out


# -------------------------------------------------------------- resources


def test_pids_limit(env):
    # ash exits at a failed fork, so the bomb runs in a subshell; after it only builtins
    # (a pipe's second fork raced the bomb's; the sleeps die with pid 1)
    _, logs = env.run(["sh", "-c", "exec 2>&1; (for i in 1 2 3 4 5 6 7 8 9 10; do sleep 5 & done); "
                                   "read m < /sys/fs/cgroup/pids/pids.max; echo $m; echo done"],
                      change=lambda c: c["linux"].update(resources={"pids": {"limit": 6}}),
                      mounts=[{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                               "options": ["ro"]}],
                      namespaces=("pid", "mount", "uts", "ipc", "network", "cgroup"))
    out = "".join(e["log"] for e in logs)
    assert "fork" in out.lower() and "\n6\n" in out and "done" in out, out


def test_stats_pids_and_update(env):
    cid, pid = env.start(["sh", "-c", "sleep 100 & echo up; wait"],
                         change=lambda c: c["linux"].update(resources={"memory": {"limit": 64 * 2**20}}))
    wait_for(lambda: "up" in env.output(cid))
    pids = env.hook.exec_pids(id=cid)
    assert pids[0] == pid and len(pids) == 2
    stats = env.hook.exec_stats(id=cid)
    assert stats["memory_stats"]["limit"] == 64 * 2**20 and stats["pids_stats"]["current"] == 2
    env.hook.exec_update(id=cid, resources={"memory": {"limit": 96 * 2**20}})
    assert env.hook.exec_stats(id=cid)["memory_stats"]["limit"] == 96 * 2**20
    cfg = json.loads((env.tmp / f"bundle-{cid}" / "config.json").read_text())
    assert cfg["linux"]["resources"]["memory"]["limit"] == 96 * 2**20  # for the next start


def test_pause_resume(env):
    cid, pid = env.start(["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
    wait_for(lambda: env.output(cid).count("tick") > 2)
    env.hook.exec_pause(id=cid)
    assert env.hook.exec_state(id=cid)["status"] == "paused"
    time.sleep(0.1)  # a tick written just before the freeze may still be on its way to the log
    frozen = env.output(cid).count("tick")
    time.sleep(0.3)
    assert env.output(cid).count("tick") == frozen
    with pytest.raises(ExecError, match="paused"):
        env.hook.exec_exec(id=cid, exec_id="p1", process={"args": ["true"]}, log_path=str(env.tmp / "p1.log"),
                           stdin=None)
    env.hook.exec_resume(id=cid)
    wait_for(lambda: env.output(cid).count("tick") > frozen + 2)
    assert env.hook.exec_state(id=cid)["status"] == "running"
    env.hook.exec_pause(id=cid)
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)  # a paused container can be killed
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 137


# ------------------------------------------------------------ stdin, tty


def test_terminal_with_size_and_resize(env):
    cid = env.create(["sh", "-c", "tty; stty size; read x; stty size; echo $x"], stdin="open",
                     change=lambda c: c["process"].update(terminal=True, consoleSize={"height": 30, "width": 100}))
    env.hook.exec_start(id=cid)
    wait_for(lambda: "30 100" in env.output(cid))
    env.hook.exec_resize(id=cid, exec_id=None, height=40, width=120)
    time.sleep(0.2)  # lxc-start passes the size on when SIGWINCH reaches it
    sock = env.hook.exec_attach_stdin(id=cid, exec_id=None)
    sock.sendall(b"go\r")
    sock.close()
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 0
    # (lxc-start relays the container's terminal through its own: before it sets that one raw,
    # a newline can come out as \r\r\n)
    out = re.sub(r"\r+\n", "\n", env.output(cid))
    assert out.startswith("/dev/pts/0\n30 100\n") and out.endswith("40 120\ngo\n"), out
    assert {e["stream"] for e in env.logs(cid)} == {"stdout"}


# ------------------------------------------------------------------- exec
def test_exec_joins_the_container(env):
    cid, pid = env.start(["sh", "-c", "echo started; exec sleep 100"], hostname="inside")
    wait_for(lambda: "started" in env.output(cid))
    proc = {"args": ["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline; echo; id -u; id -G; pwd; env | sort"],
            "env": ["PATH=/bin", "X=y z"], "cwd": "/made/up", "user": {"uid": 65534, "gid": 65534,
                                                                       "additionalGids": [7]}}
    (env.rootfs / "made" / "up").mkdir(parents=True)
    log = env.tmp / "exec.log"
    epid = env.hook.exec_exec(id=cid, exec_id="e1", process=proc, log_path=str(log), stdin=None)
    assert epid != pid
    state = env.hook.exec_exec_wait(id=cid, exec_id="e1", timeout=10)
    assert state["status"] == "stopped" and state["exit_code"] == 0
    lines = "".join(json.loads(line)["log"] for line in log.read_text().splitlines()).split("\n")
    assert lines[0] == "inside" and int(lines[1]) > 1 and lines[2] == "sleep\0" + "100\0"
    assert lines[3:7] == ["65534", "65534 7", "/made/up", "PATH=/bin"]
    assert [line for line in lines[7:] if line and not line.startswith(("PWD=", "SHLVL="))] == ["X=y z"]
    with open(f"/proc/{pid}/cgroup") as fh:
        assert ":memory:/" + CGROUP_PARENT + "/" + cid in fh.read()


def test_exec_exit_code_missing_program_and_terminal(env):
    cid, _ = env.start(["sleep", "100"])
    log = env.tmp / "x.log"
    env.hook.exec_exec(id=cid, exec_id="x9", process={"args": ["sh", "-c", "exit 9"], "env": ["PATH=/bin"]},
                       log_path=str(log), stdin=None)
    assert env.hook.exec_exec_wait(id=cid, exec_id="x9", timeout=10)["exit_code"] == 9
    with pytest.raises(ExecError) as info:
        env.hook.exec_exec(id=cid, exec_id="x127", process={"args": ["nope"], "env": ["PATH=/bin"]},
                           log_path=str(log), stdin=None)
    assert info.value.exit_code == 127 and "executable file not found" in str(info.value)
    with pytest.raises(ExecError, match=r'chdir to cwd \("/nowhere"\) set in config.json failed'):
        env.hook.exec_exec(id=cid, exec_id="xcwd", process={"args": ["true"], "cwd": "/nowhere"},
                           log_path=str(log), stdin=None)
    tlog = env.tmp / "t.log"
    env.hook.exec_exec(id=cid, exec_id="tty", process={"args": ["sh", "-c", "tty; stty size"], "env": ["PATH=/bin"],
                                                        "terminal": True, "consoleSize": {"height": 20, "width": 70}},
                       log_path=str(tlog), stdin=None)
    assert env.hook.exec_exec_wait(id=cid, exec_id="tty", timeout=10)["exit_code"] == 0
    out = "".join(json.loads(line)["log"] for line in tlog.read_text().splitlines()).replace("\r\n", "\n")
    assert out.startswith("/dev/pts/") and out.endswith("20 70\n"), out


def test_exec_stdin_and_capabilities(env):
    caps = {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    cid, _ = env.start(["sleep", "100"], change=lambda c: c["process"].update(capabilities=caps))
    log = env.tmp / "s.log"
    env.hook.exec_exec(id=cid, exec_id="s1", process={"args": ["sh", "-c", "cat; grep CapEff /proc/self/status"],
                                                       "env": ["PATH=/bin"], "capabilities": caps},
                       log_path=str(log), stdin="once")
    sock = env.hook.exec_attach_stdin(id=cid, exec_id="s1")
    sock.sendall(b"fed\n")
    sock.close()
    assert env.hook.exec_exec_wait(id=cid, exec_id="s1", timeout=10)["exit_code"] == 0
    out = "".join(json.loads(line)["log"] for line in log.read_text().splitlines())
    assert out == "fed\nCapEff:\t00000000a80425fb\n"
    with pytest.raises(ExecError, match=NOT_LXC):
        env.hook.exec_exec(id=cid, exec_id="s2", process={"args": ["true"], "capabilities": {
            k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}}, log_path=str(log), stdin=None)


# --------------------------------------------------------- restart, leaks


def test_dead_shim_is_reported_and_the_container_dies(env):
    cid, pid = env.start(["sleep", "100"])
    with open(env.home / cid / "running.json") as fh:
        shim = json.load(fh)["shim_pid"]
    os.kill(shim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid))
    state = make_hook(env.home).exec_restore(id=cid)
    assert state["status"] == "stopped" and state["exit_code"] == 255 and "shim" in state["error"]


def test_delete_leaves_nothing_and_forgets(env):
    cid, pid = env.start(["sleep", "100"])
    cgroup = f"/sys/fs/cgroup/memory/{CGROUP_PARENT}/{cid}"
    assert os.path.isdir(cgroup) and os.path.isdir(cgroup + ".lxc")
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    env.hook.exec_wait(id=cid, timeout=10)
    assert not os.path.exists(cgroup) and not os.path.exists(cgroup + ".lxc")  # the shim cleaned up
    env.hook.exec_delete(id=cid)
    env.hook.exec_delete(id=cid)
    assert not (env.home / cid).exists() and locks_left(env.home) == []
    with pytest.raises(ContainerNotFound):
        env.hook.exec_state(id=cid)
    assert env.hook.exec_restore(id=cid) is None


def test_a_start_survives_deletes_that_empty_the_lock_dirs_it_is_making(env, tmp_path):
    # Another container's delete removes its LXC lock directory and the parents
    # that became empty; lxc-start makes its own below the same parents.  Had a
    # parent gone between two of its mkdirs, it exited 1 with an empty log.
    from dockyard.drivers.exec.lxc.driver import _remove_locks

    other = tmp_path / "other" / "lxc"
    stop, errors = threading.Event(), []

    def delete_others():
        try:
            while not stop.is_set():
                root = os.open(LOCK_ROOT, os.O_RDONLY | os.O_DIRECTORY)
                try:  # another start makes its lock dirs, as lxcspawn has lxc-start do
                    fcntl.flock(root, fcntl.LOCK_SH)
                    os.makedirs(os.path.normpath(f"{LOCK_ROOT}/{other}"), exist_ok=True)
                finally:
                    os.close(root)
                _remove_locks(str(other))
        except Exception as exc:  # reported below
            errors.append(exc)

    deleter = threading.Thread(target=delete_others)
    deleter.start()
    try:
        for i in range(40):
            state, _ = env.run(["true"], cid=f"s{i}")
            assert state["exit_code"] == 0 and state["error"] == ""
            env.hook.exec_delete(id=env.ids.pop())  # its lock dirs go too, as in a daemon
    finally:
        stop.set()
        deleter.join()
    assert errors == [] and locks_left(tmp_path) == []


def test_config_validation(env, tmp_path):
    bundle = tmp_path / "bad"
    bundle.mkdir()
    hook = env.hook
    with pytest.raises(ExecError, match="config.json"):
        hook.exec_create(id="bad", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
    (bundle / "config.json").write_text(json.dumps(oci_config(env.rootfs, [])))
    with pytest.raises(ExecError, match="process.args"):
        hook.exec_create(id="bad", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
    (bundle / "config.json").write_text(json.dumps(oci_config(tmp_path / "nope", ["true"])))
    with pytest.raises(ExecError, match="root.path"):
        hook.exec_create(id="bad", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
    with pytest.raises(ContainerNotFound):
        hook.exec_state(id="bad")
    hook.exec_delete(id="bad")


# --------------------------------------------------------------- refusals
def _ns(*types):
    return lambda c: c["linux"].update(namespaces=[{"type": t} for t in types])


REFUSALS = {
    "inheritable capabilities": (lambda c: c["process"].update(capabilities={
        "bounding": ["CAP_KILL"], "inheritable": ["CAP_KILL"]}), "process.capabilities.inheritable"),
    "ambient capabilities": (lambda c: c["process"].update(capabilities={
        "bounding": ["CAP_KILL"], "ambient": ["CAP_KILL"]}), "process.capabilities.ambient"),
    "user namespace": (_ns("pid", "mount", "user"), "user namespaces"),
    "uid mappings": (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 100000, "size": 1}]),
                     "user namespaces"),
    "container variable": (lambda c: c["process"]["env"].append("container=docker"), "container=lxc"),
    "LD_ variable that lxc-start would inherit": (lambda c: c["process"]["env"].append("LD_PRELOAD= x"),
                                                   "changes lxc-start itself"),
    "domainname": (lambda c: c.update(domainname="example.org"), "domainname"),
    "hostname without UTS namespace": (_ns("pid", "mount"), "a hostname needs a UTS namespace"),
    "rootfsPropagation": (lambda c: c["linux"].update(rootfsPropagation="rprivate"), "rslave"),
    "cgroup mount without cgroupns": (lambda c: c["mounts"].append(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}),
        "a cgroup mount without a cgroup namespace"),
    "LXC's own mount options": (lambda c: c["mounts"].append(
        {"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["optional"]}), "means something else"),
    "FIFO device": (lambda c: c["linux"].update(devices=[{"path": "/dev/fifo", "type": "p"}]),
                    "devices are bind mounts"),
    "device the host lacks": (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "c", "major": 250,
                                                                    "minor": 250}]), "cannot make device nodes"),
    "device mode": (lambda c: c["linux"].update(devices=[{"path": "/dev/n", "type": "c", "major": 1, "minor": 3,
                                                          "fileMode": 0o600}]), "differs from the host's"),
    "seccomp LOG": (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_LOG", "architectures": [
        "SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]}), "LXC profiles know"),
    "seccomp flags": (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW", "flags": [
        "SECCOMP_FILTER_FLAG_LOG"], "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]}),
                      "linux.seccomp.flags"),
    "seccomp architectures": (lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_ALLOW",
                                                                   "architectures": ["SCMP_ARCH_X86_64"]}),
                              "linux.seccomp.architectures"),
    "terminal without devpts": (lambda c: (c["process"].update(terminal=True),
                                           c.update(mounts=[m for m in c["mounts"] if m["type"] != "devpts"])),
                                "allocates the terminal"),
    "hooks": (lambda c: c.update(hooks={"prestart": [{"path": "/bin/true"}]}), "hooks"),
}


@pytest.mark.parametrize("what", sorted(REFUSALS))
def test_refusals_name_the_field(env, what):
    change, fragment = REFUSALS[what]
    message = env.refused(change)
    assert NOT_LXC in message and fragment in message, message
    if what != "hooks":  # the native driver refuses those too
        assert any(v in message for v in UNSUPPORTED.values()), f"{message!r} is not declared in UNSUPPORTED"
    assert cgroups_left() == []


class TestKit(DriverConformance):
    """The hook-level checks every exec driver passes (dockyard.testing.driver)."""
