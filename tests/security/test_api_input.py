"""Hostile API clients (issue 13, holes 4 and 5).

Resource exhaustion / DoS: a client must not make the daemon hold memory out of
proportion to what it asked for.  A JSON body past the daemon's limit is a 413
before it is read; a list request pays for what it returns, not for every
record in the store (one container with a label as large as the limit allows
and 200 concurrent ``GET /containers/json`` took the daemon to gigabytes); a
hijacked stdin the process does not read is not buffered without end.  Memory is
the daemon's own peak RSS (``VmHWM``, reset through ``clear_refs`` before each
attack), held to a generous bound relative to the data involved.

Input validation: wrong JSON types, non-UTF-8, NaN, deep nesting, integers that
do not fit their Go type, nonsense resource values, malformed filters and query
numbers answer 4xx with a message naming what was wrong (they were 500s, or
accepted and wrapped on their way into a cgroup file), and the daemon serves on.
"""

import concurrent.futures
import json
import os
import socket
import time
from urllib.parse import quote

import pytest

from dockyard.testing.daemon import Daemon, http, ping

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")

MB = 1 << 20
LIMIT = 4 * MB  # dockyard.daemon.bodies.JSON_LIMIT, as README.md states it
JSON = {"Content-Type": "application/json"}


def post(daemon, path, body, headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, _, out = http(daemon.sock, "POST", path, data, {**JSON, **(headers or {})})
    return status, json.loads(out or b"{}")


def refused(daemon, path, body, *words, status=400):
    """``body`` is answered ``status`` with a message holding ``words``; the daemon still serves."""
    got, answer = post(daemon, path, body)
    message = answer.get("message", "")
    assert got == status, (got, answer)
    for word in words:
        assert word in message, message
    assert "internal error" not in message
    assert ping(daemon.sock)
    return message


def peak_growth(pid, attack):
    """Run ``attack()``; the process's peak RSS above its RSS before (bytes) and the attack's result."""
    def status():
        with open(f"/proc/{pid}/status") as fh:
            return {k: int(v.split()[0]) * 1024 for k, _, v in (line.partition(":") for line in fh)
                    if k in ("VmRSS", "VmHWM")}

    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")  # VmHWM := VmRSS
    before = status()["VmRSS"]
    result = attack()
    return status()["VmHWM"] - before, result


@pytest.fixture(scope="module")
def private(session_root, busybox_tar):
    """A daemon of its own, so its memory is this module's alone."""
    d = Daemon(session_root / "api-input").start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        yield d
    finally:
        client = d.sdk()
        for c in client.containers.list(all=True):
            c.remove(force=True)
        client.close()
        d.stop()
        d.remove_network_objects()


# --- resource exhaustion: bodies ----------------------------------------------------

def _answer(s):
    """One HTTP answer (head and a Content-Length body) read from ``s``, leaving the connection open."""
    out = b""
    while b"\r\n\r\n" not in out and (chunk := s.recv(65536)):
        out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length and (chunk := s.recv(65536)):
        body += chunk
    return head + b"\r\n\r\n" + body


def test_a_declared_oversized_body_is_refused_before_it_is_read(daemon):
    """Resource exhaustion / DoS: a create body declared at 1 GiB is a 413 naming the
    limit at once; the daemon reads none of it (the client sends only a few bytes)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(daemon.sock)
    s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1073741824\r\n\r\n{\"Image\": \"")
    answer = _answer(s)
    s.close()
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 4 MiB" in answer
    assert ping(daemon.sock)


def test_a_chunked_body_past_the_limit_is_refused_without_being_held(private):
    """Resource exhaustion / DoS: a chunked create body of 256 MiB is a 413 once it
    passes the limit; the daemon's memory does not grow by the body (it grew by all
    of it, then failed in json.loads)."""
    piece = b"x" * MB

    def attack():
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(60)
        s.connect(private.sock)
        s.sendall(b"POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n" + b'%x\r\n{"Image": "\r\n' % 11)
        try:
            for _ in range(256):
                s.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the daemon answered and closed: enough sent
        answer = _answer(s)
        s.close()
        return answer

    growth, answer = peak_growth(private.proc.pid, attack)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"larger than 4 MiB" in answer
    assert growth < 64 * MB, f"the daemon grew by {growth >> 20} MiB for a refused body"
    assert ping(private.sock)


def test_a_body_at_the_limit_is_accepted(daemon):
    """Resource exhaustion / DoS (the other side): the limit leaves real configs alone."""
    label = "x" * (LIMIT - 4096)
    status, answer = post(daemon, "/containers/create", {"Image": "busybox", "Cmd": ["true"],
                                                         "Labels": {"big": label}})
    assert status == 201, answer
    try:
        c = daemon.sdk().containers.get(answer["Id"])
        assert c.labels["big"] == label
    finally:
        http(daemon.sock, "DELETE", f"/containers/{answer['Id']}?force=1")


# --- resource exhaustion: lists -----------------------------------------------------

def _fetch(sock, path):
    """GET ``path``; (status, body bytes, labels' total size); the body is not kept."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(300)
    s.connect(sock)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n".encode())
    head, size, tail = b"", 0, b""
    while chunk := s.recv(1 << 16):
        if len(head) < 64:
            head += chunk[:64]
        size += len(chunk)
        tail = (tail + chunk)[-16:]
    s.close()
    return int(head.split()[1]), size, tail


def test_concurrent_listings_cost_what_they_return(private):
    """Resource exhaustion / DoS: one container with a label as large as a body may be,
    and 200 concurrent ``GET /containers/json``: 40 list it (4 MiB each), 160 list
    nothing (running only, or filtered).  The daemon's peak grows by less than twice
    what the 40 return, plus 64 MiB; it was about a gigabyte, every request parsing
    and copying every record."""
    label = "x" * (LIMIT - 4096)
    status, answer = post(private, "/containers/create?name=biglabel",
                          {"Image": "busybox", "Cmd": ["true"], "Labels": {"big": label}})
    assert status == 201, answer
    nothing = ["/containers/json", "/containers/json?all=1&filters=" + quote(json.dumps({"name": ["nomatch"]})),
               "/containers/json?all=1&filters=" + quote(json.dumps({"label": ["nomatch"]})),
               "/containers/json?filters=" + quote(json.dumps({"status": ["running"]}))]
    paths = (["/containers/json?all=1"] + nothing) * 40
    for path in set(paths):  # warm up (the schema, the pools' threads)
        _fetch(private.sock, path)

    def attack():
        with concurrent.futures.ThreadPoolExecutor(len(paths)) as pool:
            return list(pool.map(lambda p: _fetch(private.sock, p), paths))

    growth, results = peak_growth(private.proc.pid, attack)
    assert {status for status, _, _ in results} == {200}
    returned = sum(size for _, size, _ in results)
    assert sum(1 for _, size, _ in results if size > len(label)) == 40
    assert growth < 2 * returned + 64 * MB, (f"the daemon grew by {growth >> 20} MiB to answer "
                                              f"{returned >> 20} MiB")
    listed = private.sdk().containers.list(all=True, filters={"name": "biglabel"})
    assert listed[0].labels["big"] == label


def test_a_stdin_nobody_reads_is_not_buffered(private):
    """Resource exhaustion / DoS: a client attached to the stdin of a container that
    is not started (``docker attach`` before ``start`` is allowed: the input waits
    for the process) sends 256 MiB; the daemon stops reading the connection after a
    bounded buffer (it queued every byte in memory)."""
    status, answer = post(private, "/containers/create", {"Image": "busybox", "Cmd": ["cat"],
                                                          "OpenStdin": True, "AttachStdin": True})
    assert status == 201, answer
    cid = answer["Id"]
    s = socket.socket(socket.AF_UNIX)
    s.connect(private.sock)
    s.sendall(f"POST /containers/{cid}/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: d\r\n"
              "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    piece = b"y" * MB

    def attack():
        sent, deadline = 0, time.monotonic() + 60
        s.settimeout(3)
        try:
            while sent < 256 * MB and time.monotonic() < deadline:
                sent += s.send(piece)
        except socket.timeout:
            pass  # the daemon stopped reading: back-pressure
        return sent

    try:
        growth, sent = peak_growth(private.proc.pid, attack)
    finally:
        s.close()
        http(private.sock, "DELETE", f"/containers/{cid}?force=1")
    assert growth < 64 * MB, f"the daemon grew by {growth >> 20} MiB for {sent >> 20} MiB of stdin"
    assert sent < 64 * MB, f"the daemon took {sent >> 20} MiB of stdin nobody reads"
    assert ping(private.sock)


def test_a_running_process_that_never_reads_its_stdin_holds_no_backlog(private):
    """Resource exhaustion / DoS: the same 256 MiB sent to the stdin of a running
    ``sleep`` that never reads it.  Its shim stops taking bytes once a bounded
    backlog waits for the process (it appended every byte to one buffer), so
    neither the shim nor the daemon grows."""
    status, answer = post(private, "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "600"],
                                                          "OpenStdin": True, "AttachStdin": True})
    assert status == 201, answer
    cid = answer["Id"]
    assert http(private.sock, "POST", f"/containers/{cid}/start")[0] == 204
    init = private.sdk().api.inspect_container(cid)["State"]["Pid"]
    with open(f"/proc/{init}/status") as fh:
        shim = int(next(line.split()[1] for line in fh if line.startswith("PPid:")))
    s = socket.socket(socket.AF_UNIX)
    s.connect(private.sock)
    s.sendall(f"POST /containers/{cid}/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n"
              "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    piece = b"y" * MB

    def attack():
        sent, deadline = 0, time.monotonic() + 60
        s.settimeout(3)
        try:
            while sent < 256 * MB and time.monotonic() < deadline:
                sent += s.send(piece)
        except socket.timeout:
            pass  # nobody reads on: back-pressure all the way to the client
        return sent

    try:
        growth, sent = peak_growth(shim, attack)
    finally:
        s.close()
        http(private.sock, "DELETE", f"/containers/{cid}?force=1")
    assert growth < 16 * MB, f"the shim grew by {growth >> 20} MiB for {sent >> 20} MiB of stdin"
    assert sent < 64 * MB, f"{sent >> 20} MiB of stdin were taken for a process that reads none"
    assert ping(private.sock)


# --- input validation: bodies -------------------------------------------------------

BUSYBOX = {"Image": "busybox", "Cmd": ["true"]}


@pytest.mark.parametrize("body, words", [
    ({"Image": 5}, ["Image", "string"]),
    ([BUSYBOX], ["request body", "object"]),
    ({**BUSYBOX, "Cmd": ["echo", 5]}, ["Cmd[1]"]),
    ({**BUSYBOX, "Env": "A=1"}, ["Env", "array"]),
    ({**BUSYBOX, "Labels": {"a": 1}}, ["Labels.a", "string"]),
    ({**BUSYBOX, "HostConfig": {"Memory": 10 ** 30}}, ["HostConfig.Memory", "int64"]),
    ({**BUSYBOX, "HostConfig": {"Memory": 2 ** 63}}, ["HostConfig.Memory", "int64"]),
    ({**BUSYBOX, "HostConfig": {"Memory": 64.5 * MB}}, ["HostConfig.Memory", "int64"]),
    ({**BUSYBOX, "HostConfig": {"CpuShares": "1024"}}, ["HostConfig.CpuShares"]),
    ({**BUSYBOX, "HostConfig": {"BlkioWeight": 70000}}, ["HostConfig.BlkioWeight", "uint16"]),
    ({**BUSYBOX, "HostConfig": {"Ulimits": [{"Name": "nofile", "Soft": 1, "Hard": 10 ** 20}]}},
     ["HostConfig.Ulimits[0].Hard"]),
    ({**BUSYBOX, "HostConfig": {"PortBindings": {"80/tcp": [{"HostPort": 8080}]}}},
     ["HostConfig.PortBindings.80/tcp[0].HostPort"]),
    ({**BUSYBOX, "NetworkingConfig": {"EndpointsConfig": {"bridge": {"Aliases": "a"}}}},
     ["NetworkingConfig.EndpointsConfig.bridge.Aliases"]),
    ({**BUSYBOX, "Healthcheck": {"Test": ["CMD", "true"], "Interval": "1s"}}, ["Healthcheck.Interval"]),
])
def test_wrong_types_in_a_create_body_name_the_field(daemon, body, words):
    """Input validation: a value Go's decoder would refuse is a 400 naming the field
    (they were 500 "internal error: TypeError", or accepted and wrapped later)."""
    refused(daemon, "/containers/create", body, "cannot unmarshal", *words)


@pytest.mark.parametrize("raw, words", [
    (b'{"Image": "busybox\xff"}', ["not UTF-8", "offset 18"]),
    (b'\xef\xbb\xbf{"Image": "busybox"}', ["invalid JSON"]),
    (b"[" * 100000 + b"]" * 100000, ["nested more than"]),
    (b'{"Image": "busybox", "Labels": {"a": ' + b'{"b": ' * 150 + b"1" + b"}" * 151 + b"}", ["nested more than"]),
    (b'{"Image": "busybox", "HostConfig": {"Memory": NaN}}', ["NaN"]),
    (b'{"Image": "busybox", "HostConfig": {"Memory": 1e400}}', ["out of range"]),
    (b'{"Image": "busybox", "HostConfig": {"Memory": ' + b"9" * 5000 + b"}}", ["invalid JSON"]),
    (b'{"Image": "busybox", "Env": ["A=\\ud800"]}', ["surrogate"]),
])
def test_malformed_json_is_a_400(daemon, raw, words):
    """Input validation: non-UTF-8, a BOM, deep nesting, NaN, infinite and 5000-digit
    numbers, lone surrogates and truncated JSON are 400s (non-UTF-8, nesting and the
    long number were 500 "internal error: UnicodeDecodeError / RecursionError / ValueError")."""
    refused(daemon, "/containers/create", raw, *words)


@pytest.mark.parametrize("host, words", [
    ({"Memory": 1024}, ["Minimum memory limit allowed is 6MB"]),
    ({"Memory": -1}, ["Minimum memory limit allowed is 6MB"]),
    ({"Memory": 64 * MB, "MemorySwap": 32 * MB}, ["Minimum memoryswap limit should be larger than memory limit"]),
    ({"MemorySwap": 64 * MB}, ["You should always set the Memory limit when using Memoryswap limit"]),
    ({"Memory": 64 * MB, "MemorySwap": -5}, ["memoryswap"]),
    ({"MemorySwappiness": 101}, ["valid memory swappiness range is 0-100"]),
    ({"MemoryReservation": 1024}, ["Minimum memory reservation allowed is 6MB"]),
    ({"CpuShares": -1}, ["shares"]),
    ({"NanoCpus": 10 ** 9, "CpuQuota": 50000}, ["Conflicting options: Nano CPUs and CPU Quota"]),
    ({"NanoCpus": 10 ** 9, "CpuPeriod": 50000}, ["Conflicting options: Nano CPUs and CPU Period"]),
    ({"NanoCpus": 10 ** 15}, ["Range of CPUs is from 0.01"]),
    ({"CpuPeriod": 10}, ["CPU cfs period can not be less than 1ms"]),
    ({"CpuQuota": 10}, ["CPU cfs quota can not be less than 1ms"]),
    ({"CpuQuota": -5}, ["CPU cfs quota"]),
    ({"CpusetCpus": "4096"}, ["Requested CPUs are not available"]),
    ({"PidsLimit": 2 ** 40}, ["PidsLimit"]),
    ({"BlkioWeight": 5}, ["Range of blkio weight is from 10 to 1000"]),
    ({"OomScoreAdj": 5000}, ["range for oom score adj is [-1000, 1000]"]),
    ({"ShmSize": -1}, ["SHM size can not be less than 0"]),
    ({"Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 5}]}, ["ulimit soft limit must be less than"]),
    ({"ConsoleSize": [70000, 80]}, ["ConsoleSize"]),
])
def test_out_of_range_resources_are_refused_at_create(daemon, host, words):
    """Input validation: what Docker refuses at create is refused at create (they were
    accepted, to fail at every start or, too large, to wrap in the cgroup file)."""
    refused(daemon, "/containers/create", {**BUSYBOX, "HostConfig": host}, *words)


@pytest.mark.parametrize("config, words", [
    ({"WorkingDir": "relative"}, ["needs to be an absolute path"]),
    ({"StopSignal": "SIGNOPE"}, ["invalid signal"]),
    ({"Env": ["=x"]}, ["invalid environment variable"]),
    ({"Env": ["A=\u0000"]}, ["NUL"]),
    ({"Hostname": "h" * 64}, ["too long"]),
    ({"StopTimeout": 2 ** 40}, ["StopTimeout"]),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Interval": 10}}, ["Interval in Healthcheck cannot be less than 1ms"]),
    ({"Healthcheck": {"Test": ["CMD", "true"], "Retries": -1}}, ["Retries in Healthcheck cannot be negative"]),
])
def test_bad_container_configs_are_refused_at_create(daemon, config, words):
    """Input validation: moby's ``validateContainerConfig`` refusals, at create."""
    refused(daemon, "/containers/create", {**BUSYBOX, **config}, *words)


def test_update_refuses_what_would_wrap(daemon):
    """Input validation: ``update`` with ``Memory: 10**30`` is a 400 and changes nothing
    (it was accepted, and a running container's limit wrapped to another number)."""
    status, answer = post(daemon, "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "60"]})
    cid = answer["Id"]
    try:
        assert http(daemon.sock, "POST", f"/containers/{cid}/start")[0] == 204
        refused(daemon, f"/containers/{cid}/update", {"Memory": 10 ** 30}, "Memory", "int64")
        refused(daemon, f"/containers/{cid}/update", {"CpuShares": True}, "CpuShares")
        refused(daemon, f"/containers/{cid}/update", {"PidsLimit": 2 ** 40}, "PidsLimit")
        refused(daemon, f"/containers/{cid}/update", {"Memory": 1024}, "Minimum memory limit allowed is 6MB")
        inspect = daemon.sdk().containers.get(cid).attrs
        assert not inspect["HostConfig"].get("Memory")
        assert post(daemon, f"/containers/{cid}/update", {"Memory": 64 * MB, "MemorySwap": -1})[0] == 200
    finally:
        http(daemon.sock, "DELETE", f"/containers/{cid}?force=1")


def test_every_json_body_is_checked(daemon):
    """Input validation: each endpoint with a JSON body refuses a wrong type with a 400
    naming the field, before it acts (exec, networks, volumes, commit, auth, and the
    swarm and plugin endpoints a single engine answers)."""
    status, answer = post(daemon, "/containers/create", {"Image": "busybox", "Cmd": ["sleep", "60"]})
    cid = answer["Id"]
    try:
        assert http(daemon.sock, "POST", f"/containers/{cid}/start")[0] == 204
        refused(daemon, f"/containers/{cid}/exec", {"Cmd": 5}, "Cmd")
        refused(daemon, f"/containers/{cid}/exec", {"Cmd": ["true"], "Env": [1]}, "Env[0]")
        status, answer = post(daemon, f"/containers/{cid}/exec", {"Cmd": ["true"]})
        assert status == 201
        refused(daemon, f"/exec/{answer['Id']}/start", {"Detach": "yes"}, "Detach", "bool")
        refused(daemon, f"/exec/{answer['Id']}/start", {"ConsoleSize": [24, -1]}, "ConsoleSize[1]")
        refused(daemon, f"/exec/{answer['Id']}/start", {"ConsoleSize": [24, 70000]}, "ConsoleSize")
        refused(daemon, "/networks/create", {"Name": 5}, "Name")
        refused(daemon, "/networks/create", {"Name": "n", "IPAM": {"Config": [{"Subnet": 10}]}},
                "IPAM.Config[0].Subnet")
        refused(daemon, "/networks/bridge/connect", {"Container": ["x"]}, "Container")
        refused(daemon, "/networks/bridge/disconnect", {"Container": cid, "Force": "yes"}, "Force")
        refused(daemon, "/volumes/create", {"Name": "v", "Labels": {"a": False}}, "Labels.a")
        refused(daemon, "/volumes/create", {"DriverOpts": []}, "DriverOpts")
        refused(daemon, f"/commit?container={cid}", {"Env": "A=1"}, "Env")
        refused(daemon, "/auth", {"username": 5, "serveraddress": "localhost:1"}, "username")
        refused(daemon, "/swarm/init", {"ListenAddr": 5}, "ListenAddr")
        refused(daemon, "/services/create", {"Name": ["x"]}, "Name")
        refused(daemon, "/plugins/pull?remote=x", [{"Name": 5}], "[0].Name")
        refused(daemon, "/plugins/x/set", ["a", 5], "[1]")
    finally:
        http(daemon.sock, "DELETE", f"/containers/{cid}?force=1")


# --- input validation: query parameters and headers ----------------------------------

@pytest.mark.parametrize("method, path, words", [
    ("GET", "/containers/json?filters=" + quote("[1]"), ["filters must be a JSON object"]),
    ("GET", "/containers/json?filters=" + quote('{"status": 5}'), ["invalid filter 'status'"]),
    ("GET", "/containers/json?filters=" + quote('{"status": [5]}'), ["invalid filter 'status'"]),
    ("GET", "/containers/json?filters=" + quote("[" * 1200 + "]" * 1200), ["nested more than"]),
    ("GET", "/containers/json?filters=" + quote('{"bogus": ["x"]}'), ["invalid filter 'bogus'"]),
    ("GET", "/images/json?filters=" + quote('{"label": 1}'), ["invalid filter 'label'"]),
    ("GET", "/networks?filters=" + quote('{"name": {"a": 1}}'), ["invalid filter 'name'"]),
    ("GET", "/events?filters=" + quote("[" * 1200 + "]" * 1200), ["nested more than"]),
    ("POST", "/containers/nosuch/stop?t=" + "9" * 30, ["invalid value for t"]),
    ("POST", "/containers/nosuch/resize?h=70000&w=80", ["invalid value for h"]),
    ("POST", "/build?buildargs=" + quote("[" * 1200 + "]" * 1200), ["nested more than"]),
])
def test_malformed_query_parameters_are_a_400(daemon, method, path, words):
    """Input validation: malformed filters and numbers in the query are 400s naming the
    parameter (a filter of the wrong shape, nesting and huge numbers were 500s or worse)."""
    status, _, out = http(daemon.sock, method, path)
    message = json.loads(out).get("message", "")
    assert status == 400, (status, out[:300])
    for word in words:
        assert word in message, message
    assert ping(daemon.sock)


def test_logs_with_a_bad_since_is_a_400(daemon):
    """Input validation: ``logs?since=abc`` was 500 "internal error: ValueError"."""
    status, answer = post(daemon, "/containers/create", BUSYBOX)
    cid = answer["Id"]
    try:
        status, _, out = http(daemon.sock, "GET", f"/containers/{cid}/logs?stdout=1&since=abc")
        assert status == 400, out
        assert b"since" in out
    finally:
        http(daemon.sock, "DELETE", f"/containers/{cid}?force=1")


def test_a_registry_auth_header_of_the_wrong_shape_is_a_400(daemon):
    """Input validation: an ``X-Registry-Auth`` whose fields have the wrong types is a 400
    before any registry is contacted."""
    import base64

    auth = base64.urlsafe_b64encode(json.dumps({"username": 5, "password": ["x"]}).encode()).decode()
    status, _, out = http(daemon.sock, "POST", "/images/create?fromImage=localhost:1/nosuch&tag=1",
                          headers={"X-Registry-Auth": auth})
    assert status == 400, out
    assert b"username" in out
