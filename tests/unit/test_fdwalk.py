"""The one walker of container-controlled trees (dockyard.driverkit.fdwalk): canonical
order, nothing followed when an entry is swapped between its listing and its
use, bounded fds at any depth, and the in-root resolver."""

import errno
import io
import os
import signal
import stat
import tarfile

import pytest

from dockyard.driverkit import fdwalk
from dockyard.driverkit.fdwalk import FD_WINDOW, Tree
from dockyard.driverkit.shim import rootpath
from dockyard.driverkit.tarwriter import TarWriter, differs


@pytest.fixture
def outside(tmp_path):
    """A host directory the walked tree must never reach."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "f").write_text("host secret")
    (d / "sub").mkdir()
    (d / "sub" / "deep").write_text("host secret too")
    return d


def _open_fds():
    return len(os.listdir("/proc/self/fd"))


def test_walk_is_parents_first_sorted_and_never_follows(tmp_path, outside):
    t = tmp_path / "t"
    (t / "b" / "c").mkdir(parents=True)
    (t / "b" / "c" / "z").write_text("z")
    (t / "a").write_text("a")
    os.symlink(outside, t / "link")
    os.mkfifo(t / "fifo")
    with Tree(str(t)) as tree:
        got = [(e.rel, stat.S_IFMT(e.st.st_mode)) for e in tree.walk()]
    assert got == [("a", stat.S_IFREG), ("b", stat.S_IFDIR), ("b/c", stat.S_IFDIR), ("b/c/z", stat.S_IFREG),
                   ("fifo", stat.S_IFIFO), ("link", stat.S_IFLNK)]


def test_a_directory_swapped_for_a_symlink_after_listing_is_skipped(tmp_path, outside):
    """The CVE-2018-15664 race made deterministic: the listing says ``d`` is a
    directory, then ``d`` becomes a symlink to a host directory."""
    t = tmp_path / "t"
    (t / "d").mkdir(parents=True)
    (t / "d" / "f").write_text("mine")
    (t / "z").write_text("after")

    def swap(rel, entries):
        if rel == "":
            os.rename(t / "d", t / "moved")
            os.symlink(outside, t / "d")
        return entries

    with Tree(str(t)) as tree:
        got = [e.rel for e in tree.walk(swap)]
    assert got == ["z"]  # d is neither followed nor reported as what it no longer is


def test_a_directory_swapped_deeper_while_its_children_are_walked(tmp_path, outside):
    t = tmp_path / "t"
    (t / "x" / "d").mkdir(parents=True)
    (t / "x" / "d" / "f").write_text("mine")
    out = io.BytesIO()
    writer = TarWriter(out)

    def swap(rel, entries):
        if rel == "x/d":  # the walk holds x/d's fd now: what it lists stays the container's
            os.rename(t / "x" / "d", t / "x" / "gone")
            os.symlink(outside, t / "x" / "d")
        return entries

    with Tree(str(t)) as tree:
        for e in tree.walk(swap):
            writer.add_entry(e)
    writer.close()
    assert b"host secret" not in out.getvalue()
    assert b"mine" in out.getvalue()


def test_a_file_swapped_after_listing_is_not_opened(tmp_path, outside):
    t = tmp_path / "t"
    t.mkdir()
    (t / "f").write_text("mine")
    (t / "g").write_text("mine too")
    with Tree(str(t)) as tree:
        f, g = list(tree.walk())
        os.rename(t / "f", t / "f.old")
        os.symlink(outside / "f", t / "f")
        assert f.open() is None  # a symlink now
        os.unlink(t / "g")
        os.mkfifo(t / "g")
        old = signal.alarm(5)  # a FIFO opened for reading would block forever
        try:
            assert g.open() is None
        finally:
            signal.alarm(old)


def test_a_replaced_file_of_the_same_type_is_not_read_either(tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / "f").write_text("listed")
    with Tree(str(t)) as tree:
        (f,) = tree.walk()
        (t / "other").write_text("other")
        os.rename(t / "other", t / "f")
        assert f.open() is None
        (f,) = tree.walk()
        fd = f.open()
        assert os.read(fd, 100) == b"other"
        os.close(fd)


def test_xattrs_of_a_symlink_are_its_own(tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / "target").write_text("x")
    os.setxattr(t / "target", "user.k", b"target's")
    os.symlink("target", t / "link")
    with Tree(str(t)) as tree:
        by = {e.rel: e for e in tree.walk()}
        assert by["link"].xattrs() == {}
        assert by["target"].xattrs() == {"user.k": b"target's"}
        assert by["target"].xattr("user.k") == b"target's"


def _chain(top, depth, name="d"):
    """``depth`` nested directories ``name`` under ``top``, each also holding a
    file ``f`` with its level, made by fds (the path may be longer than PATH_MAX)."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for level in range(depth):
        f = os.open("f", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(f, str(level).encode())
        os.close(f)
        os.mkdir(name, dir_fd=fd)
        new = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = new
    os.close(fd)


def _unchain(top, depth, name="d"):
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    for _ in range(depth):
        fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    os.close(fds.pop())
    for fd in reversed(fds):
        os.rmdir(name, dir_fd=fd)
        os.unlink("f", dir_fd=fd)
        os.close(fd)


def test_a_tree_deeper_than_path_max_and_the_recursion_limit_in_bounded_fds(tmp_path):
    depth, name = 1200, "d" * 8  # 10800 bytes of path, PATH_MAX is 4096; Python's recursion limit is 1000
    top = tmp_path / "deep"
    top.mkdir()
    _chain(top, depth, name)
    try:
        base, peak, files = _open_fds(), 0, {}
        with Tree(str(top)) as tree:
            for e in tree.walk():
                peak = max(peak, _open_fds())
                if e.name == "f":  # each f comes after its sibling's whole subtree: levels are reopened
                    fd = e.open()
                    files[e.rel.count("/")] = os.read(fd, 10).decode()
                    os.close(fd)
        assert files == {level: str(level) for level in range(depth)}
        assert peak - base <= FD_WINDOW + 4
        assert _open_fds() == base
    finally:
        _unchain(top, depth, name)


def test_a_level_swapped_away_while_closed_is_not_reopened(tmp_path, outside):
    depth = FD_WINDOW + 10
    top = tmp_path / "deep"
    top.mkdir()
    _chain(top, depth)
    got = []
    try:
        with Tree(str(top)) as tree:
            for e in tree.walk():
                got.append(e.rel)
                if e.rel.count("/") == depth - 1 and e.name == "d":  # the deepest: swap level 2 now
                    os.rename(top / "d" / "d", top / "d" / "gone")
                    os.symlink(outside, top / "d" / "d")
        shallow = [r for r in got if r.count("/") <= 1]
        assert shallow == ["d", "d/d", "d/f", "f"]  # the rest of level 2 was given up, nothing followed
        # every directory, the files of the levels still held (the deepest FD_WINDOW), d/f and f
        assert "d/d/f" not in got and len(got) == depth + (FD_WINDOW - 1) + 2
        assert not any("sub" in r for r in got)
    finally:
        os.unlink(top / "d" / "d")
        os.rename(top / "d" / "gone", top / "d" / "d")
        _unchain(top, depth)


def test_lookups_never_follow_a_symlinked_parent(tmp_path, outside):
    t = tmp_path / "t"
    (t / "real").mkdir(parents=True)
    (t / "real" / "f").write_text("mine")
    os.symlink(outside, t / "link")
    with Tree(str(t)) as tree:
        assert tree.lstat("real/f").st_size == 4
        assert tree.lstat("link/f") is None and tree.entry("link/sub/deep") is None
        assert tree.dir_fd("link") is None and tree.listdir("link") == {}
        assert set(tree.listdir("real")) == {"f"}
        assert tree.subtree("link") is None


def test_tree_from_an_o_path_fd(tmp_path):
    t = tmp_path / "t"
    t.mkdir()
    (t / "f").write_text("x")
    fd = os.open(t, os.O_PATH | os.O_DIRECTORY)
    try:
        with Tree(fd) as tree:
            assert [e.rel for e in tree.walk()] == ["f"] and tree.top().rel == ""
        os.fstat(fd)  # the caller's fd is left alone
    finally:
        os.close(fd)


def test_resolve_agrees_with_rootpath(root):
    fd = os.open(root, os.O_PATH | os.O_DIRECTORY)
    try:
        for path in ("/a/up/etc/passwd", "a/abs/passwd", "/a/rel/../../etc/./", "/../../..", "/a/missing/x",
                     "/missing/../../../a/abs", "/dangling/file", "/etc/passwd/under", "/a/rel"):
            assert fdwalk.resolve(fd, path) == rootpath.resolve(root, path), path
        with pytest.raises(OSError) as info:
            fdwalk.resolve(fd, "/loop1/x")
        assert info.value.errno == errno.ELOOP
    finally:
        os.close(fd)


def test_differs_reads_links_through_entries(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d, target in ((a, "one"), (b, "two")):
        d.mkdir()
        os.symlink(target, d / "l")
        os.utime(d / "l", ns=(0, 5_000_000_000), follow_symlinks=False)
    with Tree(str(a)) as ta, Tree(str(b)) as tb:
        (ea,), (eb,) = list(ta.walk()), list(tb.walk())
        assert differs(ea, ea.st, eb, eb.st)
        assert not differs(ea, ea.st, str(a / "l"), ea.st)


def test_tar_of_a_walk_is_what_it_was(tmp_path):
    t = tmp_path / "t"
    (t / "d").mkdir(parents=True)
    (t / "d" / "f").write_bytes(b"content")
    os.link(t / "d" / "f", t / "hard")
    os.symlink("/abs", t / "sym")
    os.setxattr(t / "d" / "f", "user.k", b"v")
    out = io.BytesIO()
    with Tree(str(t)) as tree:
        writer = TarWriter(out)
        writer.add_entry(tree.top(), ".")
        writer.add_tree(tree)
        writer.close()
    out.seek(0)
    with tarfile.open(fileobj=out) as tar:
        got = {ti.name: ti for ti in tar}
        assert list(got) == [".", "d", "d/f", "hard", "sym"]
        assert tar.extractfile("d/f").read() == b"content"
    assert got["hard"].islnk() and got["hard"].linkname == "d/f"
    assert got["sym"].linkname == "/abs" and got["d/f"].pax_headers["SCHILY.xattr.user.k"] == "v"


def test_lookups_refuse_dotdot(tmp_path):
    with Tree(str(tmp_path)) as tree:
        with pytest.raises(ValueError):
            tree.entry("a/../../etc/passwd")
        with pytest.raises(ValueError):
            tree.entry("..")
        assert tree.entry("./").rel == ""
