"""Log drivers through the docker CLI and SDK, as dockerd 20.10 answers: the
default ``json-file`` with rotation, ``local``, ``none``, ``syslog`` (a real
UDP and unix datagram receiver parsing RFC 5424 / 3164) and ``journald`` (a
unix datagram socket the driver is pointed at, parsed as systemd's native
journal protocol: no journald runs on these machines)."""

import os
import re
import shutil
import socket
import struct
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from dockyard.testing.daemon import Daemon, http

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]

LOOP = "i=0; while [ $i -lt 300 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"


def _name():
    return f"lg-{uuid.uuid4().hex[:8]}"


def _ok(res):
    assert res.returncode == 0, (res.returncode, res.stdout, res.stderr)
    return res


def test_default_driver_is_json_file_with_logs(daemon):
    name = _name()
    _ok(daemon.docker("run", "--name", name, "busybox", "sh", "-c", "echo out; echo err >&2"))
    try:
        got = daemon.docker("inspect", "-f", "{{json .HostConfig.LogConfig}}|{{.LogPath}}", name).stdout.decode()
        config, path = got.strip().split("|")
        assert config == '{"Type":"json-file","Config":{}}'
        assert path.endswith("-json.log") and os.path.exists(path)
        logs = _ok(daemon.docker("logs", name))
        assert (logs.stdout, logs.stderr) == (b"out\n", b"err\n")
    finally:
        daemon.docker("rm", "-f", name)


def test_unknown_driver_and_option_refused_at_create(daemon):
    name = _name()
    for args, message in (
            (["--log-driver", "nosuch"], b'error looking up logging plugin nosuch: plugin "nosuch" not found'),
            (["--log-opt", "bogus=1"], b"unknown log opt 'bogus' for json-file log driver"),
            (["--log-driver", "local", "--log-opt", "bogus=1"], b"unknown log opt 'bogus' for log driver local"),
            (["--log-driver", "syslog", "--log-opt", "syslog-address=foo://x"],
             b"syslog-address should be in form proto://address, got foo://x")):
        res = daemon.docker("create", "--name", name, *args, "busybox", "true")
        assert res.returncode == 1 and message in res.stderr, (args, res.stderr)
    status, _, body = http(daemon.sock, "POST", f"/v1.41/containers/create?name={name}",
                           b'{"Image":"busybox","Cmd":["true"],"HostConfig":{"LogConfig":{"Type":"nosuch"}}}',
                           {"Content-Type": "application/json"})
    assert status == 400 and b"error looking up logging plugin" in body
    assert daemon.docker("ps", "-aq", "--filter", f"name={name}").stdout == b""  # nothing was made


def test_bad_option_value_fails_the_start_as_dockerd(daemon):
    name = _name()
    res = daemon.docker("run", "--name", name, "--log-opt", "max-size=abc", "busybox", "true")
    try:
        assert res.returncode == 125
        assert b"failed to initialize logging driver: invalid size: 'abc'" in res.stderr
        res = daemon.docker("run", "--rm", "--log-opt", "compress=true", "busybox", "true")
        assert b"compress cannot be true when max-file is less than 2 or max-size is not set" in res.stderr
    finally:
        daemon.docker("rm", "-f", name)


def test_none_attach_works_logs_refused_with_501(daemon):
    name = _name()
    res = _ok(daemon.docker("run", "--name", name, "--log-driver", "none", "busybox", "echo", "hi"))
    try:
        assert res.stdout == b"hi\n"  # attach does not need a log driver
        res = daemon.docker("logs", name)
        assert res.returncode == 1
        assert res.stderr == b"Error response from daemon: configured logging driver does not support reading\n"
        status, _, body = http(daemon.sock, "GET", f"/v1.41/containers/{name}/logs?stdout=1")
        assert status == 501, body
        got = daemon.docker("inspect", "-f", "{{.HostConfig.LogConfig.Type}}|{{.LogPath}}", name).stdout
        assert got == b"none|\n"
    finally:
        daemon.docker("rm", "-f", name)


def test_json_file_rotates_and_compresses(daemon):
    name = _name()
    _ok(daemon.docker("run", "--name", name, "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
                      "--log-opt", "compress=true", "busybox", "sh", "-c", LOOP))
    try:
        path = Path(daemon.docker("inspect", "-f", "{{.LogPath}}", name).stdout.decode().strip())
        deadline = time.monotonic() + 10
        while not (path.parent / (path.name + ".1.gz")).exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # compressed in the shim's thread
        files = sorted(p.name[len(path.name):] for p in path.parent.iterdir() if p.name.startswith(path.name))
        assert files == ["", ".1.gz", ".2.gz"], files
        assert path.stat().st_size < 1024 + 100
        lines = _ok(daemon.docker("logs", name)).stdout.decode().splitlines()
        assert lines[-1].startswith("line-299-") and "line-0-" not in lines[0]
        numbers = [int(line.split("-")[1]) for line in lines]
        assert numbers == list(range(numbers[0], 300))  # rotated files read back in order, nothing lost
        tail = _ok(daemon.docker("logs", "--tail", "2", name)).stdout.decode().splitlines()
        assert [t.split("-")[1] for t in tail] == ["298", "299"]
    finally:
        daemon.docker("rm", "-f", name)


