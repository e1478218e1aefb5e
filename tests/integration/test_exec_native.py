"""The ``native`` exec driver, driven directly through its hooks (needs root)."""

import contextlib
import json
import os
import signal
import time

import pytest

from dockyard.drivers.exec.native.driver import NativeDriver
from dockyard.errors import ContainerNotFound, ExecError
from dockyard.testing.daemon import mounts_under, processes_mentioning
from dockyard.testing.driver import DriverConformance, ExecEnv, load_exec, new_cgroup_parent, oci_config, pid_alive, wait_for
from dockyard.testing.driver import cgroups_left as _cgroups_left

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root")



CGROUP_PARENT = new_cgroup_parent()


def make_hook(home):
    return load_exec(NativeDriver(), home, {"cgroup_parent": CGROUP_PARENT, "supervisor": "shim"})  # the hub: test_hub_supervisor


def cgroups_left():
    return _cgroups_left(CGROUP_PARENT)


class Env(ExecEnv):
    def __init__(self, tmp_path):
        super().__init__(tmp_path, make_hook)


@contextlib.contextmanager
def started_like_nohup():
    """While the driver starts its zygote, this process is as ``nohup`` or a
    background shell leaves a daemon: SIGHUP and SIGQUIT ignored, and a signal
    blocked for good measure.  The zygote and its shims inherit that."""
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
    yield e
    e.cleanup()
    assert mounts_under(tmp_path) == []
    assert processes_mentioning(str(tmp_path)) == []
    assert [p for p in e.pids if pid_alive(p)] == []
    assert cgroups_left() == []


def test_stderr_and_final_partial_line(env):
    state, logs = env.run(["sh", "-c", "printf 'a\\nb'; echo oops >&2; printf tail"])
    out = [e["log"] for e in logs if e["stream"] == "stdout"]
    assert "".join(out) == "a\nbtail" and out[0] == "a\n"
    assert [e["log"] for e in logs if e["stream"] == "stderr"] == ["oops\n"]


def test_long_lines_are_split(env):
    state, logs = env.run(["sh", "-c", "head -c 20000 /dev/zero | tr '\\0' a; echo"])
    assert "".join(e["log"] for e in logs) == "a" * 20000 + "\n"
    assert len(logs) == 2 and len(logs[0]["log"]) == 16384


def test_hostname_pid_namespace_and_proc(env):
    state, logs = env.run(["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline; echo; ls /proc"], hostname="myhost")
    lines = "".join(e["log"] for e in logs).splitlines()
    assert lines[0] == "myhost"
    assert lines[1] == "1"
    assert lines[2].replace("\0", " ").startswith("sh -c hostname")
    pids = sorted(int(x) for x in lines[3:] if x.isdigit())
    assert pids and pids[0] == 1 and len(pids) <= 2, pids  # sh and its ls only


def test_env_cwd_and_user(env):
    state, logs = env.run(["sh", "-c", "echo $FOO; pwd; id -u; id -g; id -G; umask"],
                          env=["FOO=bar baz"], cwd="/made/up",
                          user={"uid": 65534, "gid": 65534, "additionalGids": [7]})
    assert "".join(e["log"] for e in logs) == "bar baz\n/made/up\n65534\n65534\n65534 7\n0022\n"


def test_devices_and_mounts(env):
    _, logs = env.run(["sh", "-c", "ls /dev; echo x > /dev/null && head -c 4 /dev/zero | wc -c; "
                                   "touch /dev/shm/f && echo shm-ok; cat /proc/mounts"])
    out = "".join(e["log"] for e in logs)
    for name in ("null", "zero", "full", "random", "urandom", "tty", "pts", "ptmx", "shm", "fd", "stdout"):
        assert name in out.split()
    assert "\n4\n" in out and "shm-ok" in out
    mounts = {line.split()[1]: line.split() for line in out.splitlines() if line.count(" ") >= 5}
    assert mounts["/proc"][2] == "proc" and mounts["/dev"][2] == "tmpfs"
    assert mounts["/sys"][2] == "sysfs" and mounts["/sys"][3].startswith("ro")
    assert mounts["/proc/sys"][3].startswith("ro")
    assert mounts["/dev/pts"][2] == "devpts"


CLEAN_SIGNALS = "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n"


