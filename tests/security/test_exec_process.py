"""The process that enters a container, attacked from inside it (issue 13, hole 2).

Between its fork and its ``execve`` a process that ``exec`` or ``run`` starts
runs host code (our Python, liblxc) in the container's pid namespace, with
host file descriptors in hand.  Container root sees it there, and once its
capabilities and uid are the container's the kernel's ptrace checks let it
attach, read ``/proc/<pid>/exe`` and reopen ``/proc/<pid>/fd/N``, unless the
process is non-dumpable.  That is CVE-2016-9962 (``runc exec``'d processes
ptraced by the container's pid 1, their fds taken during initialisation);
CVE-2019-5736 (runc reached through ``/proc/<pid>/exe``) is its relative.
With no-new-privileges, loading the seccomp filter last, as runc does, left a
window in which a traced process ran what the filter refuses.

A static watcher (``c/exec_watch.c``, bind-mounted read-only) is the
container's init: it spots every new pid in ``/proc`` and hammers it with
``PTRACE_SEIZE``, ``readlink(/proc/<pid>/exe)`` and ``open(/proc/<pid>/fd/N)``
until it is gone or traced; traced, it reads the exe and the fds while the
process is stopped, and (``inject``) makes it run ``unshare(CLONE_NEWUSER)``.
The host meanwhile starts processes in that container.  Nothing may be
reached before the program runs: the exe is never the host's interpreter, no
fd names a host path, no injected call gets past the filter.

The daemons are started the way ``nohup`` or a background shell starts one
(SIGHUP, SIGQUIT and a real-time signal ignored, three signals blocked, an
inheritable fd to a host file open): every container process must still
start with default dispositions, an empty mask and only its stdio.
"""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

from dockyard.testing.busybox import make_busybox_tar
from dockyard.testing.daemon import PY, Daemon

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemons need root")

HERE = Path(__file__).resolve().parent
DRIVERS = ("native", "lxc")
EXECS = 40
HOST_PYTHON = os.path.realpath(sys.executable)
IGNORED, BLOCKED = (1, 3, 40), (10, 12, 41)  # HUP QUIT RTMIN+6; USR1 USR2 RTMIN+7
# what starts the daemon: ignores, blocks, leaves an fd open, then execs it
LAUNCHER = ("import os, signal, sys\n"
            f"for s in {IGNORED}: signal.signal(s, signal.SIG_IGN)\n"
            f"signal.pthread_sigmask(signal.SIG_BLOCK, {set(BLOCKED)})\n"
            "os.set_inheritable(os.open(sys.argv[1], os.O_RDONLY), True)\n"
            "os.execv(sys.argv[2], sys.argv[2:])\n")


@pytest.fixture(scope="module")
def helpers(cc):
    """The directory with the static helpers, for a read-only bind mount."""
    watch = cc("exec-watch", (HERE / "c" / "exec_watch.c").read_text())
    cc("fd-list", (HERE / "c" / "fd_list.c").read_text())
    return str(watch.parent)


