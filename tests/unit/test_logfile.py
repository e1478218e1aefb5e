"""``dockyard.driverkit.shim.logfile``: Docker's rotation and reading it back
with a cursor that follows a rotation."""

import gzip

import pytest

from dockyard.driverkit.shim.logfile import RotatingFile, parse_size, read_rotated, rotated


def lines(data):
    end = data.rfind(b"\n") + 1
    return data[:end].splitlines(), end


def test_parse_size_as_go_units():
    assert parse_size("10m") == 10 << 20 and parse_size("1k") == 1024 and parse_size("1.5g") == 3 << 29
    assert parse_size("100") == 100 and parse_size("2MiB") == 2 << 20
    with pytest.raises(ValueError, match="invalid size: 'abc'"):
        parse_size("abc")


def test_rotation_keeps_max_file_and_compresses(tmp_path):
    path = str(tmp_path / "c.log")
    f = RotatingFile(path, max_size=20, max_file=3, compress=True)
    for i in range(10):
        f.write_records([b"line-%02d-........\n" % i])  # 17 bytes: a file holds two
    f.close()
    assert [p.rsplit("/", 1)[1] for p in rotated(path)] == ["c.log.2.gz", "c.log.1.gz"]
    assert gzip.open(path + ".1.gz").read() == b"line-06-........\nline-07-........\n"
    entries, _ = read_rotated(path, None, lines)
    assert entries == [b"line-%02d-........" % i for i in range(4, 10)]  # the oldest rotated away


def test_max_file_one_truncates_in_place(tmp_path):
    path = str(tmp_path / "c.log")
    f = RotatingFile(path, max_size=10, max_file=1)
    f.write_records([b"0123456789\n"])
    f.write_records([b"after\n"])
    f.close()
    assert open(path, "rb").read() == b"after\n" and rotated(path) == []


def test_cursor_follows_a_rotation(tmp_path):
    path = str(tmp_path / "c.log")
    f = RotatingFile(path, max_size=12, max_file=2)
    f.write_records([b"one\n"])
    first, cursor = read_rotated(path, None, lines)
    f.write_records([b"two-two-two\n"])  # not read yet when the file rotates
    f.write_records([b"three\n"])
    rest, cursor = read_rotated(path, cursor, lines)
    assert first + rest == [b"one", b"two-two-two", b"three"]
    assert read_rotated(path, cursor, lines)[0] == []
    f.close()
