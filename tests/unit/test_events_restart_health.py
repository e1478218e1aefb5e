"""The pure parts of the event bus, restart policies and health checks."""

import argparse
import threading

import pytest
from dockyard.cli import policyflags, runflags
from dockyard.cli.events import event_line
from dockyard.engine import events
from dockyard.engine.containers import health, restart
from dockyard.errors import InvalidParameter
from dockyard.model.container import ContainerRecord, State


class FakeEngine:
    """Just what the bus needs: subscribe, and container records to read labels from."""

    def __init__(self, records=None):
        self.subscribers = []
        self.records = records or {}
        self.containers = self

    def subscribe(self, fn):
        self.subscribers.append(fn)

    def emit(self, *event):
        for fn in self.subscribers:
            fn(*event)

    def get(self, cid):
        if cid not in self.records:
            raise KeyError(cid)
        return self.records[cid]


def _msg(type_="container", action="start", id_="abc", **attrs):
    return {"Type": type_, "Action": action, "Actor": {"ID": id_, "Attributes": attrs}, "scope": "local"}


def test_bus_stamps_enriches_and_replays():
    eng = FakeEngine({"c1": ContainerRecord("c1", "web", "2024-01-01T00:00:00Z", "sh", [], "sha256:1",
                                            {"Image": "busybox", "Labels": {"team": "blue"}}, {}, "bridge", "vfs",
                                            "", "", "", "")})
    bus = events.EventBus(eng, eng.containers, history=3)
    got = []
    eng.emit("container", "create", "c1", {})
    eng.emit("container", "die", "c1", {"exitCode": 3})
    past = bus.subscribe(got.append, since_ns=0)
    assert [m["Action"] for m in past] == ["create", "die"]
    die = past[1]
    assert die["Actor"]["Attributes"] == {"team": "blue", "name": "web", "image": "busybox", "exitCode": "3"}
    assert die["status"] == "die" and die["id"] == "c1" and die["from"] == "busybox"
    assert die["time"] == die["timeNano"] // 10**9
    eng.records.clear()  # gone: destroy still carries what was known
    eng.emit("container", "destroy", "c1", {})
    assert got[-1]["Actor"]["Attributes"]["name"] == "web"
    eng.emit("volume", "create", "v1", {"driver": "local"})
    assert got[-1]["Type"] == "volume" and "status" not in got[-1]
    assert len(bus.history()) == 3  # bounded
    assert bus.subscribe(lambda m: None) == []  # no since, no replay
    bus.unsubscribe(got.append)
    eng.emit("network", "create", "n1", {})
    assert got[-1]["Type"] == "volume"


def test_filters_follow_docker():
    f = events.normalize_filters({"type": {"container": True}, "event": ["health_status"]})
    assert f == {"type": ["container"], "event": ["health_status"]}
    assert events.matches(_msg(action="health_status: healthy"), f)
    assert not events.matches(_msg(action="start"), f)
    assert not events.matches(_msg(type_="image", action="health_status: x"), f)
    assert events.matches(_msg(id_="abcdef", name="web"), {"container": ["abc"]})
    assert events.matches(_msg(id_="zzz", name="web"), {"container": ["web"]})
    assert not events.matches(_msg(type_="image", id_="sha256:1"), {"container": ["web"]})
    assert events.matches(_msg(image="busybox:latest"), {"image": ["busybox"]})
    assert events.matches(_msg(type_="image", id_="sha256:1", name="busybox:latest"), {"image": ["busybox:latest"]})
    assert events.matches(_msg(team="blue"), {"label": ["team"]})
    assert events.matches(_msg(team="blue"), {"label": ["team=blue"]})
    assert not events.matches(_msg(team="blue"), {"label": ["team=red"]})
    assert not events.matches(_msg(action="start"), {"event": ["stop"]})
    with pytest.raises(ValueError):
        events.normalize_filters({"nope": ["x"]})


def test_parse_time():
    assert events.parse_time(None) is None and events.parse_time("") is None
    assert events.parse_time("1700000000") == 1700000000 * 10**9
    assert events.parse_time("1700000000.000000001") == 1700000000 * 10**9 + 1
    assert events.parse_time("1700000000.5") == 1700000000 * 10**9 + 5 * 10**8
    assert events.parse_time("10m", now_ns=10**12) == 10**12 - 600 * 10**9
    assert events.parse_time("2024-01-01T00:00:00Z") == 1704067200 * 10**9
    assert events.parse_time("2024-01-01T00:00:00.123456789Z") == 1704067200 * 10**9 + 123456000
    with pytest.raises(ValueError):
        events.parse_time("yesterday")


