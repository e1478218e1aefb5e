"""Network driver hook specs.

A *network* is a dict the core gives every hook (a view of the network record it
persists): ``{"id", "name", "driver", "options", "ipam", "internal", "labels"}``.
An *endpoint* is a container's membership in a network: ``{"id", "container_id",
"network_id", "name", "aliases", "ipv4", "mac"}`` (the core's IPAM fills ``ipv4``
before ``network_attach`` is called, for drivers that use addresses).

Rules: ``home`` is ``<data-root>/network/<driver>``.  Hooks run in worker threads
and may block.  Raise :class:`dockyard.errors.NetworkError` naming the network or
endpoint.  Create/delete/attach/detach must be idempotent and, on failure, leave
nothing behind (no interfaces, rules or addresses).  Every hook is ``firstresult``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from . import hookspec

if TYPE_CHECKING:
    from pathlib import Path


class Ipam(TypedDict):
    """A network's addressing: ``{"subnet": "172.18.0.0/16", "gateway": "172.18.0.1"}``."""

    subnet: str
    gateway: str


class Network(TypedDict):
    """A network as the core passes it to every hook (the keys a driver may rely
    on; the core gives the others too, since its records have them all).  Kept as it
    is whatever the core's record becomes (``NetworkRecord.to_hook``)."""

    id: str
    name: str
    driver: str
    options: dict[str, str]  #: ``docker network create -o``
    labels: dict[str, str]
    internal: bool
    ipam: Ipam | None  #: ``None`` for a network without addresses (``"host"`` namespace, ``none``)
    ipam6: NotRequired[Ipam | None]  #: an ``EnableIPv6`` network's IPv6 subnet and gateway, else ``None``
    created: NotRequired[str]
    attachable: NotRequired[bool]
    predefined: NotRequired[bool]  #: ``bridge``, ``host`` and ``none``, made by the core
    driver_data: NotRequired[dict[str, Any]]  #: what :func:`network_create` returned


class Endpoint(TypedDict):
    """A container's membership in a network."""

    id: str
    container_id: str
    network_id: str
    name: str  #: the container's name
    aliases: list[str]
    ipv4: str  #: ``"172.18.0.2/16"``, from the core's IPAM
    mac: str  #: the one the user asked for (``--mac-address``), else Docker's 02:42 and the IPv4 bytes
    link_local: NotRequired[list[str]]  #: more addresses (``--link-local-ip``), ``"169.254.1.1/16"``
    ipv6: NotRequired[str]  #: ``"fd00::2/64"`` on a network with ``ipam6``


class Attached(TypedDict, total=False):
    """What :func:`network_attach` returns (every key may be left out or ``None``)."""

    interface: str | None
    ipv4: str | None  #: ``"10.0.0.2/24"``
    gateway: str | None
    ipv6: str | None  #: ``"fd00::2/64"``
    gateway6: str | None
    mac: str | None
    dns: list[str]
    mtu: int | None


class Port(TypedDict):
    """A port to publish: ``host_port`` 0 asks the driver to pick one, ``host_ip``
    ``""`` means every address."""

    proto: str  #: ``"tcp"`` or ``"udp"``
    host_ip: str
    host_port: int
    container_port: int


@hookspec(firstresult=True)
def network_supported(home: Path, options: dict[str, Any]) -> str | None:
    """Return ``None`` if usable here, else a one-line reason. Changes nothing."""


@hookspec(firstresult=True)
def network_init(home: Path, options: dict[str, Any]) -> None:
    """Prepare the driver (once per daemon start; idempotent)."""


@hookspec(firstresult=True)
def network_namespace(network: Network) -> Literal["host", "private"]:
    """Return how containers on ``network`` get their network namespace:
    ``"host"`` (share the host's; no isolation) or ``"private"`` (a new one, which
    the core creates and passes to :func:`network_attach`)."""


@hookspec(firstresult=True)
def network_create(network: Network) -> dict[str, Any]:
    """Create the kernel objects for ``network`` (bridge, rules...).

    Return a dict of driver data to persist with the network (may be empty).
    """


@hookspec(firstresult=True)
def network_delete(network: Network) -> None:
    """Remove what :func:`network_create` made. Idempotent."""


@hookspec(firstresult=True)
def network_attach(network: Network, endpoint: Endpoint, netns: str | None) -> Attached:
    """Connect ``endpoint`` to ``network`` inside the namespace at path ``netns``
    (``None`` for a ``"host"`` network).

    Return a dict: ``{"interface": "eth0"|None, "ipv4": "10.0.0.2/24"|None,
    "gateway": str|None, "mac": str|None, "dns": [str], "mtu": int|None}``.
    """


@hookspec(firstresult=True)
def network_detach(network: Network, endpoint: Endpoint, netns: str | None) -> None:
    """Undo :func:`network_attach`. Idempotent; ``netns`` may already be gone."""


@hookspec(firstresult=True)
def network_publish(network: Network, endpoint: Endpoint, ports: list[Port]) -> list[Port]:
    """Publish ``ports`` (list of ``{"proto", "host_ip", "host_port",
    "container_port"}``) of ``endpoint``. Optional hook; return the bound ports."""
