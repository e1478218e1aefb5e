"""The CRI's streaming server (Exec, Attach, PortForward).

Here, two tiers (a third, a real daemon through crictl, is in
test_cri_streaming_crictl.py):

- the wire formats alone: SPDY/3's dictionary and header blocks, frames, the
  WebSocket handshake key, resize events, the single-use tokens;
- a standalone :class:`StreamServer` with a stand-in for the engine's container
  service that runs real host processes (with a real pty for a terminal) and
  writes their output as the shim does, driven by a small SPDY client here and by
  a WebSocket client: exec with and without a terminal, stdin, resize, exit
  codes on the error stream (v4 JSON and v1 text), attach, port forwarding into
  a network namespace the test makes and onto the host's loopback.
"""

import base64
import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import types
import uuid

import pytest
from dockyard.cri.api import api_pb2 as pb
from dockyard.cri.config import CriConfig
from dockyard.cri.streaming import StreamServer, spdy, websocket
from dockyard.cri.streaming.remotecommand import resize_events
from dockyard.cri.streaming.server import TokenCache
from dockyard.testing.leaks import NETNS_PREFIX
from streaming_common import FakeContainers, FakePods, SpdyClient, listener_script

ROOT = os.geteuid() == 0


# --- the wire formats ------------------------------------------------------------------
def test_spdy_dictionary_is_the_specs():
    # sha256 of the 1423 bytes of SPDY/3's dictionary, as Go's net/spdy and spdystream hold them
    assert len(spdy.DICTIONARY) == 1423
    assert hashlib.sha256(spdy.DICTIONARY).hexdigest() == \
        "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def test_header_blocks_share_one_zlib_stream_per_direction():
    out, into = spdy.HeaderCodec(), spdy.HeaderCodec()
    first = out.encode({"streamType": ["stdout"], "port": ["80"]})
    second = out.encode({"streamtype": ["error"], "x": ["a", "b"]})
    assert into.decode(first) == {"streamtype": ["stdout"], "port": ["80"]}
    assert into.decode(second) == {"streamtype": ["error"], "x": ["a", "b"]}
    with pytest.raises(spdy.ProtocolError):
        spdy.HeaderCodec().decode(second)  # the second block alone: its window is the first's


def test_frames_round_trip_and_other_versions_are_refused():
    import io
    wire = spdy.data_frame(3, b"abc", spdy.FLAG_FIN) + spdy.control_frame(spdy.PING, struct.pack(">I", 7))
    reader = spdy.FrameReader(io.BytesIO(wire))
    assert reader.read() == ("data", 3, spdy.FLAG_FIN, b"abc")
    assert reader.read() == ("control", spdy.PING, 0, struct.pack(">I", 7))
    assert reader.read() is None
    v2 = struct.pack(">HHI", 0x8002, spdy.PING, 4) + b"\0\0\0\1"
    with pytest.raises(spdy.ProtocolError):
        spdy.FrameReader(io.BytesIO(v2)).read()


def test_websocket_accept_key_and_subprotocols():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, 1.3
    ours = ["v4.channel.k8s.io", "channel.k8s.io"]
    assert websocket.negotiate("v5.channel.k8s.io, channel.k8s.io", ours) == "channel.k8s.io"
    assert websocket.negotiate("", ours) == ""
    assert websocket.negotiate("other", ours) is None


def test_resize_events_are_json_objects_in_any_cut():
    chunks = [b'{"Width":80,', b'"Height":24}{"Width":1', b'00,"Height":30}\n', b""]
    stream = types.SimpleNamespace(read=lambda size=-1: chunks.pop(0))
    assert list(resize_events(stream)) == [(24, 80), (30, 100)]


def test_tokens_are_single_use_of_one_kind_and_expire():
    cache = TokenCache(ttl=0.2)
    token = cache.insert("exec", "req")
    assert cache.consume("attach", token) is None  # another kind's URL: gone too
    token = cache.insert("exec", "req")
    assert cache.consume("exec", token) == "req"
    assert cache.consume("exec", token) is None
    late = cache.insert("exec", "req")
    time.sleep(0.3)
    assert cache.consume("exec", late) is None


@pytest.fixture
def served(tmp_path):
    containers, pods = FakeContainers(tmp_path), FakePods()
    server = StreamServer(types.SimpleNamespace(containers=containers), CriConfig(), pods)
    server.start()
    cid = containers.run(["sleep", "60"])
    yield types.SimpleNamespace(server=server, containers=containers, pods=pods, cid=cid)
    server.stop()
    containers.stop_all()


