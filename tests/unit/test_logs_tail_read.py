"""``docker logs --tail N`` read from the end of the log (``logging_read``'s
``tail``): the same entries as the last N of a full read, across rotated and
compressed files, with a torn last line or frame, multi-byte text across the
reader's block boundaries, a cursor that follows on; a driver without ``tail``
still served (the core keeps the last N); and the shim writing whole lines at
once (``JsonFile.write_block``) the same bytes as entry by entry."""

import gzip
import os
import re

import pytest

from dockyard.driverkit.shim import _jsonlog
from dockyard.driverkit.shim.logfile import RotatingFile, last_lines, read_rotated, read_tail
from dockyard.drivers.logging import jsonfile
from dockyard.drivers.logging.local import driver as local
from dockyard.drivers.logging.local import dockyard_log_local as localfmt
from dockyard.engine.logs.service import LogService
from dockyard.hookspecs import hookimpl
from dockyard.plugins import load_driver, register_driver
from dockyard.testing.logging import container


def _json_lines(path, count, rotation=None, text="line"):
    """``count`` json-file entries, stdout and stderr in turn, written as the shim writes them."""
    log = _jsonlog.JsonFile(path, rotation)
    for i in range(count):
        log.write([("stdout" if i % 3 else "stderr", f"{text}-{i}\n".encode(), 10**18 + i, False)])
    log.close()


def _full(path):
    return read_rotated(path, None, jsonfile.parse)[0]


@pytest.mark.parametrize("n", [0, 1, 5, 37, 999, 1000, 5000])
def test_tail_is_the_end_of_a_full_read(tmp_path, n):
    path = str(tmp_path / "c-json.log")
    _json_lines(path, 1000)
    got, cursor = read_tail(path, n, jsonfile.parse, last_lines)
    assert got == (_full(path)[-n:] if n else [])
    assert cursor == [os.stat(path).st_ino, os.path.getsize(path)]


def test_tail_across_rotated_and_compressed_files(tmp_path):
    path = str(tmp_path / "c-json.log")
    _json_lines(path, 400, {"max_size": 2000, "max_file": 4, "compress": True})
    assert [p.rsplit(".", 2)[-2:] for p in sorted(os.listdir(tmp_path)) if ".log." in p] == \
        [["1", "gz"], ["2", "gz"], ["3", "gz"]]
    kept = _full(path)
    assert 40 < len(kept) < 400  # the oldest rotated away
    for n in (1, 10, len(kept) - 30, len(kept) - 1, len(kept), len(kept) + 50):
        assert read_tail(path, n, jsonfile.parse, last_lines)[0] == kept[-n:], n


def test_tail_with_uncompressed_rotation_and_no_current_file(tmp_path):
    path = str(tmp_path / "c-json.log")
    _json_lines(path, 300, {"max_size": 3000, "max_file": 3})
    kept = _full(path)
    assert read_tail(path, 120, jsonfile.parse, last_lines)[0] == kept[-120:]
    os.unlink(path)  # between a rotation's rename and the new file
    assert read_tail(path, 7, jsonfile.parse, last_lines)[0] == _full(path)[-7:] != []


def test_torn_last_line_and_multibyte_text_across_blocks(tmp_path):
    path = str(tmp_path / "c-json.log")
    # ~40 KiB lines of 3-byte characters: blocks of 64 KiB cut characters and lines
    _json_lines(path, 12, text="\u4e2d" * 13000 + "\u00e9")
    with open(path, "ab") as fh:
        fh.write(b'{"log":"torn \xe4\xb8')  # a write in progress: no newline yet
    kept = _full(path)
    assert len(kept) == 12
    for n in (1, 2, 3, 11, 12, 20):
        assert read_tail(path, n, jsonfile.parse, last_lines)[0] == kept[-n:], n
    _, cursor = read_tail(path, 3, jsonfile.parse, last_lines)
    with open(path, "ab") as fh:  # the line completes: a follower gets it, and nothing else
        fh.write(b'\xad","stream":"stdout","time":"2026-01-01T00:00:00.000000001Z"}\n')
    more, _ = read_rotated(path, cursor, jsonfile.parse)
    assert [e["log"] for e in more] == ["torn \u4e2d"]


def test_blank_or_bad_lines_are_skipped_as_before(tmp_path):
    data = b'{"log":"a\\n","stream":"stdout","time":"t"}\n\nnot json\n5\n{"log":"b\\n","stream":"stderr","time":"t"}\n'
    entries, used = jsonfile.parse(data)
    assert [e["log"] for e in entries] == ["a\n", "b\n"] and used == len(data)


def test_local_driver_tail_walks_frames_backwards(tmp_path):
    path = str(tmp_path / "container.log")
    log = localfmt.LocalLog({"path": path, "max_size": 4000, "max_file": 3, "compress": True})
    for i in range(500):
        log.write([("stderr" if i % 2 else "stdout", f"\u00e9-{i}\n".encode(), 10**18 + i, i % 7 == 0)])
    log.close()
    kept = read_rotated(path, None, local.parse)[0]
    assert 100 < len(kept) < 500
    for n in (0, 1, 6, 200, len(kept), len(kept) + 1):
        got, cursor = read_tail(path, n, local.parse, localfmt.last_frames)
        assert got == (kept[-n:] if n else []), n
        assert cursor == [os.stat(path).st_ino, os.path.getsize(path)]
    with open(path, "ab") as fh:  # a torn frame: sizes disagree, the file is parsed from its start
        fh.write(localfmt.frame("stdout", b"torn\n", 1, False)[:-3])
    with open(path, "rb") as fh:
        assert localfmt.last_frames(fh, os.path.getsize(path), 2) is None
    assert read_tail(path, 3, local.parse, localfmt.last_frames)[0] == kept[-3:]


