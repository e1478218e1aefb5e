"""Our CLI next to the real docker CLI (28), both against the session's daemon: the
same words and exit statuses for command lines, terminals and templates they
refuse, the same sizes; and detaching from a terminal session (ctrl-p ctrl-q, or
the keys a client names) through the docker CLI, the SDK and ours, with the
container or exec'd process left running."""

import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import docker
import pytest

from dockyard.testing.daemon import PY, Daemon, http

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(shutil.which("docker") is None, reason="needs the docker CLI")


def both(daemon, *argv, **kw):
    """``(docker's result, ours)`` for the same arguments."""
    return daemon.docker(*argv, **kw), daemon.cli(*argv, **kw)


def as_ours(text):
    return text.replace("docker", "dockyard")


def name():
    return f"par-{uuid.uuid4().hex[:8]}"


# --- command lines, terminals, templates: refused alike ------------------------------------


@pytest.mark.parametrize("argv", [("run", "--x", "busybox"), ("ps", "-x"), ("network", "ls", "--x"),
                                  ("run", "-m"), ("ps", "-n", "x"), ("stop",), ("ps", "foo"),
                                  ("network", "create"), ("exec", "-it", "box"), ("--bogus", "ps")])
def test_usage_errors_match_docker(daemon, argv):
    theirs, ours = both(daemon, *argv)
    assert theirs.returncode == ours.returncode and theirs.returncode in (1, 125), (theirs, ours)
    assert as_ours(theirs.stderr.decode()) == ours.stderr.decode()


def test_a_terminal_session_needs_a_terminal(daemon):
    box = name()
    assert daemon.cli("run", "-d", "--name", box, "busybox", "sleep", "300").returncode == 0
    try:
        before = daemon.cli("ps", "-aq").stdout
        for argv in (("run", "-it", "busybox", "true"), ("exec", "-it", box, "true"),
                     ("exec", "-it", "no-such-box", "true")):
            theirs = daemon.docker(*argv)  # stdin is /dev/null
            ours = daemon.cli(*argv, input=b"")
            assert theirs.returncode == ours.returncode == 1, (argv, theirs, ours)
            assert theirs.stderr == ours.stderr, argv
        assert daemon.cli("run", "-it", "busybox", "true", input=b"").stderr == b"the input device is not a TTY\n"
        assert daemon.cli("ps", "-aq").stdout == before  # refused before anything was created
    finally:
        daemon.cli("rm", "-f", box)


def test_bad_templates_fail_as_in_docker(daemon):
    vol = name()
    assert daemon.cli("volume", "create", vol).returncode == 0
    box = name()
    assert daemon.cli("run", "-d", "--name", box, "busybox", "sleep", "300").returncode == 0
    try:
        cases = [("images", "--format", "{{.Foo}}"), ("images", "--format", "{{.Foo"),
                 ("images", "--format", "table {{.Size}}{{nofunc}}"),
                 ("ps", "-a", "--format", "{{.Foo}}"), ("ps", "--format", "{{.Foo"),
                 ("ps", "--format", "{{.Label}}"),
                 ("inspect", "--format", "{{.Foo}}", "busybox"), ("inspect", "-f", "{{.Foo", "busybox"),
                 ("inspect", "-f", "{{.Config.Foo}}", box), ("inspect", "-f", "{{.Id}}", "busybox", "nope"),
                 ("version", "--format", "{{.Foo"), ("version", "--format", "{{.Foo}}"),
                 ("info", "--format", "{{.Foo}}"), ("info", "--format", "{{.Foo"),
                 ("history", "--format", "{{.Foo}}", "busybox"),
                 ("volume", "ls", "--format", "{{.Foo}}"), ("volume", "inspect", "-f", "{{.Foo}}", vol),
                 ("network", "ls", "--format", "{{.Foo}}"), ("network", "inspect", "-f", "{{.Foo}}", "bridge"),
                 ("system", "df", "--format", "{{.Foo}}"), ("stats", "--no-stream", "--format", "{{.Foo}}", box),
                 ("events", "--since", "0", "--until", "1", "--format", "{{.Foo}}")]
        for argv in cases:
            theirs, ours = both(daemon, *argv)
            assert ours.returncode == theirs.returncode != 0, (argv, theirs, ours)
            assert ours.stderr.decode() == theirs.stderr.decode(), argv
    finally:
        daemon.cli("rm", "-f", box)
        daemon.cli("volume", "rm", vol)


