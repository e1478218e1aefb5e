"""The schema's migrations, from a database the release made (tests/data/store-1:
``release_db`` in conftest.py), and the network records migration 2 made.

What the release's API served (``api.json``) is what the new code's views must
serve from the migrated records.  A network's view is compared whole; its
``Containers`` are the running containers' endpoints, read from the container
records, so they are right only once the container records have been migrated
too (their own migration; the comparison says which network differs).
"""

import json
import sqlite3
import threading
import types

import pytest

from dockyard import schema
from dockyard.model.convert import converter, loads
from dockyard.model.network import IpamPool, NetworkRecord
from dockyard.schema import m0001_release, m0002_networks
from dockyard.store import Store


def rows(path, table, columns="*"):
    con = sqlite3.connect(path)
    try:
        return sorted(con.execute(f"SELECT {columns} FROM {table}").fetchall(), key=repr)
    finally:
        con.close()


def tables(path):
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        con.close()


def user_version(path):
    con = sqlite3.connect(path)
    try:
        return con.execute("PRAGMA user_version").fetchone()[0]
    finally:
        con.close()


def columns(path, table):
    con = sqlite3.connect(path)
    try:
        return [r[1] for r in con.execute(f"PRAGMA table_info({table})")]
    finally:
        con.close()


def network_service(store):
    from dockyard.engine.containers.records import ContainerRecords
    from dockyard.engine.networks.service import NetworkService

    return NetworkService(store, {}, ContainerRecords(store), "/nonexistent", lambda *a: None)


# --- the release's database -------------------------------------------------------
def test_the_release_database_is_version_0_with_its_tables(release_db):
    path, _ = release_db
    assert user_version(path) == 0
    # the tables its modules made as they started (storage_migration only in a migration)
    assert tables(path) >= {"meta", "layers", "images", "tags", "containers", "networks", "ip_allocations",
                            "layer_tarsplit", "scratch_layers", "staged_layers", "image_parents", "repo_digests",
                            "layer_blobs", "build_cache", "volumes"}
    assert "storage_migration" not in tables(path)


def test_opening_migrates_to_the_latest_and_keeps_every_row(release_db):
    path, _ = release_db
    before = {t: rows(path, t) for t in tables(path)}
    old_columns = {t: columns(path, t) for t in tables(path)}
    store = Store(path)
    try:
        assert store.schema_found == 0
    finally:
        store.close()
    assert user_version(path) == schema.LATEST
    assert tables(path) == set(before) | {"storage_migration"}
    for table, old in before.items():
        assert set(old_columns[table]) <= set(columns(path, table)), table  # columns are only added
        if "data" in columns(path, table) and table != "volumes":  # records a migration rewrites
            keep = ", ".join(c for c in old_columns[table] if c != "data")
            assert rows(path, table, keep) == sorted([r[:-1] for r in old], key=repr), table
            assert len(rows(path, table)) == len(old)
        else:
            assert rows(path, table) == old, table
    # opened again: nothing more to do, nothing changed
    after = {t: rows(path, t) for t in tables(path)}
    store = Store(path)
    try:
        assert store.schema_found == schema.LATEST
    finally:
        store.close()
    assert {t: rows(path, t) for t in tables(path)} == after


def test_network_records_give_the_drivers_what_the_release_stored(release_db):
    path, _ = release_db
    stored = {r[0]: json.loads(r[1]) for r in rows(path, "networks", "name, data")}
    Store(path).close()
    migrated = {r[0]: loads(r[1], NetworkRecord) for r in rows(path, "networks", "name, data")}
    assert set(migrated) == set(stored) == {"bridge", "host", "none", "backend", "front"}
    for name, old in stored.items():
        assert migrated[name].to_hook() == old, name  # the hook specs' dict: the drivers' contract
    assert migrated["front"].pools == [IpamPool("10.213.8.0/24", "10.213.8.1")]
    assert migrated["front"].labels == {"team": "web"} and not migrated["front"].internal
    assert migrated["backend"].internal and migrated["host"].pools == [] and migrated["none"].predefined
    assert migrated["bridge"].driver_data["bridge"] == stored["bridge"]["options"][
        "com.docker.network.bridge.name"]


