"""A host user without root against the data root, the exec root and the API socket.

The daemon here is the module's own, under a directory every user may pass (as
``/var/lib`` and ``/run`` are), started with umask 000: the session's daemon
lives in a 0700 temporary directory, which would hide everything and prove
nothing.  It holds a container created with ``-e PASSWORD=<secret>`` that logged
another secret and left setuid-root copies of a program that prints its
effective uid (and of busybox) in a volume and in its own file system.  Each
test attacks as the host user ``nobody`` (``as_nobody``), or as a member of
group root who is not root, and names the class of hole it covers.
"""

import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from dockyard.testing.daemon import Daemon, ping

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="starts a daemon and becomes nobody")

HOST_PY = "/usr/bin/python3"  # not the venv's: any user runs it
NOBODY = 65534

EUID_C = r"""
#include <stdio.h>
#include <unistd.h>
int main(void) { printf("%d\n", (int)geteuid()); return 0; }
"""

#: run by the attacker: every file it can read under the roots it gets, searched
#: for the secrets; ``os.walk`` skips what it cannot list, as an attacker must
HUNT = r"""
import os, sys
roots, needles = sys.argv[1].split(":"), [n.encode() for n in sys.argv[2:]]
for root in roots:
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                st = os.lstat(p)
                if not os.path.isfile(p) or os.path.islink(p) or st.st_size > (64 << 20):
                    continue
                with open(p, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            for n in needles:
                if n in data:
                    print(p, n.decode())
"""

#: run by the attacker: which of the paths it can open and read
READ = r"""
import sys
for p in sys.argv[1:]:
    try:
        with open(p, "rb") as fh:
            fh.read(1)
        print(p)
    except OSError:
        pass
"""


def as_group_root(*cmd):
    """Run ``cmd`` as uid nobody in group root (gid 0), a user the 0710 directories
    let pass (through a shell, as ``as_nobody``: setpriv's own execve still has
    root's capabilities)."""
    return subprocess.run(["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--groups=0", "--",
                           "/bin/sh", "-c", 'exec "$@"', "sh", *cmd], capture_output=True, text=True, timeout=60)


def start(d, umask=0o022):
    """Start ``d`` with the given umask (the daemon inherits it)."""
    old = os.umask(umask)
    try:
        d.start()
    finally:
        os.umask(old)


class Victim:
    """The module's daemon and what the attacks look for in it."""

    def __init__(self, d, password, log_secret):
        self.d, self.password, self.log_secret = d, password, log_secret
        client = d.sdk()
        try:
            attrs = client.containers.get("victim").attrs
            self.log_path = attrs["LogPath"]
            self.cid = attrs["Id"]
            self.volume = Path(client.volumes.get("loot").attrs["Mountpoint"])
        finally:
            client.close()
        self.data_root, self.exec_root = d.data_root, d.exec_root
        self.bundle_config = d.exec_root / "containers" / self.cid / "config.json"
        self.db = [d.data_root / ("dockyard.db" + s) for s in ("", "-wal", "-shm")]

    def blobs(self):
        return sorted((self.data_root / "content" / "blobs" / "sha256").iterdir())

    def setuid_copies(self):
        """Host paths of the setuid programs the container left: in the volume and in
        its own writable layer (found as root)."""
        found = [self.volume / "euid", self.volume / "busybox"]
        for dirpath, _, files in os.walk(self.data_root / "storage"):
            if dirpath.endswith("/tmp") and "euid" in files:
                found.append(Path(dirpath) / "euid")
        return found