def _untimed(text):
    """Listings with their clocks stopped: "3 seconds ago", "Up 2 minutes" and the
    columns' padding differ between two runs a second apart."""
    text = re.sub(r"(Less than a second|About an? \w+|\d+ \w+)( ago)", r"T\2", text)
    text = re.sub(r"Up (Less than a second|About an? \w+|\d+ \w+)", "Up T", text)
    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def test_sizes_as_docker_prints_them(daemon):
    vol, box = name(), name()
    assert daemon.cli("volume", "create", vol).returncode == 0
    assert daemon.cli("run", "-d", "--name", box, "-v", f"{vol}:/data", "busybox", "sh", "-c",
                      "head -c 1500000 /dev/zero > /big; sleep 300").returncode == 0
    try:
        for argv in (("images",), ("images", "--format", "{{.Repository}} {{.Size}} {{.VirtualSize}} "
                                                        "{{.SharedSize}} {{.UniqueSize}}"),
                     ("ps", "-a", "-s", "--format", "{{.Names}} {{.Size}}"), ("ps", "-s", "-f", f"name={box}"),
                     ("history", "busybox"), ("history", "-H=false", "busybox"),
                     ("system", "df"), ("system", "df", "--format", "json"), ("system", "df", "-v"),
                     ("volume", "ls", "--format", "{{.Name}} {{.Size}} {{.Links}}"),
                     ("info", "--format", "{{.MemTotal}}")):
            theirs, ours = both(daemon, *argv)
            assert theirs.returncode == ours.returncode == 0, (argv, theirs.stderr, ours.stderr)
            assert _untimed(ours.stdout.decode()) == _untimed(theirs.stdout.decode()), argv
        memory = r"\d+(\.\d+)?(B|KiB|MiB|GiB) / \d+(\.\d+)?(MiB|GiB|TiB)"
        for res in both(daemon, "stats", "--no-stream", "--format", "{{.MemUsage}}|{{.NetIO}}|{{.BlockIO}}", box):
            assert re.fullmatch(rf"{memory}\|[0-9.]+k?B / [0-9.]+k?B\|[0-9.]+[kMG]?B / [0-9.]+[kMG]?B\n",
                                res.stdout.decode()), res
        total = [line.strip() for res in both(daemon, "info") for line in res.stdout.decode().splitlines()
                 if "Total Memory" in line]
        assert len(total) == 2 and total[0] == total[1] and re.fullmatch(r"Total Memory: [0-9.]+GiB", total[0])
    finally:
        daemon.cli("rm", "-f", box)
        daemon.cli("volume", "rm", vol)


# --- detaching from a terminal session ----------------------------------------------------


class Pty:
    """A command on a pseudo-terminal of its own, as a person's shell runs it."""

    def __init__(self, argv, env=None, timeout=60):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: exec, or leave without running pytest's cleanup
            try:
                os.execvpe(argv[0], argv, {**os.environ, **(env or {})})
            finally:
                os._exit(127)
        self.out = bytearray()
        self.deadline = time.monotonic() + timeout

    def _read(self, wait=0.1):
        ready, _, _ = select.select([self.fd], [], [], wait)
        if not ready:
            return True
        try:
            data = os.read(self.fd, 65536)
        except OSError:
            data = b""
        self.out += data
        return bool(data)

    def expect(self, marker):
        while marker not in self.out:
            assert time.monotonic() < self.deadline, f"no {marker!r} in {bytes(self.out)!r}"
            assert self._read(), f"ended before {marker!r}: {bytes(self.out)!r}"
        return self

    def send(self, *keys):
        for key in keys:  # one at a time, as typed
            os.write(self.fd, key)
            time.sleep(0.15)
        return self

    def wait(self):
        while True:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > self.deadline:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
                raise AssertionError(f"still running: {bytes(self.out)!r}")
            self._read()
        while self._read(0):
            pass
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status), bytes(self.out)


