"""A container's endpoints: its network namespace, addresses, attachments,
published ports and name resolution, from start to stop (Docker's model: they
exist while it runs).

``rec["Networks"]`` is what the container is connected to (``{network name:
{"Aliases", "IPAMConfig"}}``, from create and ``network connect``);
``rec["NetworkSettings"]`` is what is up now, in the API's shape.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from typing import Any, Callable, Protocol

from ...errors import Conflict, InvalidParameter, NetworkError
from . import ipam, netns

log = logging.getLogger("dockyard.endpoints")


class Containers(Protocol):
    """What endpoints need of the container records."""

    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> dict: ...

    def save(self, rec: dict) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[dict]: ...
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


def held_ports(shown: dict | None) -> list[dict]:
    """``NetworkSettings.Ports`` (what was published) -> the hook specs' list."""
    out = []
    for key, targets in (shown or {}).items():
        m = PORT_RE.match(str(key))
        if not m:
            continue
        for t in targets or []:
            out.append({"proto": m.group(2) or "tcp", "host_ip": t.get("HostIp") or "",
                        "host_port": int(t.get("HostPort") or 0), "container_port": int(m.group(1))})
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

    def wanted(self, rec: dict) -> list[tuple[dict, dict]]:
        """``[(network, endpoint config)]``, the primary (NetworkMode) first; a
        container disconnected from everything is on ``none``."""
        nets = rec.get("Networks") or {}
        primary = rec["NetworkMode"] if rec["NetworkMode"] in nets or not nets else next(iter(nets))
        if not nets and "none" in self.networks.slots:
            primary = "none"
        order = [primary] + [n for n in nets if n != primary]
        return [(self.networks.get(name), nets.get(name) or {}) for name in order]

    # ------------------------------------------------------ connect/disconnect
    def connect(self, net_ref: str, container_ref: str, cfg: dict | None) -> None:
        net = self.networks.get(net_ref)
        c = self.containers
        cid = c.resolve(container_ref)
        with c.lock(cid):
            rec = c.get(cid)
            if rec["NetworkMode"].startswith("container:") or any(
                    self.networks.get(n)["driver"] in ("host", "none") for n in rec.get("Networks") or {}):
                raise InvalidParameter(f"container sharing network namespace with another container or host "
                                       f"cannot be connected to any other network ({rec['NetworkMode']})")
            if net["driver"] in ("host", "none"):
                raise InvalidParameter(f"container cannot be connected to network {net['name']} along with others")
            if net["name"] in (rec.get("Networks") or {}):
                raise Conflict(f"endpoint with name {rec['Name'].lstrip('/')} already exists in network {net['name']}")
            cfg = {"Aliases": list((cfg or {}).get("Aliases") or []),
                   "IPAMConfig": (cfg or {}).get("IPAMConfig") or None}
            if (cfg["IPAMConfig"] or {}).get("IPv4Address") and net.get("predefined"):
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            path = (rec.get("NetworkSettings") or {}).get("SandboxKey")
            if rec["State"]["Running"]:
                if not path:
                    raise InvalidParameter(f"container {cid[:12]} has no network namespace of its own to connect")
                self.attach(rec, net, cfg, path)
                if not net.get("predefined"):
                    self._dns().add(cid, path, internal=net["internal"])
            rec.setdefault("Networks", {})[net["name"]] = cfg
            c.save(rec)
        self.emit("network", "connect", net["id"], {"name": net["name"], "container": cid})

    def disconnect(self, net_ref: str, container_ref: str, force: bool = False) -> None:
        net = self.networks.get(net_ref)
        c = self.containers
        cid = c.resolve(container_ref)
        with c.lock(cid):
            rec = c.get(cid)
            if net["name"] not in (rec.get("Networks") or {}):
                raise InvalidParameter(f"container {cid[:12]} is not connected to network {net['name']}")
            if rec["State"]["Running"]:
                self.detach(rec, net["name"])
            del rec["Networks"][net["name"]]
            c.save(rec)
        self.emit("network", "disconnect", net["id"], {"name": net["name"], "container": cid})

    # ------------------------------------------------------------------ up
    def up(self, rec: dict) -> dict:
        """Bring the container's networking up; returns ``{"ns": path | "host" |
        None (a fresh namespace of the exec driver's: loopback only), "ip",
        "nameservers"}`` and fills ``rec["NetworkSettings"]``."""
        cid = rec["Id"]
        plan = self.wanted(rec)
        primary = plan[0][0]
        mode = self.networks.namespace_mode(primary)
        settings: dict[str, Any] = {"Networks": {}, "Ports": {}, "SandboxKey": ""}
        rec["NetworkSettings"] = settings
        if mode == "host":
            settings["Networks"][primary["name"]] = self._summary(primary, None, None)
            return {"ns": "host", "ip": None, "nameservers": None}
        if all(net["driver"] == "none" for net, _ in plan):
            settings["Networks"][primary["name"]] = self._summary(primary, None, None)
            return {"ns": None, "ip": None, "nameservers": None}
        path = netns.create(self.netns_path(cid))
        settings["SandboxKey"] = path
        try:
            for net, cfg in plan:
                self.attach(rec, net, cfg, path)
            settings["Ports"] = self._publish(rec, primary)
            user = [net for net, _ in plan if not net.get("predefined")]
            if user:
                self._dns().add(cid, path, internal=all(n["internal"] for n in user))
        except BaseException:
            self.down(rec)
            raise
        ip = settings["Networks"][primary["name"]]["IPAddress"] or None
        return {"ns": path, "ip": ip, "nameservers": ["127.0.0.11"] if user else None}

    def attach(self, rec: dict, net: dict, cfg: dict, path: str) -> None:
        """Address ``rec`` on ``net`` (IPAM) and attach it in namespace ``path``."""
        cid = rec["Id"]
        settings = rec["NetworkSettings"]
        if net["driver"] == "none" or self.networks.namespace_mode(net) == "host":
            raise Conflict(f"container cannot be connected to network {net['name']} along with others")
        wanted = ((cfg.get("IPAMConfig") or {}).get("IPv4Address")) or None
        with self.networks.store.tx() as db:
            address = ipam.allocate(db, net["id"], net["ipam"]["subnet"], cid, wanted)
        prefix = ipaddress.ip_network(net["ipam"]["subnet"]).prefixlen
        endpoint = {"id": secrets.token_hex(32), "container_id": cid, "network_id": net["id"],
                    "name": rec["Name"].lstrip("/"), "aliases": list(cfg.get("Aliases") or []),
                    "ipv4": f"{address}/{prefix}", "mac": mac_of(address)}
        try:
            got = self.networks.slot(net).hook.network_attach(network=net, endpoint=endpoint, netns=path) or {}
        except BaseException:
            with self.networks.store.tx() as db:
                ipam.release(db, net["id"], cid)
            raise
        summary = self._summary(net, endpoint, got)
        summary["Aliases"] = [rec["Id"][:12], *endpoint["aliases"]] if not net.get("predefined") else None
        settings["Networks"][net["name"]] = summary

    @staticmethod
    def _summary(net, endpoint, got):
        got = got or {}
        ipv4 = (got.get("ipv4") or (endpoint or {}).get("ipv4") or "").split("/")
        return {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": net["id"],
                "EndpointID": (endpoint or {}).get("id", ""), "Gateway": got.get("gateway") or "",
                "IPAddress": ipv4[0], "IPPrefixLen": int(ipv4[1]) if len(ipv4) > 1 else 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": got.get("mac") or (endpoint or {}).get("mac") or "", "DriverOpts": None,
                "_endpoint": endpoint}

    def _publish(self, rec, net, held=None):
        """Publish the container's ports (``held``: those it had, shown in
        ``NetworkSettings.Ports``: a restarted daemon takes the same host ports
        again, not new random ones for ``-p 80``)."""
        ports = parse_ports(rec["HostConfig"], rec["Config"].get("ExposedPorts")) if held is None \
            else held_ports(held)
        shown = {key: None for key in (rec["Config"].get("ExposedPorts") or {})}
        if not ports:
            return shown
        slot = self.networks.slot(net)
        if not hasattr(slot.hook, "network_publish") or not slot.hook.network_publish.get_hookimpls():
            raise NetworkError(f"network {net['name']} ({net['driver']}) cannot publish ports")
        endpoint = rec["NetworkSettings"]["Networks"][net["name"]]["_endpoint"]
        bound = slot.hook.network_publish(network=net, endpoint=endpoint, ports=ports) or ports
        for p in bound:
            key = f"{p['container_port']}/{p['proto']}"
            shown[key] = (shown.get(key) or []) + [{"HostIp": p["host_ip"] or "0.0.0.0",
                                                     "HostPort": str(p["host_port"])}]
        return shown

    # ---------------------------------------------------------------- down
    def detach(self, rec: dict, name: str) -> None:
        """Detach ``rec`` from network ``name`` (its endpoint and address)."""
        settings = rec.get("NetworkSettings") or {}
        summary = (settings.get("Networks") or {}).pop(name, None)
        if not summary or not summary.get("_endpoint"):
            return
        try:
            net = self.networks.get(summary["NetworkID"])
        except Exception:  # the network went away meanwhile: its driver cleaned up
            return
        try:
            self.networks.slot(net).hook.network_detach(network=net, endpoint=summary["_endpoint"],
                                                        netns=settings.get("SandboxKey") or None)
        except Exception:
            log.exception("detaching %s from %s failed", rec["Id"][:12], name)
        with self.networks.store.tx() as db:
            ipam.release(db, net["id"], rec["Id"])

    def down(self, rec: dict) -> None:
        """Undo :meth:`up` (idempotent, also after a daemon crash)."""
        settings = rec.get("NetworkSettings") or {}
        for name in list(settings.get("Networks") or {}):
            self.detach(rec, name)
        if self.networks.dns is not None:
            self.networks.dns.remove(rec["Id"])
        netns.delete(self.netns_path(rec["Id"]))
        rec["NetworkSettings"] = {"Networks": {}, "Ports": {}, "SandboxKey": ""}

    def restore(self, rec: dict) -> None:
        """A running container after a daemon restart: its namespace and attachments
        are still there; serve its DNS again and hold its published ports again."""
        settings = rec.get("NetworkSettings") or {}
        path = settings.get("SandboxKey")
        if not path:
            return
        nets = [self.networks.get(s["NetworkID"]) for s in (settings.get("Networks") or {}).values()]
        user = [n for n in nets if not n.get("predefined")]
        if user:
            self._dns().add(rec["Id"], path, internal=all(n["internal"] for n in user))
        if settings.get("Ports") and nets:
            try:
                self._publish(rec, self.networks.get(rec["NetworkMode"]), held=settings["Ports"])
            except Exception as exc:
                log.error("container %s: its ports could not be held again: %s", rec["Id"][:12], exc)

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
        mine = {s["NetworkID"] for s in (me.get("NetworkSettings") or {}).get("Networks", {}).values()}
        found = []
        for rec in self.containers.all():
            for net_name, s in ((rec.get("NetworkSettings") or {}).get("Networks") or {}).items():
                if s["NetworkID"] not in mine or not s.get("IPAddress") or s.get("Aliases") is None:
                    continue
                names = {rec["Name"].lstrip("/").lower(), rec["Id"][:12], *(a.lower() for a in s["Aliases"])}
                if name in names or name.split(".", 1)[0] in names and "." in name and \
                        name.split(".", 1)[1] == net_name.lower():
                    found.append(s["IPAddress"])
        return found or None
