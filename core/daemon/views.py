"""Docker Engine API v1.41 JSON shapes for containers and images."""

import json
from datetime import datetime, timezone


def unix_time(iso):
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except (ValueError, AttributeError):
        return 0


def _ago(iso):
    seconds = max(0, datetime.now(timezone.utc).timestamp() - unix_time(iso))
    if seconds < 1:
        return "Less than a second"
    if seconds < 60:
        return f"{int(seconds)} seconds" if int(seconds) != 1 else "1 second"
    minutes = seconds / 60
    if minutes < 60:
        return "About a minute" if int(minutes) == 1 else f"{int(minutes)} minutes"
    hours = minutes / 60
    if hours < 48:
        return "About an hour" if int(hours) == 1 else f"{int(hours)} hours"
    return f"{int(hours / 24)} days"


def status_text(state):
    if state.get("Restarting"):
        return f"Restarting ({state['ExitCode']}) {_ago(state['FinishedAt'])} ago"
    if state["Running"]:
        if state.get("Paused"):
            return f"Up {_ago(state['StartedAt'])} (Paused)"
        health = (state.get("Health") or {}).get("Status")
        if health:  # Docker's Health.String()
            return f"Up {_ago(state['StartedAt'])} ({'health: starting' if health == 'starting' else health})"
        return f"Up {_ago(state['StartedAt'])}"
    if state["Status"] == "created":
        return "Created"
    return f"Exited ({state['ExitCode']}) {_ago(state['FinishedAt'])} ago"


def _networks(rec):
    """NetworkSettings.Networks: the live endpoints, else what it is connected to."""
    live = (rec.get("NetworkSettings") or {}).get("Networks") or {}
    out = {}
    for name in list(rec.get("Networks") or {}) or [rec["NetworkMode"]]:
        s = {k: v for k, v in (live.get(name) or {}).items() if not k.startswith("_")}
        cfg = (rec.get("Networks") or {}).get(name) or {}
        out[name] = {"IPAMConfig": cfg.get("IPAMConfig"), "Links": None, "Aliases": s.get("Aliases"),
                     "NetworkID": s.get("NetworkID", ""), "EndpointID": s.get("EndpointID", ""),
                     "Gateway": s.get("Gateway", ""), "IPAddress": s.get("IPAddress", ""),
                     "IPPrefixLen": s.get("IPPrefixLen", 0), "IPv6Gateway": "", "GlobalIPv6Address": "",
                     "GlobalIPv6PrefixLen": 0, "MacAddress": s.get("MacAddress", ""), "DriverOpts": None}
    return out


def _primary(rec):
    nets = _networks(rec)
    return nets.get(rec["NetworkMode"]) or {}


def port_list(rec):
    """``ps``'s Ports: ``[{"IP", "PrivatePort", "PublicPort", "Type"}]``."""
    out = []
    for key, binds in ((rec.get("NetworkSettings") or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        for b in binds or ():
            out.append({"IP": b["HostIp"], "PrivatePort": int(port), "PublicPort": int(b["HostPort"]),
                        "Type": proto or "tcp"})
    return out


def _network_settings(rec):
    live = rec.get("NetworkSettings") or {}
    p = _primary(rec) if rec["NetworkMode"] == "bridge" else {}
    return {"Bridge": "", "SandboxID": (live.get("SandboxKey") or "").rsplit("/", 1)[-1],
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": live.get("Ports") or {}, "SandboxKey": live.get("SandboxKey") or "",
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": p.get("EndpointID", ""), "Gateway": p.get("Gateway", ""), "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0, "IPAddress": p.get("IPAddress", ""), "IPPrefixLen": p.get("IPPrefixLen", 0),
            "IPv6Gateway": "", "MacAddress": p.get("MacAddress", ""), "Networks": _networks(rec)}


def mounts(rec):
    """``Mounts``: Docker's MountPoint objects (volumes without a name are binds/tmpfs)."""
    out = []
    for mp in rec.get("MountPoints") or ():
        m = {k: v for k, v in mp.items() if not k.startswith("_")}
        if m.get("Type") != "volume":
            m.pop("Name", None)
            m.pop("Driver", None)
        out.append(m)
    return out


def container_inspect(rec, size=None):
    out = {k: rec[k] for k in ("Id", "Created", "Path", "Args", "Image", "ResolvConfPath",
                               "HostnamePath", "HostsPath", "LogPath", "Name", "RestartCount",
                               "Driver")}
    state = dict(rec["State"])
    state["Dead"] = False
    state["Running"] = bool(state["Running"] or state.get("Restarting"))  # as Docker shows a restarting one
    host = dict(rec["HostConfig"])
    host["RestartPolicy"] = {"Name": "", "MaximumRetryCount": 0, **(host.get("RestartPolicy") or {})}
    out.update({
        "State": state, "Platform": "linux", "MountLabel": "", "ProcessLabel": "",
        "AppArmorProfile": "", "ExecIDs": None, "HostConfig": host,
        "GraphDriver": {"Name": rec["Driver"], "Data": None}, "Mounts": mounts(rec),
        "Config": rec["Config"],
        "NetworkSettings": _network_settings(rec),
    })
    if size is not None:
        out["SizeRw"], out["SizeRootFs"] = size
    return out


def container_summary(rec):
    cfg = rec["Config"]
    return {
        "Id": rec["Id"], "Names": [rec["Name"]], "Image": cfg["Image"], "ImageID": rec["Image"],
        "Command": " ".join(rec["Path_Args"]), "Created": unix_time(rec["Created"]),
        "Ports": port_list(rec), "Labels": cfg.get("Labels") or {}, "State": rec["State"]["Status"],
        "Status": status_text(rec["State"]),
        "HostConfig": {"NetworkMode": rec["HostConfig"].get("NetworkMode", "default")},
        "NetworkSettings": {"Networks": _networks(rec)}, "Mounts": mounts(rec),
    }


def image_inspect(row, tags, size, driver):
    cfg = json.loads(row["config"])
    return {
        "Id": row["id"], "RepoTags": tags, "RepoDigests": [], "Parent": "",
        "Comment": cfg.get("comment", ""), "Created": cfg.get("created", row["created"]),
        "Container": "", "ContainerConfig": {}, "DockerVersion": "",
        "Author": cfg.get("author", ""), "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""), "Os": cfg.get("os", "linux"),
        "Size": size, "VirtualSize": size,
        "GraphDriver": {"Name": driver, "Data": None},
        "RootFS": {"Type": "layers", "Layers": cfg.get("rootfs", {}).get("diff_ids", [])},
        "Metadata": {"LastTagTime": row["last_tag_time"] or "0001-01-01T00:00:00Z"},
    }


def image_summary(row, tags, size, containers=-1):
    cfg = json.loads(row["config"])
    return {
        "Id": row["id"], "ParentId": "", "RepoTags": tags or ["<none>:<none>"],
        "RepoDigests": [] if tags else ["<none>@<none>"],
        "Created": unix_time(cfg.get("created", row["created"])), "Size": size,
        "SharedSize": -1, "VirtualSize": size,
        "Labels": (cfg.get("config") or {}).get("Labels") or {}, "Containers": containers,
    }
