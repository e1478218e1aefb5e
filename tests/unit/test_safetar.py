"""dockyard.driverkit.safetar: safe layer extraction, whiteouts, tar writing, diff rules."""

import bz2
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile

import pytest

from dockyard.driverkit.safetar import (OverlayWhiteouts, TarWriter, UnsafeTarError, clean_name, differs, extract,
                                        write_tar)
from dockyard.driverkit.tarsplit import TarSplitReader, record_tar_split
from dockyard.errors import StorageError
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


# ---------------------------------------------------------------- devices and special bits


def _dev(name, kind=tarfile.CHRTYPE, major=1, minor=3):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.devmajor, ti.devminor = kind, 0o666, major, minor
    return ti, None


@pytest.mark.parametrize("infos", [
    [_dev("../null")],
    [_dev("/dev/evil")],
    [_dev("a/../../sda", tarfile.BLKTYPE, 8, 0)],
])
def test_device_nodes_never_leave_dest(dest, infos):
    with pytest.raises(UnsafeTarError):
        extract(_ti_tar(infos), dest)
    assert os.listdir(dest) == [] and sorted(os.listdir(dest.parent)) == ["dest"]


def test_device_node_through_a_symlink_or_hard_link_to_a_host_device(dest, outside):
    esc = tarfile.TarInfo("esc")
    esc.type, esc.linkname = tarfile.SYMTYPE, str(outside)
    with pytest.raises(UnsafeTarError, match="symlink"):
        extract(_ti_tar([(esc, None), _dev("esc/null")]), dest)
    assert sorted(os.listdir(outside)) == ["victim"]
    for target in ("/dev/null", "../../../../../../dev/null", "devlink/null"):
        link = tarfile.TarInfo("hl")
        link.type, link.linkname = tarfile.LNKTYPE, target
        devlink = tarfile.TarInfo("devlink")
        devlink.type, devlink.linkname = tarfile.SYMTYPE, "/dev"
        with pytest.raises(StorageError):
            extract(_ti_tar([(devlink, None), (link, None)]), dest)
        assert not (dest / "hl").exists()


def test_device_nodes_are_made_inside_only_as_root(dest):
    size = extract(_ti_tar([_dev("null"), _dev("sda", tarfile.BLKTYPE, 8, 0), (tarfile.TarInfo("f"), b"x")]), dest)
    assert size == 1
    if not ROOT:  # unprivileged (rootless) extraction skips device nodes
        assert sorted(os.listdir(dest)) == ["f"]
        return
    sda = os.lstat(dest / "sda")
    assert stat.S_ISBLK(sda.st_mode) and (os.major(sda.st_rdev), os.minor(sda.st_rdev)) == (8, 0)
    assert stat.S_ISCHR(os.lstat(dest / "null").st_mode)


def test_setuid_setgid_sticky_are_kept(dest):
    extract(_tar(("suid", "f", b"x", {"mode": 0o4755, "uid": 1000, "gid": 1000}),
                 ("sgid", "f", b"x", {"mode": 0o2755, "uid": 1000, "gid": 50}),
                 ("tmp", "d", None, {"mode": 0o1777}), ("shared", "d", None, {"mode": 0o2770, "gid": 50}),
                 ("shared/f", "f", b"f")), dest)
    modes = {n: stat.S_IMODE(os.lstat(dest / n).st_mode) for n in ("suid", "sgid", "tmp", "shared")}
    assert modes == {"suid": 0o4755, "sgid": 0o2755, "tmp": 0o1777, "shared": 0o2770}
    if ROOT:  # chown (which clears setuid) happened before chmod
        assert os.lstat(dest / "suid").st_uid == 1000 and os.lstat(dest / "shared").st_gid == 50


# ---------------------------------------------------------------- bounded headers


