"""The one in-root symlink resolver (dockyard.driverkit.shim.rootpath) the builder, the
engine and both exec drivers use."""

import errno
import os

import pytest

from dockyard.driverkit.shim import rootpath


def test_links_are_followed_inside_the_root(root):
    assert rootpath.resolve(root, "/a/up/etc/passwd") == ["etc", "passwd"]
    assert rootpath.resolve(root, "a/abs/passwd") == ["etc", "passwd"]
    assert rootpath.resolve(root, "/a/rel/../../etc/./") == ["etc"]
    assert rootpath.resolve(root, "/../../..") == []
    assert rootpath.join(root, "/a/up/../../etc") == os.path.join(root, "etc")


def test_missing_parts_are_kept_and_dotdot_after_them_is_lexical(root):
    assert rootpath.resolve(root, "/a/missing/x") == ["a", "missing", "x"]
    assert rootpath.resolve(root, "/missing/../../../a/abs") == ["etc"]
    assert rootpath.resolve(root, "/dangling/file") == ["nowhere", "deeper", "file"]
    assert rootpath.resolve(root, "/etc/passwd/under") == ["etc", "passwd", "under"]  # ENOTDIR: not a link


def test_split_existing(root):
    assert rootpath.split_existing(root, ["etc", "passwd"]) == (["etc", "passwd"], [])
    assert rootpath.split_existing(root, ["a", "missing", "x"]) == (["a"], ["missing", "x"])
    assert rootpath.split_existing(root, ["etc", "passwd", "under"]) == (["etc", "passwd"], ["under"])
    assert rootpath.split_existing(root, []) == ([], [])


def test_a_loop_is_eloop(root):
    with pytest.raises(OSError) as info:
        rootpath.resolve(root, "/loop1/x")
    assert info.value.errno == errno.ELOOP and "/loop1/x" in str(info.value)
    assert rootpath.resolve(root, "/a/rel", max_links=1) == ["a", "b"]
    with pytest.raises(OSError):
        rootpath.resolve(root, "/a/up/a/rel", max_links=1)
