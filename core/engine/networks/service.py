"""The network service: networks, and containers' endpoints on them.

``/networks*`` call :class:`NetworkService`; the container service uses it to
check a create's network settings and to bring a container's networking up and
down.  Behind it: :mod:`.networks` (the records and their drivers), :mod:`.endpoints`
(namespaces, addresses, attachments, published ports), :mod:`.ipam`, :mod:`.dns`
(the embedded resolver) and :mod:`.netns`.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Protocol

from ...errors import ContainerNotFound, DockyardError, InvalidParameter, NotFound
from ...model.container import ContainerRecord, EndpointConfig
from ...model.network import Endpoint, NetworkRecord
from ..bundle import etcfiles
from . import links as legacy_links
from .endpoints import Endpoints, check_attachment, endpoint_config, parse_ports
from .networks import NetworkNotFound, Networks

LIST_FILTERS = ("name", "id", "driver", "type", "label", "scope", "dangling")


class Containers(Protocol):
    """What networks need of the container records."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...

    def save(self, rec: ContainerRecord) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[ContainerRecord]: ...

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

    def get(self, ref: str) -> NetworkRecord:
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

    def view(self, net: NetworkRecord, containers: bool = True) -> dict[str, Any]:
        """Docker's network object (:meth:`~dockyard.model.network.NetworkRecord.to_api`)
        with the running containers' endpoints on it."""
        endpoints = {}
        if containers:  # from the store's JSON, not whole records: one may hold megabytes of labels
            for cid, name, s in self.containers.on_network(net.name):
                endpoints[cid] = Endpoint(
                    name=name, endpoint_id=s.get("EndpointID", ""), mac_address=s.get("MacAddress", ""),
                    ipv4_address=f"{s['IPAddress']}/{s['IPPrefixLen']}" if s.get("IPAddress") else "",
                    ipv6_address=f"{s['GlobalIPv6Address']}/{s['GlobalIPv6PrefixLen']}"
                    if s.get("GlobalIPv6Address") else "")
        return net.to_api(endpoints)

    # --- what the container service asks ------------------------------------------
    def network_mode(self, mode: str | None, missing_ok: bool = False) -> str:
        """HostConfig.NetworkMode -> the record's: a network's name, or container:ID.
        ``missing_ok`` (a container's create): a network or container that does not
        exist is kept as named, and its start fails (dockerd's 404 "network X not
        found" then, not at create, where the docker CLI would read a 404 as a
        missing image and pull)."""
        if not mode or mode == "default":
            return self.default_network
        if mode.startswith("container:"):
            try:
                return "container:" + self.containers.resolve(mode.split(":", 1)[1])
            except DockyardError:
                if missing_ok:
                    return mode
                raise
        try:
            return self._networks.get(mode).name
        except NetworkNotFound:
            if missing_ok:
                return mode
            raise

    def endpoint_configs(self, mode: str, networking: dict | None) -> dict[str, EndpointConfig]:
        """The record's ``networks`` from the primary network and
        NetworkingConfig.EndpointsConfig, checked as Docker does (a network that
        does not exist is kept as named: see :meth:`network_mode`)."""
        wanted = dict((networking or {}).get("EndpointsConfig") or {})
        if mode.startswith("container:"):
            if wanted:
                raise InvalidParameter("conflicting options: container type network can't be used with "
                                       "other networks")
            return {}
        out: dict[str, EndpointConfig] = {}
        primary = wanted.pop(mode, None) or wanted.pop("default", None) or {}  # the docker CLI's key for it
        for ref, cfg in [(mode, primary)] + list(wanted.items()):
            cfg = dict(cfg or {})
            try:
                net: NetworkRecord | None = self._networks.get(ref)
            except NetworkNotFound:
                net = None
            attachment = endpoint_config(cfg)
            if net is not None:
                check_attachment(net, attachment, alone=not wanted and ref == mode)
            out[net.name if net is not None else ref] = attachment
        return out

    def check_ports(self, host_config: dict, exposed: dict | None) -> None:
        """Refuse bad ``PortBindings`` (``-p``) at create, not at start."""
        parse_ports(host_config, exposed)

    def host_gateway(self) -> str | None:
        """``host-gateway`` of ``--add-host``: the default bridge's gateway, as Docker's default."""
        try:
            pool = self._networks.get("bridge").pool
        except DockyardError:
            return None
        return pool.gateway if pool else None

    def links(self, links: list | None, mode: str, name: str) -> list[str] | None:
        """A create's ``HostConfig.Links`` checked, in dockerd's form (see :mod:`.links`)."""
        return legacy_links.normalise(links, mode, name, self.containers)

    def remove_link(self, name: str) -> None:
        """``DELETE /containers/{parent}/{alias}?link=1`` (``docker rm --link``):
        the parent's link goes, and its /etc/hosts line if it runs."""
        parent, _, alias = name.strip("/").rpartition("/")
        if not parent:
            raise DockyardError("Conflict, cannot remove the default link name of the container")
        try:
            cid = self.containers.resolve(parent)
        except NotFound:
            raise ContainerNotFound(f"No such container: {name.strip('/')}") from None
        with self.containers.lock(cid):
            rec = self.containers.get(cid)
            links = list(rec.host_config.get("Links") or [])
            gone = [text for text in links if legacy_links.parse(text)[1] == alias]
            if not gone:
                raise ContainerNotFound(f"No such container: {name.strip('/')}")
            rec.host_config["Links"] = [text for text in links if text not in gone] or None
            if rec.state.running:
                etcfiles.remove_alias(rec.hosts_path, alias)
            self.containers.save(rec)

    def up(self, rec: ContainerRecord) -> dict:
        """Bring the container's networking up (see :meth:`.endpoints.Endpoints.up`);
        the result's ``env`` and ``hosts`` add its legacy links' variables and
        /etc/hosts lines (and its addresses on its other networks) to what it gets."""
        env: list[str] = []
        hosts: list[str] = []
        if rec.host_config.get("Links") and "bridge" in rec.networks:
            env, hosts = legacy_links.at_start(rec, self.containers)
        out = self._endpoints.up(rec)
        out["env"], out["hosts"] = env, hosts + out["hosts"]
        return out

    def down(self, rec: ContainerRecord, later: list | None = None) -> None:
        """Take the container's networking down; its ``disconnect`` events go
        into ``later`` (``(type, action, id, attributes)``) when it is given."""
        self._endpoints.down(rec, later=later)

    def restore(self, rec: ContainerRecord) -> None:
        self._endpoints.restore(rec)


def _matches(net: NetworkRecord, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "type" and ("builtin" if net.predefined else "custom") not in values:
            return False
        if key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in net.labels or (sep and net.labels[k] != val):
                    return False
    return True
