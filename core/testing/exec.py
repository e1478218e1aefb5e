"""Conformance kit for exec drivers, run through the daemon's API as users hit it.

Subclass :class:`ExecConformance` in a pytest module and name the driver::

    from dockyard.testing.exec import ExecConformance

    class TestMyDriver(ExecConformance):
        driver = "mine"                      # its dockyard.exec entry point
        unsupported = {"seccomp": "not supported by the mine exec driver"}

Each class starts a private daemon (``dockyard.testing.daemon.Daemon``) with
``--exec-driver NAME`` and a busybox image made offline, and drives it with the
docker SDK.  It checks isolation from inside the container (host processes
hidden, no mount, no module loading, /proc/sys read-only, no raw block devices,
masked paths, capabilities and seccomp as configured), limits actually enforced
(a memory hog is OOM-killed and reported, a fork bomb stops at the pids limit,
a cpu quota holds), signals and exit codes, terminals, stdin, exec,
pause/unpause, and containers that outlive a daemon crash.

``unsupported`` maps a feature name (see :data:`FEATURES`) to a fragment of the
error the driver gives for it: the kit then checks that asking for the feature
is refused with that message (and reports the test as skipped, with the reason)
instead of checking the feature.  Nothing may be left behind: after the class,
the daemon's mounts, processes and cgroups are checked.
"""

import json
import os
import signal
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from dockyard.testing.busybox import make_busybox_tar
from dockyard.testing.daemon import Daemon
from dockyard.testing.driver import wait_for

DEFAULT_CAPS_MASK = "00000000a80425fb"  # Docker's 14 default capabilities
FEATURES = ("seccomp", "seccomp_profile", "no_new_privileges", "memory", "pids", "cpu", "devices", "tty",
            "stdin", "exec", "pause", "privileged", "init", "read_only", "user", "join_namespace")