@pytest.fixture(scope="module")
def victim(busybox_tar, cc):
    helper = cc("euid", EUID_C)
    base = Path(tempfile.mkdtemp(prefix="dockyard-sec-root-"))
    base.chmod(0o755)  # as /var/lib: every user passes it, so only the data root's own modes protect it
    (base / "d").mkdir(mode=0o755)
    (base / "d" / "daemon.log").touch(mode=0o600)
    d = Daemon(base / "d")
    password, log_secret = "pw-" + secrets.token_hex(12), "logged-" + secrets.token_hex(12)
    try:
        start(d, umask=0)  # the daemon must not depend on the umask it was started with
        d.cli("import", str(busybox_tar), "busybox", check=True)
        d.cli("volume", "create", "loot", check=True)
        d.cli("run", "-d", "--name", "victim", "--network", "none", "-e", f"PASSWORD={password}",
              "-v", "loot:/v", "-v", f"{helper.parent}:/h:ro", "busybox", "sh", "-c",
              f"echo {log_secret}; cp /h/euid /v/euid && cp /bin/busybox /v/busybox && cp /h/euid /tmp/euid && "
              "chmod 4755 /v/euid /v/busybox /tmp/euid && touch /v/ready; exec sleep 1000", check=True)
        v = Victim(d, password, log_secret)
        deadline = time.monotonic() + 20
        while not ((v.volume / "ready").exists() and log_secret in Path(v.log_path).read_text()):
            assert time.monotonic() < deadline, "the victim container did not get ready"
            time.sleep(0.1)
        assert stat.S_IMODE(os.stat(v.volume / "euid").st_mode) == 0o4755
        yield v
    finally:
        if d.proc is not None and d.proc.poll() is not None:
            start(d)  # a test left it stopped: its container still runs and must go
        if d.proc is not None:
            d.cli("rm", "-f", "victim")
            d.cli("volume", "rm", "loot")
        d.stop()
        d.remove_network_objects()
        left = d.leaks()
        if not left:  # else kept for a look
            shutil.rmtree(base, ignore_errors=True)
        assert left == [], left


def hunt(as_user, v):
    """What the attacker finds of the secrets in every file it can read under the roots."""
    res = as_user(HOST_PY, "-c", HUNT, f"{v.data_root}:{v.exec_root}", v.password, v.log_secret)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def readable(as_user, paths):
    res = as_user(HOST_PY, "-c", READ, *map(str, paths))
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def run_setuid_copies(as_user, v):
    """``[(path, euid printed)]`` for each setuid copy the attacker managed to run."""
    got = []
    for path in v.setuid_copies():
        cmd = [str(path), "id", "-u"] if path.name == "busybox" else [str(path)]
        res = as_user(*cmd)
        if res.returncode == 0:
            got.append((str(path), res.stdout.strip()))
    return got


def test_the_secrets_are_on_disk_for_root(victim):
    """Control: the secrets the attacks look for are in the store and the log, so
    finding none of them means something."""
    found = hunt(lambda *cmd: subprocess.run(cmd, capture_output=True, text=True, timeout=60), victim)
    assert any(victim.password in line for line in found), found
    assert any(victim.log_secret in line for line in found), found
    assert all(p.exists() for p in victim.db)


def test_host_user_cannot_read_the_store(victim, as_nobody):
    """Class: secrets at rest readable by other host users.  ``dockyard.db`` and its
    ``-wal``/``-shm`` hold every container's environment (passwords, tokens): the
    data root is 0710 and the files 0600, as Docker's."""
    assert readable(as_nobody, victim.db) == []


def test_host_user_finds_no_secret_under_the_roots(victim, as_nobody):
    """Class: secrets at rest readable by other host users.  Everything nobody can
    list and read under the data root and the exec root (store, logs, bundles'
    config.json, shim state) is searched for the container's env and log line."""
    assert hunt(as_nobody, victim) == []


def test_host_user_cannot_read_content_blobs(victim, as_nobody):
    """Class: image content readable by other host users (a private image's layers
    and configs): blobs are 0400 in 0700 directories."""
    blobs = victim.blobs()
    assert blobs
    assert readable(as_nobody, blobs) == []


def test_group_root_cannot_read_logs_bundles_or_the_store(victim):
    """Class: secrets at rest readable through group permissions.  The 0710
    directories let group root pass (Docker's layout, whose group is a remapped
    root's), so the files that hold logs and config must themselves be 0600:
    a json-file log made 0640 root:root was readable by any member of group root."""
    paths = [victim.log_path, victim.bundle_config, *victim.db]
    assert readable(as_group_root, paths) == []
    assert run_setuid_copies(as_group_root, victim) == []


def test_host_user_cannot_run_a_setuid_binary_a_container_left(victim, as_nobody):
    """CVE-2021-41091: a container copies a program into a volume (and into its own
    file system) and makes it setuid root; a host user who can reach the volume's
    ``_data`` (or the layer) runs it with euid 0.  The data root (0710), the
    volumes' home (0700) and ``storage/`` (0700) make it unreachable."""
    ran = run_setuid_copies(as_nobody, victim)
    assert not any(euid == "0" for _, euid in ran), ran
    assert ran == []