def test_clean_process_attributes(nohup_env):
    env = nohup_env
    _, logs = env.run(["ls", "/proc/self/fd"])
    assert "".join(e["log"] for e in logs).split() == ["0", "1", "2", "3"]  # 3: ls's own dir fd
    _, logs = env.run(["readlink", "/proc/self/fd/0"])
    assert "".join(e["log"] for e in logs) == "/dev/null\n"
    # Python ignores SIGPIPE, the zygote SIGCHLD, nohup SIGHUP and SIGQUIT: all reset
    _, logs = env.run(["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"])
    assert "".join(e["log"] for e in logs) == CLEAN_SIGNALS


def test_clean_exec_attributes(nohup_env):
    env = nohup_env
    cid, _ = env.start(["sleep", "100"])
    for eid, args, want in (("fds", ["ls", "/proc/self/fd"], "0\n1\n2\n3\n"),
                            ("sig", ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"], CLEAN_SIGNALS)):
        log = env.tmp / f"{eid}.log"
        env.hook.exec_exec(id=cid, exec_id=eid, process={"args": args, "env": ["PATH=/bin"]}, log_path=str(log),
                           stdin=None)
        assert env.hook.exec_exec_wait(id=cid, exec_id=eid, timeout=10)["exit_code"] == 0
        assert "".join(json.loads(line)["log"] for line in log.read_text().splitlines()) == want


def test_capability_bounding_set(env, tmp_path):
    cid = env.create(["grep", "CapBnd", "/proc/self/status"])
    path = tmp_path / f"bundle-{cid}" / "config.json"
    cfg = json.loads(path.read_text())
    cfg["process"]["capabilities"] = {k: ["CAP_CHOWN", "CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    path.write_text(json.dumps(cfg))
    env.hook.exec_start(id=cid)
    env.hook.exec_wait(id=cid, timeout=10)
    assert env.output(cid) == "CapBnd:\t0000000000000021\n"  # bits 0 (CHOWN) and 5 (KILL)


def test_host_network_namespace(env):
    with open("/proc/net/dev") as fh:
        host = sorted(line.split(":")[0].strip() for line in fh.readlines()[2:])
    _, logs = env.run(["cat", "/proc/net/dev"], namespaces=("pid", "mount", "uts", "ipc"))
    lines = "".join(e["log"] for e in logs).splitlines()[2:]
    assert sorted(line.split(":")[0].strip() for line in lines) == host


def test_bind_mounts_and_readonly_root(env, tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    data = tmp_path / "data"
    data.mkdir()
    mounts = [{"destination": "/etc/hosts", "type": "bind", "source": str(hosts), "options": ["rbind", "rprivate", "ro"]},
              {"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind"]},
              {"destination": "/run/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "size=1m"]}]
    _, logs = env.run(["sh", "-c", "cat /etc/hosts; echo x >> /etc/hosts || echo hosts-ro; "
                                   "touch /newfile || echo root-ro; echo hello > /data/f; touch /dev/shm/ok && echo dev-rw; "
                                   "touch /run/scratch/f && grep -c '/run/scratch tmpfs rw,nosuid' /proc/mounts"],
                      mounts=mounts, readonly=True)
    out = "".join(e["log"] for e in logs if e["stream"] == "stdout")
    assert out == "127.0.0.1 localhost\nhosts-ro\nroot-ro\ndev-rw\n1\n"
    assert (data / "f").read_text() == "hello\n"
    assert not (env.rootfs / "newfile").exists()


def test_missing_executable_raises_127_and_leaves_nothing(env):
    cid = env.create(["nosuchprog", "arg"])
    with pytest.raises(ExecError) as info:
        env.hook.exec_start(id=cid)
    assert info.value.exit_code == 127
    assert 'exec: "nosuchprog": executable file not found in $PATH' in str(info.value)
    assert env.hook.exec_state(id=cid)["status"] == "created"
    assert processes_mentioning(str(env.home)) == []


def test_kill_and_wait(env):
    cid, pid = env.start(["sleep", "100"])
    with open(f"/proc/{pid}/cmdline", "rb") as fh:
        assert fh.read() == b"sleep\x00100\x00"
    with open(f"/proc/{pid}/status") as fh:
        nspid = next(line for line in fh if line.startswith("NSpid:")).split()
    assert nspid[-1] == "1"  # pid 1 of its own pid namespace
    state = env.hook.exec_state(id=cid)
    assert state["status"] == "running" and state["pid"] == pid and state["exit_code"] is None
    t0 = time.monotonic()
    state = env.hook.exec_wait(id=cid, timeout=0.3)
    assert 0.25 <= time.monotonic() - t0 < 5
    assert state["status"] == "running"
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["status"] == "stopped" and state["exit_code"] == 137
    assert not pid_alive(pid)
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)  # already gone: not an error


def test_sigterm_reaches_a_handler(env):
    cid, _ = env.start(["sh", "-c", "trap 'echo term; exit 7' TERM; echo ready; while :; do sleep 0.05; done"])
    deadline = time.monotonic() + 10
    while "ready" not in env.output(cid) and time.monotonic() < deadline:
        time.sleep(0.02)
    env.hook.exec_kill(id=cid, signal=signal.SIGTERM)
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["exit_code"] == 7 and env.output(cid) == "ready\nterm\n"


def test_background_processes_die_with_init(env):
    cid, pid = env.start(["sh", "-c", "sleep 100 & sleep 100 & echo started; wait"])
    deadline = time.monotonic() + 10
    while "started" not in env.output(cid) and time.monotonic() < deadline:
        time.sleep(0.02)
    members = env.hook.exec_pids(id=cid)
    assert members[0] == pid and len(members) == 3  # sh and its two sleeps
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    state = env.hook.exec_wait(id=cid, timeout=10)
    assert state["exit_code"] == 137
    assert [p for p in members if pid_alive(p)] == []


def test_dead_shim_is_reported(env):
    cid, pid = env.start(["sleep", "100"])
    with open(env.home / cid / "running.json") as fh:
        shim = json.load(fh)["shim_pid"]
    os.kill(shim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not pid_alive(pid)  # the container dies with its shim
    state = make_hook(env.home).exec_restore(id=cid)
    assert state["status"] == "stopped" and state["exit_code"] == 255 and "shim" in state["error"]


def test_config_validation(env, tmp_path):
    bundle = tmp_path / "bad"
    bundle.mkdir()
    hook = env.hook
    with pytest.raises(ExecError, match="config.json"):
        hook.exec_create(id="bad", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
    (bundle / "config.json").write_text("{not json")
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
    hook.exec_delete(id="bad")  # idempotent, unknown is fine
    hook.exec_delete(id="bad")


def test_delete_is_idempotent_and_forgets(env):
    state, _ = env.run(["true"])
    cid = env.ids[-1]
    env.hook.exec_delete(id=cid)
    env.hook.exec_delete(id=cid)
    assert not (env.home / cid).exists()
    with pytest.raises(ContainerNotFound):
        env.hook.exec_state(id=cid)
    assert env.hook.exec_restore(id=cid) is None


def test_terminal_with_size_and_resize(env):
    cid = env.create(["sh", "-c", "tty; stty size; read x; stty size"], stdin="open",
                     change=lambda c: c["process"].update(terminal=True, consoleSize={"height": 30, "width": 100}))
    env.hook.exec_start(id=cid)
    wait_for(lambda: "30 100" in env.output(cid))
    with pytest.raises(ExecError, match="unknown request"):  # past a winsize's 16 bits: refused, shim alive
        env.hook.exec_resize(id=cid, exec_id=None, height=70000, width=120)
    env.hook.exec_resize(id=cid, exec_id=None, height=40, width=120)
    sock = env.hook.exec_attach_stdin(id=cid, exec_id=None)
    sock.sendall(b"go\r")
    sock.close()
    env.hook.exec_wait(id=cid, timeout=10)
    out = env.output(cid).replace("\r\n", "\n")
    assert out.startswith("/dev/pts/0\n30 100\n") and out.endswith("40 120\n"), out
    assert {e["stream"] for e in env.logs(cid)} == {"stdout"}


def test_exec_joins_the_container(env):
    cid, pid = env.start(["sh", "-c", "echo started; sleep 100"], hostname="inside")
    wait_for(lambda: "started" in env.output(cid))
    proc = {"args": ["sh", "-c", "hostname; echo $$; set -- /proc/[0-9]*; echo $#; id -u; pwd; echo $X"],
            "env": ["PATH=/bin", "X=y"], "cwd": "/tmp", "user": {"uid": 65534, "gid": 65534}}
    log = env.tmp / "exec.log"
    epid = env.hook.exec_exec(id=cid, exec_id="e1", process=proc, log_path=str(log), stdin=None)
    assert epid != pid
    state = env.hook.exec_exec_wait(id=cid, exec_id="e1", timeout=10)
    assert state["status"] == "stopped" and state["exit_code"] == 0
    lines = "".join(json.loads(line)["log"] for line in log.read_text().splitlines()).split()
    assert lines[0] == "inside" and int(lines[1]) > 1 and lines[3:] == ["65534", "/tmp", "y"]
    # the shell's own glob, so no racing pipeline: pid 1 (sh exec'd its last command, sleep) and the exec's sh
    assert int(lines[2]) == 2


def test_the_init_and_an_exec_are_in_every_cgroup_of_the_container(env):
    # each joins as one thread (v1 "tasks"): the whole process must be in, and
    # what it forks after its exec with it
    cid, pid = env.start(["sh", "-c", "sleep 100 & echo forked; wait"])
    wait_for(lambda: "forked" in env.output(cid))
    epid = env.hook.exec_exec(id=cid, exec_id="in", process={"args": ["sleep", "100"], "env": ["PATH=/bin"]},
                              log_path=str(env.tmp / "in.log"), stdin=None)
    procs = json.loads((env.home / cid / "state.json").read_text())["cgroup"]["procs"]
    assert procs and all(os.path.basename(p) == "cgroup.procs" for p in procs)
    for path in procs:
        listed = {int(x) for x in open(path).read().split()}
        tasks = {int(x) for x in open(os.path.join(os.path.dirname(path), "tasks")).read().split()}
        assert {pid, epid} <= listed and len(listed) == 3 and tasks == listed, path  # sh, its sleep, the exec


def test_exec_missing_program_is_127(env):
    cid, _ = env.start(["sleep", "100"])
    with pytest.raises(ExecError) as info:
        env.hook.exec_exec(id=cid, exec_id="e2", process={"args": ["nope"], "env": ["PATH=/bin"]},
                           log_path=str(env.tmp / "e2.log"), stdin=None)
    assert info.value.exit_code == 127


def test_pause_resume_and_pids(env):
    cid, pid = env.start(["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
    wait_for(lambda: env.output(cid).count("tick") > 2)
    env.hook.exec_pause(id=cid)
    assert env.hook.exec_state(id=cid)["status"] == "paused"
    time.sleep(0.1)  # a tick written just before the freeze may still be on its way to the log
    frozen = env.output(cid).count("tick")
    time.sleep(0.3)
    assert env.output(cid).count("tick") == frozen
    assert env.hook.exec_pids(id=cid)[0] == pid
    env.hook.exec_resume(id=cid)
    wait_for(lambda: env.output(cid).count("tick") > frozen + 2)
    assert env.hook.exec_state(id=cid)["status"] == "running"


def test_capabilities_sets_and_seccomp_status(env):
    from dockyard.engine import bundle
    from dockyard.engine.bundle import seccomp

    caps = {k: list(bundle.DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")}
    cid = env.create(["grep", "-E", "^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):", "/proc/self/status"],
                     change=lambda c: (c["process"].update(capabilities=caps, noNewPrivileges=True),
                                       c["linux"].update(seccomp=seccomp.linux_seccomp(None, bundle.DEFAULT_CAPS))))
    env.hook.exec_start(id=cid)
    env.hook.exec_wait(id=cid, timeout=10)
    status = dict(line.split(":\t") for line in env.output(cid).splitlines())
    assert status["CapEff"] == status["CapPrm"] == status["CapBnd"] == "00000000a80425fb"
    assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_rlimits_and_a_limit_above_the_hard_limit(env, tmp_path):
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cid = env.create(["sh", "-c", "ulimit -n; ulimit -Hn"], change=lambda c: c["process"].update(
        rlimits=[{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]))
    env.hook.exec_start(id=cid)
    env.hook.exec_wait(id=cid, timeout=10)
    assert env.output(cid) == "100\n200\n"
    if hard != resource.RLIM_INFINITY:
        bundle = tmp_path / "too-high"
        bundle.mkdir()
        cfg = oci_config(env.rootfs, ["true"])
        cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
        (bundle / "config.json").write_text(json.dumps(cfg))
        try:
            with pytest.raises(ExecError, match="RLIMIT_NOFILE hard limit .* CAP_SYS_RESOURCE"):
                env.hook.exec_create(id="high", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
        except BaseException:
            env.ids.append("high")
            raise


def test_cgroup_namespace_shows_the_container_cgroup(env):
    mounts = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}]
    _, logs = env.run(["sh", "-c", "cat /proc/self/cgroup | grep memory; cat /sys/fs/cgroup/pids/pids.max; "
                                   "touch /sys/fs/cgroup/pids/x || echo ro"],
                      mounts=mounts, namespaces=("pid", "mount", "uts", "ipc", "network", "cgroup"))
    out = "".join(e["log"] for e in logs)
    # stdout and stderr are two pipes: touch's complaint may land before or after "ro"
    assert out.splitlines()[0].endswith(":memory:/") and "\nmax\n" in out and "ro" in out.splitlines(), out


@pytest.fixture
def userns_env():
    """An Env whose files the mapped root (host uid 200000) can reach: pytest's
    own temp directory is mode 0700."""
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="dockyard-userns-"))
    base.chmod(0o711)
    e = Env(base)
    yield e
    e.cleanup()
    assert mounts_under(base) == [] and cgroups_left() == []
    shutil.rmtree(base, ignore_errors=True)


USERNS_MAPS = {"uidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
               "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}]}


def test_user_namespace_maps_root_to_an_unprivileged_host_uid(userns_env):
    env = userns_env
    ns = ("user", "pid", "mount", "uts", "ipc", "network", "cgroup")
    mounts = [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["ro"]}]
    cid, pid = env.start(["sh", "-c", "id -u; cat /proc/self/uid_map; echo $$; hostname; touch /tmp/f && echo tmp-ok; "
                                      "ls /sys/fs/cgroup/pids/pids.max; read x"],
                         namespaces=ns, mounts=mounts, stdin="open", hostname="userbox",
                         change=lambda c: c["linux"].update(USERNS_MAPS))
    wait_for(lambda: "tmp-ok" in env.output(cid))
    with open(f"/proc/{pid}/status") as fh:
        uids = next(line for line in fh if line.startswith("Uid:")).split()[1:]
    assert uids == ["200000"] * 4  # the container's root is nobody special on the host
    out = env.output(cid).split()
    assert out[:5] == ["0", "0", "200000", "65536", "1"] and out[5] == "userbox", out
    env.hook.exec_exec(id=cid, exec_id="u1", process={"args": ["sh", "-c", "id -u; cat /proc/1/cmdline"],
                                                        "env": ["PATH=/bin"]},
                       log_path=str(env.tmp / "u1.log"), stdin=None)
    state = env.hook.exec_exec_wait(id=cid, exec_id="u1", timeout=10)
    assert state["exit_code"] == 0
    assert "".join(json.loads(line)["log"] for line in (env.tmp / "u1.log").read_text().splitlines()).startswith("0\nsh")
    sock = env.hook.exec_attach_stdin(id=cid, exec_id=None)
    sock.sendall(b"\n")
    sock.close()
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 0
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)  # already gone: not an error


def test_user_namespace_exit_codes_and_kill(userns_env):
    env = userns_env
    ns = ("user", "pid", "mount", "uts", "ipc", "network")
    state, _ = env.run(["sh", "-c", "exit 6"], namespaces=ns, change=lambda c: c["linux"].update(USERNS_MAPS))
    assert state["exit_code"] == 6
    cid, pid = env.start(["sleep", "100"], namespaces=ns, change=lambda c: c["linux"].update(USERNS_MAPS))
    env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
    assert env.hook.exec_wait(id=cid, timeout=10)["exit_code"] == 137


def test_user_namespace_needs_maps(env, tmp_path):
    bundle = tmp_path / "nomaps"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(oci_config(env.rootfs, ["true"], namespaces=("user", "mount"))))
    with pytest.raises(ExecError, match="needs linux.uidMappings"):
        env.hook.exec_create(id="nomaps", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)
    cfg = oci_config(env.rootfs, ["true"], namespaces=("user", "mount"))
    cfg["linux"].update(USERNS_MAPS)
    (bundle / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ExecError, match=r"not reachable by the user namespace's root \(host uid 200000\)"):
        env.hook.exec_create(id="nomaps", bundle=str(bundle), log_path=str(tmp_path / "l"), stdin=None, log=None)


class TestKit(DriverConformance):
    """The hook-level checks every exec driver passes (dockyard.testing.driver)."""