def _pax_tar(pax_headers, fmt=tarfile.PAX_FORMAT, name="f"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        ti = tarfile.TarInfo(name)
        ti.pax_headers = pax_headers
        t.addfile(ti, io.BytesIO(b""))
    return buf.getvalue()


def _peak(fn):
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_huge_pax_header_is_refused_in_bounded_memory(dest):
    data = _pax_tar({"comment": "x" * (24 << 20)})

    def run():
        with pytest.raises(StorageError, match=r"a PAX header of \d+ bytes .*the limit is 1048576"):
            extract(io.BytesIO(data), dest)

    assert _peak(run) < 4 << 20
    assert os.listdir(dest) == []


def test_huge_gnu_long_name_and_global_headers_are_refused(dest):
    with pytest.raises(StorageError, match="GNU long name header"):
        extract(io.BytesIO(_pax_tar({}, tarfile.GNU_FORMAT, name="n" * (2 << 20))), dest)
    # global headers add up: each is small, together they pass the limit
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(4):
            t.fileobj.write(t.tarinfo.create_pax_global_header({f"k{i}": "v" * 400_000}))
        t.addfile(tarfile.TarInfo("f"), io.BytesIO(b""))
    with pytest.raises(StorageError, match="global PAX header"):
        extract(io.BytesIO(buf.getvalue()), dest)


def test_chained_extended_headers_and_long_sparse_maps_are_refused(dest):
    one = _pax_tar({"comment": "c"})
    header = one[:1024]  # a PAX header block and its record block
    with pytest.raises(StorageError, match="extended headers"):
        extract(io.BytesIO(header * 5000 + one), dest)
    # a GNU sparse header announcing extension blocks without end
    ti = tarfile.TarInfo("sparse")
    block = bytearray(ti.tobuf(tarfile.GNU_FORMAT))
    block[156:157] = tarfile.GNUTYPE_SPARSE
    block[482] = 1  # isextended
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    ext = bytearray(512)
    ext[504] = 1  # another extension block follows, forever
    with pytest.raises(StorageError, match="sparse map"):
        extract(io.BytesIO(bytes(block) + bytes(ext) * 4000), dest)


def test_invalid_header_mid_archive_is_an_error_not_the_end(dest):
    good = _tar(("a", "f", b"a"), ("b", "f", b"b"), ("c", "f", b"c")).getvalue()
    with tarfile.open(fileobj=io.BytesIO(good)) as t:
        off = t.getmember("b").offset
    bad = bytearray(good)
    bad[off + 148] ^= 0x01  # break the checksum of b's header
    with pytest.raises(StorageError, match="invalid header"):
        extract(io.BytesIO(bytes(bad)), dest)


def test_many_entries_in_bounded_memory(dest):
    data = _tar(*[(f"f{i:05}", "f", b"") for i in range(6000)]).getvalue()
    assert _peak(lambda: extract(io.BytesIO(data), dest)) < 2 << 20  # ~0.9 MiB; 3.6 if members piled up


# ---------------------------------------------------------------- determinism and tar-split


def test_write_tar_is_deterministic(tmp_path):
    trees = []
    for n, order in ((1, ("user.a", "user.b", "user.c")), (2, ("user.c", "user.a", "user.b"))):
        root = tmp_path / f"tree{n}"
        (root / "d").mkdir(parents=True)
        if n == 2:  # other inode numbers, another creation order
            (root / "pad").write_text("x")
            (root / "pad").unlink()
        for name in ("z", "a", "m"):
            (root / "d" / name).write_bytes(name.encode())
        os.link(root / "d/m", root / "hl")
        os.symlink("d/z", root / "sym")
        for key in order:
            os.setxattr(root / "d/a", key, key.encode())
        for path in (root / "d/z", root / "d/a", root / "d/m", root / "d", root / "sym"):
            os.utime(path, ns=(0, 1_650_000_000_000_000_000 + n * 1000), follow_symlinks=False)
        trees.append(root)
    with write_tar(trees[0]) as a, write_tar(trees[1]) as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_split_rebuilds_the_exact_tar(tmp_path, fmt):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        def add(name, kind=tarfile.REGTYPE, data=None, **kw):
            ti = tarfile.TarInfo(name)
            ti.type, ti.mtime, ti.uname, ti.gname = kind, 1_700_000_000, "someone", "group"
            for k, v in kw.items():
                setattr(ti, k, v)
            if data is not None:
                ti.size = len(data)
            t.addfile(ti, io.BytesIO(data) if data is not None else None)
        add("d", tarfile.DIRTYPE, mode=0o755)
        add("d/big", data=os.urandom(3 << 20))
        add("d/" + "n" * (90 if fmt == tarfile.USTAR_FORMAT else 150), data=b"long")
        add("dup", data=b"first version")  # replaced below: kept inline
        add("gone-dir", tarfile.DIRTYPE)
        add("gone-dir/f", data=b"under a dir replaced by a file")
        add("d/hard", tarfile.LNKTYPE, linkname="d/big")
        add("dup", data=b"second")
        add("gone-dir", data=b"now a file")
        add(".wh.something", data=b"odd whiteout payload")
        add("sym", tarfile.SYMTYPE, linkname="/etc/passwd")
    raw = buf.getvalue() + b"\0" * 4096  # trailing padding is part of the diff ID too
    path = tmp_path / "layer.tar"
    path.write_bytes(raw)
    diff_id, record = record_tar_split(path)
    assert diff_id == "sha256:" + hashlib.sha256(raw).hexdigest()
    assert record is not None and len(record) < 8192  # contents are not in the record
    root = tmp_path / "root"
    root.mkdir()
    extract(io.BytesIO(raw), root)
    with TarSplitReader(record, root) as reader:
        assert reader.read() == raw and reader.diff_id == diff_id
    with TarSplitReader(record, root) as reader:  # small reads, as tarfile does
        assert b"".join(iter(lambda: reader.read(10_000), b"")) == raw
    with open(root / "d/big", "r+b") as f:  # same size, other bytes: the digest shows it
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    with TarSplitReader(record, root) as reader:
        assert reader.drain() != diff_id
    (root / "d/big").unlink()
    with TarSplitReader(record, root) as reader, pytest.raises(StorageError, match="d/big"):
        reader.drain()


def test_tar_split_never_follows_symlinks_of_the_tree(tmp_path, outside):
    data = _tar(("d", "d", None), ("d/victim", "f", b"safe")).getvalue()
    path = tmp_path / "layer.tar"
    path.write_bytes(data)
    _, record = record_tar_split(path)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "d")  # d/victim now "exists" outside, same size
    with TarSplitReader(record, root) as reader, pytest.raises(StorageError, match="d/victim"):
        reader.drain()


