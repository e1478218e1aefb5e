"""Fixtures of the unit tests: ``root``, the linked tree the in-root resolver's
tests (rootpath, fdwalk, container_ops) walk; ``release_db``, a database of the
release before numbered migrations (tests/data/store-1) for the schema's tests."""

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


#: a database of the release before numbered migrations, and what its API served
#: (tests/data/make_release_store.py made them)
RELEASE_STORE = os.path.join(os.path.dirname(__file__), "..", "data", "store-1")


@pytest.fixture
def release_db(tmp_path):
    """``(path, api)``: a ``dockyard.db`` loaded from the release's dump (schema
    version 0, not yet opened by a Store, so not migrated) and the release's
    answers (``api.json``: inspects and lists by name; ``roots``: where its data
    root, exec root and default bridge were)."""
    import json
    import sqlite3

    path = tmp_path / "dockyard.db"
    con = sqlite3.connect(path)
    with open(os.path.join(RELEASE_STORE, "dump.sql")) as fh:
        con.executescript(fh.read())
    con.close()
    with open(os.path.join(RELEASE_STORE, "api.json")) as fh:
        return path, json.load(fh)
