"""The daemon as a systemd service: socket activation, sd_notify, --log-level, the units.

systemd is not PID 1 on these machines, so the daemon is started the way
systemd starts it, by systemd's own activation tool: ``systemd-socket-activate``
waits for the first connection and execs ``dockyard daemon -H fd://`` with
``LISTEN_FDS``/``LISTEN_PID``/``LISTEN_FDNAMES``.  Where the socket must behave
as a socket unit's does (its mode and group set before the daemon exists, held
across the daemon's restarts), the test binds it and passes it through the tool
(:class:`Activated`), as PID 1 passes ``dockyard.socket``'s.  The test binds the
``NOTIFY_SOCKET`` datagram socket itself and reads what the daemon tells it.
"""

import configparser
import grp
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from dockyard.daemon import main as daemon_main
from dockyard.testing.daemon import PY, Daemon, ping, processes_mentioning

pytestmark = [pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-socket-activate"),
                                 reason="needs root and systemd-socket-activate"),
              pytest.mark.xdist_group("host")]  # under pytest-xdist, with the other host-global tests

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"
START_TIMEOUT = 60


def _other_group():
    """A group of this host that is not root's: the socket unit's SocketGroup here."""
    return next(g.gr_gid for g in grp.getgrall() if g.gr_gid != 0)


class Notifications:
    """The service manager's end of ``sd_notify``: a datagram socket at ``path``."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, timeout=START_TIMEOUT):
        """The next message as ``{KEY: VALUE}``, or ``None`` after ``timeout`` seconds."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        return dict(line.split("=", 1) for line in data.splitlines())

    def close(self):
        self.sock.close()


