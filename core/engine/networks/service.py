"""The network service: networks, and containers' endpoints on them.

``/networks*`` call :class:`NetworkService`; the container service uses it to
check a create's network settings and to bring a container's networking up and
down.  Behind it: :mod:`.networks` (the records and their drivers), :mod:`.endpoints`
(namespaces, addresses, attachments, published ports), :mod:`.ipam`, :mod:`.dns`
(the embedded resolver) and :mod:`.netns`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from ...errors import DockyardError, InvalidParameter
from .endpoints import Endpoints, parse_ports
from .networks import Networks

LIST_FILTERS = ("name", "id", "driver", "type", "label", "scope", "dangling")


class Containers(Protocol):
    """What networks need of the container records."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> dict: ...

    def save(self, rec: dict) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[dict]: ...

    def on_network(self, network: str) -> list[tuple[str, str, dict]]: ...


class NetworkService:
    """The networks of one daemon: ``slots`` are the enabled network drivers (name
    -> plugins.Slot); containers' network namespaces are pinned under ``netns_dir``;
    ``default_network`` is what ``NetworkMode: default`` means."""

    def __init__(self, store: Any, slots: dict, containers: Containers, netns_dir: str,
                 emit: Callable[[str, str, str, dict], None], default_network: str = "bridge") -> None:
        self.containers = containers
        self.default_network = default_network
        self._networks = Networks(store, slots, containers, emit)
        self._endpoints = Endpoints(self._networks, containers, netns_dir, emit)

    @property
    def drivers(self) -> list[str]:
        """The enabled network drivers."""
        return sorted(self._networks.slots)

    def ensure_predefined(self, bridge_options: dict) -> None:
        """At start: the predefined networks exist and every network's kernel objects
        are there (see :meth:`.networks.Networks.ensure_predefined`)."""
        self._networks.ensure_predefined(bridge_options)

    def close(self) -> None:
        if self._networks.dns is not None:
            self._networks.dns.close()

    # --- the API ----------------------------------------------------------------
    def create(self, body: dict) -> str:
        """``POST /networks/create``; returns the new network's id."""
        return self._networks.create(body)

    def remove(self, ref: str) -> None:
        self._networks.remove(ref)

    def get(self, ref: str) -> dict:
        """The record of the network named ``ref`` (a name, an id or a unique id prefix)."""
        return self._networks.get(ref)

    def inspect(self, ref: str) -> dict:
        """``GET /networks/{id}``: Docker's network object."""
        return self.view(self._networks.get(ref))

    def matching(self, filters: dict[str, list[str]]) -> Iterator[dict]:
        """``GET /networks``: the network objects matching Docker's filters (checked first)."""
        for key in filters:
            if key not in LIST_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        return (self.view(n) for n in self._networks.all() if _matches(n, filters))

    def prune(self) -> list[str]:
        """``POST /networks/prune``: the names of the networks removed."""
        return self._networks.prune()

    def connect(self, net_ref: str, container_ref: str, endpoint_config: dict | None) -> None:
        self._endpoints.connect(net_ref, container_ref, endpoint_config)

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        self._endpoints.disconnect(net_ref, container_ref, force)

    def view(self, net: dict, containers: bool = True) -> dict:
        """Docker's network object."""
        ipam = net.get("ipam")
        out = {"Name": net["name"], "Id": net["id"], "Created": net["created"], "Scope": "local",
               "Driver": net["driver"], "EnableIPv6": False,
               "IPAM": {"Driver": "default", "Options": None,
                        "Config": [{"Subnet": ipam["subnet"], "Gateway": ipam["gateway"]}] if ipam else []},
               "Internal": net["internal"], "Attachable": net.get("attachable", False), "Ingress": False,
               "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
               "Options": net["options"], "Labels": net["labels"]}
        if containers:  # from the store's JSON, not whole records: one may hold megabytes of labels
            for cid, name, s in self.containers.on_network(net["name"]):
                out["Containers"][cid] = {
                    "Name": name, "EndpointID": s.get("EndpointID", ""),
                    "MacAddress": s.get("MacAddress", ""),
                    "IPv4Address": f"{s['IPAddress']}/{s['IPPrefixLen']}" if s.get("IPAddress") else "",
                    "IPv6Address": ""}
        return out

    # --- what the container service asks ------------------------------------------
    def network_mode(self, mode: str | None) -> str:
        """HostConfig.NetworkMode -> the record's: a network's name, or container:ID."""
        if not mode or mode == "default":
            return self.default_network
        if mode.startswith("container:"):
            return "container:" + self.containers.resolve(mode.split(":", 1)[1])
        return self._networks.get(mode)["name"]

    def endpoint_configs(self, mode: str, networking: dict | None) -> dict:
        """The record's ``Networks`` from the primary network and
        NetworkingConfig.EndpointsConfig, checked as Docker does."""
        wanted = dict((networking or {}).get("EndpointsConfig") or {})
        if mode.startswith("container:"):
            if wanted:
                raise InvalidParameter("conflicting options: container type network can't be used with "
                                       "other networks")
            return {}
        out = {}
        primary = wanted.pop(mode, None) or wanted.pop("default", None) or {}  # the docker CLI's key for it
        for ref, cfg in [(mode, primary)] + list(wanted.items()):
            net = self._networks.get(ref)
            cfg = dict(cfg or {})
            if net["driver"] in ("host", "none") and (len(wanted) or ref != mode):
                raise InvalidParameter(f"container cannot be connected to network {net['name']} along with others")
            ip = ((cfg.get("IPAMConfig") or {}).get("IPv4Address"))
            if ip and (net.get("predefined") or not net.get("ipam")):
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            out[net["name"]] = {"Aliases": list(cfg.get("Aliases") or []),
                                "IPAMConfig": {"IPv4Address": ip} if ip else None}
        return out

    def check_ports(self, host_config: dict, exposed: dict | None) -> None:
        """Refuse bad ``PortBindings`` (``-p``) at create, not at start."""
        parse_ports(host_config, exposed)

    def host_gateway(self) -> str | None:
        """``host-gateway`` of ``--add-host``: the default bridge's gateway, as Docker's default."""
        try:
            return (self._networks.get("bridge").get("ipam") or {}).get("gateway")
        except DockyardError:
            return None

    def up(self, rec: dict) -> dict:
        """Bring the container's networking up (see :meth:`.endpoints.Endpoints.up`)."""
        return self._endpoints.up(rec)

    def down(self, rec: dict) -> None:
        self._endpoints.down(rec)

    def restore(self, rec: dict) -> None:
        self._endpoints.restore(rec)


def _matches(net: dict, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in net["name"] for v in values):
            return False
        if key == "id" and not any(net["id"].startswith(v) for v in values):
            return False
        if key == "driver" and net["driver"] not in values:
            return False
        if key == "type" and ("builtin" if net.get("predefined") else "custom") not in values:
            return False
        if key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in net["labels"] or (sep and net["labels"][k] != val):
                    return False
    return True