def test_network_views_equal_what_the_release_served(release_db):
    path, api = release_db
    store = Store(path)
    try:
        service = network_service(store)
        for name, served in api["networks"].items():
            record = service.get(name)
            assert service.view(record, containers=False) == {**served, "Containers": {}}, name
        listed = {n["Name"]: n for n in service.matching({})}
        assert set(listed) == {n["Name"] for n in api["networks_json"]}
    finally:
        store.close()


def test_network_containers_equal_what_the_release_served(release_db):
    """Needs the container records migrated too: ``Containers`` are their endpoints."""
    path, api = release_db
    store = Store(path)
    try:
        service = network_service(store)
        for name, served in api["networks"].items():
            assert service.inspect(name)["Containers"] == served["Containers"], name
        assert sorted(api["networks"]["front"]["Containers"]) and \
            sorted(api["networks"]["backend"]["Containers"])  # the release's file has some to compare
    finally:
        store.close()


# --- versions ------------------------------------------------------------------------
def test_a_new_database_gets_the_latest_version_and_every_table(tmp_path):
    path = tmp_path / "dockyard.db"
    store = Store(path)
    try:
        assert store.schema_found == 0
    finally:
        store.close()
    assert user_version(path) == schema.LATEST == len(schema.MIGRATIONS)
    made = {s.split("(")[0].split()[-1] for s in m0001_release.TABLES.split(";") if "CREATE TABLE" in s}
    assert tables(path) == made


def test_a_database_of_a_newer_dockyard_is_refused_untouched(release_db):
    path, _ = release_db
    newer = schema.LATEST + 1
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {newer}")
    con.close()
    before = {t: rows(path, t) for t in tables(path)}
    with pytest.raises(schema.SchemaTooNew) as err:
        Store(path)
    message = str(err.value)
    assert f"schema version {newer}" in message and f"up to {schema.LATEST}" in message
    assert str(path) in message and "newer Dockyard" in message
    assert user_version(path) == newer
    assert {t: rows(path, t) for t in tables(path)} == before  # no table made, no record converted


def test_a_failing_migration_leaves_the_old_version(release_db, monkeypatch):
    path, _ = release_db
    before = rows(path, "networks")

    def broken(db):
        m0002_networks.migrate(db)  # it has changed rows when the failure comes
        raise RuntimeError("power cut")

    monkeypatch.setattr(schema, "MIGRATIONS", [m0001_release, types.SimpleNamespace(migrate=broken)])
    monkeypatch.setattr(schema, "LATEST", 2)
    with pytest.raises(RuntimeError):
        Store(path)
    assert user_version(path) == 0 and rows(path, "networks") == before
    assert "storage_migration" not in tables(path)


