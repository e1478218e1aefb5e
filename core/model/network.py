"""Network records: what the store's ``networks.data`` holds, and its two views.

A :class:`NetworkRecord` is stored as :data:`dockyard.model.convert.converter`
writes it (its fields, snake_case; schema migration 2 made the release's dicts this
form).  What others see of it are views:

- :meth:`NetworkRecord.to_api`: Docker's network object (``GET /networks/{id}``,
  ``GET /networks``), with the endpoints the caller passes in;
- :meth:`NetworkRecord.to_hook`: the :class:`~dockyard.hookspecs.network.Network`
  dict every network hook gets, which is the contract with the drivers and stays
  as it is whatever the record becomes.

The address pools are a list, as the API's ``IPAM.Config`` is: a network has none
(``host``, ``none``, drivers whose namespace is the host's), one IPv4 pool
(:attr:`NetworkRecord.pool`) and, with ``EnableIPv6``, an IPv6 pool
(:attr:`NetworkRecord.pool6`) too.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..hookspecs.network import Network

#: the networks the core makes, named after their drivers
PREDEFINED = ("bridge", "host", "none")


@attrs.frozen
class IpamPool:
    """One address pool of a network: its subnet and the gateway's address in it."""

    subnet: str  #: ``"172.18.0.0/16"``
    gateway: str  #: ``"172.18.0.1"``

    def to_api(self) -> dict[str, str]:
        """An entry of Docker's ``IPAM.Config``."""
        return {"Subnet": self.subnet, "Gateway": self.gateway}


@attrs.define
class Endpoint:
    """What a network's ``Containers`` shows of one container on it."""

    name: str
    endpoint_id: str = ""
    mac_address: str = ""
    ipv4_address: str = ""  #: ``"172.18.0.2/16"``, or ``""``
    ipv6_address: str = ""  #: ``"fd00::2/64"``, or ``""``

    def to_api(self) -> dict[str, str]:
        return {"Name": self.name, "EndpointID": self.endpoint_id, "MacAddress": self.mac_address,
                "IPv4Address": self.ipv4_address, "IPv6Address": self.ipv6_address}


@attrs.define
class NetworkRecord:
    """A network of this daemon."""

    id: str
    name: str
    driver: str
    created: str  #: RFC 3339, UTC
    options: dict[str, str] = attrs.Factory(dict)  #: ``docker network create -o``
    labels: dict[str, str] = attrs.Factory(dict)
    internal: bool = False
    attachable: bool = False
    predefined: bool = False  #: ``bridge``, ``host`` and ``none``, made by the core
    pools: list[IpamPool] = attrs.Factory(list)  #: empty: a network without addresses
    driver_data: dict[str, Any] = attrs.Factory(dict)  #: what ``network_create`` returned
    enable_ipv6: bool = False  #: its endpoints get an address of :attr:`pool6` too

    @property
    def pool(self) -> IpamPool | None:
        """The IPv4 pool, or ``None`` for a network without addresses."""
        return next((p for p in self.pools if ":" not in p.subnet), None)

    @property
    def pool6(self) -> IpamPool | None:
        """The IPv6 pool of an ``EnableIPv6`` network, else ``None``."""
        return next((p for p in self.pools if ":" in p.subnet), None) if self.enable_ipv6 else None

    def to_hook(self) -> Network:
        """The network dict of the hook specs (a copy: a driver may keep it)."""
        pool, pool6 = self.pool, self.pool6
        out: Network = {"id": self.id, "name": self.name, "driver": self.driver, "created": self.created,
                        "options": dict(self.options), "labels": dict(self.labels), "internal": self.internal,
                        "attachable": self.attachable, "predefined": self.predefined,
                        "ipam": {"subnet": pool.subnet, "gateway": pool.gateway} if pool else None,
                        "driver_data": dict(self.driver_data)}
        if pool6 is not None:  # an EnableIPv6 network's (the others' dict is as it was)
            out["ipam6"] = {"subnet": pool6.subnet, "gateway": pool6.gateway}
        return out

    def to_api(self, containers: dict[str, Endpoint] | None = None) -> dict[str, Any]:
        """Docker's network object; ``containers`` (container id -> endpoint) fills
        its ``Containers``."""
        return {"Name": self.name, "Id": self.id, "Created": self.created, "Scope": "local",
                "Driver": self.driver, "EnableIPv6": self.enable_ipv6,
                "IPAM": {"Driver": "default", "Options": None, "Config": [p.to_api() for p in self.pools]},
                "Internal": self.internal, "Attachable": self.attachable, "Ingress": False,
                "ConfigFrom": {"Network": ""}, "ConfigOnly": False,
                "Containers": {cid: ep.to_api() for cid, ep in (containers or {}).items()},
                "Options": dict(self.options), "Labels": dict(self.labels)}
