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
import re
import secrets
from typing import Any, Callable, Protocol

from ...errors import Conflict, InvalidParameter, NetworkError
from ...model.container import ContainerRecord, Endpoint, EndpointConfig, NetworkSettings, PortBinding
from ...model.network import NetworkRecord
from . import ipam, netns

log = logging.getLogger("dockyard.endpoints")


class Containers(Protocol):
    """What endpoints need of the container records."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...

    def save(self, rec: ContainerRecord) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[ContainerRecord]: ...


PORT_RE = re.compile(r"^(\d{1,5})(?:/(tcp|udp))?$")


def parse_ports(host_config: dict, exposed: dict | None) -> list[dict]:
    """Docker's PortBindings (and PublishAllPorts over ExposedPorts) -> the hook
    specs' ``[{"proto", "host_ip", "host_port", "container_port"}]``."""
    out = []
    bindings = dict(host_config.get("PortBindings") or {})
    if host_config.get("PublishAllPorts"):
        for key in exposed or {}:
            bindings.setdefault(key, [{"HostIp": "", "HostPort": ""}])
    for key, targets in bindings.items():
        m = PORT_RE.match(str(key))
        if not m or not 0 < int(m.group(1)) < 65536:
            raise InvalidParameter(f"invalid port specification: {key!r}")
        for t in targets or [{}]:
            host_port = str((t or {}).get("HostPort") or "0")
            if not host_port.isdigit() or int(host_port) > 65535:
                raise InvalidParameter(f"invalid host port {host_port!r} for {key}")
            host_ip = (t or {}).get("HostIp") or ""
            if host_ip:
                try:
                    ipaddress.IPv4Address(host_ip)
                except ValueError:
                    raise InvalidParameter(f"invalid host IP {host_ip!r} for {key} (IPv4 only)") from None
            out.append({"proto": m.group(2) or "tcp", "host_ip": host_ip, "host_port": int(host_port),
                        "container_port": int(m.group(1))})
    return out


def held_ports(shown: dict[str, list[PortBinding] | None]) -> list[dict]:
    """A record's published ports (``network_settings.ports``) -> the hook specs' list."""
    out = []
    for key, targets in shown.items():
        m = PORT_RE.match(str(key))
        if not m:
            continue
        for t in targets or []:
            out.append({"proto": m.group(2) or "tcp", "host_ip": t.host_ip,
                        "host_port": int(t.host_port or 0), "container_port": int(m.group(1))})
    return out


