"""The ``cri`` log driver: the kubelet's CRI log format (full and partial
lines, both streams), the file's mode and directory, a rotation followed
(the kubelet renames the file, ReopenContainerLog makes the new one), and
reading the file back for ``docker logs``."""

import os
import re
import stat
from datetime import datetime

import pytest
from dockyard.drivers.logging.crilog import dockyard_log_cri as fmt
from dockyard.drivers.logging.crilog.driver import CriLogDriver
from dockyard.errors import InvalidParameter
from dockyard.testing.logging import LogConformance

LINE = re.compile(r"^(\S+) (stdout|stderr) ([FP]) (.*)$")


def lines(path):
    out = []
    for raw in open(path).read().splitlines():
        m = LINE.match(raw)
        assert m, raw
        out.append(m.groups())
    return out


class TestCriConformance(LogConformance):
    """The log driver conformance kit: the writer run as a shim runs it, read back."""

    driver = "cri"

    @pytest.fixture(autouse=True)
    def _log_path(self, tmp_path):
        self.config = {"path": str(tmp_path / "pods" / "c.log")}  # a directory to make, as the kubelet's


def test_lines_in_the_cri_format(tmp_path):
    path = tmp_path / "sub" / "c.log"
    driver = CriLogDriver()
    spec = driver.logging_writer(container={}, config={"path": str(path)})
    assert spec["module"] == "dockyard_log_cri" and os.path.isfile(os.path.join(spec["path"], "dockyard_log_cri.py"))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640  # made by the daemon's half, directory too
    log = fmt.open_log(spec["options"], {})
    ns = 1_700_000_000_123_456_789
    log.write([("stdout", b"hello World\n", ns, False), ("stderr", b"no newline", ns + 1, True),
               ("stderr", b" end\n", ns + 2, False)])
    log.close()
    got = lines(path)
    assert [g[1:] for g in got] == [("stdout", "F", "hello World"), ("stderr", "P", "no newline"),
                                    ("stderr", "F", " end")]
    assert got[0][0] == "2023-11-14T22:13:20.123456789Z"
    # Go's RFC3339Nano reads it: nine digits, UTC
    assert datetime.fromisoformat(got[0][0][:26] + "+00:00").year == 2023


def test_the_writer_follows_a_rotation(tmp_path):
    path = tmp_path / "c.log"
    driver = CriLogDriver()
    config = {"path": str(path)}
    log = fmt.open_log(driver.logging_writer(container={}, config=config)["options"], {})
    log.write([("stdout", b"one\n", 1, False)])
    os.rename(path, str(path) + ".1")  # the kubelet's rotation...
    driver.logging_reopen(container={}, config=config)  # ...then ReopenContainerLog
    assert path.exists() and path.stat().st_size == 0
    log.write([("stdout", b"two\n", 2, False)])
    os.unlink(path)  # removed outright: a new file too
    log.write([("stdout", b"three\n", 3, False)])
    log.close()
    assert [g[3] for g in lines(str(path) + ".1")] == ["one"]
    assert [g[3] for g in lines(path)] == ["three"]


def test_read_back_for_docker_logs(tmp_path):
    path = tmp_path / "c.log"
    path.write_text("2024-01-01T00:00:00.000000001Z stdout P par\n"
                    "2024-01-01T00:00:00.000000002Z stdout F tial\n"
                    "not a log line\n"
                    "2024-01-01T00:00:00.000000003Z stderr F oops\n"
                    "2024-01-01T00:00:00.000000004Z stdout F torn")
    entries, cursor = CriLogDriver().logging_read(container={}, config={"path": str(path)}, cursor=None, tail=-1)
    assert [(e["stream"], e["log"]) for e in entries] == [("stdout", "par"), ("stdout", "tial\n"),
                                                          ("stderr", "oops\n")]
    assert entries[2]["time"] == "2024-01-01T00:00:00.000000003Z"
    with open(path, "a") as fh:
        fh.write("\n")
    more, _ = CriLogDriver().logging_read(container={}, config={"path": str(path)}, cursor=cursor, tail=-1)
    assert [e["log"] for e in more] == ["torn\n"]


def test_options_refused():
    driver = CriLogDriver()
    with pytest.raises(InvalidParameter, match="unknown log opt 'max-size' for cri"):
        driver.logging_validate(config={"path": "/x", "max-size": "1m"})
    with pytest.raises(InvalidParameter, match="absolute"):
        driver.logging_validate(config={"path": "relative.log"})
    with pytest.raises(InvalidParameter, match="absolute"):
        driver.logging_validate(config={})