#: below the roots, what the container's image or the container itself decides (a
#: layer's files, a volume's content, its /dev/shm), not the daemon
CONTAINER_TREES = ("diff", "merged", "work", "_data", "shm")


def test_nothing_the_daemon_made_is_writable_by_others(victim):
    """Class: daemon state other users can tamper with.  The daemon was started
    with umask 000; it works with umask 0022 as dockerd does (setDefaultUmask), so
    nothing it made under the roots is writable by other users."""
    loose = []
    for root in (victim.data_root, victim.exec_root):
        for dirpath, dirs, files in os.walk(root):
            dirs[:] = [x for x in dirs if x not in CONTAINER_TREES]
            for name in dirs + files:
                st = os.lstat(os.path.join(dirpath, name))
                if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o002:
                    loose.append(f"{oct(stat.S_IMODE(st.st_mode))} {os.path.join(dirpath, name)}")
    assert loose == []


#: watches directory argv[1] (inotify, asleep until something happens there) and
#: stat()s argv[1]/argv[2] on each event, the first right as the socket is made;
#: ends when argv[3] is made there and prints the union of the permission bits it
#: saw (octal) and how many times it saw the file
WATCH_C = r"""
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    char path[PATH_MAX], buf[8192] __attribute__((aligned(8)));
    struct stat st;
    unsigned seen = 0, hits = 0;
    snprintf(path, sizeof path, "%s/%s", argv[1], argv[2]);
    int fd = inotify_init1(0);
    if (fd < 0 || inotify_add_watch(fd, argv[1], IN_CREATE | IN_ATTRIB) < 0)
        return 2;
    puts("ready");
    fflush(stdout);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0)
            return 3;
        if (stat(path, &st) == 0) {
            seen |= st.st_mode & 07777;
            hits++;
        }
        for (char *p = buf; p < buf + n; p += sizeof(struct inotify_event) + ((struct inotify_event *)p)->len)
            if (((struct inotify_event *)p)->len && strcmp(((struct inotify_event *)p)->name, argv[3]) == 0) {
                printf("%o %u\n", seen, hits);
                return 0;
            }
    }
}
"""


