"""The CRI's streaming server of a real daemon through crictl, whose exec,
attach and port-forward are client-go's SPDY clients (what a kubelet's users and
critest speak): exec's output, exit code and stdin, attach to a container whose
stdin ends with the client's, and port forwarding of a pod on the host's network
to a listener on the host's loopback.  (Port forwarding into a pod's own network
namespace: test_cri_streaming.py, and critest's Streaming specs.)
"""

import json
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry_content import stop_daemon
from streaming_common import listener_script

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

CRICTL = "/var/cache/cri-tools/bin/crictl"


@pytest.fixture(scope="module")
def crictl(session_root, busybox_tar):
    if not os.access(CRICTL, os.X_OK):
        pytest.skip("needs crictl (bash ../shared/cri-tools/build.sh)")

    cni = session_root / f"cni-{uuid.uuid4().hex[:8]}"
    cni.mkdir()
    d = Daemon(session_root / f"cristream-{uuid.uuid4().hex[:8]}", extra_args=["--cni-conf-dir", str(cni)]).start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        endpoint = f"unix://{d.cri_sock}"

        def run(*args, input=None, timeout=60):
            return subprocess.run([CRICTL, "--runtime-endpoint", endpoint, "--image-endpoint", endpoint,
                                   "--timeout", "30s", *args], input=input, capture_output=True, timeout=timeout)
        run.endpoint = endpoint
        yield run
    finally:
        assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def host_pod(crictl, session_root):
    """A pod on the host's network: its id, its config file."""
    config = session_root / f"pod-{uuid.uuid4().hex[:8]}.json"
    config.write_text(json.dumps({
        "metadata": {"name": config.stem, "namespace": "default", "uid": config.stem, "attempt": 0},
        "log_directory": str(session_root / f"{config.stem}-logs"),
        "linux": {"security_context": {"namespace_options": {"network": 2}}}}))
    res = crictl("runp", str(config))
    assert res.returncode == 0, res.stderr.decode()
    pod_id = res.stdout.decode().strip()
    yield pod_id, config
    crictl("stopp", pod_id)
    crictl("rmp", pod_id)


def _container(crictl, pod, tmp_path, command, **fields):
    pod_id, pod_config = pod
    name = f"c-{uuid.uuid4().hex[:8]}"
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps({"metadata": {"name": name}, "image": {"image": "busybox"}, "command": command,
                                  "log_path": f"{name}.log", "linux": {}, **fields}))
    res = crictl("create", pod_id, str(config), str(pod_config))
    assert res.returncode == 0, res.stderr.decode()
    cid = res.stdout.decode().strip()
    assert crictl("start", cid).returncode == 0
    return cid


def test_crictl_exec(crictl, host_pod, tmp_path):
    cid = _container(crictl, host_pod, tmp_path, ["sleep", "600"])
    res = crictl("exec", cid, "sh", "-c", "echo hello; echo oops >&2")
    assert (res.returncode, res.stdout, res.stderr) == (0, b"hello\n", b"oops\n")
    res = crictl("exec", cid, "sh", "-c", "exit 3")
    assert res.returncode == 1 and b"command terminated with exit code 3" in res.stderr
    res = crictl("exec", "-i", cid, "sh", input=b"echo from-stdin; cat /etc/hostname >/dev/null; exit 0\n")
    assert (res.returncode, res.stdout) == (0, b"from-stdin\n")
    crictl("rm", "-f", cid)


def test_crictl_attach(crictl, host_pod, tmp_path):
    cid = _container(crictl, host_pod, tmp_path, ["sh"], stdin=True, stdin_once=True)
    res = crictl("attach", "-i", cid, input=b"echo hello-attach\n")
    assert (res.returncode, res.stdout) == (0, b"hello-attach\n"), res.stderr.decode()
    crictl("rm", "-f", cid)


def test_crictl_port_forward_of_a_host_network_pod(crictl, host_pod):
    server = subprocess.Popen([sys.executable, "-c", listener_script(0).replace(
        "print('ready', flush=True)", "print(s.getsockname()[1], flush=True)")], stdout=subprocess.PIPE)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    local = probe.getsockname()[1]
    probe.close()
    forwarder = None
    try:
        remote = int(server.stdout.readline())
        forwarder = subprocess.Popen([CRICTL, "--runtime-endpoint", crictl.endpoint, "port-forward", host_pod[0],
                                     f"{local}:{remote}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", local), timeout=10)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline and forwarder.poll() is None, forwarder.stderr.read()
                time.sleep(0.1)
        conn.sendall(b"through crictl\n")
        got = b""
        while chunk := conn.recv(100):
            got += chunk
        conn.close()
        assert got == b"pod says THROUGH CRICTL\n"
    finally:
        if forwarder is not None:
            forwarder.kill()
            forwarder.wait()
        server.kill()
        server.wait()
