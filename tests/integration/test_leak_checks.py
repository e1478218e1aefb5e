"""The leak checks themselves (:mod:`dockyard.testing.leaks`, run by tests/conftest.py
at each session's end, and by :meth:`Daemon.veths` in a test): a leak of the
session's own is reported, the same objects of another session beside it (an
other tag) are not.  Each test plants both, for real, and removes them."""

import os
import re
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from dockyard.testing import leaks
from dockyard.testing.daemon import Daemon

pytestmark = [pytest.mark.root, pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

OTHER = "0" * 6 if leaks.SESSION != "0" * 6 else "1" * 6  # another session's tag


def other(prefix):
    return prefix.replace(leaks.SESSION, OTHER)


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


def of_session(dirs=()):
    """The session's check, leaving the live daemons' empty cgroup parents alone."""
    return leaks.of_session(dirs, remove_empty=False)


def veth_name():
    return f"veth{uuid.uuid4().hex[:10]}"  # as the bridge driver names a container's


@pytest.fixture
def planted():
    """Undoes what a test plants: links, pinned namespaces, processes, cgroups, tables."""
    made = {"links": [], "pins": [], "procs": [], "cgroups": [], "netns": [], "tables": []}
    yield made
    for name in made["links"]:
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    for proc in made["procs"]:
        proc.kill()
        proc.wait()
    for pin in made["pins"]:
        subprocess.run(["umount", str(pin)], capture_output=True)
    for path in reversed(made["cgroups"]):
        os.rmdir(path)
    for name in made["netns"]:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    for table in made["tables"]:
        subprocess.run(["nft", "delete", "table", "ip", table], capture_output=True)


def pin_netns(path, planted):
    """A new network namespace pinned at ``path``, as the core pins a container's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    planted["pins"].append(path)
    return path


def veth_into(ns, planted):
    """A container's veth: its peer ``eth0`` in the namespace ``ns`` (a file)."""
    name = veth_name()
    ip("link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", str(ns))
    planted["links"].append(name)
    return name


def test_a_veth_into_a_namespace_pinned_by_a_daemon_of_the_session_is_reported(tmp_path, planted):
    ours, theirs = Daemon(tmp_path / "ours"), Daemon(tmp_path / "theirs")  # never started: their dirs matter
    mine = veth_into(pin_netns(ours.exec_root / "netns" / "c1", planted), planted)
    not_mine = veth_into(pin_netns(theirs.exec_root / "netns" / "c1", planted), planted)

    found = of_session(dirs=[ours.base])
    assert f"veth {mine}" in found and f"veth {not_mine}" not in found
    assert ours.veths() == [mine] and theirs.veths() == [not_mine]


def test_a_veth_on_a_bridge_of_the_session_is_reported(planted):
    bridges = {leaks.LINK_PREFIX + "lk": None, other(leaks.LINK_PREFIX) + "lk": None}
    for bridge in bridges:
        ip("link", "add", bridge, "type", "bridge")
        planted["links"].append(bridge)
        bridges[bridge] = name = veth_name()
        ip("link", "add", name, "type", "veth", "peer", "name", name[:-1] + "p")  # both ends on the host
        planted["links"].append(name)
        ip("link", "set", name, "master", bridge)
    mine, not_mine = bridges.values()

    found = of_session()
    assert f"veth {mine}" in found and f"veth {not_mine}" not in found
    objects = leaks.network_objects_of_session()
    assert f"link {leaks.LINK_PREFIX}lk" in objects and f"link {other(leaks.LINK_PREFIX)}lk" not in objects


def test_a_container_process_in_a_cgroup_of_the_session_is_reported_with_its_veth(planted):
    """A container that outlived its daemon: a process in the session's cgroup,
    in a namespace nothing pins, with the veth the daemon gave it."""
    found = {}
    for prefix in (leaks.CGROUP_PREFIX, other(leaks.CGROUP_PREFIX)):
        parent = f"/sys/fs/cgroup/pids/{prefix}plant"
        os.makedirs(f"{parent}/c1")
        planted["cgroups"] += [parent, f"{parent}/c1"]
        proc = subprocess.Popen(["unshare", "--net", "sh", "-c", "read x"], stdin=subprocess.PIPE)
        planted["procs"].append(proc)
        with open(f"{parent}/c1/cgroup.procs", "w") as fh:
            fh.write(str(proc.pid))
        deadline = time.monotonic() + 10  # unshare has made the namespace once the command runs
        while os.readlink(f"/proc/{proc.pid}/ns/net") == os.readlink("/proc/self/ns/net"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        found[prefix] = veth_into(f"/proc/{proc.pid}/ns/net", planted), f"{parent}/c1"
    (mine, cgroup), (not_mine, their_cgroup) = found.values()

    reported = of_session()
    assert f"veth {mine}" in reported and f"cgroup {cgroup}" in reported
    assert f"veth {not_mine}" not in reported and f"cgroup {their_cgroup}" not in reported


def test_named_namespaces_and_nft_tables_of_the_session_are_reported(planted):
    for prefix in (leaks.NETNS_PREFIX, other(leaks.NETNS_PREFIX)):
        ip("netns", "add", prefix + "plant")
        planted["netns"].append(prefix + "plant")
    for prefix in (leaks.TABLE_PREFIX, other(leaks.TABLE_PREFIX)):
        subprocess.run(["nft", "add", "table", "ip", prefix + "plant"], check=True)
        planted["tables"].append(prefix + "plant")

    found = of_session()
    assert f"netns {leaks.NETNS_PREFIX}plant" in found and f"netns {other(leaks.NETNS_PREFIX)}plant" not in found
    objects = leaks.network_objects_of_session()
    assert f"nft table ip {leaks.TABLE_PREFIX}plant" in objects
    assert f"nft table ip {other(leaks.TABLE_PREFIX)}plant" not in objects


def gone(path, timeout=10):
    """``path`` is gone within ``timeout`` s (a namespace and its veths go asynchronously)."""
    deadline = time.monotonic() + timeout
    while os.path.exists(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_nothing_is_reported_once_it_is_all_gone(tmp_path, planted):
    d = Daemon(tmp_path / "d")
    veth = veth_into(pin_netns(d.exec_root / "netns" / "c1", planted), planted)
    assert d.veths() == [veth]
    subprocess.run(["umount", str(planted["pins"].pop())], check=True)  # the namespace dies, its veths with it
    assert gone(f"/sys/class/net/{veth}")
    assert d.veths() == [] and [f for f in of_session(dirs=[d.base]) if f.startswith("veth ")] == []


PLANTING_SESSION = """
import os, subprocess
from pathlib import Path
from dockyard.testing.daemon import Daemon

def veth_into(ns):
    name = "veth" + os.urandom(5).hex()
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", ns], check=True)
    return name

def pinned(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    subprocess.run(["unshare", f"--net={path}", "true"], check=True)
    return str(path)

def test_plants(session_root):
    d = Daemon(session_root / "d")
    out = Path(os.environ["PLANTED"])
    ours = veth_into(pinned(d.exec_root / "netns" / "c1"))
    theirs = veth_into(pinned(out.parent / "theirs" / "exec" / "netns" / "c1"))
    os.makedirs(f"/sys/fs/cgroup/pids/{d.cgroup_parent}/c1")
    out.write_text(" ".join([ours, theirs, d.cgroup_parent]))
"""


def test_a_session_that_leaks_fails_naming_its_own_leaks_only(tmp_path):
    """A whole session, run by pytest with this suite's conftest: it plants a leak
    of its own and one of another session's and ends; it fails naming its own."""
    (tmp_path / "conftest.py").write_text((Path(__file__).parents[1] / "conftest.py").read_text())
    (tmp_path / "test_plant.py").write_text(textwrap.dedent(PLANTING_SESSION))
    planted = tmp_path / "planted"
    try:
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                              "test_plant.py"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={**os.environ, "PLANTED": str(planted)})
        ours, theirs, parent = planted.read_text().split()
        assert res.returncode == 1, res.stdout + res.stderr
        reported = re.search(r"Failed: leaked by the test session: (.*)", res.stdout)
        assert reported, res.stdout
        assert reported[1].split(", ") == [f"veth {ours}", f"cgroup /sys/fs/cgroup/pids/{parent}/c1"]
        # ... and the session root's check, the pin (a mount)
        assert re.search(r"Failed: leaked by the test session:\n.*mount /tmp/dockyard-test-\S+/d/exec/netns/c1", res.stdout)
        assert theirs not in res.stdout
        assert gone(f"/sys/class/net/{ours}")  # the session's own pin went with its root
        assert os.path.exists(f"/sys/class/net/{theirs}")  # another session's: left alone
    finally:
        subprocess.run(["umount", str(tmp_path / "theirs" / "exec" / "netns" / "c1")], capture_output=True)
        if planted.exists():
            parent = planted.read_text().split()[2]
            for path in (f"/sys/fs/cgroup/pids/{parent}/c1", f"/sys/fs/cgroup/pids/{parent}"):
                if os.path.isdir(path):
                    os.rmdir(path)
