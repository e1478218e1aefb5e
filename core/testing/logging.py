"""The log driver conformance kit: what every log driver must do, runnable by a
third-party author against their own driver, without a daemon::

    from dockyard.testing.logging import LogConformance

    class TestMine(LogConformance):
        driver = "mine"                      # its entry point in dockyard.logging
        options = {}                         # its [logging.options.mine]
        config = {"mine-opt": "x"}           # a container's --log-opt it accepts

        def collect(self, count):            # drivers that cannot read back:
            return [...]                     # the last `count` lines as received

Each test loads the driver through the plugin loader (entry point, pluggy
validation), and runs its writer **as the shim runs it**: a ``python -E -S``
process with the shim kit's directory on ``sys.path``, importing the writer
module by bare name from its directory, so a writer that imports anything but
the standard library (and the kit's ``logfile``) fails here.  A driver that
implements ``logging_read`` must read back what its writer wrote, in order,
streams and partial lines kept; one that does not must say where the lines
went through :meth:`LogConformance.collect`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from .. import plugins
from ..driverkit.shim import client as _shim_client
from ..errors import InvalidParameter
from ..hookspecs.logging import Container

#: the shim kit's directory, which a shim has on ``sys.path``
KIT = os.path.dirname(os.path.abspath(str(_shim_client.__file__)))

#: what the writer gets, line by line: (stream, data, partial)
LINES = [("stdout", b"first line\n", False), ("stderr", b"an error\n", False),
         ("stdout", "unicode \u00e9\u4e2d\n".encode(), False), ("stdout", b"x" * 16384, True),
         ("stdout", b"end of the long one\n", False), ("stderr", b"no newline", True)]

_RUN = """
import sys, json
kit, where, name = sys.argv[1:4]
sys.path[0:1] = [kit] + ([where] if where else [])
import _jsonlog
spec = json.loads(sys.stdin.readline())
writer = _jsonlog.open_driver(spec, spec.get("container") or {})
for line in sys.stdin:
    stream, data, ns, partial = json.loads(line)
    if writer is not None:
        writer.write([(stream, bytes.fromhex(data), ns, partial)])
if writer is not None:
    writer.close()
"""


def container(tmp: Path, cid: str = "c0ffee" * 10 + "beef") -> Container:
    """A container as a log driver learns of it, living in ``tmp``."""
    d = tmp / cid
    d.mkdir(parents=True, exist_ok=True)
    return Container(id=cid, name="conformance", image_name="busybox", image_id="sha256:" + "ab" * 32,
                     created="2026-01-01T00:00:00Z", labels={"com.example": "yes"}, env=["A=1"], dir=str(d),
                     log_path=str(d / f"{cid}-json.log"), daemon_name="conformance")


def run_writer(spec: dict[str, Any], lines: list[tuple[str, bytes, bool]]) -> None:
    """Run ``spec``'s writer in a ``python -E -S`` process, as a shim does."""
    feed = [json.dumps(spec)] + [json.dumps([s, d.hex(), time.time_ns(), p]) for s, d, p in lines]
    res = subprocess.run([sys.executable, "-E", "-S", "-c", _RUN, KIT, spec.get("path") or "", ""],
                         input="\n".join(feed) + "\n", capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"the writer failed in a shim-like interpreter:\n{res.stderr}"


class LogConformance:
    """Subclass it with :attr:`driver` (and :attr:`options`, :attr:`config`)."""

    driver = ""
    options: dict[str, Any] = {}
    config: dict[str, str] = {}

    def collect(self, count: int) -> list[tuple[str, bytes]]:
        """For a driver that cannot read back: the last ``count`` lines it
        delivered, as ``(stream, data)`` with the newline stripped."""
        pytest.skip(f"log driver {self.driver!r} cannot read back and its test gives no collect()")

    @pytest.fixture
    def slot(self, tmp_path: Path) -> plugins.Slot:
        slot = plugins.load_driver("logging", self.driver, tmp_path / "home", dict(self.options))
        reason = slot.supported()
        if reason is not None:
            pytest.skip(f"log driver {self.driver!r} unsupported here: {reason}")
        slot.init()
        return slot

    # ------------------------------------------------------------------ the contract
    def test_loads_with_the_required_hooks(self, slot: plugins.Slot) -> None:
        assert slot.name == self.driver

    def test_refuses_an_unknown_option_naming_it(self, slot: plugins.Slot) -> None:
        if self.driver == "none":
            return  # dockerd's none takes anything
        with pytest.raises(InvalidParameter, match="no-such-option"):
            slot.hook.logging_validate(config={"no-such-option": "1"})

    def test_accepts_its_config(self, slot: plugins.Slot) -> None:
        slot.hook.logging_validate(config=dict(self.config))

    def test_writer_spec_is_json(self, slot: plugins.Slot, tmp_path: Path) -> None:
        spec = slot.hook.logging_writer(container=container(tmp_path), config=dict(self.config))
        assert isinstance(spec, dict)
        assert json.loads(json.dumps(spec)) == spec, "the writer spec must survive JSON (the shim's state)"
        if spec.get("module"):
            assert spec.get("path") and os.path.isfile(os.path.join(spec["path"], spec["module"] + ".py")), \
                "the writer module must be a file in the spec's directory"

    def test_what_is_written_is_delivered(self, slot: plugins.Slot, tmp_path: Path) -> None:
        info = container(tmp_path)
        spec = dict(slot.hook.logging_writer(container=info, config=dict(self.config)) or {})
        spec["container"] = dict(info)
        run_writer(spec, LINES)
        readable = bool(slot.pm.hook.logging_read.get_hookimpls())
        if spec.get("module") is None and not readable:
            return  # no writer and no reader: the driver keeps nothing (none)
        if not readable:
            got = self.collect(len(LINES))
        else:
            entries, cursor = slot.hook.logging_read(container=info, config=dict(self.config), cursor=None, tail=-1)
            got = [(e["stream"], e["log"].encode()) for e in entries]
            more, _ = slot.hook.logging_read(container=info, config=dict(self.config), cursor=cursor, tail=-1)
            assert more == [], "reading from the returned cursor gives only what came since"
            for e in entries:
                assert e["time"].endswith("Z") and "T" in e["time"], "time is RFC 3339 UTC"
        want = [(s, d) for s, d, _ in LINES]
        stripped = [(s, d.rstrip(b"\n")) for s, d in want]
        assert got in (want, stripped), f"delivered {got!r}"


def tmp_socket_dir() -> str:
    """A short directory for unix sockets (their paths are limited to 108 bytes)."""
    return tempfile.mkdtemp(prefix="dylog")
