"""What a test session leaves on the host, counted among its own objects only.

Test sessions share hosts: two developers' runs, CI beside a developer, and the
workers of one ``pytest -n`` run, each a session of its own.  A check that diffs
the whole host before and after (every veth, every ``dockyard-test-*`` cgroup)
flags the others' objects, and deletes them if it cleans up.  So every host-wide
object a session's daemons and tests name carries the session's tag,
:data:`SESSION` (random, one per process), and the checks look only at those:

* cgroup parents and temporary directories: ``dockyard-test-<tag>-...``
  (:data:`CGROUP_PREFIX`);
* bridges and other links: ``dy<tag>...`` (:data:`LINK_PREFIX`, short enough to
  leave 7 characters of an interface name's 15);
* nft tables: ``dockyard_<tag>_...`` (:data:`TABLE_PREFIX`);
* named network namespaces (``/run/netns``): ``dytest-<tag>-...``
  (:data:`NETNS_PREFIX`).

What the session does not name is attributed by what holds it.  A container's
veth is named by the bridge driver after network and endpoint ids; it is ours
when its master is a bridge of ours or its peer lives in a network namespace of
ours (:func:`veths`): one pinned under a directory of ours, or held by a thread
or a descriptor of a process of ours -- a process naming such a directory (a
daemon, a shim) or in a cgroup of ours (a container) (:func:`namespaces_of`).
A veth pair dies with the namespace of either end, so a veth that outlives its
container always has such a holder.
"""

import fcntl
import os
import subprocess
import uuid
from collections.abc import Iterable
from pathlib import Path

#: this process's tag: the test session's, as each pytest-xdist worker is a session
SESSION = uuid.uuid4().hex[:6]
CGROUP_PREFIX = f"dockyard-test-{SESSION}-"
LINK_PREFIX = f"dy{SESSION}"
TABLE_PREFIX = f"dockyard_{SESSION}_"
NETNS_PREFIX = f"dytest-{SESSION}-"

CGROUP_ROOT = "/sys/fs/cgroup"
NETNS_RUN_DIR = "/run/netns"
_NS_GET_NSTYPE = 0xB703  # ioctl of <linux/nsfs.h>: the CLONE_NEW* kind of a namespace file
_CLONE_NEWNET = 0x40000000