def docker_argv(daemon, *argv):
    return ["docker", "-H", daemon.host, *argv]


def dockyard_argv(daemon, *argv):
    return [PY, "-m", "dockyard.cli.main", "-H", daemon.host, *argv]


def _state(daemon, box):
    return daemon.sdk().api.inspect_container(box)["State"]


def _shells(daemon, box):
    return sum(1 for p in daemon.sdk().api.top(box)["Processes"] if p[-1] == "sh")


@pytest.mark.parametrize("cli", [docker_argv, dockyard_argv], ids=["docker", "dockyard"])
def test_ctrl_p_ctrl_q_leaves_the_container_running(daemon, tmp_path, cli):
    box = name()
    env = {"DOCKER_CONFIG": str(tmp_path)}
    try:
        session = Pty(cli(daemon, "run", "-it", "--name", box, "busybox", "sh"), env)
        session.expect(b"/ # ").send(b"echo one\r").expect(b"\r\none\r\n").send(b"\x10", b"\x11")
        assert session.wait()[0] == 0  # docker run: a detach is no failure
        assert _state(daemon, box)["Running"]
        # exec: the exec'd shell stays too; docker exec says "read escape sequence" and exits 1
        session = Pty(cli(daemon, "exec", "-it", box, "sh"), env)
        session.expect(b"/ # ").send(b"echo two\r").expect(b"\r\ntwo\r\n").send(b"\x10", b"\x11")
        code, out = session.wait()
        assert (code, out.endswith(b"read escape sequence\r\n")) == (1, True), out
        assert _state(daemon, box)["Running"] and _shells(daemon, box) == 2
        # keys from Docker's config.json replace the default; a broken prefix is typed through
        (tmp_path / "config.json").write_text(json.dumps({"detachKeys": "q,q"}))
        session = Pty(cli(daemon, "exec", "-it", box, "sh"), env)
        session.expect(b"/ # ").send(b"echo q", b"w\r").expect(b"\r\nqw\r\n").send(b"q", b"q")
        assert session.wait()[0] == 1 and _shells(daemon, box) == 3
        session = Pty(cli(daemon, "exec", "-it", "--detach-keys", "ctrl-a,q", box, "sh"), env)
        session.expect(b"/ # ").send(b"\x01", b"q")
        assert session.wait()[0] == 1 and _shells(daemon, box) == 4
    finally:
        daemon.cli("rm", "-f", box)


def test_docker_attach_detaches_and_a_later_attach_sees_the_same_shell(daemon, tmp_path):
    box = name()
    env = {"DOCKER_CONFIG": str(tmp_path)}
    client = daemon.sdk()
    try:
        client.containers.run("busybox", "sh", name=box, tty=True, stdin_open=True, detach=True)
        session = Pty(docker_argv(daemon, "attach", box), env)
        session.send(b"X=kept\r").expect(b"X=kept\r\n").send(b"\x10", b"\x11")
        code, out = session.wait()
        assert code == 1 and out.endswith(b"read escape sequence\r\n"), out
        session = Pty(docker_argv(daemon, "attach", box), env)
        session.send(b"echo $X\r").expect(b"\r\nkept\r\n").send(b"\x10", b"\x11")
        assert session.wait()[0] == 1 and _state(daemon, box)["Running"]
    finally:
        client.api.remove_container(box, force=True)
        client.close()


def _read_until_closed(sock, timeout=10):
    sock.settimeout(timeout)
    out = b""
    while True:
        data = sock.recv(65536)  # a timeout here is the stream never ending: a failure
        if not data:
            return out
        out += data


