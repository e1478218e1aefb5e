"""The client's wire level (dockyard.wire: HTTP/1.1 on the standard library over
our own socket) against a scripted raw-socket server that writes exact bytes: body
framings, answers broken or cut short, a daemon that hangs up early, the hijack
with the stream in the same packet as its ``101``, uploads, and what it costs to
import.  The scripted server stands in for the daemon ONLY to test the framing;
the client against a fake daemon is test_client.py, the real daemon tests/e2e.
"""

import io
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

import pytest

from dockyard.client import APIError, Client, ProtocolError
from dockyard.wire import quote, urlencode


def frame(stream, data):
    return struct.pack(">BxxxL", stream, len(data)) + data


class Scripted:
    """Accepts connections one at a time; answers each with the next canned reply.

    A reply is bytes (sent after the request head is read) or a callable
    ``(conn, head) -> None``.  ``heads`` collects the request heads seen.
    """

    def __init__(self, family, address, replies):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(address)
        self.sock.listen(8)
        self.address = self.sock.getsockname()
        self.replies = list(replies)
        self.heads = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        for reply in self.replies:
            conn, _ = self.sock.accept()
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(65536)
                    if not data:
                        break
                    head += data
                self.heads.append(head)
                try:
                    reply(conn, head) if callable(reply) else conn.sendall(reply)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.fixture
def scripted(tmp_path):
    made = []

    def make(*replies, tcp=False):
        if tcp:
            server = Scripted(socket.AF_INET, ("127.0.0.1", 0), replies)
            host = "tcp://127.0.0.1:%d" % server.address[1]
        else:
            server = Scripted(socket.AF_UNIX, str(tmp_path / f"s{len(made)}.sock"), replies)
            host = f"unix://{server.address}"
        made.append(server)
        return server, Client(host)
    yield make
    for server in made:
        server.close()


def test_body_framings(scripted):
    server, client = scripted(
        b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"until\": \"close\"}",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n\"cl\"trailing junk",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        tcp=True)
    assert client.request("GET", "/a") == {"until": "close"}
    assert client.request("GET", "/b") == "cl"
    assert client.request("GET", "/c") == [1, 2]
    assert client.request("POST", "/d") is None
    head = server.heads[3].decode()
    assert head.startswith("POST /v1.41/d HTTP/1.1\r\n")
    assert "\r\nContent-Length: 0\r\n" in head and "\r\nConnection: close\r\n" in head
    assert f"\r\nHost: 127.0.0.1:{server.address[1]}\r\n" in head


