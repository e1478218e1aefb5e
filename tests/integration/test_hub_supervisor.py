"""The native driver with ``supervisor = "hub"``: one supervisor (the hub, and
its keeper) for every container instead of a shim each, and what a SIGKILL of
the hub must not lose: no container, no output, no exit code."""

import json
import os
import signal
import time

import pytest

from dockyard.drivers.exec.native.driver import NativeDriver
from dockyard.errors import ExecError
from dockyard.testing.driver import DriverConformance, ExecEnv, load_exec, new_cgroup_parent, pid_alive, wait_for
from dockyard.testing.driver import cgroups_left as _cgroups_left
from dockyard.testing.leaks import mounts_under, processes_mentioning

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the native exec driver needs root")

CGROUP_PARENT = new_cgroup_parent()


class Env(ExecEnv):
    def __init__(self, tmp_path):
        self.drivers = []
        super().__init__(tmp_path, self._hook)

    def _hook(self, home):
        driver = NativeDriver()
        self.drivers.append(driver)
        return load_exec(driver, home, {"cgroup_parent": CGROUP_PARENT, "supervisor": "hub"})

    def running(self, cid):
        return json.loads((self.home / cid / "running.json").read_text())

    def close(self):
        """As a daemon stops: disconnect; the hub, supervising nothing, leaves with its keeper."""
        for driver in self.drivers:
            driver.zygote.close()
        wait_for(lambda: not processes_mentioning(str(self.home)), timeout=10)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    yield e
    e.cleanup()
    e.close()
    assert mounts_under(tmp_path) == []
    assert processes_mentioning(str(tmp_path)) == []
    assert [p for p in e.pids if pid_alive(p)] == []
    assert _cgroups_left(CGROUP_PARENT) == []


class TestHubKit(DriverConformance):
    """The hook-level checks every exec driver passes, with the hub supervising."""


def _supervisors(env):
    """The processes of the env's home: the keeper and the hub, nothing per container."""
    return sorted(int(line.split(":")[0]) for line in processes_mentioning(str(env.home)))


def test_one_hub_supervises_every_container(env):
    started = [env.start(["sleep", "100"]) for _ in range(5)]
    hubs = {env.running(cid)["shim_pid"] for cid, _ in started}
    assert len(hubs) == 1
    keeper = env.running(started[0][0])["keeper_pid"]
    assert _supervisors(env) == sorted([hubs.pop(), keeper])  # two processes for five containers
    for cid, pid in started:
        assert env.hook.exec_state(id=cid)["status"] == "running"
        env.hook.exec_kill(id=cid, signal=signal.SIGKILL)
        state = env.hook.exec_wait(id=cid, timeout=10)
        assert state["status"] == "stopped" and state["exit_code"] == 137


def test_a_killed_hub_loses_no_container_no_output_and_no_exit_code(env):
    talker, talker_pid = env.start(["sh", "-c", "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); "
                                               "sleep 0.05; done; exit 7"])
    sleeper, sleeper_pid = env.start(["sleep", "100"])
    quick, _ = env.start(["sh", "-c", "sleep 0.3; echo bye; exit 3"])
    hub = env.running(talker)["shim_pid"]
    os.kill(hub, signal.SIGKILL)
    # the keeper starts another hub, which adopts the three
    wait_for(lambda: env.running(sleeper)["shim_pid"] != hub, timeout=10)
    assert pid_alive(sleeper_pid) and env.hook.exec_state(id=sleeper)["status"] == "running"
    state = env.hook.exec_wait(id=talker, timeout=20)
    assert state["status"] == "stopped" and state["exit_code"] == 7, state
    assert env.output(talker) == "".join(f"line{i}\n" for i in range(40))  # not a line lost or doubled
    state = env.hook.exec_wait(id=quick, timeout=10)
    assert state["exit_code"] == 3 and env.output(quick) == "bye\n"
    env.hook.exec_kill(id=sleeper, signal=signal.SIGKILL)
    assert env.hook.exec_wait(id=sleeper, timeout=10)["exit_code"] == 137
    # every kept status is taken: the hub unlinks it just after it wrote the exit record
    wait_for(lambda: not os.listdir(env.home / "reaped"), timeout=5)