def _events(daemon, since, action, box):
    flt = quote(json.dumps({"event": [action], "container": [box]}))
    status, _, body = http(daemon.sock, "GET", f"/events?since={since}&until={int(time.time()) + 1}&filters={flt}")
    assert status == 200
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_the_daemon_detaches_an_attach_on_the_keys_it_is_given(daemon):
    client = daemon.sdk()
    since = int(time.time())
    box = client.containers.run("busybox", "cat", tty=True, stdin_open=True, detach=True)
    try:
        sock = client.api.attach_socket(box.id, params={"stdin": 1, "stdout": 1, "stream": 1,
                                                        "detachKeys": "ctrl-a,x"})._sock
        sock.sendall(b"one\x01y\r")  # a prefix the next key breaks goes on to the process
        time.sleep(0.3)
        sock.sendall(b"\x10\x11two\r")  # the default keys are just keys when others are named (the
        # terminal takes ctrl-q as XON: cat reads ctrl-p alone)
        time.sleep(0.3)
        sock.sendall(b"three\x01")
        time.sleep(0.3)
        sock.sendall(b"xfour\r")
        out = _read_until_closed(sock)  # the daemon ended the stream
        sock.close()
        assert b"one\x01y\r\n" in out and b"\x10two\r\n" in out and b"four" not in out, out
        box.reload()
        assert box.status == "running"
        assert [e["Action"] for e in _events(daemon, since, "detach", box.id)] == ["detach"]
        # the process still has its terminal: a new attach types into it
        sock = client.api.attach_socket(box.id, params={"stdin": 1, "stdout": 1, "stream": 1})._sock
        sock.sendall(b"five\r")
        time.sleep(0.3)
        sock.sendall(b"\x10\x11")
        assert b"five\r\n" in _read_until_closed(sock)
        sock.close()
    finally:
        box.remove(force=True)
        client.close()


def test_without_a_terminal_the_keys_are_data(daemon):
    client = daemon.sdk()
    box = client.containers.run("busybox", "cat", stdin_open=True, detach=True)
    try:
        sock = client.api.attach_socket(box.id, params={"stdin": 1, "stdout": 1, "stream": 1})._sock
        sock.sendall(b"a\x10\x11b\n")
        sock.settimeout(10)
        got = b""
        while b"b\n" not in got:
            got += sock.recv(65536)
        assert got.endswith(b"a\x10\x11b\n")  # one multiplexed frame of cat's output
        sock.close()
    finally:
        box.remove(force=True)
        client.close()


def test_the_daemon_detaches_an_exec_and_keeps_it_running(daemon):
    client = daemon.sdk()
    since = int(time.time())
    box = client.containers.run("busybox", ["sleep", "300"], detach=True)
    try:
        eid = client.api.exec_create(box.id, "sh", stdin=True, tty=True, detach_keys="ctrl-a,x")["Id"]
        sock = client.api.exec_start(eid, tty=True, socket=True)._sock
        sock.sendall(b"echo in-exec\r")
        time.sleep(0.3)
        sock.sendall(b"\x01x")
        assert b"in-exec\r\n" in _read_until_closed(sock)
        sock.close()
        assert client.api.exec_inspect(eid)["Running"]
        events = _events(daemon, since, "exec_detach", box.id)
        assert [e["Actor"]["Attributes"]["execID"] for e in events] == [eid]
    finally:
        box.remove(force=True)
        client.close()