def test_api_socket_is_never_connectable_by_others(victim, as_nobody, cc):
    """Class: the API socket (root on the host) open to every user.  Started with
    umask 000, the daemon binds its socket; a watcher woken by the socket's
    creation (inotify, at top priority) reads its mode right then and at every
    change until the daemon answers: it never gives other users anything, and
    nobody's connect is refused."""
    d = victim.d
    directory, name = os.path.split(d.sock)
    d.stop()
    watcher = subprocess.Popen(["nice", "-n", "-20", str(cc("sockwatch", WATCH_C)), directory, name, ".watched"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert watcher.stdout.readline() == "ready\n"
        start(d, umask=0)
    finally:
        Path(directory, ".watched").touch()
        try:
            out, _ = watcher.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait()
            raise
        os.unlink(os.path.join(directory, ".watched"))
    seen, hits = out.split()
    assert int(hits) > 0 and int(seen, 8) & 0o007 == 0, f"modes seen: {seen}"
    assert stat.S_IMODE(os.stat(d.sock).st_mode) == 0o660
    res = as_nobody(HOST_PY, "-c", "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])",
                    d.sock)
    assert res.returncode != 0 and "PermissionError" in res.stderr, res.stderr


def _loosen(v):
    """Give the roots the modes an older Dockyard made: 0755 directories, 0644 files."""
    dirs = [v.data_root, v.exec_root, v.volume.parent, v.data_root / "storage" / "overlay",
            v.data_root / "containers" / v.cid, v.exec_root / "containers" / v.cid,
            v.data_root / "content" / "blobs", v.data_root / "content" / "blobs" / "sha256"]
    dirs += [p for root in (v.data_root, v.exec_root) for p in root.iterdir() if p.is_dir()]
    for p in dirs:
        p.chmod(0o755)
    for p in [*v.db, Path(v.log_path), v.bundle_config]:
        if p.exists():
            p.chmod(0o644)
    for p in v.blobs():
        p.chmod(0o444)


def test_an_older_data_root_is_closed_at_start(victim, as_nobody):
    """CVE-2021-41091 and secrets at rest, on a data root made by an older Dockyard
    (0755 directories, 0644 files): the next start gives it the modes above, and
    the attacks of this module find nothing again."""
    v = victim
    v.d.stop()
    _loosen(v)
    assert readable(as_nobody, [v.db[0]]) == [str(v.db[0])]  # open, as an older Dockyard left it
    start(v.d)
    assert stat.S_IMODE(os.stat(v.data_root).st_mode) == 0o710
    assert stat.S_IMODE(os.stat(v.exec_root).st_mode) == 0o710
    for p in [*v.db, Path(v.log_path), v.bundle_config]:
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    assert readable(as_nobody, v.db) == []
    assert readable(as_group_root, [v.log_path, v.bundle_config]) == []
    assert readable(as_nobody, v.blobs()) == []
    assert hunt(as_nobody, v) == []
    assert run_setuid_copies(as_nobody, v) == []
    assert v.d.sdk().containers.get("victim").status == "running"  # re-attached


def test_bind_unix_under_umask_000_gives_only_the_group(tmp_path, monkeypatch):
    """Class: the API socket open to every user.  ``bind_unix`` itself, under umask
    000: the socket file is born 0600 (its mode is read at the first call after
    ``bind``, deterministically, where the watcher above is quick), then becomes 0660
    root:GROUP; an unknown ``-G`` group is refused, the default one falls back to
    root's group."""
    from dockyard.daemon.main import DEFAULT_GROUP, bind_unix, socket_gid
    from dockyard.errors import ConfigError

    tmp_path.chmod(0o755)
    path = str(tmp_path / "api.sock")
    born, chown = [], os.chown

    def first_call_after_bind(p, uid, gid):
        born.append(stat.S_IMODE(os.stat(p).st_mode))
        chown(p, uid, gid)

    monkeypatch.setattr(os, "chown", first_call_after_bind)
    old = os.umask(0)
    try:
        sock = bind_unix(path, gid=100)
    finally:
        os.umask(old)
        monkeypatch.undo()
    try:
        st = os.stat(path)
        assert born == [0o600]
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o660, 0, 100)
    finally:
        sock.close()
    with pytest.raises(ConfigError, match="no-such-group-here"):
        socket_gid("no-such-group-here")
    assert socket_gid("") == 0 and socket_gid("100") == 100
    if not _group_exists(DEFAULT_GROUP):
        assert socket_gid(DEFAULT_GROUP) == 0


def _group_exists(name):
    import grp

    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def test_socket_group_passes_the_exec_root_to_the_socket_only():
    """Class: the API socket open to every user.  In the default layout the socket
    is in the exec root (0710): ``-G GROUP`` gives the exec root that group, so its
    members reach the socket and nothing else there; other users reach nothing."""
    base = Path(tempfile.mkdtemp(prefix="dockyard-sec-sock-"))
    base.chmod(0o755)
    d = Daemon(base / "d")
    d.sock = str(d.exec_root / "dockyard.sock")
    d.host = f"unix://{d.sock}"
    d.args[d.args.index("-H") + 1] = d.host
    d.args += ["-G", "users"]  # gid 100
    in_users = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--groups=100", "--"]
    nobody = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); "
             "s.sendall(b'GET /_ping HTTP/1.1\\r\\nHost: d\\r\\nConnection: close\\r\\n\\r\\n'); print(s.recv(12).decode())")
    try:
        d.start()
        st = os.stat(d.exec_root)
        assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o710, 100)
        member = subprocess.run([*in_users, HOST_PY, "-c", probe, d.sock], capture_output=True, text=True, timeout=30)
        assert member.stdout.startswith("HTTP/1.1 200"), member.stderr
        listing = subprocess.run([*in_users, "ls", str(d.exec_root)], capture_output=True, text=True, timeout=30)
        assert listing.returncode != 0  # pass, not list
        other = subprocess.run([*nobody, HOST_PY, "-c", probe, d.sock], capture_output=True, text=True, timeout=30)
        assert "PermissionError" in other.stderr, other
    finally:
        d.stop()
        d.remove_network_objects()
        left = d.leaks()
        shutil.rmtree(base, ignore_errors=True)
    assert left == [] and not ping(d.sock)
