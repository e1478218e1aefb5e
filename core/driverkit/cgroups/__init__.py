"""A cgroup manager for containers: make a cgroup, apply OCI ``linux.resources``,
put processes in it, freeze, measure, kill and remove it.

Stdlib only and free of other dockyard imports, so the shim and tests can use it
standalone; callers translate :class:`CgroupError` into their own errors.

    CgroupError (OSError)    every failure; the message names the file (or OCI
                             field) and the value; ``errno`` is the kernel's

Modules:

    layout   detect(): which version, which controller is mounted where
    _oci     checks linux.resources before anything is written
    v1, v2   the per-version backends (directories, files, freezer, events)
    ebpf     device rules on v2 (a BPF_PROG_TYPE_CGROUP_DEVICE program)
    stats    Docker Engine API ``/containers/{id}/stats`` shapes
    _fs      the one place where cgroup files are read and written

``Cgroup`` holds no state beyond its layout and path, so several objects (or
threads, or processes) may manage the same cgroup; the caller serialises changes.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Any

from . import _fs, _oci
from ._fs import CgroupError
from .layout import Layout, detect
from .stats import stats_v1, stats_v2
from .v1 import V1
from .v2 import V2

__all__ = ["Cgroup", "CgroupError", "Layout", "detect"]


def _join_hint(err: int | None) -> str | None:
    hints = {errno.ENOSPC: "its cpuset.cpus or cpuset.mems is empty",
             errno.ESRCH: "no such process",
             errno.EBUSY: "on v2 a cgroup with child cgroups cannot hold processes",
             errno.ENOENT: "the cgroup does not exist; create() it first"}
    return hints.get(err) if err is not None else None


class Cgroup:
    """The cgroup ``path`` (e.g. ``"dockyard/<id>"``; a leading "/" means the same)
    in every hierarchy of ``layout``."""

    def __init__(self, layout: Layout, path: str) -> None:
        parts = [p for p in str(path).split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise CgroupError(f"cgroup path {path!r}: must name a cgroup below the root, without . or ..",
                              errno.EINVAL)
        self.layout, self.path = layout, "/".join(parts)
        self._b: V1 | V2 = (V1 if layout.version == "v1" else V2)(layout, self.path)
        self._freeze_file = "freezer.state" if layout.version == "v1" else "cgroup.freeze"

    def __repr__(self) -> str:
        return f"Cgroup({self.layout.version}, {self.path!r})"

    # ------------------------------------------------------------ lifecycle
    def create(self, resources: dict[str, Any] | None = None) -> None:
        """Make the cgroup in every hierarchy (idempotent) and apply ``resources``.

        ``resources`` is checked first, so bad input makes nothing.  v1: a new
        cpuset level gets its parent's cpus/mems; v2: parents delegate the
        controllers (``cgroup.subtree_control``).  On failure the directories this
        call made are removed again and CgroupError is raised.
        """
        res = _oci.normalise(resources, self.layout.version)
        created: list[str] = []
        try:
            self._b.make(created)
            self._b.apply(res)
        except BaseException:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
            raise

    def update(self, resources: dict[str, Any]) -> None:
        """Apply only the keys of ``resources`` given (``docker update``).  v1
        device rules add to the earlier ones; on v2 the list given replaces the
        device policy."""
        res = _oci.normalise(resources, self.layout.version)
        if not self.exists():
            raise CgroupError(f"cgroup {self.path}: does not exist", errno.ENOENT)
        self._b.apply(res)

    def exists(self) -> bool:
        """True while the cgroup's directory exists in any hierarchy."""
        return any(os.path.isdir(d) for d in self._b.dirs())

    def destroy(self, timeout: float = 5.0) -> None:
        """Kill every process, then remove the cgroup (and any child cgroups) from
        every hierarchy, retrying briefly while the kernel still says EBUSY.

        Idempotent: a cgroup already gone is not an error."""
        deadline = time.monotonic() + timeout
        problem: CgroupError | None = None
        try:
            self.kill_all(timeout=timeout)
        except CgroupError as exc:
            problem = exc
        for d in self._b.dirs():
            while True:
                failure = _fs.rmdir_tree(d)
                if failure is None or failure.errno != errno.EBUSY or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            if failure is not None and problem is None:
                problem = CgroupError(f"{d}: cannot remove cgroup ({_fs.reason(failure)})", failure.errno, d)
        if problem is not None:
            raise problem

    # ------------------------------------------------------------ places
    def dirs(self) -> list[str]:
        """The cgroup's directory in every hierarchy."""
        return list(self._b.dirs())

    def oom_file(self) -> str | None:
        """The file whose ``oom_kill N`` line counts OOM kills in the cgroup, or None."""
        d = self._b.dir("memory")
        if d is None:
            return None
        return os.path.join(d, "memory.oom_control" if self.layout.version == "v1" else "memory.events")

    def mounts(self) -> list[dict[str, Any]]:
        """What a container's ``/sys/fs/cgroup`` shows: ``[{"name": directory
        name, "options": mount options, "path": this cgroup there, "version"}]``."""
        if self.layout.version == "v2":
            return [{"name": "", "options": "", "path": self._b.dirs()[0], "version": 2}]
        out: list[dict[str, Any]] = []
        for hier, d in zip(self.layout.hierarchies, self._b.dirs()):
            names = sorted(c for c, m in self.layout.controllers.items() if m == hier)
            opts = ",".join(names) or "none,name=" + os.path.basename(hier)
            out.append({"name": os.path.basename(hier), "options": opts, "path": d, "version": 1})
        return out

    # ------------------------------------------------------------ processes
    def procs_files(self) -> list[str]:
        """Absolute paths of the ``cgroup.procs`` files a pid is written to (one
        per v1 hierarchy, one on v2)."""
        return [os.path.join(d, "cgroup.procs") for d in self._b.dirs()]

    def join(self, pid: int) -> None:
        """Move process ``pid`` (and its threads) into the cgroup."""
        for path in self.procs_files():
            _fs.write(path, int(pid), _join_hint)

    def pids(self) -> list[int]:
        """Every process in the cgroup or its child cgroups, this cgroup's first."""
        out: list[int] = []
        seen: set[int] = set()
        for dirpath, dirs, _files in os.walk(self._b.pid_root()):
            dirs.sort()
            for pid in _fs.read_procs(os.path.join(dirpath, "cgroup.procs")):
                if pid not in seen:
                    seen.add(pid)
                    out.append(pid)
        return out

    def kill_all(self, sig: int = signal.SIGKILL, timeout: float = 5.0) -> None:
        """Send ``sig`` to every process.  For SIGKILL, repeat until the cgroup is
        empty (v2: ``cgroup.kill``; v1: freeze, signal, thaw, so that nothing forks
        in between and frozen processes can die), or raise CgroupError after
        ``timeout`` s.  Other signals are sent once, after thawing a frozen cgroup.
        """
        if not self.exists():
            return
        if sig != signal.SIGKILL:
            if self._frozen_or_none():
                self.thaw(timeout)
            for pid in self.pids():
                _signal(pid, sig)
            return
        deadline, delay = time.monotonic() + timeout, 0.001
        while self.pids():
            if not self._b.kill_now():
                self._kill_frozen(sig)
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
            left = self.pids()
            if left and time.monotonic() > deadline:
                raise CgroupError(f"cgroup {self.path}: processes {left} still there {timeout} s after SIGKILL",
                                  errno.EBUSY)

    def _kill_frozen(self, sig: int) -> None:
        try:
            self.freeze(timeout=1.0)
        except CgroupError:
            pass  # no freezer, or a process stuck in the kernel: kill unfrozen
        try:
            for pid in self.pids():
                _signal(pid, sig)
        finally:
            try:
                self.thaw(timeout=1.0)
            except CgroupError:
                pass

    def _frozen_or_none(self) -> bool:
        try:
            return self._b.frozen_state() is not False
        except CgroupError:
            return False  # no freezer

    # ---------------------------------------------------------------- freezer
    def freeze(self, timeout: float = 5.0) -> None:
        """Freeze every process; return once the kernel reports the cgroup frozen
        (v1 ``freezer.state`` FROZEN, v2 ``cgroup.events`` "frozen 1").  After
        ``timeout`` s it thaws again and raises CgroupError."""
        self._wait_freezer(True, timeout)

    def thaw(self, timeout: float = 5.0) -> None:
        """Let the processes run again; return once the kernel reports it."""
        self._wait_freezer(False, timeout)

    def frozen(self) -> bool:
        return self._b.frozen_state() is True

    def _wait_freezer(self, frozen: bool, timeout: float) -> None:
        deadline, n = time.monotonic() + timeout, 0
        self._b.set_frozen(frozen)
        while self._b.frozen_state() is not frozen:
            if time.monotonic() > deadline:
                if frozen:
                    try:
                        self._b.set_frozen(False)
                    except CgroupError:
                        pass
                value = ("FROZEN" if frozen else "THAWED") if self.layout.version == "v1" else int(frozen)
                raise CgroupError(f"{self._freeze_file}: cannot set {value} (not done after {timeout} s"
                                  + ("; thawed again)" if frozen else ")"), errno.ETIMEDOUT)
            n += 1
            if n % 10 == 0:
                self._b.set_frozen(frozen)  # v1 can stay FREEZING when tasks arrived meanwhile
            time.sleep(min(0.0005 * 2 ** min(n, 6), 0.02))

    # ---------------------------------------------------------------- usage
    def oom_kills(self) -> int:
        """How many processes the OOM killer has killed in the cgroup."""
        return self._b.oom_kills()

    def stats(self) -> dict[str, Any]:
        """Usage as the Docker Engine API's ``/containers/{id}/stats`` reports it
        (``cpu_stats``, ``memory_stats``, ``pids_stats``, ``blkio_stats``)."""
        return stats_v1(self._b) if isinstance(self._b, V1) else stats_v2(self._b)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
