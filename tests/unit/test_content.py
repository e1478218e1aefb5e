"""The content store: verified, resumable, nothing half-written under a digest."""

import os

import pytest

from dockyard.engine.layers.content import ContentStore, DigestMismatch, digest_of
from dockyard.errors import InvalidParameter


def test_put_read_and_dedupe(tmp_path):
    cs = ContentStore(str(tmp_path))
    d = cs.put(b"hello")
    assert d == digest_of(b"hello") and cs.read(d) == b"hello" and cs.put(b"hello") == d
    assert cs.digests() == [d] and cs.verify() == [] and cs.size(d) == 5


def test_resume_a_partial_write(tmp_path):
    cs = ContentStore(str(tmp_path))
    expected = digest_of(b"abcdef")
    w = cs.writer("pull-x", expected, 6)
    w.write(b"abc")
    w.abort()
    w = cs.writer("pull-x", expected, 6)
    assert w.offset == 3 and not cs.has(expected)
    w.write(b"def")
    assert w.commit() == expected and cs.read(expected) == b"abcdef"
    assert os.listdir(tmp_path / "ingest") == []


def test_mismatch_leaves_nothing(tmp_path):
    cs = ContentStore(str(tmp_path))
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        with cs.writer("k", digest_of(b"x"), 1) as w:
            w.write(b"y")
            w.commit()
    with pytest.raises(DigestMismatch, match="more than the announced"):
        with cs.writer("k2", digest_of(b"x"), 1) as w:
            w.write(b"xx")
    assert cs.digests() == [] and os.listdir(tmp_path / "ingest") == []  # it can never become right: dropped
    with pytest.raises(InvalidParameter):
        cs.path("md5:abc")


def test_verify_finds_a_corrupted_blob(tmp_path):
    cs = ContentStore(str(tmp_path))
    d = cs.put(b"good")
    os.chmod(cs.path(d), 0o644)
    with open(cs.path(d), "wb") as fh:
        fh.write(b"evil")
    assert cs.verify() == [(d, f"content hashes to {digest_of(b'evil')}")]
