"""The e2e tests' response checker (dockyard.testing.apicheck) and its recording relay
(dockyard.testing.apiproxy): a wrong shape is caught and named, the spec's errata are
excused only where they are, and the relay passes bytes through unchanged."""

import hashlib
import json
import socket
import threading
from pathlib import Path

import pytest

from dockyard.testing.apicheck import ERRATA, SPEC_FILE, ApiChecker, Exchange
from dockyard.testing.apiproxy import RecordingProxy

SOURCE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "docker-engine-api-v1.41.yaml"
VOLUME = {"Name": "v", "Driver": "local", "Mountpoint": "/x", "Labels": {}, "Scope": "local", "Options": {}}


@pytest.fixture(scope="module")
def checker():
    return ApiChecker.load()


def check(checker, method, target, body, status=200, content_type="application/json"):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return checker.check(Exchange(method, target, status, content_type, data))


def test_a_wrong_shape_is_named_by_operation_path_and_violation(checker):
    body = {"Id": 5, "State": {"Status": "weird", "Running": True}}
    found = {(v.operation, v.where): v.message for v in check(checker, "GET", "/v1.41/containers/abc/json", body)}
    assert found[("ContainerInspect", "$.Id")] == "5 is not of type 'string'"
    assert "'weird' is not one of" in found[("ContainerInspect", "$.State.Status")]
    assert len(found) == 2


def test_a_conformant_body_passes_and_a_missing_required_field_does_not(checker):
    assert check(checker, "GET", "/v1.41/volumes/v", VOLUME) == []
    [v] = check(checker, "GET", "/v1.41/volumes/v", {k: x for k, x in VOLUME.items() if k != "Mountpoint"})
    assert (v.operation, v.where, v.message) == ("VolumeInspect", "$", "'Mountpoint' is a required property")


def test_errata_excuse_only_the_fields_they_name(checker):
    assert check(checker, "GET", "/v1.41/volumes/v", {**VOLUME, "Labels": None}) == []  # dockerd sends this
    [v] = check(checker, "GET", "/v1.41/volumes/v", {**VOLUME, "Driver": None})
    assert v.where == "$.Driver"
    # the same field of another operation is not excused by VolumeInspect's erratum
    assert not [e for e in ERRATA if e.operation == "ContainerTop" and e.allows == "null"]
    [v] = check(checker, "GET", "/v1.41/containers/x/top", {"Titles": None, "Processes": []})
    assert (v.operation, v.where) == ("ContainerTop", "$.Titles")


def test_a_status_the_operation_lacks_is_a_violation(checker):
    [v] = check(checker, "POST", "/v1.41/containers/x/wait", {"message": "teapot"}, status=418)
    assert v.operation == "ContainerWait" and v.status == 418 and "ResponseNotFound" in v.message


def test_image_names_with_slashes_and_unversioned_paths_find_their_operation(checker):
    assert checker.operation("GET", "/v1.41/images/localhost:5000/team/app:1/json")[:2] == (
        "ImageInspect", "/images/{name}/json")
    assert checker.operation("GET", "/images/json?all=1")[0] == "ImageList"
    assert checker.operation("GET", "/v1.41/dockyard/own-extension") is None
    [v] = check(checker, "GET", "/v1.41/images/localhost:5000/team/app:1/json", {"Id": 1})
    assert (v.operation, v.where) == ("ImageInspect", "$.Id")


def test_streams_are_not_checked_but_their_errors_and_broken_json_are(checker):
    stream = b'{"status":"start"}\n{"status":"die"}\n'
    assert not checker.wants("GET", "/v1.41/events", 200, "application/json")
    assert check(checker, "GET", "/v1.41/events", stream) == []
    [v] = check(checker, "GET", "/v1.41/events", {"msg": 1}, status=500)
    assert (v.operation, v.where) == ("SystemEvents", "$")  # ErrorResponse needs "message"
    [v] = check(checker, "GET", "/v1.41/containers/json", stream)
    assert v.operation == "ContainerList" and "not one JSON document" in v.message