class Activated:
    """A daemon started as systemd starts ``dockyard.service`` from ``dockyard.socket``.

    The test plays the socket unit: it binds the API socket in the exec root
    (``/run/dockyard/dockyard.sock`` on a real host) with the owner, group and
    mode a unit's ``SocketUser``/``SocketGroup``/``SocketMode`` give it, and
    keeps it open across the daemon's restarts.  ``systemd-socket-activate``
    receives it (``LISTEN_FDS``) and execs the daemon in place on the first
    connection, so ``proc.pid`` is the daemon's pid."""

    def __init__(self, base, mode=0o660, gid=None, extra_args=()):
        self.d = Daemon(base, extra_args=["-G", "root", *extra_args])  # -G must not apply to fd://
        self.d.sock = str(self.d.exec_root / "dockyard.sock")
        self.d.host = f"unix://{self.d.sock}"
        self.args = list(self.d.args)
        self.args[self.args.index("-H") + 1] = "fd://"
        self.mode, self.gid = mode, _other_group() if gid is None else gid
        self.d.exec_root.mkdir(parents=True, mode=0o755)  # as systemd makes a ListenStream's directory
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.d.sock)
        os.chown(self.d.sock, 0, self.gid)
        os.chmod(self.d.sock, mode)
        self.listener.listen(64)
        st = os.stat(self.d.sock)
        self.inode = (st.st_dev, st.st_ino)
        self.notes = Notifications(self.d.base / "notify.sock")

    def spawn(self):
        """Hand the socket to systemd-socket-activate, which waits for a connection."""
        fd = os.dup(self.listener.fileno())  # bash moves it to 3, where LISTEN_FDS says it is
        try:
            with open(self.d.log, "ab") as log:
                self.d.proc = subprocess.Popen(
                    ["bash", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "activate",
                     "systemd-socket-activate", "--fdname=dockyard.socket",
                     "-E", f"NOTIFY_SOCKET={self.notes.path}", *self.args],
                    pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        finally:
            os.close(fd)
        return self.d.proc

    def start(self):
        """Spawn, connect (the connection that starts the daemon), and wait for READY=1."""
        self.spawn()
        trigger = socket.socket(socket.AF_UNIX)
        trigger.connect(self.d.sock)
        try:
            ready = self.notes.next()
        finally:
            trigger.close()
        assert ready is not None, f"no READY=1 in {START_TIMEOUT}s:\n{self.d.log.read_text()}"
        return ready

    def close(self):
        if self.d.proc is not None and self.d.proc.poll() is None and ping(self.d.sock):
            client = self.d.sdk()  # what a failed test left running
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        self.d.stop()
        self.notes.close()
        self.listener.close()
        self.d.remove_network_objects()
        assert self.d.leaks() == []


@pytest.fixture
def activated(session_root):
    made = []

    def make(**kw):
        made.append(Activated(session_root / f"sd-{uuid.uuid4().hex[:8]}", **kw))
        return made[-1]

    yield make
    for a in made:
        a.close()


def test_a_socket_activated_daemon_serves_the_clients_and_tells_systemd(activated, busybox_tar):
    a = activated()
    proc = a.spawn()
    assert a.notes.next(timeout=0.5) is None  # nobody connected: no daemon yet
    assert not a.d.data_root.exists()

    import docker

    client = docker.DockerClient(base_url=a.d.host, version="1.41", timeout=START_TIMEOUT)
    assert client.ping() is True  # this connection starts the daemon; it waits in the queue
    ready = a.notes.next()
    assert ready is not None and ready["READY"] == "1", a.d.log.read_text()
    assert ready["MAINPID"] == str(proc.pid)  # the process systemd started, after its exec
    assert ping(a.d.sock)  # READY means the API answers
    assert "dockyard daemon listening on " + a.d.sock in a.d.log.read_text()

    st = os.stat(a.d.sock)  # systemd's socket, as systemd made it: not rebound, -G root not applied
    assert ((st.st_dev, st.st_ino), stat.S_IMODE(st.st_mode), st.st_gid) == (a.inode, 0o660, a.gid)
    er = os.stat(a.d.exec_root)  # the exec root lets the socket's group through, and only through
    assert (stat.S_IMODE(er.st_mode), er.st_gid) == (0o710, a.gid)

    assert a.d.cli("import", str(busybox_tar), "busybox").returncode == 0
    res = a.d.docker("run", "--rm", "busybox", "echo", "through fd://")
    assert (res.returncode, res.stdout) == (0, b"through fd://\n"), res.stderr
    client.close()
    # the daemon's children (a zygote) and the supervisor hub and its keeper (not its children)
    hub = [int(p.split(":")[0]) for p in processes_mentioning(str(a.d.exec_root / "exec"))]
    children = _children(proc.pid) + [pid for pid in hub if pid != proc.pid]
    assert children and all(_inherits_nothing(pid, a.listener) for pid in children)
    assert a.notes.next(timeout=0.2) is None  # READY=1 once

    a.d.stop()  # SIGTERM
    stopping = a.notes.next(timeout=5)
    assert stopping is not None and stopping["STOPPING"] == "1"
    assert proc.returncode == 0
    st = os.stat(a.d.sock)  # still systemd's: the daemon does not remove it
    assert (st.st_dev, st.st_ino) == a.inode


def test_a_restart_keeps_the_socket_and_the_containers(activated, busybox_tar):
    """``systemctl restart``: KillMode=process stops the daemon alone; a client that
    connects meanwhile waits in the socket's queue and is answered by the next one."""
    a = activated()
    a.start()
    assert a.d.cli("import", str(busybox_tar), "busybox").returncode == 0
    res = a.d.docker("run", "-d", "busybox", "sleep", "300")
    assert res.returncode == 0, res.stderr
    cid = res.stdout.decode().strip()
    client = a.d.sdk()
    pid = client.api.inspect_container(cid)["State"]["Pid"]
    client.close()

    assert _inherits_nothing(_parent(pid), a.listener)  # the container's shim
    a.d.stop()
    assert a.notes.next(timeout=5)["STOPPING"] == "1"
    assert os.path.exists(f"/proc/{pid}")  # the container outlives its daemon
    waiting = subprocess.Popen(["docker", "-H", a.d.host, "ps", "-q", "--no-trunc"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "DOCKER_CONFIG": str(a.d.base / "dc")})
    try:
        waiting.wait(1)
    except subprocess.TimeoutExpired:
        pass
    assert waiting.returncode is None  # queued on systemd's socket, not refused

    a.spawn()  # the pending connection starts the next daemon at once
    out, err = waiting.communicate(timeout=START_TIMEOUT)
    assert (waiting.returncode, out.decode().split()) == (0, [cid]), err
    assert a.notes.next()["READY"] == "1"
    res = a.d.docker("rm", "-f", cid)
    assert res.returncode == 0, res.stderr


def _parent(pid):
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _children(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if _parent(entry) == pid:
                found.append(int(entry))
        except (OSError, ValueError):
            continue
    return found


def _inherits_nothing(pid, listener):
    """``pid`` (started by the daemon) got neither systemd's variables nor its socket."""
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [v for v in environ if v.startswith((b"NOTIFY_SOCKET=", b"LISTEN_"))], (pid, environ)
    held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    assert f"socket:[{os.fstat(listener.fileno()).st_ino}]" not in held, (pid, held)
    return True


def _activate(base, listen, names, host, notify):
    """``systemd-socket-activate -l A -l B --fdname=NAMES`` running ``dockyard daemon`` (the
    units' ExecStart) on the roots of ``base``; ``-G`` names a group that does not exist,
    which ``fd://`` does not use."""
    d = Daemon(base, extra_args=["-G", "no-such-group-here"])
    d.base.mkdir(parents=True)
    args = [str(Path(PY).parent / "dockyard"), "daemon", *d.args[3:]]  # not python -m dockyard.daemon.main
    args[args.index("-H") + 1] = host
    cmd = ["systemd-socket-activate", *[x for p in listen for x in ("-l", str(p))], f"--fdname={names}",
           "-E", f"NOTIFY_SOCKET={notify}", *args]
    with open(d.log, "ab") as log:
        d.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    return d


def _connect(path, proc):
    """A connection to ``path`` once systemd-socket-activate (``proc``) listens there."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(str(path))
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            s.close()
            assert proc.poll() is None and time.monotonic() < deadline, "systemd-socket-activate did not listen"
            time.sleep(0.01)


def _answers(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(str(path))
    except ConnectionRefusedError:
        return False
    finally:
        s.close()
    return ping(str(path))


@pytest.mark.parametrize("host, served", [("fd://", {"a", "b"}), ("fd://4", {"b"}), ("fd://api", {"a"})])
def test_fd_serves_all_passed_sockets_or_the_one_chosen(session_root, host, served):
    base = session_root / f"sd-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    socks = {name: base / f"{name}.sock" for name in ("a", "b")}
    notes = Notifications(base / "notify.sock")
    d = _activate(base / "d", [socks["a"], socks["b"]], "api:other", host, notes.path)
    try:
        trigger = _connect(socks[sorted(served)[0]], d.proc)
        assert notes.next()["READY"] == "1", d.log.read_text()
        trigger.close()
        assert {name for name, path in socks.items() if _answers(path)} == served  # the others are closed
    finally:
        d.stop()
        notes.close()
        d.remove_network_objects()
    assert d.leaks() == []


def _refused(res, *words):
    err = res.stderr.decode()
    assert res.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert all(w in err for w in words), err


def test_fd_without_sockets_from_systemd_is_refused_and_creates_nothing(tmp_path):
    cmd = [PY, "-m", "dockyard.daemon.main", "-H", "fd://", "--data-root", str(tmp_path / "data"),
           "--exec-root", str(tmp_path / "exec")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LISTEN_")}
    _refused(subprocess.run(cmd, capture_output=True, timeout=60, env=env),
             "dockyard daemon: -H fd://: no sockets were passed by systemd")
    # sockets meant for another process (LISTEN_PID) are not ours (sd_listen_fds)
    _refused(subprocess.run(cmd, capture_output=True, timeout=60, env={**env, "LISTEN_FDS": "1", "LISTEN_PID": "1"}),
             "no sockets were passed by systemd")
    assert list(tmp_path.iterdir()) == []
    res = subprocess.run([*cmd, "--log-level", "loud"], capture_output=True, timeout=60)
    assert res.returncode == 2 and b"invalid choice: 'loud'" in res.stderr


def test_fd_refuses_a_missing_fd_and_a_tcp_socket(session_root):
    base = session_root / f"sd-{uuid.uuid4().hex[:8]}"
    base.mkdir()
    d = _activate(base / "d", [base / "a.sock"], "api", "fd://9", base / "notify.sock")
    with _connect(base / "a.sock", d.proc):
        d.proc.wait(START_TIMEOUT)
    log = d.log.read_text()
    assert d.proc.returncode == 1 and "-H fd://9: systemd passed fds 3, not 9" in log, log
    assert not d.data_root.exists() and not d.exec_root.exists()

    # a TCP socket (ListenStream=2375) would put the API on the network, unauthenticated: refused
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen()
    fd = os.dup(tcp.fileno())
    d = Daemon(base / "t")
    args = list(d.args)
    args[args.index("-H") + 1] = "fd://"
    proc = subprocess.Popen(["bash", "-c", f'exec 3<&{fd} {fd}<&-; LISTEN_PID=$$ LISTEN_FDS=1 exec "$@"', "activate",
                             "systemd-socket-activate", *args], pass_fds=(fd,), stderr=subprocess.PIPE)
    os.close(fd)
    socket.create_connection(tcp.getsockname()).close()
    err = proc.communicate(timeout=START_TIMEOUT)[1].decode()
    tcp.close()
    assert proc.returncode == 1 and "fd 3 (unknown) is not a listening unix stream socket" in err, err
    assert not d.data_root.exists()


def _journal_daemon(base, monkeypatch, *flags):
    """A daemon whose stderr is "the journal" (JOURNAL_STREAM names its log file),
    with a NOTIFY_SOCKET it warns about, run until it answers and stopped."""
    d = Daemon(base, extra_args=list(flags))
    d.base.mkdir(parents=True)
    d.log.touch()
    st = os.stat(d.log)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    monkeypatch.setenv("NOTIFY_SOCKET", "not-an-address")
    try:
        d.start()
    finally:
        d.stop()
        d.remove_network_objects()
    assert d.leaks() == []
    return d.log.read_text().splitlines()


def test_log_level_filters_and_the_journal_gets_priorities(session_root, monkeypatch):
    warn = "dockyard.daemon.systemd: NOTIFY_SOCKET=not-an-address: not a unix socket address; not notifying"
    lines = _journal_daemon(session_root / f"sd-{uuid.uuid4().hex[:8]}", monkeypatch, "--log-level", "warn")
    assert f"<4>{warn}" in lines, lines
    assert not [line for line in lines if line.startswith(("<6>", "<7>"))], lines  # no info, no debug

    lines = _journal_daemon(session_root / f"sd-{uuid.uuid4().hex[:8]}", monkeypatch, "-l", "error")
    assert not [line for line in lines if line.startswith(("<4>", "<6>", "<7>"))], lines

    lines = _journal_daemon(session_root / f"sd-{uuid.uuid4().hex[:8]}", monkeypatch, "-D", "-l", "error")
    assert f"<4>{warn}" in lines  # -D is debug, whatever --log-level says (dockerd's rule)
    assert any(line.startswith("<6>dockyard.daemon: dockyard daemon listening on ") for line in lines), lines
    assert any(line.startswith("<7>") for line in lines), lines


def _unit(name):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(UNITS / name)
    return parser


def test_the_units_say_what_dockerds_say():
    service, sock = _unit("dockyard.service"), _unit("dockyard.socket")
    s = service["Service"]
    assert (s["Type"], s["KillMode"], s["Delegate"]) == ("notify", "process", "yes")
    assert "ExecReload" not in s  # nothing to reload (README: "As a system service")
    exe, verb, *argv = s["ExecStart"].split()
    assert (exe, verb) == ("/usr/bin/dockyard", "daemon")
    assert daemon_main.parse_args(argv).host == "fd://"  # flags the daemon takes
    assert "dockyard.socket" in service["Unit"]["Requires"].split()
    assert "dockyard.socket" in service["Unit"]["After"].split()
    assert service["Install"]["WantedBy"] == "multi-user.target"
    k = sock["Socket"]
    assert "unix://" + k["ListenStream"] == daemon_main.DEFAULT_HOST  # where the CLI looks by default
    assert (k["SocketMode"], k["SocketUser"], k["SocketGroup"]) == ("0660", "root", daemon_main.DEFAULT_GROUP)
    assert "PartOf" not in sock["Unit"]  # the socket stays while the service stops
    assert sock["Install"]["WantedBy"] == "sockets.target"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="needs systemd-analyze")
def test_the_units_pass_systemd_analyze_verify(tmp_path):
    """``systemd-analyze verify`` works offline (no systemd as PID 1 needed); it
    checks that ExecStart's program exists, so the copies run this venv's."""
    dockyard = Path(sys.executable).parent / "dockyard"
    assert dockyard.exists()

    def verify(directory, service_text):
        directory.mkdir()
        shutil.copy(UNITS / "dockyard.socket", directory)
        (directory / "dockyard.service").write_text(service_text.replace("/usr/bin/dockyard", str(dockyard)))
        return subprocess.run(["systemd-analyze", "verify", "--man=no", str(directory / "dockyard.service"),
                               str(directory / "dockyard.socket")], capture_output=True, text=True, timeout=60)

    text = (UNITS / "dockyard.service").read_text()
    res = verify(tmp_path / "ours", text)
    assert res.returncode == 0 and "dockyard." not in res.stderr, res.stderr
    bad = verify(tmp_path / "bad", text.replace("KillMode=process", "KillMod=process"))  # the check can fail
    assert "Unknown key 'KillMod'" in bad.stderr, bad.stderr


@pytest.mark.skipif(not shutil.which("systemd-sysusers"), reason="needs systemd-sysusers")
def test_the_sysusers_file_makes_the_socket_group(tmp_path):
    (tmp_path / "etc").mkdir()
    res = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(UNITS / "dockyard.sysusers")],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    group = _unit("dockyard.socket")["Socket"]["SocketGroup"]
    assert [line.split(":")[0] for line in (tmp_path / "etc" / "group").read_text().splitlines()] == [group]
