"""Health checks (--health-*, the SDK's healthcheck=, HEALTHCHECK in a Dockerfile)."""

import os
import shutil
import time
import uuid

import pytest
from dockyard.testing.daemon import Daemon
from dockyard.testing.driver import wait_for

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed"),
]
MS = 1_000_000  # nanoseconds


def _ok(res):
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode().strip()


def _health(client, ref):
    return client.api.inspect_container(ref)["State"].get("Health")


def _until(predicate, timeout=30, what="condition"):
    return wait_for(predicate, timeout, what, every=0.1)


def _status_is(client, ref, status):
    return lambda: (_health(client, ref) or {}).get("Status") == status


def _health_events(client, since, cid):
    events = client.events(decode=True, since=since, until=time.time() + 0.5,
                           filters={"container": cid, "event": "health_status"})
    return [e["Action"] for e in events]


def test_docker_cli_health_flags_starting_to_healthy(daemon):
    client = daemon.sdk()
    since = time.time() - 1
    name = f"hc-{uuid.uuid4().hex[:8]}"
    cid = _ok(daemon.docker("run", "-d", "--name", name, "--health-cmd", "echo ok; true",
                            "--health-interval", "200ms", "--health-retries", "2", "busybox", "sleep", "60"))
    info = client.api.inspect_container(cid)
    assert info["Config"]["Healthcheck"]["Test"] == ["CMD-SHELL", "echo ok; true"]
    assert info["Config"]["Healthcheck"]["Interval"] == 200 * MS
    assert info["State"]["Health"]["Status"] in ("starting", "healthy")
    _until(_status_is(client, cid, "healthy"), what="healthy")
    _until(lambda: len(_health(client, cid)["Log"]) == 5, what="five results")
    time.sleep(0.6)
    health = _health(client, cid)
    assert len(health["Log"]) == 5 and health["FailingStreak"] == 0  # only the last five are kept
    entry = health["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "ok\n" and entry["Start"] <= entry["End"]
    ps = _ok(daemon.docker("ps", "--filter", f"name={name}", "--format", "{{.Status}}"))
    assert ps.startswith("Up") and ps.endswith("(healthy)"), ps
    assert _ok(daemon.docker("ps", "-q", "--filter", "health=healthy", "--filter", f"name={name}")) == cid[:12]
    assert _health_events(client, since, cid) == ["health_status: healthy"]
    # the monitor ends with the container: no more probes once it stopped
    _ok(daemon.docker("stop", "-t", "1", name))
    stopped = time.time()
    time.sleep(1)
    late = client.events(decode=True, since=stopped + 0.2, until=time.time() + 0.2,
                         filters={"container": cid, "event": "exec_start"})
    assert list(late) == []
    _ok(daemon.docker("rm", name))
    client.close()


def test_failing_check_goes_unhealthy_then_healthy_again(daemon):
    client = daemon.sdk()
    since = time.time() - 1
    c = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "test": ["CMD", "sh", "-c", "test -e /tmp/ok || { echo missing >&2; exit 1; }"],
        "interval": 200 * MS, "retries": 2})
    _until(_status_is(client, c.id, "unhealthy"), what="unhealthy")
    health = _health(client, c.id)
    assert health["FailingStreak"] >= 2 and health["Log"][-1]["ExitCode"] == 1
    assert health["Log"][-1]["Output"] == "missing\n"
    assert "(unhealthy)" in _ok(daemon.docker("ps", "--filter", f"id={c.id}", "--format", "{{.Status}}"))
    c.exec_run(["touch", "/tmp/ok"])
    _until(_status_is(client, c.id, "healthy"), what="healthy again")
    assert _health(client, c.id)["FailingStreak"] == 0
    assert _health_events(client, since, c.id) == ["health_status: unhealthy", "health_status: healthy"]
    c.remove(force=True)
    client.close()


