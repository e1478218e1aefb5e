"""The parts of a container record the engine decides: its state and health, its
network attachments and endpoints, its mount points (see :mod:`.container`).

Each is an attrs class that the model's converter stores as it is written here
(snake_case); the API's shapes of them are :mod:`.container_views`.
"""

from __future__ import annotations

from typing import Any

import attrs

#: Go's zero time, as Docker shows a time that has not happened
ZERO_TIME = "0001-01-01T00:00:00Z"


# --- state ----------------------------------------------------------------------------
@attrs.define
class HealthResult:
    """One run of a health check (times in ISO 8601, UTC)."""

    start: str
    end: str
    exit_code: int
    output: str = ""


@attrs.define
class Health:
    """``State.Health``: the status (``starting``, ``healthy``, ``unhealthy``), the
    failures in a row and the last few results, oldest first."""

    status: str = "starting"
    failing_streak: int = 0
    log: list[HealthResult] = attrs.Factory(list)


@attrs.define
class State:
    """Where the container is in its life.  ``status`` is Docker's word for it
    (``created``, ``running``, ``paused``, ``restarting``, ``exited``); times are ISO
    8601 in UTC, :data:`ZERO_TIME` until they happen; ``pid`` is 0 unless it runs;
    ``health`` is None until a health check was armed."""

    status: str = "created"
    running: bool = False
    paused: bool = False
    restarting: bool = False
    oom_killed: bool = False
    dead: bool = False
    pid: int = 0
    exit_code: int = 0
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    health: Health | None = None

    @property
    def ever_started(self) -> bool:
        return self.started_at != ZERO_TIME


# --- networking -------------------------------------------------------------------------
@attrs.define
class EndpointConfig:
    """A network the container is connected to (from create or ``network
    connect``): its extra DNS aliases, the API's ``IPAMConfig`` (``{"IPv4Address":
    ..., "LinkLocalIPs": [...]}``, as the client gave it) or None, the MAC address
    asked for (``""``: derived from the IP address) and its legacy links on a user
    network (``["container:alias"]``: the alias resolves for this container only)."""

    aliases: list[str] = attrs.Factory(list)
    ipam_config: dict[str, Any] | None = None
    mac_address: str = ""
    links: list[str] = attrs.Factory(list)


@attrs.define
class Endpoint:
    """An endpoint that is up (the container runs) on network ``network_id``.
    ``aliases`` are the names the embedded DNS answers for it on a user network (None
    on a predefined one); ``driver_endpoint`` is the hook specs' endpoint the network
    driver attached (kept to detach and publish), None where none was attached."""

    network_id: str
    endpoint_id: str = ""
    gateway: str = ""
    ip_address: str = ""
    ip_prefix_len: int = 0
    mac_address: str = ""
    aliases: list[str] | None = None
    driver_endpoint: dict[str, Any] | None = None
    ipv6_gateway: str = ""  #: on an ``EnableIPv6`` network
    global_ipv6_address: str = ""
    global_ipv6_prefix_len: int = 0

    def to_api(self) -> dict[str, Any]:
        """The API's EndpointSettings of it (``IPAMConfig`` is the attachment's)."""
        return {"IPAMConfig": None, "Links": None, "Aliases": self.aliases, "NetworkID": self.network_id,
                "EndpointID": self.endpoint_id, "Gateway": self.gateway, "IPAddress": self.ip_address,
                "IPPrefixLen": self.ip_prefix_len, "IPv6Gateway": self.ipv6_gateway,
                "GlobalIPv6Address": self.global_ipv6_address, "GlobalIPv6PrefixLen": self.global_ipv6_prefix_len,
                "MacAddress": self.mac_address, "DriverOpts": None}


@attrs.define
class PortBinding:
    """A published port's host side (``HostPort`` is a string, as in the API)."""

    host_ip: str
    host_port: str


@attrs.define
class NetworkSettings:
    """What is up while the container runs: its endpoints by network name, its
    ports (``"80/tcp"`` -> the host ports it is published on, or None if only
    exposed) and its network namespace's path (``sandbox_key``, ``""`` without one).
    Empty when it is not running."""

    endpoints: dict[str, Endpoint] = attrs.Factory(dict)
    ports: dict[str, list[PortBinding] | None] = attrs.Factory(dict)
    sandbox_key: str = ""


# --- mount points -------------------------------------------------------------------------
@attrs.define
class MountPoint:
    """A volume, bind or tmpfs mount of the container (Docker's MountPoint).

    ``name`` and ``driver`` are a volume's; ``copy_up``: a new volume gets the
    image's content at its path (not ``nocopy``); ``named``: the user named the volume
    (``rm -v`` keeps it); ``made``: this container's create made the volume;
    ``from_container``: the id of the container it came from (``--volumes-from``),
    ``""`` for the container's own."""

    type: str
    destination: str
    source: str = ""
    name: str = ""
    driver: str = ""
    mode: str = ""
    rw: bool = True
    propagation: str = ""
    copy_up: bool = True
    named: bool = False
    made: bool = False
    from_container: str = ""

    def to_api(self) -> dict[str, Any]:
        """The API's MountPoint (``Name`` and ``Driver`` for volumes only)."""
        out: dict[str, Any] = {"Type": self.type}
        if self.type == "volume":
            out["Name"] = self.name
        out["Source"] = self.source
        out["Destination"] = self.destination
        if self.type == "volume":
            out["Driver"] = self.driver
        out.update(Mode=self.mode, RW=self.rw, Propagation=self.propagation)
        return out