class Ctx:
    def abort(self, code, message):
        raise AssertionError(f"{code}: {message}")


def exec_url(s, cmd, **flags):
    req = pb.ExecRequest(container_id=s.cid, cmd=cmd, **flags)
    return s.server.Exec(req, Ctx()).url


def test_exec_output_streams_and_success(served):
    url = exec_url(served, ["sh", "-c", "echo hello; echo oops >&2"], stdout=True, stderr=True)
    assert url.startswith(served.server.base_url + "/exec/")
    c = SpdyClient(url, ["v4.channel.k8s.io", "v3.channel.k8s.io"])
    assert c.status == 101 and c.headers["x-stream-protocol-version"] == "v4.channel.k8s.io"
    err, out, stderr = c.open(streamType="error"), c.open(streamType="stdout"), c.open(streamType="stderr")
    assert c.read_all(out) == b"hello\n"
    assert c.read_all(stderr) == b"oops\n"
    assert json.loads(c.read_all(err)) == {"metadata": {}, "status": "Success"}
    c.wait(c.goaway.is_set)
    c.close()
    assert SpdyClient(url).status == 404  # single use


def test_exec_exit_code_in_v4_status_and_v1_text(served):
    c = SpdyClient(exec_url(served, ["sh", "-c", "exit 3"], stdout=True))
    err, out = c.open(streamType="error"), c.open(streamType="stdout")
    assert c.read_all(out) == b""
    status = json.loads(c.read_all(err))
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode"
    assert status["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]
    c.close()
    c = SpdyClient(exec_url(served, ["sh", "-c", "exit 4"], stdout=True), ["channel.k8s.io"])
    assert c.headers["x-stream-protocol-version"] == "channel.k8s.io"
    err, out = c.open(streamType="error"), c.open(streamType="stdout")
    assert b"exit status 4" in c.read_all(err)
    c.close()


def test_exec_with_terminal_stdin_and_size(served):
    url = exec_url(served, ["sh", "-c", "stty size; read x; echo got-$x"], stdin=True, stdout=True, tty=True)
    c = SpdyClient(url)
    err, stdin, out = c.open(streamType="error"), c.open(streamType="stdin"), c.open(streamType="stdout")
    resize = c.open(streamType="resize")
    c.send(resize, b'{"Width":100,"Height":30}')
    c.send(stdin, b"abc\n")
    output = c.read_all(out)
    assert b"30 100" in output and b"got-abc" in output
    assert json.loads(c.read_all(err))["status"] == "Success"
    assert served.containers.console_sizes[-1] == [30, 100]  # the first size, before the start
    c.close()


def test_bad_requests_are_refused(served):
    with pytest.raises(AssertionError, match="INVALID_ARGUMENT"):
        served.server.Exec(pb.ExecRequest(container_id=served.cid, cmd=["true"], tty=True, stderr=True,
                                          stdout=True), Ctx())
    with pytest.raises(AssertionError, match="INVALID_ARGUMENT"):
        served.server.Exec(pb.ExecRequest(container_id=served.cid, cmd=["true"]), Ctx())
    with pytest.raises(AssertionError, match="NOT_FOUND"):
        served.server.Exec(pb.ExecRequest(container_id="nope", cmd=["true"], stdout=True), Ctx())
    with pytest.raises(AssertionError, match="NOT_FOUND"):
        served.server.PortForward(pb.PortForwardRequest(pod_sandbox_id="nope"), Ctx())
    url = exec_url(served, ["true"], stdout=True)
    c = SpdyClient(url, upgrade="h2c")
    assert c.status == 400
    c = SpdyClient(exec_url(served, ["true"], stdout=True), ["v9.channel.k8s.io"])
    assert c.status == 403 and "v4.channel.k8s.io" in c.headers["x-accepted-stream-protocol-versions"]


def test_attach_stdin_once_ends_with_the_container(served):
    cid = served.containers.run(["sh"], stdin_once=True)
    url = served.server.Attach(pb.AttachRequest(container_id=cid, stdin=True, stdout=True, stderr=True), Ctx()).url
    c = SpdyClient(url)
    err, stdin = c.open(streamType="error"), c.open(streamType="stdin")
    out, stderr = c.open(streamType="stdout"), c.open(streamType="stderr")
    c.send(stdin, b"echo hello\n")
    c.wait(lambda: c.data.get(out) == b"hello\n")
    c.send(stdin, b"", fin=True)  # the client's end of stdin: the shell's, then the container's end
    assert c.read_all(out) == b"hello\n"
    assert c.read_all(stderr) == b""
    assert json.loads(c.read_all(err))["status"] == "Success"
    c.close()


def test_websocket_exec_channels(served):
    for protocol in ("v4.channel.k8s.io", "base64.channel.k8s.io"):
        url = exec_url(served, ["sh", "-c", "echo hi; exit 2"], stdout=True)
        host, rest = url.split("://")[1].split("/", 1)
        sock = socket.create_connection(tuple(host.rsplit(":", 1)[:1]) + (int(host.rsplit(":", 1)[1]),), timeout=20)
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET /{rest} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                     f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                     f"Sec-WebSocket-Protocol: {protocol}\r\n\r\n".encode())
        rfile = sock.makefile("rb")
        head = b""
        while (line := rfile.readline()) not in (b"\r\n", b""):
            head += line
        assert head.startswith(b"HTTP/1.1 101") and websocket.accept_key(key).encode() in head
        messages = []
        while True:
            b0, b1 = rfile.read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", rfile.read(2))[0]
            payload = rfile.read(n)
            if b0 & 0x0F == websocket.CLOSE:
                break
            if protocol.startswith("base64"):
                payload = bytes([payload[0] - ord("0")]) + base64.b64decode(payload[1:])
            messages.append((payload[0], payload[1:]))
        sock.close()
        assert messages[0] == (1, b"")  # ready
        assert (1, b"hi\n") in messages
        errors = b"".join(data for ch, data in messages if ch == 3)
        if protocol.startswith("v4"):
            assert json.loads(errors)["details"]["causes"] == [{"reason": "ExitCode", "message": "2"}]
        else:
            assert b"exit status 2" in errors