def test_exec_stdin_and_terminal_through_the_hub(env):
    cid, _ = env.start(["sleep", "100"])
    log = env.tmp / "exec.log"
    proc = {"args": ["sh", "-c", "read x; echo got-$x; exit 4"], "env": ["PATH=/bin"], "cwd": "/"}
    env.hook.exec_exec(id=cid, exec_id="e1", process=proc, log_path=str(log), stdin="once")
    sock = env.hook.exec_attach_stdin(id=cid, exec_id="e1")
    sock.sendall(b"it\n")
    sock.close()
    state = env.hook.exec_exec_wait(id=cid, exec_id="e1", timeout=10)
    assert state["exit_code"] == 4
    assert [json.loads(line)["log"] for line in log.read_text().splitlines()] == ["got-it\n"]
    tty = env.create(["sh", "-c", "tty; stty size"],
                     change=lambda c: c["process"].update(terminal=True, consoleSize={"height": 30, "width": 100}))
    env.hook.exec_start(id=tty)
    assert env.hook.exec_wait(id=tty, timeout=10)["exit_code"] == 0
    assert env.output(tty).replace("\r\n", "\n") == "/dev/pts/0\n30 100\n"


def test_a_start_failure_is_reported_and_leaves_nothing(env):
    cid = env.create(["/no/such/program"])
    with pytest.raises(ExecError) as err:
        env.hook.exec_start(id=cid)
    assert err.value.exit_code == 127
    assert env.hook.exec_state(id=cid)["status"] == "created"


def test_the_supervisor_option_is_checked(tmp_path):
    with pytest.raises(ExecError, match="supervisor 'many'"):
        load_exec(NativeDriver(), tmp_path / "home", {"cgroup_parent": CGROUP_PARENT, "supervisor": "many"})


def test_containers_outlive_the_daemon_and_a_new_one_takes_them(env):
    cid, pid = env.start(["sh", "-c", "read x; echo $x; exit 5"], stdin="open")
    env.drivers[0].zygote.close()  # the daemon goes
    time.sleep(0.2)
    assert pid_alive(pid)
    hook = env.fresh_hook()  # and comes back
    assert hook.exec_restore(id=cid)["status"] == "running"
    sock = hook.exec_attach_stdin(id=cid, exec_id=None)
    sock.sendall(b"again\n")
    sock.close()
    assert hook.exec_wait(id=cid, timeout=10)["exit_code"] == 5
    assert env.output(cid) == "again\n"


def test_a_failed_start_leaves_nothing_running_in_the_cgroup(env, monkeypatch):
    """As when the hub is killed while its stager starts the container: the child
    runs, orphaned and unsupervised, and the daemon hears that the start failed."""
    import subprocess

    from dockyard.drivers.exec.native import driver as native

    cid = env.create(["sleep", "100"])
    procs = json.loads((env.home / cid / "state.json").read_text())["cgroup"]["procs"]
    strays = []

    def lost_hub(launcher, sdir, what):
        stray = subprocess.Popen(["sleep", "100"])
        strays.append(stray)
        for path in procs:
            with open(path, "w") as fh:
                fh.write(str(stray.pid))
        raise ExecError(f"{what}: the supervisor went away while starting it")

    monkeypatch.setattr(native.shim, "start", lost_hub)
    with pytest.raises(ExecError, match="went away"):
        env.hook.exec_start(id=cid)
    assert strays[0].wait(timeout=10) == -signal.SIGKILL
    assert env.hook.exec_state(id=cid)["status"] == "created"
    for path in procs:
        with open(path) as fh:
            assert fh.read() == ""