def test_detach_keys_docker_does_not_know_are_refused(daemon):
    client = daemon.sdk()
    box = client.containers.run("busybox", ["sleep", "300"], tty=True, stdin_open=True, detach=True)
    try:
        # dockerd writes an attach's refusal as text on the connection it took over
        status, head, body = http(daemon.sock, "POST", f"/containers/{box.id}/attach?stream=1&detachKeys=ctrl-nope")
        assert (status, body) == (400, b"Invalid detach keys (ctrl-nope) provided\r\n")
        assert b"content-type: application/vnd.docker.raw-stream" in head.lower()
        status, _, body = http(daemon.sock, "POST", "/containers/no-such-box/attach?stream=1")
        assert (status, body) == (404, b"No such container: no-such-box\r\n")
        # and an exec's as a plain error (500), not an invalid parameter
        body = json.dumps({"Cmd": ["true"], "DetachKeys": "ctrl-nope"}).encode()
        status, _, answer = http(daemon.sock, "POST", f"/containers/{box.id}/exec", body,
                                 {"Content-Type": "application/json"})
        assert (status, json.loads(answer)["message"]) == (500, "Invalid escape keys (ctrl-nope) provided")
        with pytest.raises(docker.errors.APIError, match="Invalid escape keys") as err:
            client.api.exec_create(box.id, "true", detach_keys="ctrl-nope")
        assert err.value.status_code == 500
        res = daemon.cli("exec", "-it", "--detach-keys", "ctrl-nope", box.id, "true")
        assert res.returncode == 1 and res.stderr == (b"invalid detach keys (ctrl-nope): "
                                                      b"unknown character: 'ctrl-nope'\n")
    finally:
        box.remove(force=True)
        client.close()


def test_exec_with_a_terminal_gives_crlf(daemon):
    box = name()
    assert daemon.cli("run", "-d", "--name", box, "busybox", "sleep", "300").returncode == 0
    try:
        theirs, ours = both(daemon, "exec", "-t", box, "echo", "hi")
        assert theirs.stdout == ours.stdout == b"hi\r\n"
        assert daemon.sdk().containers.get(box).exec_run("echo hi", tty=True).output == b"hi\r\n"
        assert daemon.cli("exec", box, "echo", "hi").stdout == b"hi\n"
    finally:
        daemon.cli("rm", "-f", box)


# --- the admin's commands -------------------------------------------------------------------


def test_driver_ls_asks_the_daemon_for_its_data_root(daemon):
    res = daemon.cli("driver", "ls")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.decode().splitlines()
    assert lines[0] == f"# data root {daemon.data_root} (active: the daemon on {daemon.host})"
    info = daemon.sdk().info()
    active = {tuple(line.split()[:2]) for line in lines[2:] if line.split()[2:3] == ["*"]}
    assert ("storage", info["Driver"]) in active and ("exec", info["Drivers"]["exec"]) in active
    assert f"{daemon.data_root}/storage/btrfs" in res.stdout.decode() or "btrfs" not in res.stdout.decode()


def test_try_sh_says_what_it_does_and_runs_a_container(session_root):
    needed = ("busybox-static", "libseccomp2", "nftables", "python3-venv")
    if any(subprocess.run(["dpkg", "-s", p], capture_output=True).returncode for p in needed):
        pytest.skip("a package try.sh needs is missing: it would install it")  # no apt-get from a test
    script = (ROOT / "scripts" / "try.sh").read_text()
    assert "vm-deps" not in script and "setup.sh" not in script.split("# (The test suite")[0]
    d = Daemon(session_root / f"try-{uuid.uuid4().hex[:6]}").start()
    try:
        res = subprocess.run(["bash", str(ROOT / "scripts" / "try.sh"), "hello there"], capture_output=True,
                             text=True, timeout=300, env={**os.environ, "DOCKYARD_HOST": d.host})
        assert res.returncode == 0, res.stderr
        steps = [line for line in res.stdout.splitlines() if line.startswith("try: ")]
        assert steps[0] == "try: Debian packages present: busybox-static libseccomp2 nftables python3-venv"
        assert any("making a busybox image offline" in s for s in steps), steps
        assert res.stdout.splitlines()[-1] == "hello there"
        assert d.cli("images", "-q", "busybox").stdout.strip()
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []


# --- docker's management commands, attach, and the host from DOCKER_HOST --------------------


