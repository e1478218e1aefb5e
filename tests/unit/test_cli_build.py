"""``dockyard build``'s client side without a daemon: the context tar (``.dockerignore``,
a Dockerfile outside the context or on stdin, stdin contexts), the flags and query,
the printing of the build stream, and one whole command against a fake ``/build``.

The fake HTTP server at the end stands in for the daemon ONLY to see what the CLI
sends and how it prints an answer; the real ``POST /build`` is tested end to end in
tests/e2e/test_dockyard_cli_build.py.
"""

import gzip
import http.server
import io
import json
import os
import socketserver
import sys
import tarfile
import threading
import urllib.parse

import pytest

from dockyard.cli import build, main
from dockyard.client import buildcontext as bc
from dockyard.client import IterReader


def parse(*argv):
    return main.build_parser().parse_args(["build", *argv])


def members(chunks):
    """{name: (TarInfo, content)} of a context tar, in order."""
    data = b"".join(chunks)
    out = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for ti in tar.getmembers():
            out[ti.name] = (ti, tar.extractfile(ti).read() if ti.isreg() else None)
    return out


@pytest.fixture
def ctxdir(tmp_path):
    root = tmp_path / "ctx"
    (root / "src" / "deep").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "Dockerfile").write_text("FROM busybox\nCOPY . /app\n")
    (root / "src" / "main.py").write_text("print('hi')\n")
    (root / "src" / "deep" / "x.md").write_text("doc\n")
    (root / "src" / "keep.md").write_text("keep\n")
    (root / "logs" / "a.log").write_text("log\n")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o751)
    os.symlink("src/main.py", root / "link")
    os.link(root / "src" / "main.py", root / "hard")
    os.utime(root / "run.sh", ns=(1_700_000_000_900_000_000, 1_700_000_000_900_000_000))
    return root


def test_directory_context_is_a_docker_style_tar(ctxdir):
    context = bc.from_directory(str(ctxdir))
    got = members(context.chunks)
    assert context.dockerfile == "Dockerfile"
    assert list(got) == ["Dockerfile", "hard", "link", "logs", "logs/a.log", "run.sh", "src", "src/deep",
                         "src/deep/x.md", "src/keep.md", "src/main.py"]  # byte order, parents first
    for ti, _ in got.values():
        assert (ti.uid, ti.gid, ti.uname, ti.gname) == (0, 0, "", "")
    assert got["run.sh"][0].mode == 0o751 and got["run.sh"][0].mtime == 1_700_000_000  # whole seconds
    assert got["link"][0].issym() and got["link"][0].linkname == "src/main.py"
    assert got["src"][0].isdir()
    # the first name of an inode carries the content, the later one links to it
    assert got["hard"][0].isreg() and got["hard"][1] == b"print('hi')\n"
    assert got["src/main.py"][0].islnk() and got["src/main.py"][0].linkname == "hard"


def test_dockerignore_applies_but_dockerfile_and_itself_are_sent(ctxdir):
    (ctxdir / ".dockerignore").write_text("# comment\n*\n!src\nsrc/**/*.md\n!src/keep.md\n")
    context = bc.from_directory(str(ctxdir))
    assert list(members(context.chunks)) == [".dockerignore", "Dockerfile", "src", "src/deep", "src/keep.md",
                                             "src/main.py"]


def test_an_excluded_directory_is_pruned_unless_an_exception_reaches_inside(ctxdir):
    (ctxdir / ".dockerignore").write_text("logs\nsrc\n!src/deep/x.md\n")
    names = list(members(bc.from_directory(str(ctxdir)).chunks))
    assert "logs" not in names and "logs/a.log" not in names
    assert [n for n in names if n.startswith("src")] == ["src", "src/deep", "src/deep/x.md"]


def test_dockerfile_in_a_subdirectory_relative_to_the_current_directory(ctxdir, monkeypatch):
    (ctxdir / "src" / "Dockerfile.dev").write_text("FROM busybox\n")
    (ctxdir / ".dockerignore").write_text("src\n")
    monkeypatch.chdir(ctxdir / "src")
    context = bc.from_directory(str(ctxdir), "Dockerfile.dev")  # -f is relative to the current directory
    assert context.dockerfile == "src/Dockerfile.dev"
    assert [n for n in members(context.chunks) if n.startswith("src")] == ["src", "src/Dockerfile.dev"]


def test_lowercase_dockerfile_is_found(tmp_path):
    (tmp_path / "dockerfile").write_text("FROM busybox\n")
    assert bc.from_directory(str(tmp_path)).dockerfile == "dockerfile"