# --- port forwarding ------------------------------------------------------------------------
@pytest.fixture
def pod_netns():
    if not ROOT or not shutil.which("ip"):
        pytest.skip("network namespaces need root and ip(8)")
    name = f"{NETNS_PREFIX}pf{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(["ip", "netns", "exec", name, sys.executable, "-c", listener_script(8080)],
                                stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        yield f"/run/netns/{name}"
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        subprocess.run(["ip", "netns", "del", name], check=True)


def _forward(url, port, request_id, payload):
    c = SpdyClient(url, ["portforward.k8s.io"])
    assert c.status == 101 and c.headers["x-stream-protocol-version"] == "portforward.k8s.io"
    err = c.open(streamType="error", port=port, requestID=request_id)
    c.send(err, b"", fin=True)
    data = c.open(streamType="data", port=port, requestID=request_id)
    c.send(data, payload)
    return c, err, data


def test_port_forward_into_the_pods_network_namespace(served, pod_netns):
    served.pods.netns["pod1"] = pod_netns
    url = served.server.PortForward(pb.PortForwardRequest(pod_sandbox_id="pod1"), Ctx()).url
    c, err, data = _forward(url, 8080, 0, b"hello\n")
    assert c.read_all(data) == b"pod says HELLO\n"
    assert c.read_all(err) == b""
    # a second connection over the same SPDY connection, then a port nobody listens on
    for rid, port in ((1, 8080), (2, 8081)):
        err = c.open(streamType="error", port=port, requestID=rid)
        data = c.open(streamType="data", port=port, requestID=rid)
        c.send(data, b"again\n")
        if port == 8080:
            assert c.read_all(data) == b"pod says AGAIN\n"
        else:
            assert b"error forwarding port 8081" in c.read_all(err)
    bad = c.open(streamType="data")  # no port: refused
    assert bad in c.reset
    c.close()


def test_port_forward_of_a_host_network_pod_reaches_the_hosts_loopback(served):
    served.pods.netns["hostpod"] = None
    proc = subprocess.Popen([sys.executable, "-c", listener_script(0).replace(
        "print('ready', flush=True)", "print(s.getsockname()[1], flush=True)")], stdout=subprocess.PIPE)
    try:
        port = int(proc.stdout.readline())
        url = served.server.PortForward(pb.PortForwardRequest(pod_sandbox_id="hostpod"), Ctx()).url
        c, err, data = _forward(url, port, 0, b"host\n")
        assert c.read_all(data) == b"pod says HOST\n"
        c.close()
    finally:
        proc.kill()
        proc.wait()


def test_stop_ends_open_connections(served):
    c = SpdyClient(exec_url(served, ["sleep", "30"], stdout=True))
    c.open(streamType="error")
    c.open(streamType="stdout")
    served.server.stop()
    c.wait(c.goaway.is_set, timeout=10)
    c.close()