def mounts_under(prefix: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``prefix`` (in mount order)."""
    return [target for target, _fstype in _mounts_under(prefix)]


def _mounts_under(prefix: str | os.PathLike[str]) -> list[tuple[str, str]]:
    prefix = str(prefix).rstrip("/") or "/"
    out = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            fields = line.split()
            target = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            if target == prefix or target.startswith(prefix + "/"):
                out.append((target, fstype))
    return out


def _cmdlines() -> dict[int, str]:
    """``{pid: command line}`` of every process but this one."""
    found = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            found[int(pid)] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def processes_mentioning(text: str) -> list[str]:
    """``["12: cmd args", ...]``: the processes whose command line contains ``text``."""
    return [f"{pid}: {cmd.strip()}" for pid, cmd in _cmdlines().items() if text in cmd]


def cgroups_under(parent: str, root: str = CGROUP_ROOT, remove_empty: bool = True) -> list[str]:
    """Cgroups left below ``parent`` in any hierarchy; an empty ``parent`` is removed
    (unless ``remove_empty`` is false: a live daemon's, say)."""
    left: list[str] = []
    try:
        hierarchies = sorted(os.listdir(root))
    except OSError:
        return left
    for hier in hierarchies:
        top = os.path.join(root, hier, parent)
        if not os.path.isdir(top):
            continue
        children = [os.path.join(dirpath, d) for dirpath, dirs, _ in os.walk(top) for d in dirs]
        left += children
        if not children and remove_empty:
            try:
                os.rmdir(top)
            except OSError:
                left.append(top)
    return left


def cgroup_parents(prefix: str = CGROUP_PREFIX, root: str = CGROUP_ROOT) -> list[str]:
    """The names of the cgroup parents of any hierarchy that start with ``prefix``."""
    found = set()
    try:
        hierarchies = os.listdir(root)
    except OSError:
        return []
    for hier in hierarchies:
        try:
            found |= {d for d in os.listdir(os.path.join(root, hier)) if d.startswith(prefix)}
        except OSError:
            continue
    return sorted(found)


def pids_in_cgroups(parents: Iterable[str], root: str = CGROUP_ROOT) -> set[int]:
    """The pids in any cgroup at or below one of ``parents``, in any hierarchy."""
    pids = set()
    for hier in os.listdir(root) if os.path.isdir(root) else ():
        for parent in parents:
            for dirpath, _dirs, files in os.walk(os.path.join(root, hier, parent)):
                if "cgroup.procs" in files:
                    try:
                        pids |= {int(p) for p in Path(dirpath, "cgroup.procs").read_text().split()}
                    except OSError:
                        continue
    return pids


def links_named(prefix: str) -> list[str]:
    """Network interfaces of the host whose name starts with ``prefix``."""
    try:
        return sorted(n for n in os.listdir("/sys/class/net") if n.startswith(prefix))
    except OSError:
        return []


def nft_tables() -> list[str]:
    """``["inet dockyard", ...]``: the host's nftables tables (empty without nft)."""
    try:
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ")]


def netns_named(prefix: str = NETNS_PREFIX) -> list[str]:
    """Named network namespaces (``ip netns``'s, in ``/run/netns``) starting with ``prefix``."""
    try:
        return sorted(n for n in os.listdir(NETNS_RUN_DIR) if n.startswith(prefix))
    except OSError:
        return []


def _is_netns(path: str) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == _CLONE_NEWNET
    except OSError:
        return False
    finally:
        os.close(fd)


def namespaces_of(dirs: Iterable[str | os.PathLike[str]] = (), cgroup_parents: Iterable[str] = (),
                  pids: Iterable[int] = ()) -> dict[int, str]:
    """The network namespaces that are ours, as ``{inode: a path that opens it}``:
    pinned (an ``nsfs`` mount) under one of ``dirs``, or the namespace of a thread or
    a descriptor of a process of ours: one of ``pids``, one whose command line
    names one of ``dirs``, or one in a cgroup under one of ``cgroup_parents``.
    The host's own namespace is never among them."""
    host = os.stat("/proc/self/ns/net").st_ino
    found: dict[int, str] = {}

    def add(path: str) -> None:
        try:
            inode = os.stat(path).st_ino
        except OSError:
            return
        if inode != host and inode not in found and _is_netns(path):
            found[inode] = path

    names = [str(d) for d in dirs]
    for d in names:
        for target, fstype in _mounts_under(d):
            if fstype == "nsfs":
                add(target)
    ours = set(pids) | pids_in_cgroups(cgroup_parents)
    ours |= {pid for pid, cmd in _cmdlines().items() if any(d in cmd for d in names)}
    for pid in sorted(ours):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone meanwhile
        for tid in tasks:
            add(f"/proc/{pid}/task/{tid}/ns/net")
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("net:["):
                    add(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
    return found


def veths(namespaces: dict[int, str] | Iterable[str] = (), bridges: Iterable[str] = ()) -> list[str]:
    """The host's veths (sorted names) whose peer is in one of ``namespaces`` (paths
    that open them, as :func:`namespaces_of` gives) or whose master is one of
    ``bridges``: what a daemon, or a session, still has of its containers'."""
    from pyroute2 import IPRoute  # only here: the rest of the kit needs no netlink

    paths = list(namespaces.values()) if isinstance(namespaces, dict) else list(namespaces)
    bridges = set(bridges)
    with IPRoute() as ipr:
        links = list(ipr.get_links())  # first: listing a veth gives its peer's namespace an id here
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        nsids = set()
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                answer = ipr.get_netnsid(fd=fd) or {}
            finally:
                os.close(fd)
            if answer.get("nsid") not in (None, -1, 0xFFFFFFFF):
                nsids.add(answer["nsid"])
    found = []
    for link in links:
        if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND") != "veth":
            continue
        master = names.get(link.get_attr("IFLA_MASTER"))
        if link.get_attr("IFLA_LINK_NETNSID") in nsids or (master is not None and master in bridges):
            found.append(link.get_attr("IFLA_IFNAME"))
    return sorted(found)


def of_session(dirs: Iterable[str | os.PathLike[str]] = (), remove_empty: bool = True) -> list[str]:
    """What this session's daemons, containers and tests left on the host, among
    the session's objects only: ``["veth veth0123456789", "netns dytest-...",
    "cgroup /sys/fs/cgroup/pids/dockyard-test-.../x"]``.  ``dirs``: the session's
    directories (its daemons' bases).  Empty cgroup parents are removed on the way
    unless ``remove_empty`` is false (while the session's daemons still run)."""
    parents = cgroup_parents()
    out = [f"veth {v}" for v in veths(namespaces_of(dirs, parents), links_named(LINK_PREFIX))]
    out += [f"netns {n}" for n in netns_named()]
    out += [f"cgroup {c}" for p in parents for c in cgroups_under(p, remove_empty=remove_empty)]
    return out


def network_objects_of_session() -> list[str]:
    """This session's bridges, links and nft tables still on the host: none should be
    once the daemons are stopped and their default bridges and tables removed."""
    out = [f"link {name}" for name in links_named(LINK_PREFIX)]
    out += [f"nft table {t}" for t in nft_tables() if t.split(" ", 1)[-1].startswith(TABLE_PREFIX)]
    return out