def test_local_driver_reads_back_and_follows(daemon):
    name = _name()
    _ok(daemon.docker("run", "-d", "--name", name, "--log-driver", "local", "busybox", "sh", "-c",
                      "echo first; echo oops >&2; sleep 1; echo second"))
    try:
        res = _ok(daemon.docker("logs", "-f", name, timeout=30))
        assert (res.stdout, res.stderr) == (b"first\nsecond\n", b"oops\n")
        cdir = Path(daemon.docker("inspect", "-f", "{{.ResolvConfPath}}", name).stdout.decode().strip()).parent
        data = (cdir / "local-logs" / "container.log").read_bytes()
        assert b"second" in data and not data.startswith(b"{")  # framed binary, not json-file
        assert daemon.docker("inspect", "-f", "{{.LogPath}}", name).stdout == b"\n"
        client = daemon.sdk()
        try:
            assert client.containers.get(name).logs(stdout=False, stderr=True) == b"oops\n"
        finally:
            client.close()
    finally:
        daemon.docker("rm", "-f", name)


_RFC5424 = re.compile(rb"<(\d+)>1 (\S+) (\S+) (\S+) (\d+) (\S+) - (.*)\n")


def test_syslog_udp_rfc5424(daemon):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(10)
    port = rx.getsockname()[1]
    name = _name()
    try:
        res = _ok(daemon.docker("run", "--name", name, "--log-driver", "syslog",
                                "--log-opt", f"syslog-address=udp://127.0.0.1:{port}",
                                "--log-opt", "syslog-format=rfc5424", "--log-opt", "syslog-facility=local3",
                                "--log-opt", "tag={{.Name}}/{{.ImageName}}",
                                "busybox", "sh", "-c", "echo to-out; echo to-err >&2"))
        assert (res.stdout, res.stderr) == (b"to-out\n", b"to-err\n")
        got = {}
        for _ in range(2):
            m = _RFC5424.fullmatch(rx.recv(65536))
            assert m, "not an RFC 5424 message"
            got[m.group(7)] = m
        out, err = got[b"to-out"], got[b"to-err"]
        assert int(out.group(1)) == 19 * 8 + 6 and int(err.group(1)) == 19 * 8 + 3  # local3.info, local3.err
        assert out.group(4) == out.group(6) == f"{name}/busybox".encode()
        assert re.fullmatch(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(Z|[+-]\d\d:\d\d)", out.group(2))
        assert out.group(3) == socket.gethostname().encode()
        res = daemon.docker("logs", name)
        assert res.returncode == 1 and b"configured logging driver does not support reading" in res.stderr
    finally:
        rx.close()
        daemon.docker("rm", "-f", name)


def test_syslog_unix_default_format(daemon):
    with tempfile.TemporaryDirectory(prefix="lg") as tmp:
        path = os.path.join(tmp, "log.sock")
        rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        rx.bind(path)
        rx.settimeout(10)
        name = _name()
        try:
            _ok(daemon.docker("run", "--name", name, "--log-driver", "syslog",
                              "--log-opt", f"syslog-address=unix://{path}", "busybox", "echo", "via-unix"))
            cid = daemon.docker("inspect", "-f", "{{.Id}}", name).stdout.decode().strip()
            msg = rx.recv(65536)
            m = re.fullmatch(rb"<30>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d (\w+)\[\d+\]: via-unix\n", msg)
            assert m, msg  # daemon.info, dockerd's local form, the tag {{.ID}}
            assert m.group(1) == cid[:12].encode()
        finally:
            rx.close()
            daemon.docker("rm", "-f", name)
        res = daemon.docker("run", "--rm", "--log-driver", "syslog", "--log-opt",
                            f"syslog-address=unix://{tmp}/absent.sock", "busybox", "true")
        assert res.returncode == 125 and b"failed to initialize logging driver" in res.stderr


def _journal_fields(dgram):
    """systemd's native journal protocol: NAME=value lines, or NAME, a
    little-endian 64-bit length and the binary value."""
    fields, pos = {}, 0
    while pos < len(dgram):
        nl = dgram.index(b"\n", pos)
        line = dgram[pos:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = nl + 1
        else:
            key, (size,) = line, struct.unpack_from("<Q", dgram, nl + 1)
            value = dgram[nl + 9:nl + 9 + size]
            assert dgram[nl + 9 + size:nl + 10 + size] == b"\n"
            pos = nl + 10 + size
        fields[key.decode()] = value.decode()
    return fields


@pytest.fixture(scope="module")
def journal_daemon(session_root, busybox_tar):
    """A daemon whose journald driver writes to a socket of the test's."""
    tmp = tempfile.mkdtemp(prefix="lgj")
    sock_path = os.path.join(tmp, "journal.sock")
    shipped = (Path(__file__).parents[2] / "plugins.toml").read_text()
    assert '# socket = "/run/systemd/journal/socket"' in shipped
    config = Path(tmp) / "plugins.toml"
    config.write_text(shipped.replace('# socket = "/run/systemd/journal/socket"', f'socket = "{sock_path}"'))
    try:
        d = Daemon(session_root / "logdrivers", config=config).start()
        try:
            _ok(d.cli("import", str(busybox_tar), "busybox"))
            yield d, sock_path
        finally:
            for cid in d.docker("ps", "-aq").stdout.split():
                d.docker("rm", "-f", cid.decode())
            d.stop()
            d.remove_network_objects()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_journald_native_protocol(journal_daemon):
    d, sock_path = journal_daemon
    res = d.docker("run", "--rm", "--log-driver", "journald", "busybox", "true")
    assert res.returncode == 125 and b"journald is not enabled on this host" in res.stderr
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(sock_path)
    rx.settimeout(10)
    name = _name()
    try:
        big = "y" * 20000  # past Docker's 16 KiB: two entries, the first marked partial
        _ok(d.docker("run", "--name", name, "--log-driver", "journald", "--label", "com.ex=two\nlines",
                     "--log-opt", "labels=com.ex", "busybox", "sh", "-c",
                     f"echo hello; echo bad >&2; echo {big}; printf no-newline >&2"))
        cid = d.docker("inspect", "-f", "{{.Id}}", name).stdout.decode().strip()
        entries = []
        for _ in range(5):
            data, fds, _, _ = socket.recv_fds(rx, 1 << 17, 1)
            if fds:  # an entry too big for a datagram comes as a memfd
                with os.fdopen(fds[0], "rb") as fh:
                    data = fh.read()
            entries.append(_journal_fields(data))
        by_msg = {e["MESSAGE"][:10]: e for e in entries}
        out, err = by_msg["hello"], by_msg["bad"]
        assert out["PRIORITY"] == "6" and err["PRIORITY"] == "3"
        assert out["CONTAINER_ID"] == cid[:12] and out["CONTAINER_ID_FULL"] == cid
        assert out["CONTAINER_NAME"] == name and out["IMAGE_NAME"] == "busybox"
        assert out["SYSLOG_IDENTIFIER"] == out["CONTAINER_TAG"] == cid[:12]
        assert out["COM_EX"] == "two\nlines"  # a value with a newline: the protocol's binary form
        assert by_msg["no-newline"]["CONTAINER_PARTIAL_MESSAGE"] == "true"  # cut by the exit
        assert "CONTAINER_PARTIAL_MESSAGE" not in out
        ys = [e for e in entries if e["MESSAGE"].startswith("y")]
        assert [len(e["MESSAGE"]) for e in ys] == [16384, 20000 - 16384]
        assert ys[0]["CONTAINER_PARTIAL_MESSAGE"] == "true" and "CONTAINER_PARTIAL_MESSAGE" not in ys[1]
        res = d.docker("logs", name)
        assert res.returncode == 1 and b"configured logging driver does not support reading" in res.stderr
    finally:
        rx.close()
        os.unlink(sock_path)
        d.docker("rm", "-f", name)


def test_local_logs_flow_while_the_daemon_is_down(journal_daemon):
    """The writer runs in the shim: what a container says while the daemon is
    stopped is in its log when the daemon is back."""
    d, _ = journal_daemon
    name = _name()
    _ok(d.docker("run", "-d", "--name", name, "--log-driver", "local", "--log-opt", "max-size=2k",
                 "busybox", "sh", "-c", "echo before; sleep 2; " + LOOP + "; sleep 60"))
    try:
        time.sleep(0.5)
        d.stop()
        time.sleep(3)  # the loop runs now, no daemon
        d.start()
        lines = _ok(d.docker("logs", name)).stdout.decode().splitlines()
        assert lines[-1].startswith("line-299-")
        numbers = [int(line.split("-")[1]) for line in lines if line.startswith("line-")]
        assert numbers == list(range(numbers[0], 300)) and numbers[0] > 0  # rotated (max-size), in order
    finally:
        d.docker("rm", "-f", name)
