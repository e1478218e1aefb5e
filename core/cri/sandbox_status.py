"""What the CRI says of a sandbox, read back from its infra container: its
``PodSandbox`` (a listing's entry), its ``PodSandboxStatus`` and its stats.

The request's metadata, labels and annotations come back exactly as given,
from the labels :mod:`.sandbox_config` put on the infra container; the state
is the infra process's (READY while it runs); the IP is the infra's on the pod
network; the stats are the engine's samples (cgroup CPU and memory, the netns's
interfaces) of the infra and of the pod's containers, summed.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from .api import api_pb2 as pb
from .sandbox_config import LABEL_ANNOTATIONS, LABEL_LABELS, LABEL_METADATA, LABEL_NAMESPACES, LABEL_RUNTIME_HANDLER

#: a cgroup v1 memory limit at or above this is "no limit" (the kernel's page-rounded LONG_MAX)
NO_LIMIT = 1 << 62


def created_ns(iso: str) -> int:
    """An engine time (ISO 8601, UTC, ``Z``) in nanoseconds since the epoch."""
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1e9)
    except ValueError:
        return 0


def _json(labels: dict[str, str], key: str) -> Any:
    try:
        return json.loads(labels.get(key) or "{}")
    except ValueError:
        return {}


def own(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The request's own labels and annotations, from the engine container's labels."""
    return _json(labels, LABEL_LABELS), _json(labels, LABEL_ANNOTATIONS)


def metadata(labels: dict[str, str]) -> pb.PodSandboxMetadata:
    md = _json(labels, LABEL_METADATA)
    return pb.PodSandboxMetadata(name=md.get("name", ""), uid=md.get("uid", ""), namespace=md.get("namespace", ""),
                                 attempt=int(md.get("attempt", 0)))


def state(running: bool) -> pb.PodSandboxState:
    return pb.SANDBOX_READY if running else pb.SANDBOX_NOTREADY


def pod_sandbox(cid: str, labels: dict[str, str], created: str, running: bool) -> pb.PodSandbox:
    """A ``ListPodSandbox`` entry."""
    mine, notes = own(labels)
    return pb.PodSandbox(id=cid, metadata=metadata(labels), state=state(running), created_at=created_ns(created),
                         labels=mine, annotations=notes, runtime_handler=labels.get(LABEL_RUNTIME_HANDLER, ""))


def ips(rec: Any) -> list[str]:
    """The infra container's addresses on its networks (none with the host's network
    or once it stopped), the first network's IPv4 first."""
    out = []
    for ep in rec.network_settings.endpoints.values():
        out += [a for a in (ep.ip_address, ep.global_ipv6_address) if a]
    return out


def status(rec: Any) -> pb.PodSandboxStatus:
    labels = rec.config.get("Labels") or {}
    mine, notes = own(labels)
    addresses = ips(rec) if rec.state.running else []
    ns = _json(labels, LABEL_NAMESPACES)
    options = pb.NamespaceOption(network=ns.get("network", 0), pid=ns.get("pid", 0), ipc=ns.get("ipc", 0),
                                 target_id=ns.get("target_id", ""))
    return pb.PodSandboxStatus(
        id=rec.id, metadata=metadata(labels), state=state(rec.state.running), created_at=created_ns(rec.created),
        network=pb.PodSandboxNetworkStatus(ip=addresses[0] if addresses else "",
                                           additional_ips=[pb.PodIP(ip=a) for a in addresses[1:]]),
        linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(options=options)),
        labels=mine, annotations=notes, runtime_handler=labels.get(LABEL_RUNTIME_HANDLER, ""))


def verbose_info(rec: Any, netns: str | None) -> dict[str, str]:
    """``PodSandboxStatus(verbose=true)``'s ``info``: one JSON document, as containerd's."""
    host = rec.host_config
    info = {"pid": rec.state.pid, "name": rec.name, "image": rec.image, "imageId": rec.image_id,
            "netNamespace": netns or "", "networkMode": rec.network_mode, "hostname": rec.config.get("Hostname"),
            "resolvConfPath": rec.resolv_conf_path, "hostnamePath": rec.hostname_path,
            "config": {k: host.get(k) for k in ("IpcMode", "PidMode", "UTSMode", "CgroupParent", "Sysctls",
                                               "PortBindings", "Dns", "DnsSearch", "DnsOptions", "Privileged",
                                               "ReadonlyRootfs", "OomScoreAdj", "SecurityOpt")},
            "processStatus": rec.state.status, "startedAt": rec.state.started_at}
    return {"info": json.dumps(info)}


