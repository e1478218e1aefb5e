"""The reference parser against Docker's grammar and its edge cases
(``github.com/distribution/reference``: ``ParseNormalizedNamed``)."""

import pytest

from dockyard.engine.images import reference
from dockyard.engine.images.reference import parse_reference
from dockyard.errors import InvalidParameter

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("ref,domain,path,tag,digest", [
    ("busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
    ("docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
    ("index.docker.io/busybox:1.36", "docker.io", "library/busybox", "1.36", None),
    ("index.docker.io/team/app", "docker.io", "team/app", "latest", None),
    ("team/app", "docker.io", "team/app", "latest", None),
    ("localhost/a", "localhost", "a", "latest", None),
    ("localhost:5000/a", "localhost:5000", "a", "latest", None),
    ("localhost:5000/a/b/c:v2", "localhost:5000", "a/b/c", "v2", None),
    ("localhost", "docker.io", "library/localhost", "latest", None),
    ("localhost:5000", "docker.io", "library/localhost", "5000", None),  # a tag, as in Docker
    ("example.com:443/x", "example.com:443", "x", "latest", None),
    ("127.0.0.1:5000/x", "127.0.0.1:5000", "x", "latest", None),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
    ("Foo/bar", "Foo", "bar", "latest", None),  # a capital first component is a host
    ("registry-1.docker.io/x", "registry-1.docker.io", "x", "latest", None),  # not normalised by Docker either
    ("a:b@" + D, "docker.io", "library/a", "b", D),
    ("a@" + D, "docker.io", "library/a", None, D),
    ("host:5000/a:b@" + D, "host:5000", "a", "b", D),
    ("a:TAG_1.x-y", "docker.io", "library/a", "TAG_1.x-y", None),
    ("a__b-c--d/e_f.g", "docker.io", "a__b-c--d/e_f.g", "latest", None),
    ("a.b/c", "a.b", "c", "latest", None),  # a dot makes the first component a host
    ("sha256:" + "a" * 64, "docker.io", "library/sha256", "a" * 64, None),  # a name "sha256" and a tag
    ("a:" + "t" * 128, "docker.io", "library/a", "t" * 128, None),
])
def test_parses_like_docker(ref, domain, path, tag, digest):
    r = parse_reference(ref)
    assert (r.domain, r.path, r.tag, r.digest) == (domain, path, tag, digest)


@pytest.mark.parametrize("ref,familiar,full", [
    ("busybox", "busybox:latest", "docker.io/library/busybox:latest"),
    ("docker.io/library/busybox:1", "busybox:1", "docker.io/library/busybox:1"),
    ("index.docker.io/team/app", "team/app:latest", "docker.io/team/app:latest"),
    ("localhost:5000/a", "localhost:5000/a:latest", "localhost:5000/a:latest"),
    ("a:b@" + D, "a:b@" + D, "docker.io/library/a:b@" + D),
])
def test_familiar_and_full_forms(ref, familiar, full):
    r = parse_reference(ref)
    assert r.familiar() == familiar == reference.normalize(ref)
    assert str(r) == full


def test_docker_io_busybox_is_busybox():
    assert parse_reference("docker.io/busybox") == parse_reference("busybox") \
        == parse_reference("index.docker.io/library/busybox:latest")
    assert reference.repository("docker.io/library/busybox") == "busybox"


def test_bare_reference_keeps_no_tag_when_asked():
    r = parse_reference("busybox", default_tag=None)
    assert (r.tag, r.digest) == (None, None)
    assert reference.is_name_only("localhost:5000/a") and not reference.is_name_only("a:b")


@pytest.mark.parametrize("bad,why", [
    ("", "empty"),
    ("Busybox", "lowercase"),
    ("library/Busybox", "lowercase"),
    ("a:b:c", "lowercase letters"),          # name "a:b" is a host with a non-numeric port
    ("a/b:c:d", "path component"),
    ("x::y", ""),
    ("a:" + "t" * 129, "tag"),
    ("a:.x", "tag"), ("a:-x", "tag"),
    ("x@sha256:zz", "digest"),
    ("x@sha256:" + "A" * 64, "64 lowercase hex"),
    ("x@sha256:" + "a" * 63, "64 lowercase hex"),
    ("x@md5", "digest"),
    (" busybox", "white space"), ("busy box", "white space"),
    ("a" * 256, "255"),
    ("example.com/" + "a" * 250, "255"),
    ("a" * 64, "64-character hexadecimal"),
    ("@" + D, "empty"),
    ("a//b", "empty path component"), ("a/b/", "empty path component"), ("/a", ""),
    ("-a", "path component"), ("a-", "path component"), ("a___b", "path component"),
    ("a..b", "path component"), ("a_-b", "path component"),
    ("-host.com/a", "registry host"), ("host.com:port/a", "registry host"),
])
def test_refused_with_the_reference_named(bad, why):
    with pytest.raises(InvalidParameter) as err:
        parse_reference(bad)
    msg = str(err.value)
    assert msg.startswith("invalid reference format")
    assert why in msg
    if bad:
        assert repr(bad) in msg


def test_name_of_exactly_255_characters_is_fine():
    assert parse_reference("a" * 255).path == "library/" + "a" * 255


def test_repository_refuses_a_tag():
    with pytest.raises(InvalidParameter):
        reference.repository("busybox:1")


@pytest.mark.parametrize("pattern,ref,hit", [
    ("busybox", "busybox:latest", True),
    ("busybox:*", "busybox:latest", True),
    ("busy*", "busybox:1", True),
    ("*", "team/app:1", False),             # * does not cross '/' (Go's path.Match)
    ("*/*", "team/app:1", True),
    ("team/app:1", "team/app:1", True),
    ("team/app:2", "team/app:1", False),
    ("localhost:5000/a", "localhost:5000/a:v", True),
    ("b?sybox", "busybox:latest", True),
    ("[a-c]usybox", "busybox:latest", True),
])
def test_reference_filter_globs(pattern, ref, hit):
    assert reference.matches(pattern, ref) is hit