@pytest.mark.parametrize("ignore", [None, "logs\n"])
def test_dockerfile_outside_the_context_is_added_under_a_random_name(ctxdir, tmp_path, ignore):
    outside = tmp_path / "elsewhere.Dockerfile"
    outside.write_text("FROM busybox\nRUN true\n")
    if ignore is not None:
        (ctxdir / ".dockerignore").write_text(ignore)
    context = bc.from_directory(str(ctxdir), str(outside))
    name = context.dockerfile
    assert name.startswith(".dockerfile.") and len(name) == len(".dockerfile.") + 20
    got = members(context.chunks)
    assert got[name][1] == b"FROM busybox\nRUN true\n" and got[name][0].mode == 0o600
    # the sent .dockerignore names it, so that the daemon drops it from the context
    expected = (ignore.encode() if ignore else b".dockerignore") + b"\n" + name.encode() + b"\n"
    assert got[".dockerignore"][1] == expected
    assert ("logs/a.log" in got) == (ignore is None)
    assert "Dockerfile" in got  # the context's own Dockerfile is just a file now


def test_dockerfile_symlinked_out_of_the_context_counts_as_outside(ctxdir, tmp_path):
    (tmp_path / "real").write_text("FROM busybox\n")
    os.unlink(ctxdir / "Dockerfile")
    os.symlink(tmp_path / "real", ctxdir / "Dockerfile")
    context = bc.from_directory(str(ctxdir))
    assert context.dockerfile.startswith(".dockerfile.")
    assert members(context.chunks)[context.dockerfile][1] == b"FROM busybox\n"


def test_dockerfile_from_stdin_with_a_directory_context(ctxdir):
    context = bc.from_directory(str(ctxdir), "-", io.BytesIO(b"FROM busybox\nRUN echo stdin\n"))
    got = members(context.chunks)
    assert got[context.dockerfile][1] == b"FROM busybox\nRUN echo stdin\n"
    assert got[".dockerignore"][1].endswith(b"\n" + context.dockerfile.encode() + b"\n")


def test_context_errors_are_worded_like_docker(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(bc.ContextError, match="unable to prepare context: context must be a directory: "):
        bc.from_directory(str(tmp_path / "file"))
    with pytest.raises(bc.ContextError, match="unable to prepare context: unable to evaluate symlinks in "
                                              "Dockerfile path: lstat .*/Dockerfile: no such file or directory"):
        bc.from_directory(str(tmp_path))
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / ".dockerignore").write_text("[\n")
    with pytest.raises(bc.ContextError, match="unable to prepare context: .dockerignore: .*unterminated"):
        bc.from_directory(str(tmp_path))