def _listed(text):
    """The command names a group's ``--help`` lists (docker's "Commands:" or our "commands:")."""
    names, inside = set(), False
    for line in text.splitlines():
        if line.strip().lower() == "commands:":
            inside = True
        elif inside and line.startswith("  ") and line.split()[0] != "COMMAND":
            names.add(line.split()[0])
        elif inside and line.strip() and not line.startswith(" "):
            inside = False
    return names


@pytest.mark.parametrize("group", ["container", "image", "system", "network", "volume"])
def test_groups_have_the_commands_docker_lists(daemon, group):
    for argv in ((group, "--help"), (group,)):  # the group alone: its help, and no failure
        theirs, ours = both(daemon, *argv)
        assert theirs.returncode == ours.returncode == 0
        missing = _listed(theirs.stdout.decode()) - _listed(ours.stdout.decode())
        assert missing <= ({"update"} if group == "volume" else set()), missing  # volume update: swarm's


def test_management_commands_answer_as_dockers(daemon):
    box, vol = name(), name()
    assert daemon.cli("volume", "create", vol).returncode == 0
    assert daemon.cli("run", "-d", "--name", box, "-p", "127.0.0.1::80", "busybox", "sh", "-c",
                      "echo hello; sleep 300").returncode == 0
    try:
        for argv in (("container", "ls", "-a", "--format", "{{.Names}} {{.Image}}"),
                     ("container", "ps", "-q", "--no-trunc"),
                     # the table without its CREATED and STATUS columns: "Less than a second ago"
                     # and "1 second ago" would differ between the two runs, and the widths with them
                     ("container", "list", "-f", f"name={box}", "--format",
                      "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Ports}}\t{{.Names}}"),
                     ("container", "inspect", "-f", "{{.Name}} {{.Config.Image}}", box),
                     ("container", "inspect", "-f", "{{.Foo}}", box), ("container", "inspect", "no-such-box"),
                     ("container", "inspect", "-f", "{{.Id}}", "no-such-box"), ("inspect", "-f", "{{.Foo}}", box),
                     ("container", "logs", box), ("container", "port", box), ("container", "diff", box),
                     ("image", "ls", "--format", "{{.Repository}}:{{.Tag}}"), ("image", "list", "-q"),
                     ("image", "inspect", "-f", "{{.Id}}", "busybox"), ("image", "history", "-q", "busybox"),
                     ("image", "rm"), ("image", "rmi", "no-such-image"),
                     ("system", "info", "--format", "{{.Driver}} {{.Containers}}"),
                     ("system", "events", "--since", "0", "--until", "1", "--filter", f"container={box}",
                      "--format", "{{.Action}}"),
                     ("network", "inspect", "-f", "{{.Name}} {{.Driver}}", "bridge"),
                     ("network", "inspect", "--verbose", "--format", "{{.Scope}}", "bridge", "host"),
                     ("volume", "inspect", "-f", "{{.Name}} {{.Driver}}", vol),
                     ("container", "foo"), ("image", "foo"), ("system", "foo"),
                     ("container", "ls", "--bogus"), ("container", "rm"), ("image", "pull", "-x", "busybox"),
                     ("attach", "no-such-box"), ("container", "attach", "--bogus", box), ("attach",)):
            theirs, ours = both(daemon, *argv)
            assert ours.returncode == theirs.returncode, (argv, theirs, ours)
            assert ours.stdout.decode() == as_ours(theirs.stdout.decode()), argv
            assert ours.stderr.decode() == as_ours(theirs.stderr.decode()), argv
    finally:
        daemon.cli("rm", "-f", box)
        daemon.cli("volume", "rm", vol)