def test_broken_answers_are_protocol_errors(scripted):
    server, client = scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{\"a\"",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Le")
    for _ in range(4):
        with pytest.raises(ProtocolError):
            client.request("GET", "/x")


def test_silent_daemon_times_out_as_protocol_error(scripted):
    release = threading.Event()
    server, client = scripted(lambda conn, head: release.wait(5))
    try:
        with pytest.raises(ProtocolError):
            client.ping(timeout=0.2)
    finally:
        release.set()


def test_upload_refused_early_reports_the_daemons_answer(scripted, tmp_path):
    def refuse(conn, head):
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 25\r\n\r\n{\"message\": \"bad upload\"}")
        conn.shutdown(socket.SHUT_WR)
    server, client = scripted(refuse)
    big = tmp_path / "big.tar"
    big.write_bytes(b"\0" * (8 << 20))
    with open(big, "rb") as fh, pytest.raises(APIError) as err:
        list(client.import_image(fh))
    assert err.value.status == 400 and err.value.message == "bad upload"


def test_quote_and_urlencode_match_urllib():
    samples = ["", "plain", "a b", "a/b:c@d", "é€😀", "x?y&z=1#f", "100%", "~_.-", "\n\t\0"]
    for s in samples:
        for safe in ("", "/:@"):
            assert quote(s, safe) == urllib.parse.quote(s, safe=safe)
        params = {s: s, "n": 42, "l": [s, "a b", 7]}
        assert urlencode(params) == urllib.parse.urlencode(params, doseq=True)


def test_client_does_not_import_http_client():
    code = ("import sys, dockyard.client; "
            "print(sorted(m for m in ('http.client', 'email', 'ssl') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# --- framing edge cases ----------------------------------------------------------------------


def test_hijack_with_the_stream_in_the_same_packet_as_the_101(scripted):
    """A daemon that writes the first frames in the same segment as the ``101``
    head: those bytes are handed back, nothing is lost or parsed as HTTP."""
    head = (b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
            b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")

    def reply(conn, _):
        conn.sendall(head + frame(1, b"first") + frame(2, b"HTTP/1.1 200 OK\r\n\r\n")[:5])
        time.sleep(0.05)  # the rest of a frame later, on its own
        conn.sendall(frame(2, b"HTTP/1.1 200 OK\r\n\r\n")[5:] + frame(1, b"last"))
    server, client = scripted(reply)
    with client.attach("c1", tty=False) as att:
        assert list(att.frames()) == [(1, b"first"), (2, b"HTTP/1.1 200 OK\r\n\r\n"), (1, b"last")]
    head_sent = server.heads[0].decode()
    assert "\r\nUpgrade: tcp\r\n" in head_sent and "Content-Length" not in head_sent


def test_exec_hijack_sends_its_body_and_reads_the_raw_tty_stream(scripted):
    def reply(conn, head):
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = head.split(b"\r\n\r\n", 1)[1]
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n" + b"echo:" + body)
    server, client = scripted(reply)
    with client.exec_start("e1", tty=True) as att:
        got = b"".join(d for _, d in att.frames())
    assert got.startswith(b"echo:") and json.loads(got[5:]) == {"Detach": False, "Tty": True}


def test_chunked_stream_byte_by_byte_with_extensions_and_trailers(scripted):
    body = b'{"status":"a"}\n{"status":"b"}\n'
    wire = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%X;name=value\r\n%s\r\n" % (10, body[:10])
            + b"%x\r\n%s\r\n" % (len(body) - 10, body[10:]) + b"0\r\nX-Trailer: t\r\n\r\n")

    def trickle(conn, _):
        for i in range(len(wire)):
            conn.sendall(wire[i:i + 1])
    big = b"x" * 200_000
    server, client = scripted(trickle, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                              + b"%x\r\n%s\r\n0\r\n\r\n" % (len(big), big))
    assert list(client.json_stream("GET", "/x")) == [{"status": "a"}, {"status": "b"}]
    assert client.request("GET", "/y") == "x" * 200_000


def test_a_daemon_closing_early_is_a_protocol_error(scripted):
    def hang_up(conn, _):
        conn.close()

    logs = (b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (9, frame(1, b"A"))
            + b"%x\r\n" % 20 + frame(1, b"B" * 12)[:10])  # a chunk and a frame both cut short
    server, client = scripted(hang_up, b"HTTP/1.1 200 OK\r\nConte", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n{}",
                              logs)
    with pytest.raises(ProtocolError, match="closed the connection without answering"):
        client.ping()
    with pytest.raises(ProtocolError, match="no valid answer"):
        client.ping()
    with pytest.raises(ProtocolError, match="cut short"):
        client.ping()
    frames = client.logs("c1", follow=True, tty=False)
    assert next(frames) == (1, b"A")
    with pytest.raises(ProtocolError, match="cut short"):
        next(frames)


def test_a_file_shorter_than_its_declared_length_is_refused(scripted):
    from dockyard.wire import Connection, connect

    server, client = scripted(lambda conn, head: conn.recv(100))  # answers nothing, waits for the rest
    conn = Connection(connect(client.kind, client.address, 5))
    try:
        with pytest.raises(ProtocolError, match="Too little data"):
            conn.send("POST", "/x", {"Host": "docker", "Content-Length": "10"}, io.BytesIO(b"abc"))
    finally:
        conn.close()
    server.thread.join(5)


def test_the_client_imports_nothing_but_the_standard_library():
    """The CLI's start-up is the client's: talking to the daemon loads none of
    the libraries the daemon uses (h11 alone cost 15 ms on every `dockyard ps`)."""
    heavy = ["h11", "urllib3", "aiohttp", "attrs", "pluggy", "stevedore", "jsonschema", "rich", "pyroute2"]
    code = f"import sys, dockyard.client, dockyard.wire; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_loads_reads_json_as_json_loads_does():
    """The client reads answers with CPython's own scanner, not ``json`` (whose
    decoder imports ``re``): the same values, and for bad input the same error."""
    from dockyard.wire import loads

    for text in ("[]", ' {"a": [1, 2.5, -3e2, true, false, null, "\\u00e9\\ud83d\\ude00", "é"]} \n',
                 '"x"', "12", "  0 ", "NaN", "[Infinity, -Infinity]", "1e400", '{"a": {"b": {}}}\r\n\t'):
        assert repr(loads(text)) == repr(json.loads(text)), text
    for bad in ("", " ", "[1,", '{"a" 1}', "[] []", "\ufeff[]", "nul", "[1]x", '"\x01"', "{'a': 1}"):
        with pytest.raises(json.JSONDecodeError) as ours:
            loads(bad)
        with pytest.raises(json.JSONDecodeError) as theirs:
            json.loads(bad)
        assert str(ours.value) == str(theirs.value), bad
