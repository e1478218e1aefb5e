"""Which cgroup version this host uses, and where each controller is mounted.

Read from ``/proc/self/mountinfo`` rather than guessed from directory names, so a
joint ``cpu,cpuacct`` mount (with ``cpu`` and ``cpuacct`` symlinks beside it),
separate ``cpu`` and ``cpuacct`` mounts, a hybrid host (v1 controllers plus a
``cgroup2`` at ``unified`` that holds no real controller) and a pure v2 host are
all told apart.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._fs import CgroupError, read

if TYPE_CHECKING:
    from collections.abc import Iterator

V1_CONTROLLERS = {"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc", "debug"}
# v2 controllers that make the unified hierarchy worth using; a hybrid host's
# cgroup2 often holds only hugetlb (or nothing).
V2_USEFUL = {"cpu", "cpuset", "memory", "io", "pids"}


@dataclass(frozen=True)
class Layout:
    """The cgroup hierarchies of a host.

    :version:        "v1" or "v2"
    :controllers:    controller name -> mount directory of its hierarchy
                     (v2: every available controller -> the one mount)
    :hierarchies:    the distinct mount directories a cgroup is made in and joined
                     (v1: every v1 hierarchy, including named ones such as
                     ``name=systemd``; v2: the unified mount)
    :unified:        the cgroup2 mount point, or None (on a hybrid host this is
                     e.g. /sys/fs/cgroup/unified, which the v1 manager leaves alone)
    """

    version: str
    controllers: dict[str, str] = field(default_factory=dict)
    hierarchies: tuple[str, ...] = ()
    unified: str | None = None

    @classmethod
    def for_v2(cls, mount: str) -> Layout:
        """The layout of a cgroup2 mount at ``mount`` (whatever controllers it has)."""
        ctrls = read(os.path.join(mount, "cgroup.controllers"), "").split()
        return cls("v2", {c: mount for c in ctrls}, (mount,), mount)


def _unescape(path: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def parse_mountinfo(text: str) -> Iterator[tuple[str, str, list[str]]]:
    """Yield (mount point, fstype, super options list) of each cgroup mount."""
    for line in text.splitlines():
        fields = line.split(" ")
        if "-" not in fields[6:]:
            continue
        sep = fields.index("-", 6)
        fstype = fields[sep + 1]
        if fstype in ("cgroup", "cgroup2"):
            yield _unescape(fields[4]), fstype, fields[sep + 3].split(",") if len(fields) > sep + 3 else []


def detect(root: str = "/sys/fs/cgroup", mountinfo: str = "/proc/self/mountinfo") -> Layout:
    """Return the :class:`Layout` of the cgroup mounts at or under ``root``.

    v1 is chosen when v1 hierarchies carry cpu, memory or pids; v2 when the cgroup2
    mount has any of cpu, cpuset, memory, io, pids (its ``cgroup.controllers``).
    """
    root = os.path.normpath(root)
    try:
        with open(mountinfo) as fh:
            text = fh.read()
    except OSError as exc:
        raise CgroupError(f"{mountinfo}: cannot read ({exc.strerror})", exc.errno, mountinfo) from None
    controllers: dict[str, str] = {}
    hierarchies: list[str] = []
    unified: str | None = None
    for point, fstype, opts in parse_mountinfo(text):
        point = os.path.normpath(point)
        if point != root and not point.startswith(root.rstrip("/") + "/"):
            continue
        if fstype == "cgroup2":
            unified = unified or point
            continue
        names = [o for o in opts if o in V1_CONTROLLERS] + [o for o in opts if o.startswith("name=")]
        if not names or point in hierarchies or any(n in controllers for n in names):
            continue  # not a hierarchy we know, or a second mount of one we have
        hierarchies.append(point)
        for n in names:
            controllers[n] = point
    v1_useful = {"cpu", "memory", "pids"} & set(controllers)
    if unified and not v1_useful:
        v2 = Layout.for_v2(unified)
        if V2_USEFUL & set(v2.controllers):
            return v2
    if v1_useful:
        named = {k: v for k, v in controllers.items() if not k.startswith("name=")}
        return Layout("v1", named, tuple(hierarchies), unified)
    raise CgroupError(f"no usable cgroup hierarchy is mounted under {root} (see {mountinfo})", errno.ENOENT)