def test_a_containers_life_through_the_container_and_image_groups(daemon):
    box, tag = name(), f"{name()}:v1"
    client = daemon.sdk()
    try:
        cid = daemon.cli("container", "create", "--name", box, "busybox", "sleep", "300", check=True).stdout.strip()
        assert client.api.inspect_container(box)["Id"] == cid.decode()
        daemon.cli("container", "start", box, check=True)
        assert client.api.inspect_container(box)["State"]["Running"]
        assert daemon.cli("container", "exec", box, "echo", "in-box", check=True).stdout == b"in-box\n"
        daemon.cli("container", "pause", box, check=True)
        assert client.api.inspect_container(box)["State"]["Paused"]
        daemon.cli("container", "unpause", box, check=True)
        daemon.cli("container", "kill", box, check=True)
        assert daemon.cli("container", "wait", box, check=True).stdout == b"137\n"
        daemon.cli("container", "commit", box, tag, check=True)
        assert client.api.inspect_image(tag)["Config"]["Cmd"] == ["sleep", "300"]
        daemon.cli("container", "rm", box, check=True)
        assert not client.api.containers(all=True, filters={"name": box})
        daemon.cli("image", "tag", tag, f"{tag}-again", check=True)
        daemon.cli("image", "rm", tag, f"{tag}-again", check=True)
        assert not client.api.images(name=tag.split(":")[0])
    finally:
        daemon.cli("rm", "-f", box)
        daemon.cli("rmi", "-f", tag, f"{tag}-again")
        client.close()


@pytest.mark.parametrize("cli", [docker_argv, dockyard_argv], ids=["docker", "dockyard"])
def test_attach_to_a_terminal_and_detach(daemon, tmp_path, cli):
    box = name()
    daemon.cli("run", "-d", "-it", "--name", box, "busybox", "sh", check=True)
    try:
        session = Pty(cli(daemon, "attach", box), {"DOCKER_CONFIG": str(tmp_path)})
        session.send(b"echo in-$((40+2))\r").expect(b"in-42\r\n").send(b"\x10", b"\x11")
        code, out = session.wait()
        assert (code, out.endswith(b"read escape sequence\r\n")) == (1, True), out
        assert _state(daemon, box)["Running"]
        session = Pty(cli(daemon, "attach", "--detach-keys", "ctrl-a,q", box), {"DOCKER_CONFIG": str(tmp_path)})
        session.send(b"exit 5\r")
        assert session.wait()[0] == 5  # the container's status is attach's
        assert _state(daemon, box)["ExitCode"] == 5
    finally:
        daemon.cli("rm", "-f", box)


@pytest.mark.parametrize("ours", [False, True], ids=["docker", "dockyard"])
def test_attach_without_a_terminal(daemon, ours):
    def attach(*argv, **kw):
        run = daemon.cli if ours else daemon.docker
        return run("attach", *argv, **kw)
    box = name()
    try:
        daemon.cli("run", "-d", "-i", "--name", box, "busybox", "sh", "-c", "read x; echo got $x; exit 3", check=True)
        res = attach(box, input=b"hello\n")
        assert (res.returncode, res.stdout) == (3, b"got hello\n"), res
        daemon.cli("rm", "-f", box, check=True)
        # --no-stdin: what we type goes nowhere, the output still comes
        daemon.cli("run", "-d", "-i", "--name", box, "busybox", "sh", "-c",
                   "sleep 2; read -t 1 x; echo got=$x; exit 4", check=True)
        res = attach("--no-stdin", box, input=b"typed\n")
        assert (res.returncode, res.stdout) == (4, b"got=\n"), res
    finally:
        daemon.cli("rm", "-f", box)


TRAP = "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"


