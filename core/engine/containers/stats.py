"""``docker stats``: one sample of a container's usage, in the API's shape.

The exec driver gives the cgroup part (``exec_stats``); the network part is
read from the container's network namespace (``/proc/<pid>/net/dev``).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ...model.container import ContainerRecord

ZERO_TIME = "0001-01-01T00:00:00Z"
NET_FIELDS = ("rx_bytes", "rx_packets", "rx_errors", "rx_dropped", None, None, None, None,
              "tx_bytes", "tx_packets", "tx_errors", "tx_dropped")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def networks(pid: int) -> dict:
    """Per-interface counters of the network namespace of ``pid`` (no ``lo``)."""
    try:
        with open(f"/proc/{pid}/net/dev") as fh:
            lines = fh.readlines()[2:]
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, rest = line.partition(":")
        name = name.strip()
        if name == "lo" or not rest:
            continue
        values = [int(v) for v in rest.split()]
        out[name] = {k: values[i] for i, k in enumerate(NET_FIELDS) if k and i < len(values)}
    return out


def empty() -> dict:
    return {"cpu_stats": {"cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
                          "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0}},
            "memory_stats": {}, "pids_stats": {}, "blkio_stats": {
                "io_service_bytes_recursive": None, "io_serviced_recursive": None,
                "io_queue_recursive": None, "io_service_time_recursive": None,
                "io_wait_time_recursive": None, "io_merged_recursive": None,
                "io_time_recursive": None, "sectors_recursive": None}}


def sample(exec_hook: Any, rec: ContainerRecord, previous: dict | None = None) -> dict:
    """One sample for container record ``rec``; ``previous`` is the last sample
    of a stream (its cpu numbers become ``precpu_stats``)."""
    running = rec.state.running
    out = empty()
    if running:
        got = exec_hook.exec_stats(id=rec.id) or {}
        for key, value in got.items():
            if key == "blkio_stats":
                out[key].update(value)
            else:
                out[key] = value
    out.update({
        "read": _now() if running else ZERO_TIME,
        "preread": previous["read"] if previous else ZERO_TIME,
        "precpu_stats": previous["cpu_stats"] if previous else empty()["cpu_stats"],
        "num_procs": 0, "storage_stats": {},
        "name": "/" + rec.name, "id": rec.id,
    })
    if running and not rec.network_mode == "host":
        nets = networks(rec.state.pid)
        if nets:
            out["networks"] = nets
    return out