@pytest.fixture(scope="module", params=DRIVERS)
def hostile(request):
    """A private daemon of each exec driver, started as ``nohup`` would start it,
    with busybox; ``(daemon, the host file its launcher left open)``."""
    base = Path(tempfile.mkdtemp(prefix=f"dockyard-sec-{request.param}-"))
    secret = base / "host-secret"
    secret.write_text("host only\n")
    d = Daemon(base / "d", extra_args=["--exec-driver", request.param])
    d.args = [PY, "-c", LAUNCHER, str(secret), *d.args]
    started = False
    try:
        try:
            d.start()
        except RuntimeError as exc:
            if "unsupported here" in str(exc):
                pytest.skip(f"exec driver {request.param} is unsupported here: {exc}")
            raise
        started = True
        res = d.cli("import", str(make_busybox_tar(base / "busybox.tar")), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        yield d, str(secret)
    finally:
        try:
            if started:
                client = d.sdk()
                for c in client.containers.list(all=True):
                    c.remove(force=True)
                client.close()
        finally:
            d.stop()
            d.remove_network_objects()
            leaks = d.leaks()
            shutil.rmtree(base, ignore_errors=True)
        assert leaks == []


@pytest.fixture
def client(hostile):
    c = hostile[0].sdk()
    yield c
    for ctr in c.containers.list(all=True):
        ctr.remove(force=True)
    c.close()


def _watch(client, helpers, inject=False, **kw):
    ctr = client.containers.run("busybox", ["/attack/exec-watch"] + (["inject"] if inject else []), detach=True,
                                volumes={helpers: {"bind": "/attack", "mode": "ro"}}, **kw)
    deadline = time.monotonic() + 20
    while b"READY" not in ctr.logs():
        assert time.monotonic() < deadline, ctr.logs()
        time.sleep(0.05)
    return ctr


def _findings(ctr):
    """What the watcher reached that it must not have: lines of its log."""
    time.sleep(0.3)  # its last report
    lines = ctr.logs().decode(errors="replace").splitlines()
    bad = []
    for line in lines:
        kind, _, rest = line.partition(" ")
        what = rest.partition(" ")[2]  # after the pid
        fd, _, target = what.partition(" ")
        if kind in ("EXE", "SEIZED") and (what == HOST_PYTHON or "python" in what):
            bad.append(line)  # our interpreter, seen or traced
        elif kind == "FD" and target.startswith("/") and not target.startswith(("/dev/null", "/dev/pts/")):
            bad.append(line)  # a host file (the exec log, shim.log, a state directory)
        elif kind == "OPEN" and int(fd) > 2:
            bad.append(line)  # reopened one of its fds beyond stdio
        elif kind == "INJECT" and what == "unshare=0":
            bad.append(line)  # made it run a call the seccomp filter refuses
    return lines, bad


@pytest.mark.parametrize("nnp", [False, True], ids=["default", "no-new-privileges"])
def test_exec_is_out_of_reach_until_it_runs_the_program(client, helpers, nnp):
    """CVE-2016-9962 class (a process entering the container is dumpable): `docker
    exec` repeatedly while container root traces every new pid; with
    no-new-privileges it also injects unshare(CLONE_NEWUSER), which must meet the
    seccomp filter."""
    ctr = _watch(client, helpers, inject=nnp, security_opt=["no-new-privileges"] if nnp else None)
    for _ in range(EXECS):
        assert ctr.exec_run(["sleep", "0.02"]).exit_code == 0
    lines, bad = _findings(ctr)
    assert bad == []
    assert sum(line.startswith("NEW ") for line in lines) >= EXECS // 2, lines  # it did watch them
    # and it reaches what the container runs, once it runs: the attack works
    assert any(line.startswith("SEIZED ") and line.endswith("/bin/busybox") for line in lines), lines
    if nnp and os.uname().machine == "x86_64":
        assert "unshare=-1" in "\n".join(lines), lines  # EPERM from the filter


def test_init_in_a_shared_pid_namespace_is_out_of_reach(client, helpers):
    """CVE-2016-9962 class for `run`: a container started with --pid container:W is
    traced by W's root while its init sets itself up."""
    ctr = _watch(client, helpers)
    for _ in range(12):
        client.containers.run("busybox", ["true"], pid_mode=f"container:{ctr.id}", remove=True)
    lines, bad = _findings(ctr)
    assert bad == []
    assert sum(line.startswith("NEW ") for line in lines) >= 6, lines


def _sig_status(out):
    return sorted(line.replace("\r", "") for line in out.decode().splitlines() if line.startswith(("SigIgn", "SigBlk")))


CLEAN = ["SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000"]


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_signals_start_at_their_defaults(client, tty):
    """State inherited across execve (the class runc's init closes by resetting
    signals): under nohup or a background shell every container got SIGHUP and
    SIGQUIT ignored.  `run`'s init and an exec'd process start with every
    disposition default and an empty mask."""
    cmd = ["grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"]
    assert _sig_status(client.containers.run("busybox", cmd, tty=tty, remove=True)) == CLEAN
    ctr = client.containers.run("busybox", ["sleep", "60"], detach=True, tty=tty)
    res = ctr.exec_run(cmd, tty=tty)
    assert res.exit_code == 0 and _sig_status(res.output) == CLEAN
    ctr.remove(force=True)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_only_stdio_is_inherited(client, hostile, helpers, tty):
    """Leaked host fds (the CVE-2024-21626 class): `run`'s init and an exec'd
    process hold fds 0, 1 and 2 and nothing else, not even what the daemon
    inherited."""
    secret = hostile[1]
    mount = {helpers: {"bind": "/attack", "mode": "ro"}}

    def fds(out):
        pairs = [line.replace("\r", "").split(" ", 1) for line in out.decode().splitlines() if line.strip()]
        assert secret not in out.decode()
        return sorted(p[0] for p in pairs)

    assert fds(client.containers.run("busybox", ["/attack/fd-list"], tty=tty, volumes=mount, remove=True)) \
        == ["0", "1", "2"]
    ctr = client.containers.run("busybox", ["sleep", "60"], detach=True, tty=tty, volumes=mount)
    res = ctr.exec_run(["/attack/fd-list"], tty=tty)
    assert res.exit_code == 0 and fds(res.output) == ["0", "1", "2"], res.output
    ctr.remove(force=True)
