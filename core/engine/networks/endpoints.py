"""A container's endpoints: its network namespace, addresses, attachments,
published ports and name resolution, from start to stop (Docker's model: they
exist while it runs).

A record's ``networks`` are what the container is connected to (``{network name:
EndpointConfig}``, from create and ``network connect``); its ``network_settings``
are what is up now (its endpoints, :class:`~dockyard.model.container.Endpoint`,
its published ports and its namespace).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import secrets
from typing import Any, Callable, Protocol

from ...errors import Conflict, DockyardError, InvalidParameter, NetworkError
from ...model.container import ContainerRecord, Endpoint, EndpointConfig, NetworkSettings, PortBinding
from ...model.network import NetworkRecord
from ..bundle import etcfiles
from . import ipam, netns
from . import links as legacy_links
from .settings import check_attachment, endpoint_config, held_ports, link_local_ips, mac_of, parse_ports

log = logging.getLogger("dockyard.endpoints")


class Containers(Protocol):
    """What endpoints need of the container records."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...

    def save(self, rec: ContainerRecord) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[ContainerRecord]: ...


class Endpoints:
    """Containers' endpoints on the networks of ``networks`` (a :class:`.networks.Networks`);
    their network namespaces are pinned under ``netns_dir``."""

    def __init__(self, networks: Any, containers: Containers, netns_dir: str,
                 emit: Callable[[str, str, str, dict], None]) -> None:
        self.networks = networks
        self.containers = containers
        self.netns_dir = netns_dir
        self.emit = emit

    def netns_path(self, cid: str) -> str:
        return os.path.join(self.netns_dir, cid)

    def wanted(self, rec: ContainerRecord) -> list[tuple[NetworkRecord, EndpointConfig]]:
        """``[(network, endpoint config)]``, the primary (network mode) first; a
        container disconnected from everything is on ``none``."""
        nets = rec.networks
        primary = rec.network_mode if rec.network_mode in nets or not nets else next(iter(nets))
        if not nets and "none" in self.networks.slots:
            primary = "none"
        order = [primary] + [n for n in nets if n != primary]
        return [(self.networks.get(name), nets.get(name) or EndpointConfig()) for name in order]

    # ------------------------------------------------------ connect/disconnect
    def connect(self, net_ref: str, container_ref: str, cfg: dict | None) -> None:
        net = self.networks.get(net_ref)
        c = self.containers
        cid = c.resolve(container_ref)
        with c.lock(cid):
            rec = c.get(cid)
            if rec.network_mode.startswith("container:") or any(
                    self.networks.get(n).driver in ("host", "none") for n in rec.networks):
                raise InvalidParameter(f"container sharing network namespace with another container or host "
                                       f"cannot be connected to any other network ({rec.network_mode})")
            if net.driver in ("host", "none"):
                raise InvalidParameter(f"container cannot be connected to network {net.name} along with others")
            if net.name in rec.networks:
                raise Conflict(f"endpoint with name {rec.name} already exists in network {net.name}")
            attachment = endpoint_config(cfg or {})
            check_attachment(net, attachment, alone=False)
            path = rec.network_settings.sandbox_key
            running = rec.state.running
            if running:
                if not path:
                    raise InvalidParameter(f"container {cid[:12]} has no network namespace of its own to connect")
                self.attach(rec, net, attachment, path)
                if not net.predefined:
                    self._dns().add(cid, path, internal=self._internal_only(rec))
                self._etc_connected(rec, net)
            rec.networks[net.name] = attachment
            c.save(rec)
        if running:  # a stopped container's endpoint comes with its start (and its event), as in dockerd
            self._event("connect", net, cid)

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        net = self.networks.get(net_ref)
        c = self.containers
        cid = c.resolve(container_ref)
        with c.lock(cid):
            rec = c.get(cid)
            if net.name not in rec.networks:
                raise InvalidParameter(f"container {cid[:12]} is not connected to network {net.name}")
            if rec.state.running:
                summary = rec.network_settings.endpoints.get(net.name)
                self.detach(rec, net.name)
                for address in (summary.ip_address, summary.global_ipv6_address) if summary is not None else ():
                    if address:
                        etcfiles.remove_host(rec.hosts_path, address, rec.config.get("Hostname") or "")
            del rec.networks[net.name]
            c.save(rec)
        self._event("disconnect", net, cid)  # dockerd's, of a stopped container too

    def _event(self, action: str, net: NetworkRecord, cid: str) -> None:
        self.emit("network", action, net.id, {"container": cid, "name": net.name, "type": net.driver})

    def _internal_only(self, rec: ContainerRecord) -> bool:
        """Whether every user network ``rec`` is up on is internal (its DNS then
        answers only the names of those networks: nothing is forwarded out)."""
        nets = [self.networks.get(s.network_id) for s in rec.network_settings.endpoints.values()]
        user = [n for n in nets if not n.predefined]
        return bool(user) and all(n.internal for n in user)

    def _etc_connected(self, rec: ContainerRecord, net: NetworkRecord) -> None:
        """A running container connected to ``net``: its /etc/hosts names its
        address there, and on a user network its resolv.conf names the embedded
        DNS, as dockerd's sandbox does on connect."""
        ep = rec.network_settings.endpoints.get(net.name)
        for address in (ep.ip_address, ep.global_ipv6_address) if ep is not None else ():
            if address:
                etcfiles.add_host(rec.hosts_path, address, rec.config.get("Hostname") or "")
        if not net.predefined:
            host = rec.host_config
            etcfiles.use_embedded_dns(rec.resolv_conf_path, {k: host.get(k) for k in ("DnsSearch", "DnsOptions")})

    # ------------------------------------------------------------------ up
    def up(self, rec: ContainerRecord) -> dict:
        """Bring the container's networking up; returns ``{"ns": path | "host" |
        None (a fresh namespace of the exec driver's: loopback only), "ip",
        "nameservers"}`` and fills ``rec.network_settings``."""
        cid = rec.id
        plan = self.wanted(rec)
        primary = plan[0][0]
        mode = self.networks.namespace_mode(primary)
        settings = rec.network_settings = NetworkSettings()
        if mode == "host" or all(net.driver == "none" for net, _ in plan):
            settings.endpoints[primary.name] = self._summary(primary, None, None)
            self._event("connect", primary, cid)
            return {"ns": "host" if mode == "host" else None, "ip": None, "nameservers": None, "hosts": []}
        path = netns.create(self.netns_path(cid))
        settings.sandbox_key = path
        try:
            for n, (net, cfg) in enumerate(plan):
                self.attach(rec, net, cfg, path, primary=n == 0)
            settings.ports = self._publish(rec, self._publisher(rec))
            user = [net for net, _ in plan if not net.predefined]
            if user:
                self._dns().add(cid, path, internal=all(n.internal for n in user))
        except BaseException:
            self.down(rec, quiet=True)
            raise
        for net, _ in plan:
            self._event("connect", net, cid)
        ip = settings.endpoints[primary.name].ip_address or None
        return {"ns": path, "ip": ip, "nameservers": ["127.0.0.11"] if user else None,
                "hosts": [f"{a}\t{rec.config.get('Hostname') or ''}" for name, e in settings.endpoints.items()
                          for a in (e.ip_address if name != primary.name else "", e.global_ipv6_address) if a]}

    def _publisher(self, rec: ContainerRecord) -> NetworkRecord | None:
        """The network ``rec`` publishes its ports on: the first one it is up on
        that is not internal (dockerd's gateway endpoint: compose's front/back
        layout, whose first network is internal, publishes on the other)."""
        for s in rec.network_settings.endpoints.values():
            net = self.networks.get(s.network_id)
            if not net.internal and s.driver_endpoint:
                return net
        return None

    def attach(self, rec: ContainerRecord, net: NetworkRecord, cfg: EndpointConfig, path: str,
               primary: bool = False) -> None:
        """Address ``rec`` on ``net`` (IPAM) and attach it in namespace ``path``
        (``primary``: its first network, which takes ``Config.MacAddress``)."""
        cid = rec.id
        settings = rec.network_settings
        pool = net.pool  # none on a network without addresses: "none", a "host" namespace
        if pool is None or net.driver == "none" or self.networks.namespace_mode(net) == "host":
            raise Conflict(f"container cannot be connected to network {net.name} along with others")
        wanted = ((cfg.ipam_config or {}).get("IPv4Address")) or None
        wanted6 = ((cfg.ipam_config or {}).get("IPv6Address")) or None
        pool6 = net.pool6
        if wanted6 and pool6 is None:
            raise InvalidParameter(f"network {net.name} has no IPv6 (EnableIPv6): {wanted6} cannot be given")
        local = link_local_ips(cfg)
        mac = cfg.mac_address or (str(rec.config.get("MacAddress") or "").lower() if primary else "")
        if mac:
            endpoint_config({"MacAddress": mac})  # Config.MacAddress is checked here, as dockerd does at start
        with self.networks.store.tx() as db:
            address = ipam.allocate(db, net.id, pool.subnet, cid, wanted)
            address6 = ipam.allocate(db, net.id, pool6.subnet, ipam.v6(cid), wanted6) if pool6 else None
        prefix = ipaddress.ip_network(pool.subnet).prefixlen
        endpoint = {"id": secrets.token_hex(32), "container_id": cid, "network_id": net.id,
                    "name": rec.name, "aliases": list(cfg.aliases),
                    "ipv4": f"{address}/{prefix}", "mac": mac or mac_of(address)}
        if local:
            endpoint["link_local"] = local
        if pool6 is not None:
            endpoint["ipv6"] = f"{address6}/{ipaddress.ip_network(pool6.subnet).prefixlen}"
        try:
            got = self.networks.slot(net).hook.network_attach(network=net.to_hook(), endpoint=endpoint,
                                                              netns=path) or {}
        except BaseException:
            with self.networks.store.tx() as db:
                ipam.release(db, net.id, cid)
            raise
        summary = self._summary(net, endpoint, got)
        summary.aliases = [*endpoint["aliases"], rec.id[:12]] if not net.predefined else None
        settings.endpoints[net.name] = summary

    @staticmethod
    def _summary(net: NetworkRecord, endpoint: dict | None, got: dict | None) -> Endpoint:
        got = got or {}
        ipv4 = (got.get("ipv4") or (endpoint or {}).get("ipv4") or "").split("/")
        ipv6 = (got.get("ipv6") or (endpoint or {}).get("ipv6") or "").split("/")
        return Endpoint(network_id=net.id, endpoint_id=(endpoint or {}).get("id", ""),
                        gateway=got.get("gateway") or "", ip_address=ipv4[0],
                        ip_prefix_len=int(ipv4[1]) if len(ipv4) > 1 else 0,
                        ipv6_gateway=got.get("gateway6") or "", global_ipv6_address=ipv6[0],
                        global_ipv6_prefix_len=int(ipv6[1]) if len(ipv6) > 1 else 0,
                        mac_address=got.get("mac") or (endpoint or {}).get("mac") or "", driver_endpoint=endpoint)

    def _publish(self, rec: ContainerRecord, net: NetworkRecord | None,
                 held: dict[str, list[PortBinding] | None] | None = None) -> dict[str, list[PortBinding] | None]:
        """Publish the container's ports (``held``: those it had, in its
        ``network_settings.ports``: a restarted daemon takes the same host ports
        again, not new random ones for ``-p 80``)."""
        ports = parse_ports(rec.host_config, rec.config.get("ExposedPorts")) if held is None \
            else held_ports(held)
        shown: dict[str, list[PortBinding] | None] = {key: None for key in (rec.config.get("ExposedPorts") or {})}
        if not ports or net is None:  # only internal networks: nothing is published, as in dockerd
            return shown
        slot = self.networks.slot(net)
        if not hasattr(slot.hook, "network_publish") or not slot.hook.network_publish.get_hookimpls():
            raise NetworkError(f"network {net.name} ({net.driver}) cannot publish ports")
        endpoint = rec.network_settings.endpoints[net.name].driver_endpoint
        bound = slot.hook.network_publish(network=net.to_hook(), endpoint=endpoint, ports=ports)
        if bound is None:
            bound = ports
        for p in bound:
            key = f"{p['container_port']}/{p['proto']}"
            shown[key] = (shown.get(key) or []) + [PortBinding(p["host_ip"] or "0.0.0.0", str(p["host_port"]))]
        return shown

    # ---------------------------------------------------------------- down
    def detach(self, rec: ContainerRecord, name: str) -> None:
        """Detach ``rec`` from network ``name`` (its endpoint and address)."""
        settings = rec.network_settings
        summary = settings.endpoints.pop(name, None)
        if summary is None or not summary.driver_endpoint:
            return
        try:
            net = self.networks.get(summary.network_id)
        except Exception:  # the network went away meanwhile: its driver cleaned up
            return
        try:
            self.networks.slot(net).hook.network_detach(network=net.to_hook(), endpoint=summary.driver_endpoint,
                                                        netns=settings.sandbox_key or None)
        except Exception:
            log.exception("detaching %s from %s failed", rec.id[:12], name)
        with self.networks.store.tx() as db:
            ipam.release(db, net.id, rec.id)

    def down(self, rec: ContainerRecord, quiet: bool = False, later: list | None = None) -> None:
        """Undo :meth:`up` (idempotent, also after a daemon crash); each endpoint's
        ``disconnect`` event unless ``quiet`` (a start that failed half way),
        into ``later`` if given (the caller emits them after its own)."""
        for name, summary in list(rec.network_settings.endpoints.items()):
            self.detach(rec, name)
            if quiet:
                continue
            try:
                net = self.networks.get(summary.network_id)
            except DockyardError:  # removed meanwhile
                continue
            attributes = {"container": rec.id, "name": net.name, "type": net.driver}
            if later is None:
                self.emit("network", "disconnect", net.id, attributes)
            else:
                later.append(("network", "disconnect", net.id, attributes))
        if self.networks.dns is not None:
            self.networks.dns.remove(rec.id)
        netns.delete(self.netns_path(rec.id))
        rec.network_settings = NetworkSettings()

    def restore(self, rec: ContainerRecord) -> None:
        """A running container after a daemon restart: its namespace and attachments
        are still there; serve its DNS again and hold its published ports again."""
        settings = rec.network_settings
        path = settings.sandbox_key
        if not path:
            return
        nets = [self.networks.get(s.network_id) for s in settings.endpoints.values()]
        user = [n for n in nets if not n.predefined]
        if user:
            self._dns().add(rec.id, path, internal=all(n.internal for n in user))
        if settings.ports and nets:
            try:
                self._publish(rec, self._publisher(rec), held=settings.ports)
            except Exception as exc:
                log.error("container %s: its ports could not be held again: %s", rec.id[:12], exc)

    # ------------------------------------------------------------------ DNS
    def _dns(self):
        if self.networks.dns is None:
            from .dns import Resolver

            self.networks.dns = Resolver(self.lookup)
        return self.networks.dns

    def lookup(self, cid: str, name: str) -> list[str] | None:
        """Addresses of ``name`` (a container name, alias or short id) on the user
        networks that container ``cid`` is on; None when the name is not ours."""
        try:
            me = self.containers.get(cid)
        except Exception:
            return None
        name = name.rstrip(".").lower()
        mine = {s.network_id for s in me.network_settings.endpoints.values()}
        linked = self._linked(me, name)
        if linked:
            return linked
        found = []
        for rec in self.containers.all():
            for net_name, s in rec.network_settings.endpoints.items():
                if s.network_id not in mine or not s.ip_address or s.aliases is None:
                    continue
                names = {rec.name.lower(), rec.id[:12], *(a.lower() for a in s.aliases)}
                if name in names or name.split(".", 1)[0] in names and "." in name and \
                        name.split(".", 1)[1] == net_name.lower():
                    found += [a for a in (s.ip_address, s.global_ipv6_address) if a]
        return found or None

    def _linked(self, me: ContainerRecord, name: str) -> list[str]:
        """The address of the container ``me`` links to as ``name`` (``alias`` or
        ``alias.network``) on a user network (``EndpointSettings.Links``)."""
        for net_name, cfg in me.networks.items():
            for text in cfg.links:
                try:
                    child_ref, alias = legacy_links.parse(text)
                    if name not in (alias.lower(), f"{alias}.{net_name}".lower()):
                        continue
                    child = self.containers.get(self.containers.resolve(child_ref))
                except DockyardError:
                    continue
                ep = child.network_settings.endpoints.get(net_name)
                if ep is not None and ep.ip_address:
                    return [a for a in (ep.ip_address, ep.global_ipv6_address) if a]
        return []