def test_unreadable_file_is_reported_before_anything_is_sent(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    secret = tmp_path / "secret"
    secret.write_text("x")
    os.chmod(secret, 0)
    if os.access(secret, os.R_OK):
        pytest.skip("root reads anything")
    with pytest.raises(bc.ContextError, match="no permission to read from"):
        bc.from_directory(str(tmp_path))


def tar_bytes(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_stdin_tar_is_sent_unchanged():
    data = tar_bytes({"Dockerfile.x": b"FROM busybox\n", "a": b"1" * 3000})
    context = bc.from_reader(io.BytesIO(data), "Dockerfile.x")
    assert b"".join(context.chunks) == data and context.dockerfile == "Dockerfile.x"
    assert bc.from_reader(io.BytesIO(data)).dockerfile is None  # the daemon's default


def test_stdin_compressed_context_is_sent_unchanged():
    data = gzip.compress(tar_bytes({"Dockerfile": b"FROM busybox\n"}))
    assert b"".join(bc.from_reader(io.BytesIO(data)).chunks) == data


@pytest.mark.parametrize("text", [b"FROM busybox\nRUN echo hi\n", b"FROM busybox\n# " + b"x" * 2000 + b"\n", b""])
def test_stdin_dockerfile_becomes_a_one_file_context(text):
    context = bc.from_reader(io.BytesIO(text))
    got = members(context.chunks)
    assert list(got) == ["Dockerfile"] and got["Dockerfile"][1] == text and context.dockerfile == "Dockerfile"


def test_stdin_detection_errors():
    with pytest.raises(bc.ContextError, match="build context is not an archive"):
        bc.from_reader(io.BytesIO(b"FROM busybox\n"), "-")
    with pytest.raises(bc.ContextError, match="ambiguous Dockerfile source"):
        bc.from_reader(io.BytesIO(b"FROM busybox\n"), "Dockerfile.other")


def test_url_kinds():
    assert bc.is_git_url("https://example.com/repo.git") and bc.is_git_url("https://h/r.git#main:sub")
    assert bc.is_git_url("git@github.com:a/b") and bc.is_git_url("github.com/a/b")
    assert not bc.is_git_url("https://example.com/context.tar") and bc.is_url("https://example.com/context.tar")


def test_tar_is_produced_lazily(ctxdir):
    (ctxdir / "big").write_bytes(b"z" * (3 << 20))
    chunks = bc.from_directory(str(ctxdir)).chunks
    sizes = [len(c) for c in chunks]
    assert max(sizes) <= 1 << 20 and sum(sizes) > 3 << 20  # never the whole file at once
    reader = IterReader(iter([b"ab", b"c", b"defg"]))
    assert [reader.read(3), reader.read(3), reader.read(3)] == [b"abc", b"def", b"g"]


# --- flags, query, output ------------------------------------------------------------------


def test_flags_make_the_query(monkeypatch):
    monkeypatch.setenv("FROM_ENV", "env value")
    monkeypatch.delenv("UNSET_ARG", raising=False)
    args = parse("-t", "a:1", "-t", "b", "--build-arg", "X=1", "--build-arg", "FROM_ENV", "--build-arg", "UNSET_ARG",
                 "--label", "k=v", "--label", "flag", "--target", "stage", "--no-cache", "--pull",
                 "--network", "none", "--rm=false", "--force-rm", "ctx")
    q = build.query(args, "Dockerfile")
    assert q["t"] == ["a:1", "b"] and q["dockerfile"] == "Dockerfile" and q["target"] == "stage"
    assert json.loads(q["buildargs"]) == {"X": "1", "FROM_ENV": "env value", "UNSET_ARG": None}
    assert json.loads(q["labels"]) == {"k": "v", "flag": ""}
    assert (q["nocache"], q["pull"], q["rm"], q["forcerm"], q["networkmode"]) == (True, True, False, True, "none")
    assert args.context == "ctx"


def test_boolean_flags_never_swallow_the_context():
    args = parse("--no-cache", ".")
    assert args.no_cache is True and args.context == "." and args.rm is True
    args = parse("-q", "--rm", "--pull=false", "-")
    assert args.quiet and args.rm and args.pull is False and args.context == "-"
    assert build.query(parse("."), None)["rm"] is True and "buildargs" not in build.query(parse("."), None)


def test_show_prints_the_stream_and_keeps_the_id():
    out = io.StringIO()
    res = build.show([{"stream": "Step 1/2 : FROM busybox\n"}, {"stream": " ---> abc\n"},
                      {"status": "Pulling", "id": "x"}, {"status": "Downloading", "progressDetail": {"current": 1}},
                      {"aux": {"ID": "sha256:" + "1" * 64}}, {"stream": "Successfully built 111111111111\n"}], out)
    assert out.getvalue() == ("Step 1/2 : FROM busybox\n ---> abc\nx: Pulling\n"
                              "Successfully built 111111111111\n")
    assert res.image_id == "sha256:" + "1" * 64 and res.error is None
    res = build.show([{"stream": "Step 1/1 : RUN exit 3\n"},
                      {"errorDetail": {"code": 3, "message": "returned a non-zero code: 3"}, "error": "x"},
                      {"stream": "never\n"}], io.StringIO(), quiet=True)
    assert res.error == ("returned a non-zero code: 3", 3) and res.kept == ["Step 1/1 : RUN exit 3\n"]
    assert build.show([{"error": "bad"}], io.StringIO()).error == ("bad", 1)


# --- one whole command against a fake /build -------------------------------------------------


class Fake(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path):
        self.answer = []  # the JSON messages to stream back
        self.seen = []    # (path, query, headers, body)
        super().__init__(path, Handler)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def address_string(self):
        return "fake"

    def do_POST(self):
        assert self.headers.get("Transfer-Encoding") == "chunked"
        body = b""
        while size := int(self.rfile.readline().split(b";")[0], 16):
            body += self.rfile.read(size)
            self.rfile.readline()
        self.rfile.readline()
        url = urllib.parse.urlsplit(self.path)
        self.server.seen.append((url.path, urllib.parse.parse_qs(url.query), dict(self.headers), body))
        answer = self.server.answer
        if "q" in urllib.parse.parse_qs(url.query):  # as dockerd: the ID alone as stream text, no aux;
            errors = [m for m in answer if "error" in m]  # on an error, the output kept back, then the error
            text = "".join(m.get("stream", "") for m in answer)
            answer = ([{"stream": text}, *errors] if errors else
                      [{"stream": m["aux"]["ID"] + "\n"} for m in answer if "aux" in m])
        data = b"".join(json.dumps(m).encode() + b"\r\n" for m in answer)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fake(tmp_path):
    sock = str(tmp_path / "fake.sock")
    server = Fake(sock)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield server, f"unix://{sock}"
    server.shutdown()
    server.server_close()


def run_cli(host, *argv, stdin=b""):
    out, err = io.StringIO(), io.StringIO()
    old = sys.stdout, sys.stderr, sys.stdin
    sys.stdout, sys.stderr = out, err
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    try:
        code = main.main(["-H", host, "build", *argv])
    finally:
        sys.stdout, sys.stderr, sys.stdin = old
    return code, out.getvalue(), err.getvalue()


def test_build_command_streams_the_context_and_prints_like_docker(fake, ctxdir, tmp_path):
    server, host = fake
    image = "sha256:" + "ab" * 32
    server.answer = [{"stream": "Step 1/2 : FROM busybox\n"}, {"aux": {"ID": image}},
                     {"stream": "Successfully built abababababab\n"}]
    iid = tmp_path / "iid"
    iid.write_text("stale")
    code, out, err = run_cli(host, "-t", "x:y", "--iidfile", str(iid), str(ctxdir))
    assert (code, err) == (0, "")
    assert out.startswith("Sending build context to Docker daemon  ") and "kB\r\r\nStep 1/2 : FROM busybox\n" in out
    assert out.endswith("Successfully built abababababab\n") and iid.read_text() == image
    path, query, headers, body = server.seen[-1]
    assert path == "/v1.41/build" and headers["Content-Type"] == "application/x-tar"
    assert query["t"] == ["x:y"] and query["dockerfile"] == ["Dockerfile"] and query["rm"] == ["1"]
    assert "src/main.py" in members([body])

    code, out, err = run_cli(host, "-q", "--iidfile", str(iid), "-", stdin=b"FROM busybox\n")
    assert (code, out, err) == (0, image + "\n", "") and iid.read_text() == image
    assert list(members([server.seen[-1][3]])) == ["Dockerfile"] and server.seen[-1][1]["q"] == ["1"]


def test_build_command_reports_a_failed_step(fake, ctxdir):
    server, host = fake
    server.answer = [{"stream": "Step 1/2 : RUN exit 3\n"},
                     {"errorDetail": {"code": 3, "message": "The command '/bin/sh -c exit 3' returned a non-zero "
                                                           "code: 3"}, "error": "x"}]
    code, out, err = run_cli(host, str(ctxdir))
    assert code == 3 and "Step 1/2 : RUN exit 3\n" in out
    assert err == "The command '/bin/sh -c exit 3' returned a non-zero code: 3\n"
    code, out, err = run_cli(host, "-q", str(ctxdir))
    assert code == 3 and out == "" and err.startswith("Step 1/2 : RUN exit 3\nThe command")


def test_build_command_context_errors(fake, tmp_path):
    server, host = fake
    code, _, err = run_cli(host, str(tmp_path / "nope"))
    assert code == 1 and err == f'unable to prepare context: path "{tmp_path / "nope"}" not found\n'
    code, _, err = run_cli(host, "-f", "-", "-")
    assert code == 1 and "can't use stdin for both build context and dockerfile" in err
    assert server.seen == []


def test_url_context_is_downloaded_by_the_client(tmp_path):
    (tmp_path / "ctx.tar").write_bytes(tar_bytes({"Dockerfile": b"FROM busybox\n"}))
    (tmp_path / "Dockerfile.txt").write_bytes(b"FROM busybox\nRUN true\n")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(tmp_path), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    closers = []
    try:
        context = build.prepare(parse(f"{base}/ctx.tar"), io.BytesIO(), closers)
        assert b"".join(context.chunks) == (tmp_path / "ctx.tar").read_bytes()
        context = build.prepare(parse(f"{base}/Dockerfile.txt"), io.BytesIO(), closers)
        assert members(context.chunks)["Dockerfile"][1] == b"FROM busybox\nRUN true\n"
        with pytest.raises(bc.ContextError, match="unable to download remote context"):
            build.prepare(parse(f"{base}/missing"), io.BytesIO(), closers)
    finally:
        for close in closers:
            close()
        server.shutdown()
        server.server_close()


def test_git_context_is_cloned_with_ref_and_subdirectory(tmp_path):
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "sub" / "Dockerfile").write_text("FROM busybox\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    for cmd in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True, env=env, capture_output=True)
    root, dockerfile = bc.from_git(f"file://{repo}#main:sub", None, str(tmp_path / "clone"))
    assert root == str(tmp_path / "clone" / "sub") and dockerfile is None
    assert list(members(bc.from_directory(root).chunks)) == ["Dockerfile"]
    with pytest.raises(bc.ContextError, match="unable to 'git clone'"):
        bc.from_git(f"file://{repo}#nope", None, str(tmp_path / "clone2"))