def test_tar_split_of_empty_and_compressed_files(tmp_path):
    empty = tmp_path / "empty.tar"
    empty.write_bytes(b"")
    diff_id, record = record_tar_split(empty)
    assert diff_id == "sha256:" + hashlib.sha256(b"").hexdigest()
    with TarSplitReader(record, tmp_path) as reader:
        assert reader.read() == b""
    gz = tmp_path / "layer.tar.gz"
    gz.write_bytes(gzip.compress(_tar(("f", "f", b"x")).getvalue()))
    assert record_tar_split(gz) == ("sha256:" + hashlib.sha256(gz.read_bytes()).hexdigest(), None)
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_tar(("../evil", "f", b"x")).getvalue())
    with pytest.raises(UnsafeTarError):
        record_tar_split(bad)


# ---------------------------------------------------------------- registration verifies the diff ID


@pytest.fixture
def layer_store(tmp_path):
    from dockyard.engine.layers.store import LayerStore
    from dockyard.plugins import load_driver
    from dockyard.store import Store

    slot = load_driver("storage", "vfs", tmp_path / "storage" / "vfs")
    slot.init()
    store = Store(tmp_path / "dockyard.db")
    yield LayerStore(slot, store), slot
    store.close()


def test_diff_id_mismatch_leaves_no_layer(layer_store, tmp_path):
    layers, slot = layer_store
    path = tmp_path / "layer.tar"
    path.write_bytes(_tar(("f", "f", b"content")).getvalue())
    wrong = "sha256:" + "0" * 64
    with pytest.raises(StorageError, match="does not match its diff ID"):
        layers.register(path, wrong)
    assert layers.count() == 0 and os.listdir(slot.home / "dir") == []
    corrupt = tmp_path / "corrupt.tar"
    corrupt.write_bytes(path.read_bytes()[:700])
    with pytest.raises(StorageError):
        layers.register(corrupt, "sha256:" + hashlib.sha256(corrupt.read_bytes()).hexdigest())
    assert layers.count() == 0 and os.listdir(slot.home / "dir") == []
    good = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    chain = layers.register(path, good)
    assert chain == good and layers.count() == 1 and layers.tar_split(chain)
    root = slot.hook.storage_mount(id=layers.driver_id(chain))
    with TarSplitReader(layers.tar_split(chain), root) as reader:
        assert reader.drain() == good
    slot.hook.storage_unmount(id=layers.driver_id(chain))
