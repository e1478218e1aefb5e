"""ContainerStats of a pod container: the engine's ``docker stats`` sample
(the exec driver's cgroup numbers) in the CRI's terms.

* cpu: ``usage_core_nano_seconds`` is the cgroup's total CPU time; the kubelet
  computes ``usage_nano_cores`` itself from two samples when it is missing, but
  we give it too, from the last sample of the same container;
* memory: ``working_set_bytes`` is usage less inactive file pages (cAdvisor's
  and the docker CLI's rule), ``usage_bytes``, ``rss_bytes``, page faults;
* writable layer: the bytes the container's layer adds to its image (the
  storage driver's walk, as ``docker ps -s``), its file system's identity the
  data root's mount point.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Protocol

from ..model.container import ContainerRecord
from . import ctrmeta
from .api import api_pb2 as pb


class Containers(Protocol):
    def stats(self, cid: str, previous: dict | None = None) -> dict: ...

    def rw_size(self, rec: ContainerRecord) -> int: ...


def _mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


class Stats:
    """Samples of ``containers`` (the engine's facade); ``data_root`` holds the layers."""

    def __init__(self, containers: Containers, data_root: str) -> None:
        self.containers = containers
        self.fs_mount = _mount_point(data_root)
        self._last: dict[str, tuple[int, int]] = {}  # id -> (time ns, cpu ns) of its last sample
        self._lock = threading.Lock()

    def of(self, rec: ContainerRecord) -> pb.ContainerStats:
        now = time.time_ns()
        attrs = pb.ContainerAttributes(id=rec.id, metadata=ctrmeta.metadata(rec), labels=ctrmeta.own_labels(rec),
                                       annotations=ctrmeta.annotations_of(rec))
        sample: dict[str, Any] = self.containers.stats(rec.id) if rec.state.running else {}
        cpu_ns = int(((sample.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
        cpu = pb.CpuUsage(timestamp=now, usage_core_nano_seconds=pb.UInt64Value(value=cpu_ns))
        with self._lock:
            last = self._last.get(rec.id)
            self._last[rec.id] = (now, cpu_ns)
        if last is not None and now > last[0] and cpu_ns >= last[1]:
            cpu.usage_nano_cores.value = (cpu_ns - last[1]) * 10**9 // (now - last[0])
        mem = sample.get("memory_stats") or {}
        stat = mem.get("stats") or {}
        usage = int(mem.get("usage") or 0)
        inactive = int(stat.get("total_inactive_file", stat.get("inactive_file", 0)) or 0)
        memory = pb.MemoryUsage(timestamp=now, working_set_bytes=pb.UInt64Value(value=max(usage - inactive, 0)),
                                usage_bytes=pb.UInt64Value(value=usage),
                                rss_bytes=pb.UInt64Value(value=int(stat.get("total_rss", stat.get("anon", 0)) or 0)),
                                page_faults=pb.UInt64Value(value=int(stat.get("total_pgfault",
                                                                              stat.get("pgfault", 0)) or 0)),
                                major_page_faults=pb.UInt64Value(value=int(stat.get("total_pgmajfault",
                                                                                    stat.get("pgmajfault", 0)) or 0)))
        limit = int(mem.get("limit") or 0)
        if limit and limit < 1 << 62:
            memory.available_bytes.value = max(limit - usage + inactive, 0)
        layer = pb.FilesystemUsage(timestamp=now, fs_id=pb.FilesystemIdentifier(mountpoint=self.fs_mount),
                                   used_bytes=pb.UInt64Value(value=max(self.containers.rw_size(rec), 0)))
        return pb.ContainerStats(attributes=attrs, cpu=cpu, memory=memory, writable_layer=layer)

    def forget(self, cid: str) -> None:
        with self._lock:
            self._last.pop(cid, None)
