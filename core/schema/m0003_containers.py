"""Migration 3: container rows hold :class:`~dockyard.model.container.ContainerRecord`\\ s.

The release stored the Docker inspect shape (``Id``, ``Name``, ``State``...) with
four keys of its own (``Path_Args``, ``NetworkMode``, ``Networks``,
``MountPoints``) and private ``_``-keys inside; the record is the engine's own form,
of which the API's shapes are views.  What changes:

* names in snake_case; ``Name`` loses its ``/``, ``Image`` becomes ``image_id``,
  ``HasBeenManuallyStopped`` ``manually_stopped``; ``Path_Args`` goes (it is
  ``[path, *args]``);
* ``Config`` and ``HostConfig`` stay the API's dicts, unchanged;
* ``State`` and its ``Health``, the attachments (``Networks``), the live endpoints
  (``NetworkSettings``: ``Networks`` -> ``endpoints``, each endpoint's ``_endpoint``
  -> ``driver_endpoint``, the constant IPv6/``Links``/``DriverOpts`` fields dropped)
  and the mount points (``_copy``, ``_named``, ``_made``, ``_from`` -> ``copy_up``,
  ``named``, ``made``, ``from_container``) become typed fields.

A key the release might lack gets the default its code read it with (``.get``).
This module works on the JSON as that release wrote it and imports nothing of the
model, so that it stays right when the record changes again.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"


def _state(old: dict[str, Any]) -> dict[str, Any]:
    health = old.get("Health")
    return {
        "status": old.get("Status") or "created", "running": bool(old.get("Running")),
        "paused": bool(old.get("Paused")), "restarting": bool(old.get("Restarting")),
        "oom_killed": bool(old.get("OOMKilled")), "dead": bool(old.get("Dead")), "pid": int(old.get("Pid") or 0),
        "exit_code": int(old.get("ExitCode") or 0), "error": old.get("Error") or "",
        "started_at": old.get("StartedAt") or ZERO_TIME, "finished_at": old.get("FinishedAt") or ZERO_TIME,
        "health": None if not health else {
            "status": health.get("Status") or "starting", "failing_streak": int(health.get("FailingStreak") or 0),
            "log": [{"start": r.get("Start") or "", "end": r.get("End") or "", "exit_code": int(r.get("ExitCode", 0)),
                     "output": r.get("Output") or ""} for r in health.get("Log") or ()]},
    }


def _endpoint(old: dict[str, Any]) -> dict[str, Any]:
    return {"network_id": old.get("NetworkID") or "", "endpoint_id": old.get("EndpointID") or "",
            "gateway": old.get("Gateway") or "", "ip_address": old.get("IPAddress") or "",
            "ip_prefix_len": int(old.get("IPPrefixLen") or 0), "mac_address": old.get("MacAddress") or "",
            "aliases": None if old.get("Aliases") is None else list(old["Aliases"]),
            "driver_endpoint": old.get("_endpoint") or None}


def _settings(old: dict[str, Any]) -> dict[str, Any]:
    return {"endpoints": {name: _endpoint(ep) for name, ep in (old.get("Networks") or {}).items()},
            "ports": {key: None if binds is None else [{"host_ip": b.get("HostIp") or "",
                                                         "host_port": str(b.get("HostPort") or "")}
                                                        for b in binds]
                      for key, binds in (old.get("Ports") or {}).items()},
            "sandbox_key": old.get("SandboxKey") or ""}


def _mount_point(old: dict[str, Any]) -> dict[str, Any]:
    return {"type": old["Type"], "destination": old["Destination"], "source": old.get("Source") or "",
            "name": old.get("Name") or "", "driver": old.get("Driver") or "", "mode": old.get("Mode") or "",
            "rw": bool(old.get("RW", True)), "propagation": old.get("Propagation") or "",
            "copy_up": bool(old.get("_copy", True)), "named": bool(old.get("_named")),
            "made": bool(old.get("_made")), "from_container": old.get("_from") or ""}


def convert(old: dict[str, Any]) -> dict[str, Any]:
    """The record form of one container of the release (its inspect-shaped dict)."""
    command = list(old.get("Path_Args") or [old["Path"], *(old.get("Args") or [])])
    return {
        "id": old["Id"], "name": old["Name"][1:] if old["Name"].startswith("/") else old["Name"],
        "created": old["Created"], "path": command[0], "args": command[1:], "image_id": old["Image"],
        "config": old.get("Config") or {}, "host_config": old.get("HostConfig") or {},
        "network_mode": old.get("NetworkMode") or "default", "driver": old.get("Driver") or "",
        "log_path": old.get("LogPath") or "", "hostname_path": old.get("HostnamePath") or "",
        "hosts_path": old.get("HostsPath") or "", "resolv_conf_path": old.get("ResolvConfPath") or "",
        "state": _state(old.get("State") or {}), "restart_count": int(old.get("RestartCount") or 0),
        "manually_stopped": bool(old.get("HasBeenManuallyStopped")),
        "networks": {name: {"aliases": list((cfg or {}).get("Aliases") or []),
                            "ipam_config": (cfg or {}).get("IPAMConfig") or None}
                     for name, cfg in (old.get("Networks") or {}).items()},
        "network_settings": _settings(old.get("NetworkSettings") or {}),
        "mount_points": [_mount_point(mp) for mp in old.get("MountPoints") or ()],
    }


def migrate(db: sqlite3.Connection) -> None:
    """Rewrite every container row in the record form."""
    for row_id, data in db.execute("SELECT id, data FROM containers").fetchall():
        db.execute("UPDATE containers SET data=? WHERE id=?", (json.dumps(convert(json.loads(data))), row_id))
