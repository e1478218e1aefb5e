"""The shim kit reads and writes its state files with ``os`` calls, not
``open()`` (a shim's first ``open()`` costs it ~0.1 MB of private memory):
what the daemon and the drivers read back must not change."""

import json
import os

import pytest
from dockyard.driverkit.shim import _minijson, supervisor


def fds():
    return sorted(os.listdir("/proc/self/fd"))


def test_write_json_round_trips_and_replaces_atomically(tmp_path):
    path = str(tmp_path / "running.json")
    before = fds()
    _minijson.write_json(path, {"pid": 12, "started_at": "2026-01-01T00:00:00.000000Z", "ok": True, "x": None})
    _minijson.write_json(path, {"pid": 13, "name": "ünïcode"})
    with open(path) as fh:
        assert json.load(fh) == {"pid": 13, "name": "ünïcode"}  # the daemon reads it with json
    assert _minijson.load_file(path) == {"pid": 13, "name": "ünïcode"}
    assert os.listdir(tmp_path) == ["running.json"]  # no temporary file left
    assert fds() == before


def test_written_files_keep_the_umask_mode(tmp_path):
    old = os.umask(0o027)
    try:
        _minijson.write_json(str(tmp_path / "exit.json"), {"exit_code": 0})
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "exit.json").st_mode & 0o777 == 0o640  # as open(path, "w") made it


def test_read_file_reads_past_one_chunk_and_raises_on_missing(tmp_path):
    data = os.urandom(200_000)
    (tmp_path / "filter.bpf").write_bytes(data)
    before = fds()
    assert _minijson.read_file(str(tmp_path / "filter.bpf")) == data
    with pytest.raises(FileNotFoundError):
        _minijson.read_file(str(tmp_path / "missing"))
    assert fds() == before


def test_proc_start_is_the_stat_start_time():
    with open("/proc/self/stat", "rb") as fh:
        data = fh.read()
    assert supervisor.proc_start(os.getpid()) == int(data[data.rindex(b")") + 2:].split()[19])
    assert supervisor.proc_start(2**22 + 1) is None  # above pid_max: no such process