def open_at_once(path, openers=4):
    """Open the store at ``path`` from ``openers`` threads at once: (the schema
    versions each found, the exceptions raised)."""
    found, errors = [], []

    def open_store():
        try:
            store = Store(path)
            found.append(store.schema_found)
            store.close()
        except Exception as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(openers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return found, errors


def test_two_stores_opening_at_once_migrate_once(release_db):
    path, _ = release_db
    found, errors = open_at_once(path)
    assert errors == [] and sorted(found) == [0] + [schema.LATEST] * 3
    front = loads(dict(rows(path, "networks", "name, data"))["front"], NetworkRecord)
    assert front.pools == [IpamPool("10.213.8.0/24", "10.213.8.1")]  # converted once, not twice


def test_many_openers_of_a_rollback_journal_database_all_get_in(tmp_path):
    # Switching to WAL takes the exclusive lock, and SQLite refuses the losers at
    # once, without the busy handler; about one round in ten lost a store before.
    for round_ in range(30):
        path = tmp_path / f"r{round_}.db"
        con = sqlite3.connect(path)
        con.execute("CREATE TABLE t(x)")
        con.commit()
        con.close()
        _, errors = open_at_once(path)
        assert errors == [], f"round {round_}"
        assert user_version(path) == schema.LATEST


# --- migration 2 -------------------------------------------------------------------------
def test_migration_2_fills_what_an_older_record_lacks():
    old = {"id": "a" * 64, "name": "n", "driver": "bridge", "options": {"o": None}, "labels": None,
           "internal": True, "ipam": {"subnet": "10.9.0.0/24", "gateway": "10.9.0.1"}}
    new = converter.structure(m0002_networks.convert(old), NetworkRecord)
    assert new == NetworkRecord(id="a" * 64, name="n", driver="bridge", created="0001-01-01T00:00:00Z",
                                options={"o": ""}, labels={}, internal=True, attachable=False,
                                predefined=False, pools=[IpamPool("10.9.0.0/24", "10.9.0.1")], driver_data={})
    assert m0002_networks.convert({**old, "ipam": None})["pools"] == []


def test_migration_2_drops_unknown_keys_saying_so(caplog):
    old = {"id": "b" * 64, "name": "odd", "driver": "host", "created": "2020-01-01T00:00:00Z", "options": {},
           "labels": {}, "internal": False, "ipam": None, "scope": "swarm"}
    new = m0002_networks.convert(old)
    assert "scope" not in new and converter.structure(new, NetworkRecord).name == "odd"
    assert "network odd: dropping the unknown keys ['scope']" in caplog.text


def test_a_record_with_a_key_this_dockyard_does_not_know_is_refused():
    """A record a newer Dockyard wrote is not silently cut down to what this one knows."""
    rec = converter.unstructure(NetworkRecord(id="c" * 64, name="x", driver="none", created="t"))
    with pytest.raises(Exception):
        converter.structure({**rec, "ipv6_pools": []}, NetworkRecord)


def test_migration_4_writes_the_new_fields_with_their_defaults(release_db):
    """The release's containers and networks, migrated: every attachment, endpoint
    and network has the fields issue 15 added, as the model writes them."""
    path, _ = release_db
    Store(path).close()
    for (data,) in rows(path, "containers", "data"):
        rec = json.loads(data)
        assert all(a["mac_address"] == "" and a["links"] == [] for a in rec["networks"].values())
        assert all(e["global_ipv6_address"] == "" and e["global_ipv6_prefix_len"] == 0
                   for e in rec["network_settings"]["endpoints"].values())
    assert {json.loads(d)["enable_ipv6"] for (d,) in rows(path, "networks", "data")} == {False}


def test_migration_5_lets_an_image_go_while_its_containers_keep_its_layers(release_db):
    """The release's containers, migrated: each holds the top layer of the image it
    was made from, and no longer holds the image (``rmi -f`` deletes it as dockerd
    does, the layers staying as long as a container names them)."""
    path, _ = release_db
    con = sqlite3.connect(path)
    con.execute("PRAGMA foreign_keys=ON")
    image_id, top = con.execute("SELECT i.id, i.top_layer FROM images i JOIN containers c ON c.image_id = i.id"
                                " LIMIT 1").fetchone()
    with pytest.raises(sqlite3.IntegrityError):  # the release's foreign key forbade it
        with con:
            con.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            con.execute("DELETE FROM images WHERE id=?", (image_id,))
    con.close()
    before = rows(path, "containers", "id, name, image_id")
    Store(path).close()
    assert rows(path, "containers", "id, name, image_id") == before
    con = sqlite3.connect(path)
    try:
        con.execute("PRAGMA foreign_keys=ON")
        assert [r[2] for r in con.execute("PRAGMA foreign_key_list(containers)")] == ["layers"]
        made_on = dict(con.execute("SELECT c.id, i.top_layer FROM containers c JOIN images i ON i.id = c.image_id"))
        assert made_on and dict(con.execute("SELECT id, top_layer FROM containers")) == made_on
        assert top is not None and con.execute("SELECT COUNT(*) FROM containers WHERE top_layer=?", (top,)).fetchone()[0]
        with con:
            con.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            con.execute("DELETE FROM images WHERE id=?", (image_id,))
        with pytest.raises(sqlite3.IntegrityError), con:  # its layers stay while a container is on them
            con.execute("DELETE FROM layers WHERE chain_id=?", (top,))
    finally:
        con.close()