def test_the_converted_spec_is_made_from_the_reference_spec():
    if not SOURCE.exists():
        pytest.skip(f"no reference spec at {SOURCE}")
    info = json.loads(SPEC_FILE.read_text())["info"]
    assert info["x-source-sha256"] == hashlib.sha256(SOURCE.read_bytes()).hexdigest(), \
        "the API spec changed: run scripts/gen_openapi_spec.py"


def _upstream(path, ready):
    """A daemon stand-in: a JSON answer on a kept-alive connection, then a hijack
    (101) that echoes until the client half-closes, then says bye and closes."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    ready.set()
    conn, _ = srv.accept()
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(4096)
    body = json.dumps({**VOLUME, "Scope": 7}).encode()
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                 + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    buf = buf.partition(b"\r\n\r\n")[2]
    while b"\r\n\r\n" not in buf:
        buf += conn.recv(4096)
    conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                 b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
    rest = buf.partition(b"\r\n\r\n")[2]
    while data := conn.recv(4096):
        rest += data
    conn.sendall(b"echo:" + rest + b":bye")
    conn.close()
    srv.close()


def test_the_relay_passes_bytes_unchanged_and_records_complete_responses(tmp_path, checker):
    ready = threading.Event()
    server = threading.Thread(target=_upstream, args=(str(tmp_path / "up.sock"), ready), daemon=True)
    server.start()
    ready.wait(5)
    proxy = RecordingProxy(str(tmp_path / "proxy.sock"), str(tmp_path / "up.sock"), checker.wants).start()
    try:
        c = socket.socket(socket.AF_UNIX)
        c.settimeout(10)
        c.connect(proxy.path)
        c.sendall(b"GET /v1.41/volumes/v HTTP/1.1\r\nHost: docker\r\n\r\n")
        got = b""
        while not got.endswith(b"0\r\n\r\n"):
            got += c.recv(4096)
        c.sendall(b"POST /v1.41/containers/x/attach?stream=1 HTTP/1.1\r\nHost: docker\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nraw \x00\x01 stdin")
        c.shutdown(socket.SHUT_WR)  # as the docker CLI does when its stdin ends
        rest = b""
        while data := c.recv(4096):
            rest += data
        c.close()
        assert rest.endswith(b"\r\n\r\necho:raw \x00\x01 stdin:bye")
        [ex] = proxy.take()  # the volume; the hijacked attach is passed through, unrecorded
        assert (ex.method, ex.target, ex.status) == ("GET", "/v1.41/volumes/v", 200)
        [v] = checker.check(ex)
        assert (v.operation, v.where) == ("VolumeInspect", "$.Scope")
    finally:
        proxy.stop()
        server.join(5)


def test_errors_dockerd_answers_with_an_unlisted_status_or_as_json_are_still_checked(checker):
    stopped = {"message": "Container abc is not running"}
    assert check(checker, "GET", "/v1.41/containers/abc/top", stopped, status=409) == []  # as dockerd
    [v] = check(checker, "GET", "/v1.41/containers/abc/top", {"msg": "x"}, status=409)
    assert v.where == "$" and "'message' is a required property" in v.message
    [v] = check(checker, "GET", "/v1.41/containers/abc/top", stopped, status=400)  # not dockerd's
    assert "ResponseNotFound" in v.message
    assert check(checker, "POST", "/v1.41/containers/abc/resize?h=1&w=1", stopped, status=409) == []
    [v] = check(checker, "POST", "/v1.41/containers/abc/resize?h=1&w=1", {"message": 5}, status=500)
    assert v.where == "$.message"
    assert check(checker, "HEAD", "/v1.41/containers/abc/archive?path=/x", b"", status=404) == []


def test_an_erratum_of_a_null_body_excuses_no_status(checker):
    changes = [{"Path": "/tmp", "Kind": 0}]
    assert check(checker, "GET", "/v1.41/containers/abc/changes", changes) == []
    assert check(checker, "GET", "/v1.41/containers/abc/changes", None) == []  # dockerd: no changes
    [v] = check(checker, "GET", "/v1.41/containers/abc/changes", [{"Path": "/tmp", "Kind": 7}])
    assert v.where == "$[0].Kind"
