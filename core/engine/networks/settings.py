"""What a container asks of its networks, checked: the API's endpoint settings
(``NetworkingConfig`` at create, ``EndpointConfig`` of ``network connect``) as the
record's :class:`~dockyard.model.container.EndpointConfig`, and its published ports
(``PortBindings``) as the hook specs' list.

Docker's checks, with its messages: an address of one's own only on a user
network, network-scoped aliases likewise, link-local addresses that are addresses
(whether they are link-local is checked at start, as dockerd does), a MAC address
that is one.
"""

from __future__ import annotations

import ipaddress
import re

from ...errors import InvalidParameter, NetworkError
from ...model.container import EndpointConfig, PortBinding
from ...model.network import NetworkRecord

MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$")


def endpoint_config(cfg: dict) -> EndpointConfig:
    """An API EndpointSettings -> the record's attachment (what the client may ask
    for: aliases, IPAMConfig's IPv4Address and LinkLocalIPs, MacAddress, Links)."""
    ipam_in = dict(cfg.get("IPAMConfig") or {})
    ipam_cfg: dict = {}
    if ipam_in.get("IPv4Address"):
        ipam_cfg["IPv4Address"] = ipam_in["IPv4Address"]
    if ipam_in.get("IPv6Address"):
        ipam_cfg["IPv6Address"] = ipam_in["IPv6Address"]
    local = [str(x) for x in ipam_in.get("LinkLocalIPs") or []]
    if local:
        bad = [x for x in local if not _is_address(x)]
        if bad:
            raise InvalidParameter(f"Invalid link-local IP address: [{' '.join(bad)}]")
        ipam_cfg["LinkLocalIPs"] = local
    mac = str(cfg.get("MacAddress") or "")
    if mac and not MAC_RE.match(mac):
        raise InvalidParameter(f"address {mac}: invalid MAC address")
    return EndpointConfig(aliases=[str(a) for a in cfg.get("Aliases") or []], ipam_config=ipam_cfg or None,
                          mac_address=mac.lower(), links=[str(x) for x in cfg.get("Links") or []])


def check_attachment(net: NetworkRecord, att: EndpointConfig, alone: bool) -> None:
    """Refuse what ``net`` cannot give (``alone``: it is the container's only network)."""
    if net.driver in ("host", "none") and not alone:
        raise InvalidParameter(f"container cannot be connected to network {net.name} along with others")
    if ((att.ipam_config or {}).get("IPv4Address") or (att.ipam_config or {}).get("IPv6Address")) and \
            (net.predefined or not net.pools):
        raise InvalidParameter("user specified IP address is supported on user defined networks only")
    if att.aliases and (net.predefined or not net.pools):
        raise InvalidParameter("network-scoped alias is supported only for containers in user defined networks")


def link_local_ips(att: EndpointConfig) -> list[str]:
    """The attachment's link-local addresses as ``"addr/len"`` (IPv4's
    169.254.0.0/16, as dockerd gives them); an address that is not link-local
    fails the start, as in dockerd."""
    out = []
    for text in (att.ipam_config or {}).get("LinkLocalIPs") or []:
        addr = ipaddress.ip_address(text)
        if not addr.is_link_local:
            raise NetworkError(f"invalid link local IP address: {text}")
        if addr.version != 4:
            raise NetworkError(f"invalid link local IP address: {text} (IPv6 is not supported)")
        out.append(f"{addr}/16")
    return out


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


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


