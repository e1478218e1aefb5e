"""Fixtures of the unit tests: ``root``, the linked tree the in-root resolver's
tests (rootpath, fdwalk, container_ops) walk."""

import os

import pytest


@pytest.fixture
def root(tmp_path):
    """A tree with links up, absolute, relative, dangling and in a loop."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root")
    (r / "a" / "b").mkdir(parents=True)
    os.symlink("../../../../../../", r / "a" / "up")
    os.symlink("/etc", r / "a" / "abs")
    os.symlink("b", r / "a" / "rel")
    os.symlink("/nowhere/deeper", r / "dangling")
    os.symlink("loop2", r / "loop1")
    os.symlink("loop1", r / "loop2")
    return str(r)