def _service(tmp_path, slot):
    return LogService({slot.name: slot}, slot.name, {})


class _Record:
    """What LogService.reader reads of a container record."""

    def __init__(self, info, kind):
        self.id, self.name, self.image, self.image_id = info["id"], info["name"], "busybox", info["image_id"]
        self.created, self.log_path = info["created"], info["log_path"]
        self.config = {"Labels": {}, "Env": []}
        self.host_config = {"LogConfig": {"Type": kind, "Config": {}}}


def test_service_reads_the_tail_and_follows_on(tmp_path):
    slot = load_driver("logging", "json-file", tmp_path / "home")
    info = container(tmp_path)
    _json_lines(info["log_path"], 50)
    read = _service(tmp_path, slot).reader(_Record(info, "json-file"))
    got, cursor = read(None, 3)
    assert [e["log"] for e in got] == ["line-47\n", "line-48\n", "line-49\n"]
    assert read(None, 0)[0] == [] and len(read(None, -1)[0]) == 50
    log = _jsonlog.JsonFile(info["log_path"])
    log.write([("stdout", b"after\n", 1, False)])
    log.close()
    assert [e["log"] for e in read(cursor)[0]] == ["after\n"]  # -f --tail 3: on from the tail


class OldDriver:
    """A third-party driver written before ``tail``: reads everything."""

    def __init__(self):
        self.tails = []

    @hookimpl
    def logging_supported(self, home, options):
        return None

    @hookimpl
    def logging_init(self, home, options):
        return None

    @hookimpl
    def logging_validate(self, config):
        return None

    @hookimpl
    def logging_writer(self, container, config):
        return {"module": None}

    @hookimpl
    def logging_read(self, container, config, cursor):
        return read_rotated(container["log_path"], cursor, jsonfile.parse)


def test_a_driver_without_tail_still_gets_the_last_entries(tmp_path):
    slot = register_driver("logging", "old", OldDriver(), tmp_path / "home")
    info = container(tmp_path)
    _json_lines(info["log_path"], 20)
    read = _service(tmp_path, slot).reader(_Record(info, "old"))
    assert [e["log"] for e in read(None, 2)[0]] == ["line-18\n", "line-19\n"]
    assert read(None, 0)[0] == [] and len(read(None, -1)[0]) == 20
    assert read(read(None, 2)[1])[0] == []


def test_shim_block_writes_equal_entry_writes(tmp_path):
    """The shim's fast path (whole lines at once) and its per-entry path write
    the same file: escapes, multi-byte and invalid UTF-8, NUL, quotes,
    ``\\r``, U+2028, attrs, rotation between entries, long lines cut."""
    chunks = [b'plain\nquote " back \\ slash\\n\n', "\u00e9\u4e2d\u2028\n".encode(), b"\x00\t\r\n\xff\xe2\x82\n",
              b"x" * 20000 + b"\nshort\n", b"no newline yet", b" ... done\n" * 50]
    texts = []
    for fast in (True, False):
        path = str(tmp_path / f"{fast}.log")
        sink = _jsonlog.JsonFile(path, {"max_size": 700, "max_file": 5}, {"tag": "t\u00e9"})
        if not fast:  # a sink without write_block: the per-entry path only
            sink = type("Entries", (), {"write": sink.write, "close": sink.close})()
        w = _jsonlog.LogWriter(sinks=[sink])
        for chunk in chunks:
            w.feed("stdout", chunk)
        w.feed("stdout", b"", final=True)
        w.close()
        names = sorted(os.listdir(tmp_path))
        files = [n for n in names if n.startswith(f"{fast}.log")]
        texts.append([re.sub(rb'"time":"[^"]+"', b"", open(tmp_path / n, "rb").read()) for n in sorted(files)])
    assert texts[0] == texts[1] and len(texts[0]) > 2
    entries = _full(str(tmp_path / "True.log"))
    assert {e["attrs"]["tag"] for e in entries} == {"t\u00e9"} and entries[-1]["log"] == " ... done\n"


def test_gzip_rotated_file_is_read_whole(tmp_path):
    path = str(tmp_path / "c-json.log")
    rf = RotatingFile(path, max_size=10, max_file=2, compress=True)
    rf.write_records([b'{"log":"old\\n","stream":"stdout","time":"t"}\n'])
    rf.write_records([b'{"log":"new\\n","stream":"stdout","time":"t"}\n'])
    rf.close()
    assert gzip.open(path + ".1.gz").read().startswith(b'{"log":"old')
    assert [e["log"] for e in read_tail(path, 2, jsonfile.parse, last_lines)[0]] == ["old\n", "new\n"]