def mac_of(ip: str) -> str:
    """Docker's MAC for an address: 02:42 and the four address bytes."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


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
            attachment = EndpointConfig(aliases=list((cfg or {}).get("Aliases") or []),
                                        ipam_config=(cfg or {}).get("IPAMConfig") or None)
            if (attachment.ipam_config or {}).get("IPv4Address") and net.predefined:
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            path = rec.network_settings.sandbox_key
            if rec.state.running:
                if not path:
                    raise InvalidParameter(f"container {cid[:12]} has no network namespace of its own to connect")
                self.attach(rec, net, attachment, path)
                if not net.predefined:
                    self._dns().add(cid, path, internal=net.internal)
            rec.networks[net.name] = attachment
            c.save(rec)
        self.emit("network", "connect", net.id, {"name": net.name, "container": cid})

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        net = self.networks.get(net_ref)
        c = self.containers
        cid = c.resolve(container_ref)
        with c.lock(cid):
            rec = c.get(cid)
            if net.name not in rec.networks:
                raise InvalidParameter(f"container {cid[:12]} is not connected to network {net.name}")
            if rec.state.running:
                self.detach(rec, net.name)
            del rec.networks[net.name]
            c.save(rec)
        self.emit("network", "disconnect", net.id, {"name": net.name, "container": cid})

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
        if mode == "host":
            settings.endpoints[primary.name] = self._summary(primary, None, None)
            return {"ns": "host", "ip": None, "nameservers": None}
        if all(net.driver == "none" for net, _ in plan):
            settings.endpoints[primary.name] = self._summary(primary, None, None)
            return {"ns": None, "ip": None, "nameservers": None}
        path = netns.create(self.netns_path(cid))
        settings.sandbox_key = path
        try:
            for net, cfg in plan:
                self.attach(rec, net, cfg, path)
            settings.ports = self._publish(rec, primary)
            user = [net for net, _ in plan if not net.predefined]
            if user:
                self._dns().add(cid, path, internal=all(n.internal for n in user))
        except BaseException:
            self.down(rec)
            raise
        ip = settings.endpoints[primary.name].ip_address or None
        return {"ns": path, "ip": ip, "nameservers": ["127.0.0.11"] if user else None}

    def attach(self, rec: ContainerRecord, net: NetworkRecord, cfg: EndpointConfig, path: str) -> None:
        """Address ``rec`` on ``net`` (IPAM) and attach it in namespace ``path``."""
        cid = rec.id
        settings = rec.network_settings
        pool = net.pool  # none on a network without addresses: "none", a "host" namespace
        if pool is None or net.driver == "none" or self.networks.namespace_mode(net) == "host":
            raise Conflict(f"container cannot be connected to network {net.name} along with others")
        wanted = ((cfg.ipam_config or {}).get("IPv4Address")) or None
        with self.networks.store.tx() as db:
            address = ipam.allocate(db, net.id, pool.subnet, cid, wanted)
        prefix = ipaddress.ip_network(pool.subnet).prefixlen
        endpoint = {"id": secrets.token_hex(32), "container_id": cid, "network_id": net.id,
                    "name": rec.name, "aliases": list(cfg.aliases),
                    "ipv4": f"{address}/{prefix}", "mac": mac_of(address)}
        try:
            got = self.networks.slot(net).hook.network_attach(network=net.to_hook(), endpoint=endpoint,
                                                              netns=path) or {}
        except BaseException:
            with self.networks.store.tx() as db:
                ipam.release(db, net.id, cid)
            raise
        summary = self._summary(net, endpoint, got)
        summary.aliases = [rec.id[:12], *endpoint["aliases"]] if not net.predefined else None
        settings.endpoints[net.name] = summary

    @staticmethod
    def _summary(net: NetworkRecord, endpoint: dict | None, got: dict | None) -> Endpoint:
        got = got or {}
        ipv4 = (got.get("ipv4") or (endpoint or {}).get("ipv4") or "").split("/")
        return Endpoint(network_id=net.id, endpoint_id=(endpoint or {}).get("id", ""),
                        gateway=got.get("gateway") or "", ip_address=ipv4[0],
                        ip_prefix_len=int(ipv4[1]) if len(ipv4) > 1 else 0,
                        mac_address=got.get("mac") or (endpoint or {}).get("mac") or "", driver_endpoint=endpoint)

    def _publish(self, rec: ContainerRecord, net: NetworkRecord,
                 held: dict[str, list[PortBinding] | None] | None = None) -> dict[str, list[PortBinding] | None]:
        """Publish the container's ports (``held``: those it had, in its
        ``network_settings.ports``: a restarted daemon takes the same host ports
        again, not new random ones for ``-p 80``)."""
        ports = parse_ports(rec.host_config, rec.config.get("ExposedPorts")) if held is None \
            else held_ports(held)
        shown: dict[str, list[PortBinding] | None] = {key: None for key in (rec.config.get("ExposedPorts") or {})}
        if not ports:
            return shown
        slot = self.networks.slot(net)
        if not hasattr(slot.hook, "network_publish") or not slot.hook.network_publish.get_hookimpls():
            raise NetworkError(f"network {net.name} ({net.driver}) cannot publish ports")
        endpoint = rec.network_settings.endpoints[net.name].driver_endpoint
        bound = slot.hook.network_publish(network=net.to_hook(), endpoint=endpoint, ports=ports) or ports
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

    def down(self, rec: ContainerRecord) -> None:
        """Undo :meth:`up` (idempotent, also after a daemon crash)."""
        for name in list(rec.network_settings.endpoints):
            self.detach(rec, name)
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
                self._publish(rec, self.networks.get(rec.network_mode), held=settings.ports)
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
        found = []
        for rec in self.containers.all():
            for net_name, s in rec.network_settings.endpoints.items():
                if s.network_id not in mine or not s.ip_address or s.aliases is None:
                    continue
                names = {rec.name.lower(), rec.id[:12], *(a.lower() for a in s.aliases)}
                if name in names or name.split(".", 1)[0] in names and "." in name and \
                        name.split(".", 1)[1] == net_name.lower():
                    found.append(s.ip_address)
        return found or None