def test_start_period_and_timeout(daemon):
    client = daemon.sdk()
    patient = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "test": ["CMD-SHELL", "exit 1"], "interval": 200 * MS, "retries": 1, "start_period": 60_000 * MS})
    slow = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
        "test": ["CMD-SHELL", "sleep 5"], "interval": 200 * MS, "timeout": 300 * MS, "retries": 1})
    # what the client left unset is left out, as dockerd stores it (Go's omitempty)
    assert client.api.inspect_container(patient.id)["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "exit 1"], "Interval": 200 * MS, "Retries": 1, "StartPeriod": 60_000 * MS}
    assert client.api.inspect_container(slow.id)["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "sleep 5"], "Interval": 200 * MS, "Timeout": 300 * MS, "Retries": 1}
    _until(lambda: len((_health(client, patient.id) or {}).get("Log") or []) >= 3, what="probes")
    health = _health(client, patient.id)
    assert health["Status"] == "starting" and health["FailingStreak"] == 0  # failures in the start period are free
    assert "(health: starting)" in _ok(daemon.docker("ps", "--filter", f"id={patient.id}", "--format",
                                                     "{{.Status}}"))
    _until(_status_is(client, slow.id, "unhealthy"), what="unhealthy by timeout")
    entry = _health(client, slow.id)["Log"][-1]
    assert entry["ExitCode"] == -1 and entry["Output"] == "Health check exceeded timeout (300ms)"
    patient.remove(force=True)
    slow.remove(force=True)
    client.close()


def test_image_healthcheck_and_no_healthcheck(daemon, tmp_path):
    tag = f"hcimg-{uuid.uuid4().hex[:6]}"
    (tmp_path / "Dockerfile").write_text("FROM busybox\nHEALTHCHECK --interval=200ms --retries=1 CMD true\n")
    res = daemon.docker("build", "-q", "-t", tag, str(tmp_path))
    assert res.returncode == 0, res.stderr.decode()
    client = daemon.sdk()
    cid = _ok(daemon.docker("run", "-d", tag, "sleep", "60"))
    _until(_status_is(client, cid, "healthy"), what="healthy from the image's HEALTHCHECK")
    # the flags override fields of the image's check
    slow = _ok(daemon.docker("run", "-d", "--health-interval", "300ms", "--health-cmd", "exit 1", tag, "sleep", "60"))
    hc = client.api.inspect_container(slow)["Config"]["Healthcheck"]
    assert hc["Test"] == ["CMD-SHELL", "exit 1"] and hc["Interval"] == 300 * MS and hc["Retries"] == 1
    _until(_status_is(client, slow, "unhealthy"), what="unhealthy")
    none = _ok(daemon.docker("run", "-d", "--no-healthcheck", tag, "sleep", "60"))
    time.sleep(0.6)
    assert _health(client, none) is None
    assert client.api.inspect_container(none)["Config"]["Healthcheck"]["Test"] == ["NONE"]
    res = daemon.docker("run", "--no-healthcheck", "--health-cmd", "true", tag, "true")
    assert res.returncode != 0
    _ok(daemon.docker("rm", "-f", cid, slow, none))
    _ok(daemon.docker("rmi", tag))
    client.close()


def test_dockyard_cli_health_flags(daemon):
    client = daemon.sdk()
    res = daemon.cli("run", "-d", "--health-cmd", "true", "--health-interval", "200ms", "busybox", "sleep", "60")
    assert res.returncode == 0, res.stderr.decode()
    cid = res.stdout.decode().strip()
    _until(_status_is(client, cid, "healthy"), what="healthy")
    ps = daemon.cli("ps", "--filter", f"id={cid}", "--format", "{{.Status}}").stdout.decode()
    assert "(healthy)" in ps
    res = daemon.cli("run", "--health-interval", "soon", "busybox", "true")
    assert res.returncode == 125 and b"--health-interval" in res.stderr
    client.api.remove_container(cid, force=True)
    client.close()


def test_health_survives_a_daemon_restart(session_root, busybox_tar):
    d = Daemon(session_root / f"health-{uuid.uuid4().hex[:6]}").start()
    try:
        assert d.cli("import", str(busybox_tar), "busybox").returncode == 0
        client = d.sdk()
        c = client.containers.run("busybox", ["sleep", "60"], detach=True, healthcheck={
            "test": ["CMD", "true"], "interval": 200 * MS})
        _until(_status_is(client, c.id, "healthy"), what="healthy")
        client.close()
        d.stop()
        d.start()
        client = d.sdk()
        assert _health(client, c.id)["Status"] == "healthy"  # kept over the restart
        last = _health(client, c.id)["Log"][-1]["Start"]
        _until(lambda: _health(client, c.id)["Log"][-1]["Start"] > last, what="probes again")
        c.remove(force=True)
        client.close()
    finally:
        d.stop()
        d.remove_network_objects()
