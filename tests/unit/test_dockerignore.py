"""dockyard.dockerignore (cases from moby/patternmatcher and the CLI's ignorefile), and
dockyard.builder.context (extraction, COPY source resolution, cache checksums) at the end."""

import io
import os
import tarfile

import pytest

from dockyard.builder.context import ContextError, checksum, extract_context, has_wildcards, resolve_sources
from dockyard.dockerignore import IgnoreError, Matcher, clean, read_patterns, walk

# (pattern, path, excluded) — moby/patternmatcher TestMatches
MATCH_CASES = [
    ("**", "file", True), ("**", "file/", True), ("**/", "file", True), ("**/", "file/", True),
    ("**", "/", True), ("**/", "/", True), ("**", "dir/file", True), ("**/", "dir/file", True),
    ("**", "dir/file/", True), ("**/", "dir/file/", True), ("**/**", "dir/file", True),
    ("**/**", "dir/file/", True), ("dir/**", "dir/file", True), ("dir/**", "dir/file/", True),
    ("dir/**", "dir/dir2/file", True), ("dir/**", "dir/dir2/file/", True), ("**/dir", "dir", True),
    ("**/dir", "dir/file", True), ("**/dir2/*", "dir/dir2/file", True), ("**/dir2/*", "dir/dir2/file/", True),
    ("**/dir2/**", "dir/dir2/dir3/file", True), ("**/dir2/**", "dir/dir2/dir3/file/", True),
    ("**file", "file", True), ("**file", "dir/file", True), ("**/file", "dir/file", True),
    ("**file", "dir/dir/file", True), ("**/file", "dir/dir/file", True), ("**/file*", "dir/dir/file", True),
    ("**/file*", "dir/dir/file.txt", True), ("**/file*txt", "dir/dir/file.txt", True),
    ("**/file*.txt", "dir/dir/file.txt", True), ("**/file*.txt*", "dir/dir/file.txt", True),
    ("**/**/*.txt", "dir/dir/file.txt", True), ("**/**/*.txt2", "dir/dir/file.txt", False),
    ("**/*.txt", "file.txt", True), ("**/**/*.txt", "file.txt", True), ("a**/*.txt", "a/file.txt", True),
    ("a**/*.txt", "a/dir/file.txt", True), ("a**/*.txt", "a/dir/dir/file.txt", True),
    ("a/*.txt", "a/dir/file.txt", False), ("a/*.txt", "a/file.txt", True), ("a/*.txt**", "a/file.txt", True),
    ("a[b-d]e", "ae", False), ("a[b-d]e", "ace", True), ("a[b-d]e", "aae", False), ("a[^b-d]e", "aze", True),
    (".*", ".foo", True), (".*", "foo", False), ("abc.def", "abcdef", False), ("abc.def", "abc.def", True),
    ("abc.def", "abcZdef", False), ("abc?def", "abcZdef", True), ("abc?def", "abcdef", False),
    ("a\\\\", "a\\", True), ("**/foo/bar", "foo/bar", True), ("**/foo/bar", "dir/foo/bar", True),
    ("**/foo/bar", "dir/dir2/foo/bar", True), ("abc/**", "abc", False), ("abc/**", "abc/def", True),
    ("abc/**", "abc/def/ghi", True), ("**/.foo", ".foo", True), ("**/.foo", "bar.foo", False),
    ("a(b)c/def", "a(b)c/def", True), ("a(b)c/def", "a(b)c/xyz", False),
    ("a.|)$(}+{bc", "a.|)$(}+{bc", True),
    ("dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
     "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    ("dist/*.whl", "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl", True),
    # the everyday ones
    ("**/*.go", "main.go", True), ("**/*.go", "cmd/x/main.go", True), ("**/*.go", "main.goo", False),
    ("*.go", "cmd/main.go", False), ("*/*.go", "cmd/main.go", True),
    ("dir", "dir/sub/file", True), ("dir/", "dir/sub/file", True), ("dir", "dirx", False),
    ("a?c", "a/c", False), ("*", "a/b", True),  # "*" matches the parent "a"
    ("\\*", "*", True), ("\\*", "x", False), ("[[]x", "[x", True), ("[]]", "]", True),
    ("a*", "a", True), ("te[s]t", "test", True),
]


@pytest.mark.parametrize("pattern,path,excluded", MATCH_CASES)
def test_patternmatcher_cases(pattern, path, excluded):
    assert Matcher([pattern]).matches(path) is excluded


def test_exceptions_last_match_wins():
    m = Matcher(["*.md", "!keep.md"])
    assert m.matches("README.md") and not m.matches("keep.md") and not m.matches("x.txt")
    m = Matcher(["!keep.md", "*.md"])  # order matters: a later exclusion wins
    assert m.matches("keep.md")
    m = Matcher(["*.md", "!*.md", "secret.md"])
    assert m.matches("secret.md") and not m.matches("other.md")


def test_exception_inside_excluded_dir():
    m = Matcher(["docs", "!docs/keep.txt"])
    assert m.matches("docs/a.txt") and not m.matches("docs/keep.txt")
    assert m.matches("docs")  # the directory itself stays excluded
    m = Matcher(["docs/**", "!docs/sub"])
    assert not m.matches("docs/sub/deep/file") and m.matches("docs/other")


def test_context_root_never_excluded():
    assert not Matcher(["**"]).matches(".")
    assert not Matcher(["*"]).matches("")


def test_bad_patterns():
    with pytest.raises(IgnoreError, match='illegal exclusion pattern: "!"'):
        Matcher(["!"])
    with pytest.raises(IgnoreError, match="unterminated"):
        Matcher(["a[b"])
    assert isinstance(IgnoreError("x"), ValueError)


def test_read_patterns():
    text = ("\ufeff# comment\n"
            "  # indented lines are patterns, not comments\n"
            "\n"
            "   spaced   \n"
            "/abs/path\n"
            "./rel/../other/\n"
            "! neg \n"
            "!/negabs\n"
            "dir/\n"
            "/\n"
            "!\n")
    assert read_patterns(text) == ["# indented lines are patterns, not comments", "spaced", "abs/path", "other",
                                   "!neg", "!negabs", "dir", "/", "!"]
    assert read_patterns(b"*.pyc\r\n") == ["*.pyc"]


def test_clean():
    assert clean("a/./b//c/") == "a/b/c"
    assert clean("a/../../b") == "../b"
    assert clean("/../a") == "/a"
    assert clean("") == "."
    assert clean("./") == "."


def test_dockerfile_and_dockerignore_are_kept():
    m = Matcher(["*"], dockerfile="Dockerfile")
    assert not m.matches("Dockerfile") and not m.matches(".dockerignore") and m.matches("src")
    m = Matcher(["build"], dockerfile="build/Dockerfile.dev")
    assert not m.matches("build/Dockerfile.dev") and m.matches("build/other")
    m = Matcher(["x"], dockerfile="Dockerfile")
    assert [p.text for p in m.patterns] == ["x"]  # nothing appended when not excluded


def test_can_prune():
    assert Matcher(["docs"]).can_prune("docs")
    assert not Matcher(["docs", "!docs/keep"]).can_prune("docs")
    assert Matcher(["docs", "!src/keep"]).can_prune("docs")
    assert not Matcher(["*", "!*/keep"]).can_prune("a")  # wildcard exception (Docker's classic walk drops it)
    assert not Matcher(["a/b", "!a"]).can_prune("a/b")  # an exception on the parent re-includes
    assert not Matcher(["*", "!**/x.go"]).can_prune("deep/er")
    assert Matcher(["*", "!b*/x"]).can_prune("a")


def _tree(root, paths):
    for p in paths:
        full = os.path.join(root, p)
        if p.endswith("/"):
            os.makedirs(full, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(p)


def test_walk_everything(tmp_path):
    _tree(tmp_path, ["b", "a/2", "a/1", "a/sub/", "c/d/e"])
    os.symlink("a", tmp_path / "link")
    assert list(walk(tmp_path)) == ["a", "a/1", "a/2", "a/sub", "b", "c", "c/d", "c/d/e", "link"]


def test_walk_excludes_and_exceptions(tmp_path):
    _tree(tmp_path, ["Dockerfile", ".dockerignore", "README.md", "keep.md", "src/a.go", "src/a_test.go",
                     "src/vendor/x.go", "node_modules/m/index.js", "docs/a.txt", "docs/keep.txt",
                     "docs/sub/b.txt"])
    m = Matcher(read_patterns("*.md\n!keep.md\nnode_modules\n**/*_test.go\ndocs\n!docs/keep.txt\n"
                              ".dockerignore\nDockerfile\n"), dockerfile="Dockerfile")
    assert list(walk(tmp_path, m)) == [".dockerignore", "Dockerfile", "docs", "docs/keep.txt", "keep.md", "src",
                                       "src/a.go", "src/vendor", "src/vendor/x.go"]


def test_walk_prunes_excluded_dirs(tmp_path, monkeypatch):
    _tree(tmp_path, ["big/a/b/c", "big/x", "small"])
    seen = []
    real = os.scandir

    def spy(path):
        seen.append(os.path.relpath(path, tmp_path))
        return real(path)

    monkeypatch.setattr(os, "scandir", spy)
    assert list(walk(tmp_path, Matcher(["big"]))) == ["small"]
    assert seen == ["."]  # "big" was never listed
    seen.clear()
    assert list(walk(tmp_path, Matcher(["big", "!big/a/b"]))) == ["big", "big/a", "big/a/b", "big/a/b/c", "small"]


def test_walk_wildcard_exception_under_excluded_dir(tmp_path):
    _tree(tmp_path, ["a/keep", "a/drop", "b/drop"])
    assert list(walk(tmp_path, Matcher(["*", "!*/keep"]))) == ["a", "a/keep"]


def test_walk_double_star_exception(tmp_path):
    _tree(tmp_path, ["x/y/z.go", "x/y/z.txt", "top.go"])
    assert list(walk(tmp_path, Matcher(["**", "!**/*.go"]))) == ["top.go", "x", "x/y", "x/y/z.go"]


# ---- dockyard.builder.context (build-context helpers; kept here with the other context code) -------

def _tar(entries, mode="w"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            elif isinstance(data, tuple):  # ("sym", target)
                ti.type, ti.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(data), 0o644
                tar.addfile(ti, io.BytesIO(data))
    buf.seek(0)
    return buf


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
def test_extract_context_compressions(tmp_path, mode):
    n = extract_context(_tar([("Dockerfile", b"FROM x\n"), ("src/", None), ("src/a", b"aa")], mode), tmp_path)
    assert n == 9 and (tmp_path / "src/a").read_bytes() == b"aa"


def test_extract_context_refuses_unsafe_and_corrupt(tmp_path):
    with pytest.raises(ContextError, match="invalid build context"):
        extract_context(_tar([("../evil", b"x")]), tmp_path)
    with pytest.raises(ContextError, match="invalid build context"):
        extract_context(_tar([("link", ("sym", "/etc")), ("link/passwd", b"x")]), tmp_path / "x")
    with pytest.raises(ContextError, match="invalid build context"):
        extract_context(io.BytesIO(b"not a tar at all" * 64), tmp_path)
    with pytest.raises(ContextError, match="whiteout"):
        extract_context(_tar([("deep/.wh.file", b"x")]), tmp_path)
    assert not (tmp_path.parent / "evil").exists()


def _ctx(tmp_path):
    _tree(tmp_path, ["a.txt", "b.txt", "c.md", "dir/x.go", "dir/sub/y.go", "other/x.go", "sp ace"])
    os.symlink("dir", tmp_path / "dirlink")
    os.symlink("/a.txt", tmp_path / "abslink")
    os.symlink("../../../a.txt", tmp_path / "dir/escape")
    return tmp_path


def test_has_wildcards():
    assert has_wildcards("*.txt") and has_wildcards("a?") and has_wildcards("[ab]")
    assert not has_wildcards("a\\*b") and not has_wildcards("plain/path")


def test_resolve_sources(tmp_path):
    root = _ctx(tmp_path)
    assert resolve_sources(root, ["*.txt"]) == [("a.txt", "a.txt"), ("b.txt", "b.txt")]
    assert resolve_sources(root, ["/dir/../a.txt", "./c.md"]) == [("a.txt", "a.txt"), ("c.md", "c.md")]
    assert resolve_sources(root, ["*/x.go"]) == [("dir/x.go", "dir/x.go"), ("other/x.go", "other/x.go")]
    assert resolve_sources(root, ["**/*.go"]) == [("dir/x.go", "dir/x.go"), ("other/x.go", "other/x.go")]
    assert resolve_sources(root, ["."]) == [("", "")]
    assert resolve_sources(root, ["dirlink/x.go"]) == [("dirlink/x.go", "dir/x.go")]
    assert resolve_sources(root, ["abslink"]) == [("abslink", "a.txt")]  # absolute = context root
    assert resolve_sources(root, ["dir/escape"]) == [("dir/escape", "a.txt")]  # ".." clamps at the root
    assert resolve_sources(root, ["sp ace"]) == [("sp ace", "sp ace")]
    assert resolve_sources(root, ["[ab].txt"]) == [("a.txt", "a.txt"), ("b.txt", "b.txt")]
    with pytest.raises(ContextError, match="forbidden path outside the build context"):
        resolve_sources(root, ["../x"])
    with pytest.raises(ContextError, match="no source files were specified"):
        resolve_sources(root, ["*.nope"])
    with pytest.raises(ContextError, match="file not found in build context"):
        resolve_sources(root, ["missing"])


def test_checksum_stable_and_ignores_mtime(tmp_path):
    root = _ctx(tmp_path)
    first = checksum(root, ["."])
    assert first.startswith("sha256:") and len(first) == 71
    os.utime(root / "a.txt", (1, 1))
    os.utime(root / "dir", (2, 2))
    assert checksum(root, ["."]) == first


@pytest.mark.parametrize("change", ["content", "mode", "rename", "symlink", "new"])
def test_checksum_changes(tmp_path, change):
    root = _ctx(tmp_path)
    before = checksum(root, ["."])
    if change == "content":
        (root / "dir/x.go").write_text("dir/x.gX")  # same size
    elif change == "mode":
        os.chmod(root / "a.txt", 0o600)
    elif change == "rename":
        os.rename(root / "c.md", root / "d.md")
    elif change == "symlink":
        os.unlink(root / "dirlink")
        os.symlink("other", root / "dirlink")
    else:
        (root / "dir/new").write_text("")
    assert checksum(root, ["."]) != before


def test_checksum_owner_chmod_and_sources(tmp_path):
    root = _ctx(tmp_path)
    base = checksum(root, ["a.txt"])
    assert checksum(root, ["a.txt"], owner=(0, 0)) == base
    assert checksum(root, ["a.txt"], owner=(1000, 1000)) != base
    assert checksum(root, ["a.txt"], chmod=0o755) != base
    assert checksum(root, ["a.txt"], owner=None) == checksum(root, ["a.txt"], owner=(os.getuid(), os.getgid()))
    assert checksum(root, ["a.txt", "b.txt"]) != checksum(root, ["b.txt", "a.txt"])
    assert checksum(root, ["*.txt"]) == checksum(root, ["a.txt", "b.txt"])
    assert checksum(root, ["dirlink"]) != checksum(root, ["dir"])  # the source name is part of the key


def test_checksum_content_cache(tmp_path):
    root = _ctx(tmp_path)
    cache = {}
    first = checksum(root, ["."], cache=cache)
    assert len(cache) == 7 and checksum(root, ["."], cache=cache) == first
    (root / "a.txt").write_text("changed")  # new size/mtime/ctime -> a new cache key, re-read
    assert checksum(root, ["."], cache=cache) == checksum(root, ["."])
    os.link(root / "b.txt", root / "hard")
    assert checksum(root, ["hard"]) != checksum(root, ["b.txt"])  # names differ, content shared


def test_checksum_same_tree_elsewhere(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        _tree(root, ["x/1", "x/2", "y"])
        os.chmod(root / "y", 0o640)
    assert checksum(a, ["x", "y"]) == checksum(b, ["x", "y"])
