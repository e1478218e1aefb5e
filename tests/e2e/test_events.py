"""GET /events through the real docker CLI, the docker SDK and our CLI."""

import json
import os
import shutil
import threading
import time
import uuid

import pytest

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]


def _name(prefix="ev"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _ok(res):
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def _replay(client, since, **filters):
    """The kept events since ``since`` up to now (the stream ends at ``until``)."""
    return list(client.events(decode=True, since=since, until=time.time() + 0.5, filters=filters or None))


def test_container_lifecycle_events_in_order_with_docker_shape(daemon):
    client = daemon.sdk()
    name = _name()
    since = time.time() - 1
    assert daemon.docker("run", "--name", name, "-l", "team=blue", "busybox", "sh", "-c", "exit 3").returncode == 3
    _ok(daemon.docker("rm", name))
    events = _replay(client, since, container=name)
    actions = [e["Action"] for e in events]
    wanted = ["create", "attach", "start", "die", "destroy"]
    assert [a for a in actions if a in wanted] == wanted, actions
    die = next(e for e in events if e["Action"] == "die")
    cid = die["Actor"]["ID"]
    assert len(cid) == 64
    assert die["Type"] == "container" and die["scope"] == "local"
    assert die["Actor"]["Attributes"]["exitCode"] == "3"
    assert die["Actor"]["Attributes"]["name"] == name
    assert die["Actor"]["Attributes"]["image"] == "busybox"
    assert die["Actor"]["Attributes"]["team"] == "blue"  # container labels ride along, as Docker's
    assert die["status"] == "die" and die["id"] == cid and die["from"] == "busybox"
    assert die["time"] == die["timeNano"] // 10**9 and abs(die["time"] - time.time()) < 120
    stamps = [e["timeNano"] for e in events]
    assert stamps == sorted(stamps)
    # the same by id prefix, by label, and by event type
    assert [e["Action"] for e in _replay(client, since, container=cid[:12], event="die")] == ["die"]
    assert {e["Actor"]["ID"] for e in _replay(client, since, label="team=blue")} == {cid}
    assert _replay(client, since, label="team=red") == []
    client.close()


def test_live_stream_ends_at_until_and_carries_signals_pause_exec(daemon):
    client = daemon.sdk()
    name = _name()
    got = []
    ready = threading.Event()

    def listen():
        stream = client.events(decode=True, until=time.time() + 20, filters={"container": name})
        ready.set()
        for ev in stream:
            got.append(ev)
            if ev["Action"] == "destroy":
                stream.close()
                return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    assert ready.wait(10)
    time.sleep(0.3)
    _ok(daemon.docker("run", "-d", "--name", name, "busybox", "sh", "-c",
                      "trap 'exit 0' TERM; while true; do sleep 0.1; done"))
    _ok(daemon.docker("pause", name))
    _ok(daemon.docker("unpause", name))
    _ok(daemon.docker("exec", name, "true"))
    _ok(daemon.docker("kill", "-s", "TERM", name))
    _ok(daemon.docker("wait", name))
    _ok(daemon.docker("rm", name))
    t.join(25)
    assert not t.is_alive()
    actions = [e["Action"] for e in got]
    for a in ("create", "start", "pause", "unpause", "exec_create: true", "exec_start: true", "exec_die",
              "kill", "die", "destroy"):
        assert a in actions, (a, actions)
    assert actions.index("pause") < actions.index("unpause") < actions.index("exec_create: true") \
        < actions.index("kill") < actions.index("die") < actions.index("destroy")
    kill = next(e for e in got if e["Action"] == "kill")
    assert kill["Actor"]["Attributes"]["signal"] == "15"
    exec_die = next(e for e in got if e["Action"] == "exec_die")
    assert exec_die["Actor"]["Attributes"]["exitCode"] == "0" and exec_die["Actor"]["Attributes"]["execID"]
    # a filter on the prefix of an exec action matches (Docker's fuzzy rule)
    since = got[0]["time"]
    execs = _replay(client, since, container=name, event="exec_create")
    assert [e["Action"] for e in execs] == ["exec_create: true"]
    client.close()


def test_until_in_the_future_ends_the_stream(daemon):
    client = daemon.sdk()
    start = time.monotonic()
    assert list(client.events(decode=True, until=time.time() + 1.5, filters={"type": "plugin"})) == []
    assert 1.0 <= time.monotonic() - start < 10
    client.close()


def test_image_and_network_events(daemon):
    client = daemon.sdk()
    since = time.time() - 1
    tag = f"evimg-{uuid.uuid4().hex[:6]}:v1"
    net = _name("evnet")
    name = _name()
    _ok(daemon.docker("tag", "busybox", tag))
    _ok(daemon.docker("rmi", tag))
    _ok(daemon.docker("network", "create", net))
    _ok(daemon.docker("create", "--name", name, "busybox", "true"))
    _ok(daemon.docker("network", "connect", net, name))
    _ok(daemon.docker("network", "disconnect", net, name))
    _ok(daemon.docker("rm", name))
    _ok(daemon.docker("network", "rm", net))
    images = _replay(client, since, type="image")
    tagged = next(e for e in images if e["Actor"]["Attributes"].get("name") == tag)
    assert tagged["Action"] == tagged["status"] == "tag" and tagged["Actor"]["ID"].startswith("sha256:")
    # dockerd 20.10 names the image id, not the name, in an untag event
    assert [(e["Action"], e["Actor"]["Attributes"]["name"]) for e in images if e["Action"] == "untag"
            and e["Actor"]["ID"] == tagged["Actor"]["ID"]] == [("untag", tagged["Actor"]["ID"])]
    # image filter: by the reference without its tag (so the untag, which names the id, is not there)
    assert [e["Action"] for e in _replay(client, since, type="image", image=tag.split(":")[0])] == ["tag"]
    nets = _replay(client, since, network=net)
    # a created container's connect has no event (its endpoint comes with its start),
    # its disconnect has one: dockerd 20.10's
    assert [e["Action"] for e in nets] == ["create", "disconnect", "destroy"]
    assert nets[1]["Type"] == "network" and len(nets[1]["Actor"]["Attributes"]["container"]) == 64
    assert "status" not in nets[0]  # the legacy fields are for containers and images only
    client.close()


def test_docker_cli_events_since_until(daemon):
    name = _name()
    _ok(daemon.docker("run", "--rm", "--name", name, "busybox", "true"))
    out = _ok(daemon.docker("events", "--since", "2m", "--until", "-2s", "--filter", f"container={name}",
                            "--filter", "event=start", "--filter", "event=die",
                            "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}"))
    assert out.splitlines() == [f"container start {name}", f"container die {name}"]
    out = _ok(daemon.docker("events", "--since", "2m", "--until", "-2s", "--filter", f"container={name}",
                            "--format", "{{json .}}"))
    first = json.loads(out.splitlines()[0])
    assert first["Action"] == "create" and first["Actor"]["Attributes"]["name"] == name


def test_dockyard_cli_events(daemon):
    name = _name()
    _ok(daemon.docker("run", "--rm", "--name", name, "busybox", "true"))
    until = str(int(time.time()) + 2)  # a whole second: what is in this one is included
    res = daemon.cli("events", "--since", "2m", "--until", until, "--filter", f"container={name}",
                     "--filter", "event=destroy")
    lines = _ok(res).splitlines()
    assert len(lines) == 1, lines
    stamp, type_, action, cid, rest = lines[0].split(" ", 4)
    assert (type_, action, len(cid)) == ("container", "destroy", 64)
    assert stamp[:4].isdigit() and "T" in stamp and "." in stamp
    assert f"name={name}" in rest and "image=busybox" in rest
    res = daemon.cli("events", "--since", "2m", "--until", until, "--filter", f"container={name}",
                     "--format", "{{.Action}}")
    assert _ok(res).split() == ["create", "attach", "start", "die", "destroy"]


def test_bad_queries_are_400(daemon):
    client = daemon.sdk()
    api = client.api
    now = int(time.time())
    for params, why in (({"filters": json.dumps({"bogus": ["x"]}), "until": now}, "bogus"),
                        ({"since": now, "until": now - 100}, "cannot be after"),
                        ({"since": "not-a-time", "until": now}, "since")):
        resp = api._get(api._url("/events"), params=params)  # the SDK's events() does not check the status
        assert resp.status_code == 400, (params, resp.status_code)
        assert why in resp.json()["message"]
    res = daemon.docker("events", "--since", "yesterday-ish", "--until", "0s")
    assert res.returncode != 0
    client.close()