def test_restart_policy_rules():
    restart.validate({"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}})
    restart.validate({"RestartPolicy": {"Name": "no"}, "AutoRemove": True})
    for host in ({"RestartPolicy": {"Name": "sometimes"}}, {"RestartPolicy": {"Name": "always", "MaximumRetryCount": 1}},
                 {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": -1}},
                 {"RestartPolicy": {"Name": "always"}, "AutoRemove": True}):
        with pytest.raises(InvalidParameter):
            restart.validate(host)
    assert restart.should_restart("always", 0, 0, True, 9)
    assert not restart.should_restart("unless-stopped", 0, 1, True, 0)
    assert restart.should_restart("unless-stopped", 0, 0, False, 0)
    assert restart.should_restart("on-failure", 2, 1, False, 1)
    assert not restart.should_restart("on-failure", 2, 1, False, 2)
    assert not restart.should_restart("on-failure", 0, 0, False, 0)
    assert restart.should_restart("on-failure", 0, 1, False, 99)
    assert not restart.should_restart("no", 0, 1, False, 0)


def _rec(started, finished, policy="always", code=1, count=0, stopped=False):
    return ContainerRecord("c1", "web", started, "sh", [], "sha256:1", {}, {"RestartPolicy": {"Name": policy}},
                           "bridge", "vfs", "", "", "", "", restart_count=count, manually_stopped=stopped,
                           state=State(status="exited", started_at=started, finished_at=finished, exit_code=code))


def test_back_off_doubles_caps_and_resets():
    mgr = restart.RestartManager(FakeEngine())
    quick = ("2024-01-01T00:00:00Z", "2024-01-01T00:00:01Z")
    delays = []
    for _ in range(12):
        rec = _rec(*quick)
        delays.append(mgr.on_exit(rec))
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8] and delays[-1] == 60.0
    assert rec.restart_count == 1 and rec.state.restarting and rec.state.status == "restarting"
    assert mgr.on_exit(_rec("2024-01-01T00:00:00Z", "2024-01-01T00:00:10Z")) == 0.1  # ran 10 s: reset
    assert mgr.on_exit(_rec(*quick, stopped=True)) is None  # stopped by the user
    assert mgr.on_exit(_rec(*quick, policy="no")) is None
    assert mgr.on_exit(_rec(*quick, policy="on-failure", code=0)) is None


def test_health_merge_and_commands():
    image = {"Test": ["CMD", "true"], "Interval": 5, "Retries": 2}
    assert health.merged(None, image) == image
    assert health.merged({"Interval": 7}, image) == {"Test": ["CMD", "true"], "Interval": 7, "Timeout": 0,
                                                    "StartPeriod": 0, "Retries": 2}
    assert health.merged({"Test": ["NONE"]}, image)["Test"] == ["NONE"]
    assert health.merged(None, None) is None
    assert health.probe_command({"Test": ["CMD", "a", "b"]}) == ["a", "b"]
    assert health.probe_command({"Test": ["CMD-SHELL", "exit 1"]}) == ["/bin/sh", "-c", "exit 1"]
    assert health.probe_command({"Test": ["CMD-SHELL", "x"]}, shell=["/bin/bash", "-c"]) == ["/bin/bash", "-c", "x"]
    assert health.probe_command({"Test": ["NONE"]}) is None and health.probe_command({}) is None
    assert health.go_duration(0.3) == "300ms" and health.go_duration(30) == "30s" and health.go_duration(90) == "1m30s"


def _args(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--rm", action="store_true")
    runflags.add_flags(p)
    return p.parse_args(argv)


def test_cli_flags():
    assert policyflags.restart_config(_args([])) == {}
    assert policyflags.restart_config(_args(["--restart", "on-failure:3"])) == {
        "RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}}
    for argv, why in ((["--restart", "always", "--rm"], "Conflicting options"),
                      (["--restart", "a:b:c"], "invalid restart policy format"),
                      (["--restart", "on-failure:x"], "must be an integer")):
        with pytest.raises(ValueError, match=why):
            policyflags.restart_config(_args(argv))
    assert policyflags.health_config(_args([])) == {}
    assert policyflags.health_config(_args(["--no-healthcheck"])) == {"Healthcheck": {"Test": ["NONE"]}}
    hc = policyflags.health_config(_args(["--health-cmd", "true", "--health-interval", "1m30s",
                                       "--health-timeout", "200ms", "--health-retries", "4"]))
    assert hc == {"Healthcheck": {"Test": ["CMD-SHELL", "true"], "Interval": 90 * 10**9, "Timeout": 200 * 10**6,
                                  "StartPeriod": 0, "Retries": 4}}
    with pytest.raises(ValueError, match="conflicts"):
        policyflags.health_config(_args(["--no-healthcheck", "--health-retries", "1"]))
    with pytest.raises(ValueError, match="--health-interval"):
        policyflags.health_config(_args(["--health-interval", "soon"]))
    with pytest.raises(ValueError, match="cannot be negative"):
        policyflags.health_config(_args(["--health-timeout=-1s"]))


def test_event_line():
    msg = {"Type": "container", "Action": "start", "Actor": {"ID": "abc", "Attributes": {"name": "w", "image": "b"}},
           "timeNano": 1700000000123456789}
    line = event_line(msg)
    assert line.endswith(" container start abc (image=b, name=w)")
    assert ".123456789" in line.split(" ")[0]


def test_bus_order_is_one_for_all_listeners():
    eng = FakeEngine()
    bus = events.EventBus(eng, eng.containers)
    a, b = [], []
    bus.subscribe(lambda m: a.append(m["Actor"]["ID"]))
    bus.subscribe(lambda m: b.append(m["Actor"]["ID"]))
    threads = [threading.Thread(target=lambda i=i: [eng.emit("image", "tag", f"{i}-{n}", {}) for n in range(50)])
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a == b and len(a) == 200
