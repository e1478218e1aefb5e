"""The flows a kubelet drives, through crictl (cri-tools v1.26.1) on the daemon's CRI
socket: pull, runp, create, start, exec (streamed and sync), logs, stats, stopp,
rmp; and a pod whose two containers talk over the pod's localhost.  Images are the
offline stand-ins of critest's, pulled through mirrors (tests/cri/conftest.py).
"""

import json
import time
import uuid

import pytest

from dockyard.testing import criimages

BUSYBOX = criimages.E2E + "busybox:1.29-2"
HTTPD = criimages.E2E + "httpd:2.4.39-4"


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


@pytest.fixture
def crictl(cri_stack, cri_tools):
    return cri_stack.crictl


@pytest.fixture
def pod_files(tmp_path):
    """Writes a pod's and its containers' JSON configs; the pod's log directory in tmp_path."""
    name = f"flow-{uuid.uuid4().hex[:8]}"
    pod = {"metadata": {"name": name, "namespace": "default", "uid": uuid.uuid4().hex, "attempt": 1},
           "log_directory": str(tmp_path / "logs"), "linux": {}}
    (tmp_path / "pod.json").write_text(json.dumps(pod))

    def container(cname, image, command=None):
        cfg = {"metadata": {"name": cname}, "image": {"image": image}, "log_path": f"{cname}.log", "linux": {}}
        if command:
            cfg["command"] = command
        path = tmp_path / f"{cname}.json"
        path.write_text(json.dumps(cfg))
        return str(path)

    return str(tmp_path / "pod.json"), container, tmp_path / "logs"


def wait_for(fn, timeout=30, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def test_a_pod_through_its_whole_life(crictl, pod_files):
    pod_json, container, logs = pod_files
    ok(crictl("pull", BUSYBOX, timeout=120))
    assert BUSYBOX.rsplit(":", 1)[0] in ok(crictl("images"))
    pod = ok(crictl("runp", pod_json, timeout=120)).strip()
    assert pod in ok(crictl("pods", "-q"))
    ctr_json = container("sleeper", BUSYBOX, ["sh", "-c", "echo hello-from-cri; echo oops >&2; sleep 3600"])
    cid = ok(crictl("create", pod, ctr_json, pod_json, timeout=120)).strip()
    ok(crictl("start", cid))
    assert json.loads(ok(crictl("inspect", cid)))["status"]["state"] == "CONTAINER_RUNNING"

    assert ok(crictl("exec", cid, "sh", "-c", "echo streamed $((6*7))")) == "streamed 42\n"  # Exec: SPDY
    assert ok(crictl("exec", "-s", cid, "hostname")).strip()  # ExecSync
    failed = crictl("exec", "-s", cid, "sh", "-c", "exit 3")
    assert failed.returncode != 0

    out = wait_for(lambda: "hello-from-cri" in ok(crictl("logs", cid)) and ok(crictl("logs", cid)))
    assert out.splitlines()[0] == "hello-from-cri"
    assert "oops" in crictl("logs", cid).stderr.decode()
    on_disk = (logs / "sleeper.log").read_text().splitlines()
    assert any(line.split(" ", 3)[1:] == ["stdout", "F", "hello-from-cri"] for line in on_disk)

    stats = json.loads(ok(crictl("stats", "-o", "json", cid)))["stats"]
    assert [s["attributes"]["id"] for s in stats] == [cid]
    assert int(stats[0]["memory"]["workingSetBytes"]["value"]) > 0

    ok(crictl("stopp", pod, timeout=120))
    assert json.loads(ok(crictl("inspect", cid)))["status"]["state"] == "CONTAINER_EXITED"
    ok(crictl("rmp", pod, timeout=120))
    assert pod not in ok(crictl("pods", "-q"))
    assert cid not in ok(crictl("ps", "-a", "-q"))


def test_two_containers_of_a_pod_talk_over_localhost(crictl, pod_files):
    pod_json, container, _ = pod_files
    ok(crictl("pull", HTTPD, timeout=120))
    ok(crictl("pull", BUSYBOX, timeout=120))
    pod = ok(crictl("runp", pod_json, timeout=120)).strip()
    try:
        web = ok(crictl("create", pod, container("web", HTTPD), pod_json, timeout=120)).strip()
        ok(crictl("start", web))
        client = ok(crictl("create", pod, container("client", BUSYBOX, ["sleep", "3600"]), pod_json,
                           timeout=120)).strip()
        ok(crictl("start", client))
        got = wait_for(lambda: crictl("exec", "-s", client, "wget", "-qO-", "http://127.0.0.1:80/").stdout.decode())
        assert "It works!" in got
        # the client's own loopback is the server's: the same network namespace
        netns = {ok(crictl("exec", "-s", c, "readlink", "/proc/self/ns/net")).strip() for c in (web, client)}
        assert len(netns) == 1
    finally:
        crictl("stopp", pod, timeout=120)
        ok(crictl("rmp", pod, timeout=120))
