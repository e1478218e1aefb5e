"""A daemon on the release's data root migrates its database and serves what the
release served; a database of a newer Dockyard stops the daemon before anything
is set up.  (The migrations themselves, row by row: tests/unit/test_schema.py.)"""

import json
import os
import secrets
import sqlite3
import time
from pathlib import Path

import pytest

from dockyard import schema
from dockyard.testing.daemon import Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RELEASE_STORE = Path(__file__).resolve().parents[1] / "data" / "store-1"


def user_version(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def test_a_database_of_a_newer_dockyard_stops_the_daemon(session_root):
    d = Daemon(session_root / f"newer-{time.monotonic_ns()}")
    d.data_root.mkdir(parents=True)
    db = d.data_root / "dockyard.db"
    con = sqlite3.connect(db)
    con.execute(f"PRAGMA user_version = {schema.LATEST + 7}")
    con.close()
    with pytest.raises(RuntimeError, match="daemon exited with 1") as err:
        d.start()
    assert f"has schema version {schema.LATEST + 7}, made by a newer Dockyard" in str(err.value)
    assert f"knows versions up to {schema.LATEST}" in str(err.value)
    assert user_version(db) == schema.LATEST + 7
    assert d.leaks() == []  # refused before a driver set anything up: no bridge, no table


@pytest.fixture
def release_root(session_root):
    """A data root holding the release's database, less its containers (their
    processes, logs and layers are not here), its network ids made new (two runs
    on one host must not both claim the ``dy-<id>`` bridges), and what the release
    served, its ids replaced alike."""
    base = session_root / f"release-{time.monotonic_ns()}"
    dump = (RELEASE_STORE / "dump.sql").read_text()
    api = (RELEASE_STORE / "api.json").read_text()
    con = sqlite3.connect(":memory:")
    con.executescript(dump)
    for (old,) in con.execute("SELECT id FROM networks").fetchall():
        new = secrets.token_hex(32)
        dump, api = dump.replace(old, new), api.replace(old, new)
    con.close()
    (base / "data").mkdir(parents=True)
    con = sqlite3.connect(base / "data" / "dockyard.db")
    con.executescript(dump)
    con.execute("DELETE FROM ip_allocations WHERE owner <> 'gateway'")
    con.execute("DELETE FROM containers")
    con.commit()
    con.close()
    return base, json.loads(api)


def test_the_release_database_is_served_as_the_release_served_it(release_root):
    base, api = release_root
    d = Daemon(base).start()
    try:
        assert user_version(d.data_root / "dockyard.db") == schema.LATEST
        client = d.sdk()
        try:
            for name in ("front", "backend", "host", "none"):
                served = client.api.inspect_network(name)
                # no container is here to be on it (the release's ran on front and backend)
                assert served == {**api["networks"][name], "Containers": {}}, name
            # the default network is made anew from this daemon's flags (its own bridge;
            # the release's daemon had another), as it is at each start whose flags changed
            bridge = client.api.inspect_network("bridge")
            assert bridge["Options"]["com.docker.network.bridge.name"] == d.bridge
            assert bridge["Options"] != api["networks"]["bridge"]["Options"]
            volumes = {v["Name"]: v for v in client.api.volumes()["Volumes"]}
            assert {n: v["Labels"] for n, v in volumes.items()} == \
                {v["Name"]: v["Labels"] for v in api["volumes"]["Volumes"]}
            assert sorted((i["Id"], tuple(i["RepoTags"])) for i in client.api.images()) == \
                sorted((i["Id"], tuple(i["RepoTags"])) for i in api["images_json"])
            # and it goes on working: a network made now, the release's removed
            client.networks.create("after-upgrade", driver="bridge").remove()
            for name in ("front", "backend"):
                client.networks.get(name).remove()
        finally:
            client.close()
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []
