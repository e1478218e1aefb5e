"""The Docker Engine API's shapes (v1.41) of a container record's parts: views,
never stored.

:meth:`ContainerRecord.to_api <dockyard.model.container.ContainerRecord.to_api>`
(``GET /containers/{id}/json``) and :meth:`ContainerSummary.to_api
<dockyard.model.container.ContainerSummary.to_api>` (an entry of ``GET
/containers/json``) are made of these.  What the API shows that the engine does not
keep (IPv6 fields, ``Links``, ``DriverOpts``) is Docker's constant for a container
like ours.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from .container_parts import EndpointConfig, NetworkSettings, State


def unix_time(iso: str) -> int:
    """Seconds since the epoch of an ISO 8601 time (0 if it is not one)."""
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except (ValueError, AttributeError):
        return 0


def _ago(iso: str) -> str:
    """Docker's ``units.HumanDuration`` of the time since ``iso``."""
    seconds = max(0.0, datetime.now(timezone.utc).timestamp() - unix_time(iso))
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


def status_text(state: State) -> str:
    """``docker ps``'s STATUS column (Docker's ``State.String()``)."""
    if state.restarting:
        return f"Restarting ({state.exit_code}) {_ago(state.finished_at)} ago"
    if state.running:
        if state.paused:
            return f"Up {_ago(state.started_at)} (Paused)"
        health = state.health.status if state.health is not None else ""
        if health:  # Docker's Health.String()
            return f"Up {_ago(state.started_at)} ({'health: starting' if health == 'starting' else health})"
        return f"Up {_ago(state.started_at)}"
    if state.status == "created":
        return "Created"
    return f"Exited ({state.exit_code}) {_ago(state.finished_at)} ago"


def state(s: State) -> dict[str, Any]:
    """``State``, as Docker shows it: a restarting container counts as running."""
    out: dict[str, Any] = {
        "Status": s.status, "Running": s.running or s.restarting, "Paused": s.paused, "Restarting": s.restarting,
        "OOMKilled": s.oom_killed, "Dead": False, "Pid": s.pid, "ExitCode": s.exit_code, "Error": s.error,
        "StartedAt": s.started_at, "FinishedAt": s.finished_at}
    if s.health is not None:
        out["Health"] = {"Status": s.health.status, "FailingStreak": s.health.failing_streak,
                         "Log": [{"Start": r.start, "End": r.end, "ExitCode": r.exit_code, "Output": r.output}
                                 for r in s.health.log]}
    return out


def networks(attached: dict[str, EndpointConfig], mode: str, settings: NetworkSettings) -> dict[str, Any]:
    """``NetworkSettings.Networks``: the live endpoints of what it is connected to
    (``attached``, else its network mode), empty where it is not up."""
    out = {}
    for name in list(attached) or [mode]:
        ep = settings.endpoints.get(name)
        cfg = attached.get(name)
        out[name] = {"IPAMConfig": cfg.ipam_config if cfg is not None else None,
                     "Links": (cfg.links or None) if cfg is not None else None,
                     "Aliases": ep.aliases if ep is not None else (cfg.aliases or None) if cfg is not None else None,
                     "NetworkID": ep.network_id if ep is not None else "",
                     "EndpointID": ep.endpoint_id if ep is not None else "",
                     "Gateway": ep.gateway if ep is not None else "",
                     "IPAddress": ep.ip_address if ep is not None else "",
                     "IPPrefixLen": ep.ip_prefix_len if ep is not None else 0,
                     "IPv6Gateway": ep.ipv6_gateway if ep is not None else "",
                     "GlobalIPv6Address": ep.global_ipv6_address if ep is not None else "",
                     "GlobalIPv6PrefixLen": ep.global_ipv6_prefix_len if ep is not None else 0,
                     "MacAddress": ep.mac_address if ep is not None else "", "DriverOpts": None}
    return out


def ports(settings: NetworkSettings) -> dict[str, Any]:
    """``NetworkSettings.Ports``: ``{"80/tcp": [{"HostIp", "HostPort"}] | None}``."""
    return {key: None if binds is None else [{"HostIp": b.host_ip, "HostPort": b.host_port} for b in binds]
            for key, binds in settings.ports.items()}


def port_list(settings: NetworkSettings) -> list[dict[str, Any]]:
    """``ps``'s Ports: ``[{"IP", "PrivatePort", "PublicPort", "Type"}]``."""
    out: list[dict[str, Any]] = []
    for key, binds in settings.ports.items():
        port, _, proto = key.partition("/")
        if not binds:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
        for b in binds or ():
            out.append({"IP": b.host_ip, "PrivatePort": int(port), "PublicPort": int(b.host_port),
                        "Type": proto or "tcp"})
    return out


def network_settings(attached: dict[str, EndpointConfig], mode: str, settings: NetworkSettings) -> dict[str, Any]:
    """``NetworkSettings`` of inspect: the primary endpoint's fields at the top (on the
    default bridge only, as Docker shows them), every network's under ``Networks``."""
    nets = networks(attached, mode, settings)
    p = (nets.get(mode) or {}) if mode == "bridge" else {}
    return {"Bridge": "", "SandboxID": settings.sandbox_key.rsplit("/", 1)[-1],
            "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports(settings), "SandboxKey": settings.sandbox_key,
            "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": p.get("EndpointID", ""), "Gateway": p.get("Gateway", ""),
            "GlobalIPv6Address": p.get("GlobalIPv6Address", ""), "GlobalIPv6PrefixLen": p.get("GlobalIPv6PrefixLen", 0),
            "IPAddress": p.get("IPAddress", ""), "IPPrefixLen": p.get("IPPrefixLen", 0),
            "IPv6Gateway": p.get("IPv6Gateway", ""), "MacAddress": p.get("MacAddress", ""), "Networks": nets}
