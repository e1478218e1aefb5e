"""A private Dockyard daemon for tests: its own socket, data root, exec root and
cgroup parent, driven by our CLI, the docker CLI or the docker SDK.

Importable by third-party driver authors (the exec conformance kit uses it)::

    d = Daemon(tmp_path / "d", extra_args=["--exec-driver", "mine"]).start()
    ...
    d.stop()
    assert d.leaks() == []

:meth:`Daemon.leaks` lists what a daemon (or its containers) left behind:
mounts under its base directory, processes naming it, and cgroups under its
cgroup parent.  Its host-wide names (cgroup parent, default bridge, nft table)
start with the test session's tag (:mod:`.leaks`), so that a session's checks
see its own daemons' objects and not those of a session beside it.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

# the leak helpers live in .leaks; tests and kits import them from here too
from .leaks import (CGROUP_PREFIX, LINK_PREFIX, TABLE_PREFIX, cgroups_under, links_named,
                    mounts_under, namespaces_of, nft_tables, processes_mentioning, veths)

HUB_GRACE = 5.0  # seconds a stopped daemon's supervisor hub may take to leave

PY = sys.executable


def http(sock_path, method, path, data=b"", headers=None):
    """One raw HTTP/1.1 request on a unix socket (for what the clients hide: exact
    status codes, streamed bodies): ``(status, response head bytes, body bytes)``,
    a chunked body already joined."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock_path)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    s.sendall(f"{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n{extra}"
              f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
    out = b""
    while chunk := s.recv(1 << 16):
        out += chunk
    s.close()
    head, _, payload = out.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        joined = b""
        while payload:
            size, _, rest = payload.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            joined += rest[:n]
            payload = rest[n + 2:]
        payload = joined
    return int(head.split()[1]), head, payload


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


#: every Daemon made in this process, so a test session can remove what they keep
#: (their default bridges and nft tables) at its end: :func:`remove_all_network_objects`
MADE: list["Daemon"] = []


def remove_all_network_objects():
    for d in MADE:
        if d.proc is None or d.proc.poll() is not None:
            d.remove_network_objects()


class Daemon:
    """A dockyard daemon on its own socket and roots."""

    def __init__(self, base, storage_driver=None, config=None, extra_args=(), cgroup_parent=None, cri=True):
        self.base = Path(base)
        tag = uuid.uuid4().hex[:6]  # beside the session's: ``dy`` + 12 of a bridge name's 15 characters
        self.cgroup_parent = cgroup_parent or f"{CGROUP_PREFIX}{tag}"
        self.data_root = self.base / "data"
        self.exec_root = self.base / "exec"
        self.sock = str(self.base / "dockyard.sock")
        self.host = f"unix://{self.sock}"
        self.log = self.base / "daemon.log"
        #: the Kubernetes CRI's socket, in the daemon's own exec root (never the host's
        #: /run/dockyard/cri.sock); None with ``cri=False`` (``--no-cri``)
        self.cri_sock = str(self.exec_root / "cri.sock") if cri else None
        self.args = [PY, "-m", "dockyard.daemon.main", "-H", self.host, "--data-root", str(self.data_root),
                     "--exec-root", str(self.exec_root)]
        if storage_driver:
            self.args += ["--storage-driver", storage_driver]
        if config:
            self.args += ["--config", str(config)]
        self.bridge, self.nft_table = f"{LINK_PREFIX}{tag}", f"{TABLE_PREFIX}{tag}"  # its own kernel objects
        self.args += ["--exec-opt", f"cgroup_parent={self.cgroup_parent}", "--bridge", self.bridge,
                      "--network-opt", f"nft_table={self.nft_table}",
                      *(["--cri-socket", self.cri_sock] if cri else ["--no-cri"]), *extra_args]
        self.proc = None
        MADE.append(self)

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

    def docker(self, *args, timeout=60, input=None):
        """Run the real docker CLI against this daemon."""
        return subprocess.run(["docker", "-H", self.host, *args], capture_output=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL,
                              env={**os.environ, "DOCKER_CONFIG": str(self.base / "docker-config")})

    def crictl(self, *args, timeout=60, input=None, crictl="/var/cache/cri-tools/bin/crictl"):
        """Run crictl (cri-tools) against this daemon's CRI socket (its own
        ``crictl.yaml``, never the host's /etc/crictl.yaml)."""
        config = self.base / "crictl.yaml"
        endpoint = f"unix://{self.cri_sock}"
        if not config.exists():
            config.write_text(f"runtime-endpoint: {endpoint}\nimage-endpoint: {endpoint}\ntimeout: 30\n")
        return subprocess.run([crictl, "--config", str(config), *args], capture_output=True, timeout=timeout,
                              input=input, stdin=None if input is not None else subprocess.DEVNULL)

    def sdk(self):
        import docker

        return docker.DockerClient(base_url=self.host, version="1.41", timeout=60)

    def remove_network_objects(self):
        """After the last stop: the default bridge and the nft table the daemon
        keeps, as dockerd keeps docker0 and its rules, go too."""
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
        for table in nft_tables():
            family, _, name = table.partition(" ")
            if name == self.nft_table:
                subprocess.run(["nft", "delete", "table", family, name], capture_output=True)

    def veths(self):
        """The veths this daemon still has: on its default bridge, or with their
        peer in a network namespace it pins or that it, a shim or a container of
        its holds (none once its containers are gone)."""
        pids = [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []
        return veths(namespaces_of([self.base], [self.cgroup_parent], pids), [self.bridge])

    def leaks(self):
        """What this daemon left behind once it is stopped and its containers are
        gone: ``["mount /x", "process 12: ...", "cgroup /sys/fs/cgroup/pids/..."]``.
        Empty cgroup parents are removed on the way (they are the daemon's, like
        Docker's ``/docker``)."""
        out = [f"mount {m}" for m in mounts_under(self.base)]
        deadline = time.monotonic() + HUB_GRACE  # a hub leaves (with its keeper) once its daemon did
        while processes_mentioning(str(self.base)) and time.monotonic() < deadline:
            time.sleep(0.02)
        out += [f"process {p}" for p in processes_mentioning(str(self.base))]
        out += [f"cgroup {c}" for c in cgroups_under(self.cgroup_parent)]
        out += [f"link {name}" for name in links_named(self.bridge)]
        out += [f"nft table {t}" for t in nft_tables() if t.endswith(" " + self.nft_table)]
        return out
