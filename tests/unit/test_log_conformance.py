"""Dockyard's log drivers through the log driver conformance kit
(:mod:`dockyard.testing.logging`), each writer run as a shim runs it; the
journal and syslog ends are real sockets of the test's."""

import os
import shutil
import socket
import struct

import pytest

from dockyard.testing.logging import LogConformance, tmp_socket_dir


class TestJsonFile(LogConformance):
    driver = "json-file"
    config = {"max-size": "10m", "max-file": "2", "labels": "com.example"}

    def test_writer_is_the_stream_file(self, slot, tmp_path):
        from dockyard.testing.logging import container

        spec = slot.hook.logging_writer(container=container(tmp_path), config=dict(self.config))
        assert spec["module"] is None
        assert spec["stream"]["rotation"] == {"max_size": 10 << 20, "max_file": 2, "compress": False}
        assert spec["stream"]["attrs"] == {"com.example": "yes"}

    def test_what_is_written_is_delivered(self, slot, tmp_path):
        """json-file has no writer of its own: the kit's stream file is its log."""
        from dockyard.driverkit.shim._jsonlog import JsonFile
        from dockyard.testing.logging import LINES, container

        info = container(tmp_path)
        log = JsonFile(info["log_path"], {"max_size": 200, "max_file": 3})
        for stream, data, partial in LINES:
            log.write([(stream, data, 0, partial)])
        log.close()
        entries, _ = slot.hook.logging_read(container=info, config={}, cursor=None, tail=-1)
        got = [(e["stream"], e["log"].encode()) for e in entries]
        assert got == [(s, d) for s, d, _ in LINES][-len(got):] and len(got) >= 2  # the rotated-out oldest go


class TestLocal(LogConformance):
    driver = "local"
    config = {"max-size": "1m", "max-file": "2", "compress": "false"}


class TestNone(LogConformance):
    driver = "none"


class TestJournald(LogConformance):
    driver = "journald"
    config = {"tag": "{{.Name}}"}

    @pytest.fixture(autouse=True)
    def journal(self):
        d = tmp_socket_dir()
        path = os.path.join(d, "journal.sock")
        self.rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.rx.bind(path)
        self.rx.settimeout(5)
        self.options = {"socket": path}
        yield
        self.rx.close()
        shutil.rmtree(d)

    def collect(self, count):
        out = []
        for _ in range(count):
            fields = _journal(self.rx.recv(1 << 17))
            assert fields["SYSLOG_IDENTIFIER"] == b"conformance"
            out.append(("stdout" if fields["PRIORITY"] == b"6" else "stderr", fields["MESSAGE"]))
        return out


class TestSyslog(LogConformance):
    driver = "syslog"

    @pytest.fixture(autouse=True)
    def receiver(self):
        self.rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rx.bind(("127.0.0.1", 0))
        self.rx.settimeout(5)
        self.config = {"syslog-address": f"udp://127.0.0.1:{self.rx.getsockname()[1]}",
                       "syslog-format": "rfc5424micro"}
        yield
        self.rx.close()

    def collect(self, count):
        out = []
        for _ in range(count):
            msg = self.rx.recv(1 << 17)
            head, _, text = msg.partition(b" - ")
            pri = int(head[1:head.index(b">")])
            assert pri in (3 * 8 + 6, 3 * 8 + 3) and head.split()[0].endswith(b"1")  # daemon.*, version 1
            out.append(("stdout" if pri % 8 == 6 else "stderr", text.removesuffix(b"\n")))
        return out


def _journal(dgram):
    fields, pos = {}, 0
    while pos < len(dgram):
        nl = dgram.index(b"\n", pos)
        line = dgram[pos:nl]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = nl + 1
        else:
            key, (size,) = line, struct.unpack_from("<Q", dgram, nl + 1)
            value, pos = dgram[nl + 9:nl + 9 + size], nl + 10 + size
        fields[key.decode()] = value
    return fields
