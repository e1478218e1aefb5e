"""dockyard.safetar: safe layer extraction, whiteouts, tar writing, diff rules."""

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile

import pytest

from dockyard.errors import StorageError
from dockyard.safetar import (OverlayWhiteouts, TarWriter, UnsafeTarError, clean_name, differs, extract,
                              write_tar)
from dockyard.testing.storage import make_tar, snapshot

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")


@pytest.fixture
def dest(tmp_path):
    d = tmp_path / "dest"
    d.mkdir()
    return d


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_text("safe")
    return d


def _tar(*entries, **kw):
    return make_tar(list(entries), **kw)


def _ti_tar(infos):
    """A tar from ``(TarInfo, data or None)`` pairs."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in infos:
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("name, want", [
    ("a/b", "a/b"), ("./a/b/", "a/b"), ("a//b/.", "a/b"), (".", ""), ("./", ""),
])
def test_clean_name(name, want):
    assert clean_name(name) == want


@pytest.mark.parametrize("name", ["/etc/passwd", "/", "../x", "a/../../x", "a/../b", "a/\x00b"])
def test_clean_name_refuses(name):
    with pytest.raises(UnsafeTarError):
        clean_name(name)


def test_extract_files_dirs_links_and_metadata(dest):
    size = extract(_tar(
        ("d", "d", None, {"mode": 0o555, "mtime": 1000}),
        ("d/f", "f", b"hello", {"mode": 0o4750, "mtime": 2000, "uid": 1234, "gid": 5678}),
        ("d/sym", "l", "../outside/nowhere"),
        ("d/hard", "h", "d/f"),
        ("fifo", "p", None, {"mode": 0o600}),
    ), dest)
    assert size == 5
    st = os.lstat(dest / "d/f")
    assert stat.S_IMODE(st.st_mode) == 0o4750 and st.st_mtime == 2000
    if ROOT:
        assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert os.lstat(dest / "d/hard").st_ino == st.st_ino and st.st_nlink == 2
    assert os.readlink(dest / "d/sym") == "../outside/nowhere"
    assert stat.S_ISFIFO(os.lstat(dest / "fifo").st_mode)
    d = os.lstat(dest / "d")
    assert stat.S_IMODE(d.st_mode) == 0o555 and d.st_mtime == 1000  # set after its children


@needs_root
def test_extract_devices_and_xattrs(dest):
    dev = tarfile.TarInfo("null")
    dev.type, dev.mode, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 0o666, 1, 3
    f = tarfile.TarInfo("f")
    f.pax_headers = {"SCHILY.xattr.user.note": "hi", "SCHILY.xattr.trusted.overlay.opaque": "y",
                     "SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x04\x00\x00" + "\x00" * 12}
    d = tarfile.TarInfo("dir")
    d.type, d.mode = tarfile.DIRTYPE, 0o755
    d.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y", "SCHILY.xattr.user.d": "1"}
    extract(_ti_tar([(dev, None), (f, b"x"), (d, None)]), dest)
    st = os.lstat(dest / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
    assert os.getxattr(dest / "f", "user.note") == b"hi"
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "f")
    assert "trusted.overlay.opaque" not in os.listxattr(dest / "dir")  # never forged from a tar
    assert os.getxattr(dest / "dir", "user.d") == b"1"


@pytest.mark.parametrize("entries", [
    [("../evil", "f", b"x")],
    [("a", "d", None), ("a/../../evil", "f", b"x")],
    [("esc", "l", "OUTSIDE"), ("esc/evil", "f", b"x")],
    [("esc", "l", "../outside"), ("esc/evil", "f", b"x")],
    [("esc", "l", "OUTSIDE"), ("esc/.wh.victim", "w", None)],
    [("esc", "l", "OUTSIDE"), ("esc/.wh..wh..opq", "w", None)],
    [("esc", "l", "OUTSIDE"), ("esc/hard", "h", "f")],
    [("f", "f", b"x"), ("hl", "h", "../outside/victim")],
    [("hl", "h", "/etc/passwd")],
    [("a", "d", None), ("a/b", "l", "OUTSIDE/victim"), ("hl", "h", "a/b/x")],
])
@pytest.mark.parametrize("strategy", [None, OverlayWhiteouts()])
def test_extract_refuses_escapes(dest, outside, entries, strategy):
    entries = [(n, k, d.replace("OUTSIDE", str(outside)) if isinstance(d, str) else d) for n, k, d in entries]
    with pytest.raises(UnsafeTarError):
        extract(_tar(*entries), dest, whiteouts=strategy)
    assert sorted(os.listdir(outside)) == ["victim"] and (outside / "victim").read_text() == "safe"
    assert sorted(os.listdir(dest.parent)) == ["dest", "outside"]


def test_absolute_name_refused(dest, outside):
    with pytest.raises(UnsafeTarError, match="absolute"):
        extract(_tar((f"{outside}/evil", "f", b"x")), dest)
    assert sorted(os.listdir(outside)) == ["victim"]


def test_existing_symlink_in_dest_is_never_followed(dest, outside):
    os.symlink(outside, dest / "lib")
    with pytest.raises(UnsafeTarError, match="symlink"):
        extract(_tar(("lib/evil", "f", b"x")), dest)
    # replacing the symlink itself is fine, and does not touch its target
    extract(_tar(("lib", "f", b"now a file")), dest)
    assert (dest / "lib").read_bytes() == b"now a file" and sorted(os.listdir(outside)) == ["victim"]
    os.symlink(outside / "victim", dest / "v")
    extract(_tar(("v", "f", b"over")), dest)
    assert (outside / "victim").read_text() == "safe" and (dest / "v").read_bytes() == b"over"


def test_entries_replace_existing(dest):
    (dest / "was_dir").mkdir()
    (dest / "was_dir/inner").write_text("x")
    (dest / "was_file").write_text("x")
    (dest / "merged").mkdir()
    (dest / "merged/old").write_text("kept")
    extract(_tar(("was_dir", "f", b"file"), ("was_file", "d", None), ("merged", "d", None),
                 ("merged/new", "f", b"n")), dest)
    assert (dest / "was_dir").read_bytes() == b"file" and (dest / "was_file").is_dir()
    assert sorted(os.listdir(dest / "merged")) == ["new", "old"]


def test_default_whiteouts_delete_lower_content(dest):
    for rel in ("gone", "keepdir/x", "opq/old", "opq/sub/old", "opq2/old"):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_text("lower")
    extract(_tar(
        (".wh.gone", "w", None), (".wh.missing", "w", None), ("nodir/.wh.x", "w", None),
        ("opq", "d", None), ("opq/.wh..wh..opq", "w", None), ("opq/sub", "d", None), ("opq/sub/new", "f", b"n"),
        ("opq2", "d", None), ("opq2/new", "f", b"n"), ("opq2/.wh..wh..opq", "w", None),  # marker after
        ("same", "f", b"s"), (".wh.same", "w", None),  # whiteouts never hide this layer's own files
        (".wh..wh.plnk", "w", None),  # aufs metadata: ignored
    ), dest)
    assert sorted(os.listdir(dest)) == ["keepdir", "opq", "opq2", "same"]
    assert sorted(os.listdir(dest / "opq")) == ["sub"] and os.listdir(dest / "opq/sub") == ["new"]
    assert os.listdir(dest / "opq2") == ["new"]
    assert not (dest / "nodir").exists()


@needs_root
def test_overlay_whiteouts(dest):
    lower = os.stat(dest)
    implied = []

    def lower_stat(rel):
        implied.append(rel)
        return lower

    extract(_tar((".wh.gone", "w", None), ("d", "d", None), ("d/.wh..wh..opq", "w", None),
                 ("deep/er/.wh.x", "w", None), ("own", "f", b"o"), (".wh.own", "w", None)),
            dest, whiteouts=OverlayWhiteouts(lower_stat))
    st = os.lstat(dest / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(dest / "d", "trusted.overlay.opaque") == b"y"
    assert stat.S_ISCHR(os.lstat(dest / "deep/er/x").st_mode)
    assert implied == ["deep", "deep/er"] and (dest / "own").read_bytes() == b"o"


def test_truncated_and_corrupt_streams(dest):
    good = _tar(("big", "f", os.urandom(5000)), ("after", "f", b"b")).getvalue()
    with tarfile.open(fileobj=io.BytesIO(good)) as t:
        header = t.getmember("after").offset
    for data in (good[:3000], good[:header + 200], b"garbage" * 100,
                 gzip.compress(good)[:200], b"\x1f\x8b\x08\x00" + b"\x00" * 100):
        with pytest.raises(StorageError):
            extract(io.BytesIO(data), dest)


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_compression_is_detected_and_stream_drained(dest, compress):
    data = _tar(("f", "f", b"data")).getvalue()
    stream = io.BytesIO(compress(data) if compress else data)
    assert extract(stream, dest) == 4
    assert (dest / "f").read_bytes() == b"data" and stream.read() == b""


def test_empty_stream_is_an_empty_layer(dest):
    assert extract(io.BytesIO(b""), dest) == 0
    assert extract(io.BytesIO(b"\x00" * 1024), dest) == 0


def test_write_tar_round_trip(tmp_path):
    src = tmp_path / "src"
    (src / "d/e").mkdir(parents=True)
    (src / "d/f").write_bytes(b"content")
    os.link(src / "d/f", src / "d/e/hard")
    os.symlink("/abs/target", src / "sym")
    os.mkfifo(src / "fifo")
    os.chmod(src / "d/f", 0o640)
    os.utime(src / "d/f", (123, 456))
    os.setxattr(src / "d/f", "user.k", b"v\xff")
    with write_tar(src) as out:
        data = out.read()
    dst = tmp_path / "dst"
    dst.mkdir()
    extract(io.BytesIO(data), dst)
    assert snapshot(src) == snapshot(dst)
    assert os.getxattr(dst / "d/f", "user.k") == b"v\xff"
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        names = [(ti.name, ti.type) for ti in t]
    assert names.index(("d", tarfile.DIRTYPE)) < names.index(("d/e", tarfile.DIRTYPE))
    assert ("d/f", tarfile.LNKTYPE) in names or ("d/e/hard", tarfile.LNKTYPE) in names


def test_tar_writer_whiteouts(tmp_path):
    buf = io.BytesIO()
    w = TarWriter(buf)
    w.add_whiteout("a/b")
    w.add_whiteout("top")
    w.add_opaque("a")
    w.close()
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        assert t.getnames() == ["a/.wh.b", ".wh.top", "a/.wh..wh..opq"]


def test_differs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("same")
    b.write_text("same")
    os.utime(a, ns=(0, 5_000_000_000))
    os.utime(b, ns=(0, 5_000_000_000))

    def check():
        return differs(a, os.lstat(a), b, os.lstat(b))

    assert not check()
    os.utime(b, ns=(0, 5_123_000_000))  # truncated to seconds on one side: same
    assert not check()
    os.utime(a, ns=(0, 5_999_000_000))
    assert check()
    os.utime(a, ns=(0, 5_000_000_000))
    os.chmod(b, 0o600)
    assert check()
    da, db = tmp_path / "da", tmp_path / "db"
    da.mkdir()
    db.mkdir()
    os.utime(da, (1, 1))
    assert not differs(da, os.lstat(da), db, os.lstat(db))  # directory mtimes do not count
    la, lb = tmp_path / "la", tmp_path / "lb"
    os.symlink("xx", la)
    os.symlink("yy", lb)
    os.utime(la, ns=(0, 0), follow_symlinks=False)
    os.utime(lb, ns=(0, 0), follow_symlinks=False)
    assert differs(la, os.lstat(la), lb, os.lstat(lb))


def test_same_owner_false_keeps_caller_as_owner(dest):
    extract(_tar(("f", "f", b"x", {"uid": 4321, "gid": 4321})), dest, same_owner=False)
    assert os.lstat(dest / "f").st_uid == os.geteuid()
