"""``dockyard build`` against the session's daemon: contexts from a directory (with
``.dockerignore``, a Dockerfile outside it), from stdin (a Dockerfile, a tar), build
args, the cache (ours and the docker CLI's share it), failures, ``-q`` and ``--iidfile``."""

import io
import os
import subprocess
import tarfile
import uuid

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


@pytest.fixture(scope="module")
def d(daemon):
    res = daemon.cli("build", "-", input=b"")
    if b"page not found" in res.stderr:
        pytest.skip("the daemon has no POST /build yet")
    return daemon


@pytest.fixture
def tag(d):
    name = f"build-{uuid.uuid4().hex[:10]}"
    yield name
    listing = d.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.decode().split()
    for ref in [r for r in listing if r.split(":")[0] == name]:
        d.cli("rmi", "-f", ref)


def write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def ok(res):
    assert res.returncode == 0, (res.stdout + res.stderr).decode()
    return res.stdout.decode()


def run(d, image, *cmd):
    return ok(d.cli("run", "--rm", "--network", "none", image, *cmd))


def test_build_tag_run_and_cache(d, tag, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n"})
    out = ok(d.cli("build", "--network", "none", "-t", tag, str(ctx)))
    assert out.startswith("Sending build context to Docker daemon")
    assert "Step 1/3 : FROM busybox" in out and "Step 3/3 : RUN echo two > /two" in out
    assert f"Successfully tagged {tag}:latest" in out
    assert run(d, tag, "cat", "/one", "/two") == "one\ntwo\n"
    again = ok(d.cli("build", "--network", "none", "-t", tag, str(ctx)))
    assert again.count("Using cache") == 2
    quiet = ok(d.cli("build", "-q", "--network", "none", str(ctx))).strip()
    assert quiet.startswith("sha256:") and "\n" not in quiet
    assert quiet == d.cli("image", "inspect", "--format", "{{.Id}}", tag).stdout.decode().strip()
    uncached = ok(d.cli("build", "--no-cache", "--network", "none", str(ctx)))
    assert "Using cache" not in uncached


def test_dockerignore_and_dockerfile_outside_the_context(d, tag, tmp_path):
    ctx = write(tmp_path / "ctx", {"keep.txt": "keep\n", "skip.tmp": "skip\n", "sub/deep.tmp": "deep\n",
                                   ".dockerignore": "*.tmp\n", "Dockerfile": "FROM busybox\nCOPY . /ctx/\n"})
    ok(d.cli("build", "-t", f"{tag}:inside", str(ctx)))
    listing = run(d, f"{tag}:inside", "find", "/ctx", "-type", "f")
    assert sorted(listing.split()) == ["/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/keep.txt", "/ctx/sub/deep.tmp"]

    outside = write(tmp_path, {"other.Dockerfile": "FROM busybox\nCOPY . /ctx/\nRUN echo outside > /where\n"})
    ok(d.cli("build", "--network", "none", "-f", str(outside / "other.Dockerfile"), "-t", f"{tag}:outside",
             str(ctx)))
    assert run(d, f"{tag}:outside", "cat", "/where") == "outside\n"
    listing = run(d, f"{tag}:outside", "find", "/ctx", "-type", "f")
    # the Dockerfile sent under a random name is not part of the context that COPY sees
    assert not [p for p in listing.split() if ".dockerfile." in p], listing


def test_stdin_dockerfile_and_stdin_tar(d, tag, tmp_path):
    ok(d.cli("build", "--network", "none", "-t", f"{tag}:df", "-",
             input=b"FROM busybox\nRUN echo from-stdin > /s\n"))
    assert run(d, f"{tag}:df", "cat", "/s") == "from-stdin\n"

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("build/Dockerfile.x", b"FROM busybox\nCOPY data /data\n"), ("data", b"tar data\n")):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tar.addfile(ti, io.BytesIO(data))
    ok(d.cli("build", "-f", "build/Dockerfile.x", "-t", f"{tag}:tar", "-", input=buf.getvalue()))
    assert run(d, f"{tag}:tar", "cat", "/data") == "tar data\n"

    ctx = write(tmp_path / "ctx", {"f": "file\n"})
    ok(d.cli("build", "-f", "-", "-t", f"{tag}:dash-f", str(ctx), input=b"FROM busybox\nCOPY f /f\n"))
    assert run(d, f"{tag}:dash-f", "cat", "/f") == "file\n"


def test_build_args_labels_target_iidfile(d, tag, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox AS first\nARG A\nARG B=default\n"
                                                 "RUN echo \"$A $B\" > /args\n"
                                                 "FROM busybox\nRUN echo second > /second\n"})
    iid = tmp_path / "iid"
    ok(d.cli("build", "--network", "none", "--build-arg", "A=set", "--build-arg", "B", "--target", "first",
             "--label", "x=y", "--iidfile", str(iid), "-t", tag, str(ctx), env={"B": "from-env"}))
    assert run(d, tag, "cat", "/args") == "set from-env\n"
    inspect = d.cli("image", "inspect", "--format", "{{.Id}} {{index .Config.Labels \"x\"}}", tag).stdout.decode().split()
    assert inspect == [iid.read_text(), "y"]
    assert d.cli("run", "--rm", "--network", "none", tag, "test", "-e", "/second").returncode == 1  # --target stopped before it


def test_failed_step_exits_nonzero_with_the_error_on_stderr(d, tmp_path):
    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo before; exit 3\n"})
    res = d.cli("build", "--network", "none", str(ctx))
    assert res.returncode != 0
    assert b"before" in res.stdout and b"returned a non-zero code: 3" in res.stderr, res.stderr
    res = d.cli("build", str(tmp_path / "missing"))
    assert res.returncode == 1 and b"unable to prepare context: path" in res.stderr


def test_copy_cache_follows_content_not_mtime_and_is_shared_with_the_docker_cli(d, tag, tmp_path):
    ctx = write(tmp_path / "ctx", {"a.txt": "content\n", "Dockerfile": "FROM busybox\nCOPY a.txt /a.txt\n"
                                                                      "RUN cat /a.txt > /b\n"})
    ok(d.cli("build", "--network", "none", "-t", tag, str(ctx)))
    os.utime(ctx / "a.txt", (1_600_000_000, 1_600_000_000))
    assert ok(d.cli("build", "--network", "none", "-t", tag, str(ctx))).count("Using cache") == 2
    docker = subprocess.run(["docker", "-H", d.host, "build", "--network", "none", "-t", tag, str(ctx)],
                            capture_output=True, timeout=120,
                            env={**os.environ, "DOCKER_BUILDKIT": "0",
                                 "DOCKER_CONFIG": str(tmp_path / "docker-config")})
    assert docker.returncode == 0, docker.stderr.decode()
    assert docker.stdout.decode().count("Using cache") == 2  # the docker CLI's tar gives the same cache keys
    (ctx / "a.txt").write_text("changed\n")
    out = ok(d.cli("build", "--network", "none", "-t", tag, str(ctx)))
    assert "Using cache" not in out
    assert run(d, tag, "cat", "/b") == "changed\n"
