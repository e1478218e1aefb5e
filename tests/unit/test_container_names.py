"""A generated container name that a concurrent create takes between the check
and the insert is drawn again, as dockerd retries it; a name the client gave stays
a conflict (docker's 409)."""

import itertools
from types import SimpleNamespace

import pytest
from dockyard.engine.containers import create as create_mod
from dockyard.engine.containers.records import name_conflict
from dockyard.errors import Conflict


class Records:
    """Rows by name; ``name_free`` always says yes, as it did to both racing creates."""

    def __init__(self, taken):
        self.rows = {name: "other" for name in taken}

    def name_free(self, name):
        return True

    def insert(self, rec, top):
        if rec.name in self.rows:
            raise name_conflict(rec.name, self.rows[rec.name])
        self.rows[rec.name] = rec.id


class Networks:
    def links(self, links, mode, name):
        return [f"/{link}:/{name}/{link}" for link in links or []]


def creator(records):
    c = create_mod.Creator.__new__(create_mod.Creator)
    c.records, c.networks = records, Networks()
    return c


def record(name):
    return SimpleNamespace(id="c1", name=name, network_mode="default", host_config={"Links": None})


def test_a_generated_name_taken_meanwhile_is_drawn_again(monkeypatch):
    draws = itertools.chain(["busy_curie", "busy_curie", "keen_turing"])
    monkeypatch.setattr(create_mod.names, "generate", lambda is_free: next(draws))
    records = Records(taken=["busy_curie"])
    rec = record("busy_curie")  # drawn before the racing create inserted it
    rec.host_config["Links"] = ["/db:/busy_curie/db"]
    creator(records)._insert(rec, None, generated=True, links=["db"])
    assert rec.name == "keen_turing" and records.rows["keen_turing"] == "c1"
    assert rec.host_config["Links"] == ["/db:/keen_turing/db"]  # the links name the new name


def test_a_name_the_client_gave_stays_a_conflict():
    records = Records(taken=["web"])
    with pytest.raises(Conflict, match='"/web" is already in use'):
        creator(records)._insert(record("web"), None, generated=False, links=None)