class ExecConformance:
    driver = "native"
    unsupported = {}
    extra_args = ()

    # ------------------------------------------------------------ fixtures
    @pytest.fixture(scope="class")
    @classmethod
    def daemon(cls, request):
        if os.geteuid() != 0:
            pytest.skip("the daemon needs root")
        base = Path(tempfile.mkdtemp(prefix=f"dockyard-exec-{cls.driver}-"))
        d = Daemon(base, extra_args=["--exec-driver", cls.driver, *cls.extra_args])
        try:
            d.start()
        except RuntimeError as exc:
            if "unsupported here" in str(exc):
                pytest.skip(f"exec driver {cls.driver} is unsupported here: {exc}")
            raise
        try:
            res = d.cli("import", str(make_busybox_tar(base / "busybox.tar")), "busybox")
            assert res.returncode == 0, res.stderr.decode()
            yield d
        finally:
            _remove_all(d)
            d.stop()
            d.remove_network_objects()
            leaks = d.leaks()
            import shutil

            shutil.rmtree(base, ignore_errors=True)
            assert leaks == [], f"the {cls.driver} exec driver left behind: {leaks}"

    @pytest.fixture
    def client(self, daemon):
        c = daemon.sdk()
        yield c
        c.close()

    # ------------------------------------------------------------- helpers
    def _refusal(self, feature, exc):
        wanted = self.unsupported.get(feature)
        if wanted is not None and wanted in str(exc):
            pytest.skip(f"{self.driver} refuses {feature} as declared: {exc}")
        raise exc

    def start(self, client, cmd, feature=None, **kw):
        """A detached container (``feature``: see the class docstring)."""
        import docker

        name = f"conf-{uuid.uuid4().hex[:10]}"
        try:
            c = client.containers.run("busybox", cmd, detach=True, name=name, **kw)
        except docker.errors.APIError as exc:
            try:
                client.containers.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
            self._refusal(feature, exc)
        if feature in self.unsupported:
            c.remove(force=True)
            pytest.fail(f"{feature} is declared unsupported by {self.driver}, but a container using it started")
        return c

    def run_streams(self, client, cmd, feature=None, timeout=60, **kw):
        """Run to the end: ``(exit code, stdout text, stderr text, container attrs)``.
        (How the two streams interleave is not promised: they are two pipes.)"""
        c = self.start(client, cmd, feature, **kw)
        try:
            code = c.wait(timeout=timeout)["StatusCode"]
            out = c.logs(stdout=True, stderr=False).decode(errors="replace")
            err = c.logs(stdout=False, stderr=True).decode(errors="replace")
            c.reload()
            return code, out, err, c.attrs
        finally:
            c.remove(force=True)

    def run(self, client, cmd, feature=None, timeout=60, **kw):
        """Run to the end: ``(exit code, stdout then stderr text, container attrs)``."""
        code, out, err, attrs = self.run_streams(client, cmd, feature, timeout, **kw)
        return code, out + err, attrs

    @staticmethod
    def create_raw(client, body):
        """``POST /containers/create`` with a body the SDK cannot express (StdinOnce)."""
        resp = client.api.post(client.api._url("/containers/create"), json=body,
                               params={"name": f"conf-{uuid.uuid4().hex[:10]}"})
        client.api._raise_for_status(resp)
        return resp.json()["Id"]

    @staticmethod
    def status_field(text, name):
        return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))

    @staticmethod
    def wait_for(predicate, timeout=15, what="condition"):
        return wait_for(predicate, timeout, what, every=0.05)

    # ----------------------------------------------------------- isolation
    def test_own_pid_namespace_hides_the_host(self, client, daemon):
        code, out, _ = self.run(client, ["sh", "-c", f"ls /proc | grep -c '^[0-9]'; ls -d /proc/{daemon.proc.pid}"])
        lines = out.splitlines()
        assert int(lines[0]) <= 4 and "No such file" in out and code != 0, out

    def test_cannot_mount_or_load_modules(self, client):
        code, out, _ = self.run(client, ["sh", "-c", "mount -t tmpfs none /tmp && echo MOUNTED; "
                                                     "insmod /bin/busybox && echo LOADED; true"])
        assert "MOUNTED" not in out and "LOADED" not in out
        assert out.count("not permitted") + out.count("permission denied") >= 2, out

    def test_proc_sys_is_read_only_and_paths_masked(self, client):
        code, out, err, _ = self.run_streams(client, ["sh", "-c", "echo x > /proc/sys/kernel/domainname && echo WROTE; "
                                                              "wc -c < /proc/timer_list; wc -c < /proc/keys; "
                                                              "ls /sys/firmware | wc -l"])
        assert "WROTE" not in out and "Read-only file system" in err
        assert out.split() == ["0", "0", "0"], (out, err)

    def test_no_raw_block_devices(self, client):
        code, out, _ = self.run(client, ["sh", "-c", "ls /dev; mknod /tmp/disk b 7 0 && head -c 1 /tmp/disk && echo READ"],
                                feature="devices")
        names = out.split()
        assert not any(n.startswith(("sd", "vd", "loop", "nvme")) for n in names), out
        assert "READ" not in out and "not permitted" in out, out

    def test_default_capabilities(self, client):
        code, out, _ = self.run(client, ["grep", "^Cap", "/proc/self/status"])
        assert self.status_field(out, "CapEff") == DEFAULT_CAPS_MASK
        assert self.status_field(out, "CapBnd") == DEFAULT_CAPS_MASK

    def test_cap_add_and_drop(self, client):
        code, out, _ = self.run(client, ["sh", "-c", "grep ^CapEff /proc/self/status; chown 1 /tmp && echo CHOWNED"],
                                cap_add=["NET_ADMIN"], cap_drop=["CHOWN"])
        eff = int(self.status_field(out, "CapEff"), 16)
        assert eff >> 12 & 1 and not eff & 1 and "CHOWNED" not in out, out

    def test_privileged_can_mount(self, client):
        code, out, _ = self.run(client, ["sh", "-c", "mkdir -p /m && mount -t tmpfs none /m && echo MOUNTED; "
                                                     "grep ^CapEff /proc/self/status"],
                                feature="privileged", privileged=True)
        assert "MOUNTED" in out and int(self.status_field(out, "CapEff"), 16) >> 21 & 1, out

    def test_seccomp_default_unconfined_and_custom(self, client):
        code, out, _ = self.run(client, ["grep", "^Seccomp:", "/proc/self/status"], feature="seccomp")
        assert self.status_field(out, "Seccomp") == "2"
        code, out, _ = self.run(client, ["grep", "^Seccomp:", "/proc/self/status"],
                                security_opt=["seccomp=unconfined"])
        assert self.status_field(out, "Seccomp") == "0"
        profile = {"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
        code, out, _ = self.run(client, ["sh", "-c", "mkdir /tmp/x && echo MADE"], feature="seccomp_profile",
                                security_opt=["seccomp=" + json.dumps(profile)])
        assert "MADE" not in out and "Permission denied" in out, out

    def test_no_new_privileges(self, client):
        code, out, _ = self.run(client, ["grep", "^NoNewPrivs:", "/proc/self/status"], feature="no_new_privileges",
                                security_opt=["no-new-privileges"])
        assert self.status_field(out, "NoNewPrivs") == "1"

    def test_read_only_root_user_and_hostname(self, client):
        code, out, err, _ = self.run_streams(client, ["sh", "-c", "touch /x || echo RO; id -u; id -g; hostname; "
                                                              "grep -c \"$(hostname)\" /etc/hosts"],
                                             feature="read_only", read_only=True, user="nobody", hostname="box1")
        assert out.split() == ["RO", "65534", "65534", "box1", "1"] and "Read-only file system" in err, (out, err)

    def test_devices_and_shm_size(self, client):
        code, out, _ = self.run(client, ["sh", "-c", "ls /dev; df -k /dev/shm | tail -1; echo x > /dev/null && "
                                                     "head -c 3 /dev/urandom | wc -c; ls -l /dev/ptmx"],
                                shm_size="32m")
        names = set(out.split())
        assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx"} <= names, out
        assert "32768" in out.split() and "\n3\n" in out and "pts/ptmx" in out, out

    def test_bind_and_tmpfs_mounts(self, client, tmp_path):
        (tmp_path / "in.txt").write_text("from the host\n")
        code, out, _ = self.run(client, ["sh", "-c", "cat /data/in.txt; echo back > /data/out.txt; "
                                                     "echo x > /ro/in.txt || echo ro-refused; "
                                                     "grep ' /scratch ' /proc/mounts"],
                                volumes={str(tmp_path): {"bind": "/data", "mode": "rw"},
                                         str(tmp_path / "in.txt"): {"bind": "/ro/in.txt", "mode": "ro"}},
                                tmpfs={"/scratch": "size=1m"})
        assert out.startswith("from the host\n") and "ro-refused" in out and "tmpfs" in out, out
        assert (tmp_path / "out.txt").read_text() == "back\n"

    def test_process_limits_and_scores(self, client):
        import docker

        code, out, _ = self.run(client, ["sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj"],
                                ulimits=[docker.types.Ulimit(name="nofile", soft=321, hard=654)],
                                oom_score_adj=400)
        assert out.split() == ["321", "654", "400"], out

    def test_sharing_namespaces(self, client):
        web = self.start(client, ["sh", "-c", "echo shared > /dev/shm/mark; sleep 100"], feature="join_namespace",
                         ipc_mode="shareable")
        try:
            self.wait_for(lambda: web.reload() or web.status == "running", what="web running")
            code, out, _ = self.run(client, ["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; cat /dev/shm/mark; "
                                                         "readlink /proc/self/ns/net"],
                                    pid_mode=f"container:{web.id}", ipc_mode=f"container:{web.id}",
                                    network_mode=f"container:{web.id}", feature="join_namespace")
            lines = out.splitlines()
            assert lines[0].strip() == "sleep 100" and lines[1] == "shared", out  # web's pid 1 (sh exec'd) and shm
            _, theirs = web.exec_run(["readlink", "/proc/self/ns/net"])
            assert lines[2] == theirs.decode().strip()
        finally:
            web.remove(force=True)
        code, out, _ = self.run(client, ["sh", "-c", "ls /proc | grep -c '^[0-9]'"], pid_mode="host",
                                feature="join_namespace")
        assert int(out.split()[0]) > 10, out

    def test_cgroup_limits_are_applied(self, client):
        v1 = ("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes "
              "/sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max")
        v2 = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/memory.low /sys/fs/cgroup/cpu.weight " \
             "/sys/fs/cgroup/cpuset.cpus /sys/fs/cgroup/pids.max"
        code, out, _ = self.run(client, ["sh", "-c", f"if [ -d /sys/fs/cgroup/memory ]; then {v1}; else {v2}; fi"],
                                feature="memory", mem_limit="48m", mem_reservation="16m", cpu_shares=512,
                                cpuset_cpus="0", pids_limit=77)
        values = out.split()
        if len(values) == 5 and values[2] == "512":
            assert values == [str(48 << 20), str(16 << 20), "512", "0", "77"], out
        else:  # cgroup v2: cpu.weight from shares as runc maps it
            assert values[0] == str(48 << 20) and values[1] == str(16 << 20) and values[3:] == ["0", "77"], out

    # -------------------------------------------------------------- limits
    def test_memory_hog_is_oom_killed_and_reported(self, client):
        code, out, attrs = self.run(client, ["sh", "-c", "head -c 300m /dev/zero | tail > /dev/null"],
                                    feature="memory", mem_limit="32m")
        assert code == 137 and attrs["State"]["OOMKilled"] is True, (code, out, attrs["State"])

    def test_fork_bomb_stops_at_the_pids_limit(self, client):
        # ash exits at a failed fork, so the bomb runs in a subshell and after it only builtins
        # (a pipe's second fork raced the bomb's; the sleeps die with pid 1)
        code, out, _ = self.run(client, ["sh", "-c", "exec 2>&1; (for i in $(seq 40); do sleep 5 & done); "
                                                     "echo done"],
                                feature="pids", pids_limit=8)
        assert "fork" in out.lower() and "done" in out, out

    def test_cpu_quota_holds(self, client):
        c = self.start(client, ["sh", "-c", "while :; do :; done"], feature="cpu", nano_cpus=int(0.2e9))
        try:
            first = c.stats(stream=False, one_shot=True)
            t0 = time.monotonic()
            time.sleep(1.5)
            second = c.stats(stream=False, one_shot=True)
            wall = time.monotonic() - t0
        finally:
            c.remove(force=True)
        used = (second["cpu_stats"]["cpu_usage"]["total_usage"] - first["cpu_stats"]["cpu_usage"]["total_usage"]) / 1e9
        assert 0.02 < used / wall < 0.45, f"{used / wall:.2f} CPU used under a 0.2 CPU quota"

    # ------------------------------------------------------ signals, codes
    def test_exit_codes_and_signals(self, client):
        assert self.run(client, ["sh", "-c", "exit 3"])[0] == 3
        c = self.start(client, ["sh", "-c", "trap 'exit 7' USR1; echo ready; while :; do sleep 0.05; done"])
        try:
            self.wait_for(lambda: b"ready" in c.logs(), what="ready")
            c.kill("SIGUSR1")
            assert c.wait(timeout=20)["StatusCode"] == 7
        finally:
            c.remove(force=True)
        c = self.start(client, ["sleep", "100"])
        try:
            c.kill()
            assert c.wait(timeout=20)["StatusCode"] == 137
        finally:
            c.remove(force=True)

    def test_stop_kills_after_the_timeout_and_init_forwards(self, client):
        c = self.start(client, ["sleep", "100"])  # pid 1 without a handler ignores SIGTERM
        try:
            t0 = time.monotonic()
            c.stop(timeout=1)
            assert time.monotonic() - t0 >= 0.9 and c.wait(timeout=20)["StatusCode"] == 137
        finally:
            c.remove(force=True)
        # once the child has spoken, tini has its signal handling set up (a SIGTERM before
        # that hits a pid 1 without handlers, which ignores it: that raced under load)
        c = self.start(client, ["sh", "-c", "echo ready; exec sleep 100"], feature="init", init=True)
        try:
            self.wait_for(lambda: b"ready" in c.logs(), what="ready")
            c.stop(timeout=10)
            assert c.wait(timeout=20)["StatusCode"] == 143  # tini passed SIGTERM on
        finally:
            c.remove(force=True)

    # ---------------------------------------------------------- tty, stdin
    def _stdin_socket(self, client, cid):
        sock = client.api.attach_socket(cid, params={"stdin": 1, "stream": 1, "stdout": 1, "stderr": 1})
        return sock._sock if hasattr(sock, "_sock") else sock

    def test_stdin_once_ends_with_eof(self, client):
        cid = self.create_raw(client, {"Image": "busybox", "Cmd": ["sh", "-c", "cat; echo END"],
                                       "OpenStdin": True, "StdinOnce": True, "AttachStdin": True})
        try:
            sock = self._stdin_socket(client, cid)
            try:
                client.api.start(cid)
            except Exception as exc:
                self._refusal("stdin", exc)
            sock.sendall(b"hello\n")
            sock.shutdown(socket.SHUT_WR)
            assert client.api.wait(cid, timeout=20)["StatusCode"] == 0
            sock.close()
            assert client.api.logs(cid) == b"hello\nEND\n"
        finally:
            client.api.remove_container(cid, force=True)

    def test_terminal_and_resize(self, client):
        cid = self.create_raw(client, {"Image": "busybox", "Cmd": ["sh", "-c", "tty; read x; stty size"],
                                       "Tty": True, "OpenStdin": True})
        try:
            try:
                client.api.start(cid)
            except Exception as exc:
                self._refusal("tty", exc)
            client.api.resize(cid, 33, 111)
            sock = self._stdin_socket(client, cid)
            sock.sendall(b"\r")
            assert client.api.wait(cid, timeout=20)["StatusCode"] == 0
            sock.close()
            out = client.api.logs(cid).decode().replace("\r\n", "\n")
            assert out.startswith("/dev/pts/") and out.endswith("33 111\n"), out
        finally:
            client.api.remove_container(cid, force=True)

    # ---------------------------------------------------------------- exec
    def test_exec_joins_the_running_container(self, client):
        c = self.start(client, ["sleep", "100"], hostname="execbox")
        try:
            try:
                code, out = c.exec_run(["sh", "-c", "hostname; cat /proc/1/cmdline; echo; id -u; pwd; echo $X"],
                                       user="nobody", environment={"X": "y z"}, workdir="/tmp")
            except Exception as exc:
                self._refusal("exec", exc)
            assert (code, out.decode().split("\n")[:-1]) == (0, ["execbox", "sleep\x00100\x00", "65534", "/tmp", "y z"])
            code, out = c.exec_run(["sh", "-c", "exit 9"])
            assert code == 9
            code, out = c.exec_run(["no-such-program"])
            assert code in (126, 127)
            code, out = c.exec_run(["tty"], tty=True)
            assert code == 0 and out.decode().strip().startswith("/dev/pts/")
        finally:
            c.remove(force=True)

    # --------------------------------------------------------------- pause
    def test_pause_and_unpause(self, client):
        c = self.start(client, ["sh", "-c", "while :; do echo tick; sleep 0.05; done"])
        try:
            self.wait_for(lambda: c.logs().count(b"tick") > 2, what="ticks")
            try:
                c.pause()
            except Exception as exc:
                self._refusal("pause", exc)
            c.reload()
            assert c.status == "paused"
            frozen = c.logs().count(b"tick")
            time.sleep(0.5)
            assert c.logs().count(b"tick") == frozen
            c.unpause()
            self.wait_for(lambda: c.logs().count(b"tick") > frozen + 2, what="ticks after unpause")
            c.reload()
            assert c.status == "running"
        finally:
            c.remove(force=True)

    # ------------------------------------------------------ daemon restart
    def test_containers_outlive_a_daemon_crash(self, client, daemon):
        ended = self.start(client, ["sh", "-c", "echo one; sleep 1; echo two; exit 4"])
        long = self.start(client, ["sh", "-c", "echo up; sleep 100"])
        try:
            self.wait_for(lambda: b"up" in long.logs() and b"one" in ended.logs(), what="output")
            long.reload()
            pid = long.attrs["State"]["Pid"]
            client.close()
            daemon.stop(signal.SIGKILL)
            time.sleep(1.5)  # `ended` finishes while nobody watches
            os.kill(pid, 0)  # the long one still runs
            daemon.start()
            fresh = daemon.sdk()
            try:
                assert fresh.containers.get(long.id).status == "running"
                state = fresh.api.inspect_container(ended.id)["State"]
                assert state["Status"] == "exited" and state["ExitCode"] == 4, state
                assert fresh.containers.get(ended.id).logs() == b"one\ntwo\n"
                fresh.containers.get(long.id).kill()
                assert fresh.api.wait(long.id, timeout=20)["StatusCode"] == 137
            finally:
                fresh.close()
        finally:
            again = daemon.sdk()
            for c in (ended, long):
                try:
                    again.containers.get(c.id).remove(force=True)
                except Exception:
                    pass
            again.close()


def _remove_all(d):
    try:
        client = d.sdk()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()
    except Exception as exc:  # the leak check has the last word
        print(f"cleanup of containers failed: {exc}")
