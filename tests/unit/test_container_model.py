"""Container records: the release's stored inspect-shaped dicts, migrated
(schema migration 3), give back through the record's views exactly what the
release's API served (tests/data/store-1: ``release_db`` in conftest.py); and a
record survives the store's JSON unchanged.

What may differ, and why: a summary's ``Status`` ("Up 3 seconds") is the time
since the container started, so it is compared as the text Docker would show now
for the same state; and the release's daemon went on running its health checks
between the answers it recorded and the dump of its database, so the ``web``
container's health log may have grown meanwhile (the status and the first
results are compared)."""

import json
import sqlite3

import pytest

from dockyard import schema
from dockyard.model.container import (ContainerRecord, Endpoint, Health, HealthResult, MountPoint, NetworkSettings,
                                      PortBinding, State)
from dockyard.model.container_views import status_text
from dockyard.model.convert import converter, dumps, loads
from dockyard.schema import m0003_containers, m0004_endpoints


def migrated(path):
    """``{name: ContainerRecord}`` of the release's database, brought to the latest schema."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        schema.upgrade(con, str(path))
        rows = con.execute("SELECT name, data FROM containers").fetchall()
    finally:
        con.close()
    return {name: loads(data, ContainerRecord) for name, data in rows}


def _health_prefix(inspect, served):
    """The web container's health log as the release served it: the dump's may be longer."""
    mine, theirs = inspect["State"].get("Health"), served["State"].get("Health")
    if mine and theirs:
        assert mine["Status"] == theirs["Status"]
        assert mine["Log"][:len(theirs["Log"])] == theirs["Log"] or len(mine["Log"]) == 5
        mine["Log"] = theirs["Log"]
        mine["FailingStreak"] = theirs["FailingStreak"]


def test_every_release_container_is_migrated(release_db):
    path, api = release_db
    records = migrated(path)
    assert sorted(records) == sorted(api["containers"]) == ["db", "done", "fresh", "loner", "sidecar", "web"]
    web = records["web"]
    assert web.state.running and web.state.health is not None and web.state.health.status == "healthy"
    assert web.host_config["RestartPolicy"] == {"Name": "unless-stopped"}
    assert [(m.type, m.name, m.destination, m.named, m.rw) for m in web.mount_points] == [
        ("volume", "data", "/data", True, True), ("bind", "", "/mnt/bind", False, False)]
    assert web.network_settings.ports == {"80/tcp": [PortBinding("127.0.0.1", "18080")]}
    assert web.network_settings.endpoints["bridge"].driver_endpoint["name"] == "web"
    db = records["db"]
    assert list(db.networks) == ["front", "backend"]
    assert db.networks["front"].aliases == ["database"]
    assert db.networks["front"].ipam_config == {"IPv4Address": "10.213.8.200"}
    assert db.network_settings.endpoints["front"].aliases == [db.id[:12], "database"]
    assert records["sidecar"].network_mode == "container:" + web.id
    assert records["done"].state.exit_code == 3 and records["done"].command == ["sh", "-c", "echo bye; exit 3"]
    assert records["fresh"].state.status == "created" and records["fresh"].name == "fresh"


def test_inspect_equals_what_the_release_served(release_db):
    path, api = release_db
    for name, rec in migrated(path).items():
        mine, served = rec.to_api(), api["containers"][name]
        _health_prefix(mine, served)
        assert mine == served, name


def test_list_entries_equal_what_the_release_served(release_db):
    path, api = release_db
    records = migrated(path)
    assert api["containers_json"], "the release listed no container"
    for served in api["containers_json"]:
        rec = records[served["Names"][0].lstrip("/")]
        mine = rec.summary().to_api()
        assert served["Status"].split(" ")[0] == mine["Status"].split(" ")[0]
        assert mine.pop("Status") == status_text(rec.state)
        served = dict(served, Status=None)
        del served["Status"]
        assert mine == served, served["Names"]


def test_records_survive_the_store(release_db):
    path, _ = release_db
    for rec in migrated(path).values():
        assert loads(dumps(rec), ContainerRecord) == rec
        assert converter.unstructure(converter.structure(converter.unstructure(rec), ContainerRecord)) == \
            converter.unstructure(rec)


def test_migration_makes_the_converter_form(release_db):
    """What migration 3 writes is what unstructuring its record writes: no field
    missing, none extra (the converter refuses both)."""
    con = sqlite3.connect(release_db[0])
    try:
        rows = [json.loads(d) for (d,) in con.execute("SELECT data FROM containers")]
    finally:
        con.close()
    for old in rows:
        new = m0004_endpoints.convert_container(m0003_containers.convert(old))
        assert converter.unstructure(converter.structure(new, ContainerRecord)) == new


def test_a_full_record_round_trips():
    rec = ContainerRecord(
        id="c" * 64, name="web", created="2024-01-01T00:00:00Z", path="sh", args=["-c", "true"],
        image_id="sha256:" + "a" * 64, config={"Image": "busybox", "Labels": {"a": "b"}},
        host_config={"NetworkMode": "default", "PortBindings": {"80/tcp": [{"HostPort": "8080"}]}},
        network_mode="bridge", driver="overlay", log_path="/l", hostname_path="/h", hosts_path="/hs",
        resolv_conf_path="/r",
        state=State(status="running", running=True, pid=42, started_at="2024-01-01T00:00:01Z",
                    health=Health("unhealthy", 3, [HealthResult("s", "e", 1, "no")])),
        restart_count=2, manually_stopped=True,
        network_settings=NetworkSettings(
            endpoints={"bridge": Endpoint("n" * 64, "e" * 64, "172.17.0.1", "172.17.0.2", 16, "02:42:ac:11:00:02",
                                          None, {"id": "e" * 64})},
            ports={"80/tcp": [PortBinding("0.0.0.0", "8080")], "53/udp": None}, sandbox_key="/run/netns/x"),
        mount_points=[MountPoint("volume", "/data", "/v/_data", "v", "local", "z", True, "", False, True, True, ""),
                      MountPoint("bind", "/b", "/src", rw=False, propagation="rprivate", from_container="d" * 64)])
    assert loads(dumps(rec), ContainerRecord) == rec
    api = rec.to_api()
    assert api["Name"] == "/web" and api["State"]["Health"]["FailingStreak"] == 3
    assert api["NetworkSettings"]["IPAddress"] == "172.17.0.2"
    assert api["NetworkSettings"]["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": None}
    assert api["Mounts"][1] == {"Type": "bind", "Source": "/src", "Destination": "/b", "Mode": "", "RW": False,
                                "Propagation": "rprivate"}
    assert rec.summary().to_api()["Ports"] == [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                                               {"PrivatePort": 53, "Type": "udp"}]


def test_a_record_of_a_newer_dockyard_is_refused():
    data = json.loads(dumps(ContainerRecord("a", "b", "c", "sh", [], "i", {}, {}, "none", "vfs", "", "", "", "")))
    data["from_the_future"] = 1
    with pytest.raises(Exception):
        converter.structure(data, ContainerRecord)
