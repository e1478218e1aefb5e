"""Shared fixtures: a private daemon per test session, offline images, leak checks.

Each session gets its own data root, exec root and socket under a unique temp
directory, so several runs (and a real daemon) can live side by side.  At the end
of the session the run fails if a mount, network namespace or container process
was left behind.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def mounts_under(prefix):
    prefix = str(prefix)
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            target = line.split()[4].replace("\\040", " ")
            if target == prefix or target.startswith(prefix.rstrip("/") + "/"):
                out.append(target)
    return out


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append(f"{pid}: {cmd.strip()}")
    return found


def ping(sock_path):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(sock_path)
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False
    finally:
        s.close()


class Daemon:
    """A dockyard daemon on its own socket and roots."""

    def __init__(self, base, storage_driver=None, config=None, extra_args=()):
        self.base = Path(base)
        self.data_root = self.base / "data"
        self.exec_root = self.base / "exec"
        self.sock = str(self.base / "dockyard.sock")
        self.host = f"unix://{self.sock}"
        self.log = self.base / "daemon.log"
        self.args = [PY, "-m", "dockyard.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
                     "--exec-root", str(self.exec_root)]
        if storage_driver:
            self.args += ["--storage-driver", storage_driver]
        if config:
            self.args += ["--config", str(config)]
        self.args += list(extra_args)
        self.proc = None

    def start(self, timeout=20):
        self.base.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(self.args, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        logf.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if ping(self.sock):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not answer in {timeout}s:\n{self.log.read_text()}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cli(self, *args, input=None, check=False, timeout=60, env=None):
        """Run ``dockyard -H <this daemon> ARGS``; return the CompletedProcess."""
        cmd = [PY, "-m", "dockyard.cli.main", "-H", self.host, *args]
        res = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout,
                             env={**os.environ, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"{cmd} failed ({res.returncode}): {res.stderr.decode()}")
        return res

    def docker(self, *args, timeout=60):
        """Run the real docker CLI against this daemon."""
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, timeout=timeout,
                              env={**os.environ, "DOCKER_CONFIG": str(self.base / "docker-config")})

    def sdk(self):
        import docker

        return docker.DockerClient(base_url=self.host, version="1.41", timeout=60)


@pytest.fixture(scope="session")
def session_root():
    base = Path(tempfile.mkdtemp(prefix=f"dockyard-test-{uuid.uuid4().hex[:8]}-"))
    yield base
    leaked_mounts = mounts_under(base)
    leaked_procs = processes_mentioning(str(base))
    for target in reversed(leaked_mounts):
        subprocess.run(["umount", "-l", target], check=False)
    for line in leaked_procs:
        try:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        except OSError:
            pass
    shutil.rmtree(base, ignore_errors=True)
    if leaked_mounts or leaked_procs:
        pytest.fail("leaked by the test session:\n" + "\n".join(
            [f"mount {m}" for m in leaked_mounts] + [f"process {p}" for p in leaked_procs]))


@pytest.fixture(scope="session", autouse=True)
def no_leaked_netns():
    before = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    yield
    after = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    leaked = sorted(after - before)
    if leaked:
        pytest.fail(f"network namespaces leaked: {leaked}")


@pytest.fixture(scope="session")
def busybox_tar(session_root):
    from dockyard.testing.busybox import make_busybox_tar

    return make_busybox_tar(session_root / "busybox.tar")


@pytest.fixture(scope="session")
def daemon(session_root, busybox_tar):
    """The session's daemon with a ``busybox`` image imported."""
    if os.geteuid() != 0:
        pytest.skip("the daemon needs root")
    d = Daemon(session_root / "main").start()
    try:
        res = d.cli("import", str(busybox_tar), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        yield d
    finally:
        _remove_all_containers(d)
        d.stop()


def _remove_all_containers(d):
    try:
        client = d.sdk()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()
    except Exception as exc:  # report, but let the leak check have the last word
        print(f"cleanup of containers failed: {exc}", file=sys.stderr)