# --- stats -------------------------------------------------------------------------------------
def _u(value: int | None) -> pb.UInt64Value | None:
    return None if value is None else pb.UInt64Value(value=max(0, int(value)))


def _mem_stat(mem: dict, *keys: str) -> int | None:
    stats = mem.get("stats") or {}
    for key in keys:
        if key in stats:
            return int(stats[key])
    return None


class Sampler:
    """CPU and memory usage of engine stats samples, and nano cores between two
    samples of the same container (kept here: the kubelet asks every few seconds)."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # id -> (timestamp ns, cumulative CPU ns)

    def forget(self, ids: list[str]) -> None:
        """Drop the last samples of containers ``ids`` (removed)."""
        for cid in ids:
            self._last.pop(cid, None)

    def cpu(self, key: str, samples: list[dict], now: int) -> pb.CpuUsage:
        total = sum(int(((s.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage") or 0)
                    for s in samples)
        prev = self._last.get(key)
        self._last[key] = (now, total)
        nano = None
        if prev is not None and now > prev[0] and total >= prev[1]:
            nano = (total - prev[1]) * 10 ** 9 // (now - prev[0])
        return pb.CpuUsage(timestamp=now, usage_core_nano_seconds=_u(total), usage_nano_cores=_u(nano))

    @staticmethod
    def memory(samples: list[dict], now: int) -> pb.MemoryUsage:
        usage = working = rss = faults = major = 0
        limit = None
        for s in samples:
            mem = s.get("memory_stats") or {}
            used = int(mem.get("usage") or 0)
            inactive = _mem_stat(mem, "total_inactive_file", "inactive_file") or 0
            usage += used
            working += max(0, used - inactive)
            rss += _mem_stat(mem, "total_rss", "anon") or 0
            faults += _mem_stat(mem, "total_pgfault", "pgfault") or 0
            major += _mem_stat(mem, "total_pgmajfault", "pgmajfault") or 0
            if mem.get("limit") and int(mem["limit"]) < NO_LIMIT:
                limit = int(mem["limit"]) if limit is None else min(limit, int(mem["limit"]))
        return pb.MemoryUsage(timestamp=now, working_set_bytes=_u(working), usage_bytes=_u(usage),
                              rss_bytes=_u(rss), page_faults=_u(faults), major_page_faults=_u(major),
                              available_bytes=_u(limit - working) if limit is not None else None)


def network(sample: dict, now: int) -> pb.NetworkUsage | None:
    """The infra's interfaces (the pod's network namespace): eth0 is the default."""
    nets = sample.get("networks") or {}
    if not nets:
        return None
    ifaces = [pb.NetworkInterfaceUsage(name=name, rx_bytes=_u(n.get("rx_bytes")), rx_errors=_u(n.get("rx_errors")),
                                       tx_bytes=_u(n.get("tx_bytes")), tx_errors=_u(n.get("tx_errors")))
              for name, n in sorted(nets.items())]
    default = next((i for i in ifaces if i.name == "eth0"), ifaces[0])
    return pb.NetworkUsage(timestamp=now, default_interface=default,
                           interfaces=[i for i in ifaces if i is not default])


def processes(samples: list[dict], now: int) -> pb.ProcessUsage:
    count = sum(int((s.get("pids_stats") or {}).get("current") or 0) for s in samples)
    return pb.ProcessUsage(timestamp=now, process_count=_u(count))


def container_attributes(cid: str, labels: dict[str, str]) -> pb.ContainerAttributes:
    md = _json(labels, LABEL_METADATA)
    mine, notes = own(labels)
    return pb.ContainerAttributes(id=cid, metadata=pb.ContainerMetadata(name=md.get("name", ""),
                                                                        attempt=int(md.get("attempt", 0))),
                                  labels=mine, annotations=notes)


def now_ns() -> int:
    return time.time_ns()