@pytest.mark.parametrize("cli", [docker_argv, dockyard_argv], ids=["docker", "dockyard"])
def test_attach_proxies_signals_unless_told_not_to(daemon, cli):
    box = name()
    try:
        daemon.cli("run", "-d", "--name", box, "busybox", "sh", "-c", TRAP, check=True)
        proc = subprocess.Popen(cli(daemon, "attach", box), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
        time.sleep(1.5)  # attached (the container prints nothing more until the signal)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert (proc.returncode, out) == (7, b"got-term\n")
        daemon.cli("rm", "-f", box, check=True)
        daemon.cli("run", "-d", "--name", box, "busybox", "sh", "-c", TRAP, check=True)
        proc = subprocess.Popen(cli(daemon, "attach", "--sig-proxy=false", box), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE)
        time.sleep(1.5)
        proc.send_signal(signal.SIGTERM)  # ours ends; docker's goes on waiting (it is killed below)
        time.sleep(1.5)
        assert _state(daemon, box)["Running"]
        proc.kill()
        assert b"got-term" not in proc.communicate(timeout=30)[0]
    finally:
        daemon.cli("rm", "-f", box)


def test_attach_refuses_as_docker_does(daemon):
    stopped, tty_box = name(), name()
    daemon.cli("create", "--name", stopped, "busybox", "true", check=True)
    daemon.cli("run", "-d", "-it", "--name", tty_box, "busybox", "sh", check=True)
    try:
        for argv in (("attach", stopped), ("container", "attach", tty_box)):  # stdin is not a terminal
            theirs = daemon.docker(*argv)
            ours = daemon.cli(*argv, input=b"")
            assert (ours.returncode, ours.stderr) == (theirs.returncode, theirs.stderr) != (0, b""), argv
        daemon.cli("pause", tty_box, check=True)
        res = daemon.cli("attach", "--no-stdin", tty_box)
        assert (res.returncode, res.stderr) == (1, b"You cannot attach to a paused container, unpause it first\n")
    finally:
        daemon.cli("rm", "-f", stopped, tty_box)


class TcpToUnix:
    """A plain TCP port on 127.0.0.1 in front of a unix socket (a daemon reached
    over tcp://); counts the connections it was asked for."""

    def __init__(self, sock_path):
        import socket
        import threading
        self.path, self.connections = sock_path, 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        import socket
        import threading
        while True:
            try:
                front, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            back = socket.socket(socket.AF_UNIX)
            back.connect(self.path)
            for a, b in ((front, back), (back, front)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        import socket
        try:
            while data := src.recv(65536):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self):
        self.server.close()


def test_our_cli_honours_docker_host(daemon):
    from dockyard.cli import hosts
    # a CLI that ignored DOCKER_HOST would go to the default socket and start a daemon of the host's there
    assert hosts.resolve(None, {"DOCKER_HOST": daemon.host}) == (daemon.host, "$DOCKER_HOST")
    box = name()
    daemon.cli("create", "--name", box, "busybox", "true", check=True)
    bare = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_HOST", "DOCKER_HOST", "DOCKER_TLS_VERIFY")}

    def ours(*argv, **env):
        return subprocess.run([PY, "-m", "dockyard.cli.main", *argv], capture_output=True, timeout=60,
                              env={**bare, **env})
    nowhere = "unix:///nonexistent/dockyard.sock"
    listing = ("ps", "-a", "--filter", f"name={box}", "--format", "{{.Names}}")
    proxy = TcpToUnix(daemon.sock)
    try:
        assert ours(*listing, DOCKER_HOST=daemon.host).stdout == f"{box}\n".encode()
        res = ours(*listing, DOCKYARD_HOST=nowhere, DOCKER_HOST=daemon.host)  # ours first
        assert res.returncode == 1 and b"/nonexistent/dockyard.sock" in res.stderr
        assert ours("-H", daemon.host, *listing, DOCKYARD_HOST=nowhere).stdout == f"{box}\n".encode()
        tcp = f"tcp://127.0.0.1:{proxy.port}"
        assert ours(*listing, DOCKER_HOST=tcp).stdout == f"{box}\n".encode() and proxy.connections > 0
        before = proxy.connections
        res = ours(*listing, DOCKER_HOST=tcp, DOCKER_TLS_VERIFY="1")
        assert res.returncode == 1 and res.stderr.startswith(b"Failed to initialize: ") and b"TLS" in res.stderr
        assert proxy.connections == before  # refused before connecting
        for host in ("fd://", "ssh://someone@far"):
            res = ours(*listing, DOCKER_HOST=host)
            assert res.returncode == 1 and res.stderr.startswith(b"Failed to initialize: cannot connect to ")
    finally:
        proxy.close()
        daemon.cli("rm", "-f", box)
