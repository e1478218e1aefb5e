"""The files every container gets at ``/etc``: ``hostname``, ``hosts`` and ``resolv.conf``,
written by the daemon beside the container's record and bound into it (Docker's layout),
and changed in place while it runs when its networks change."""

from __future__ import annotations

import ipaddress
import os


def extra_host_lines(extra_hosts: list | None, host_gateway: str | None = None) -> list[str]:
    """``HostConfig.ExtraHosts`` (``name:ip``, or ``name=ip``; ``host-gateway`` is the
    default bridge's gateway) -> /etc/hosts lines, checked as Docker checks them."""
    lines = []
    for item in extra_hosts or ():
        name, sep, ip = str(item).partition("=") if "=" in str(item) else str(item).partition(":")
        if not sep or not name or not ip:
            raise ValueError(f"bad format for add-host: {item!r} (expected name:ip)")
        ip = ip.strip("[]")
        if ip == "host-gateway":
            if not host_gateway:
                raise ValueError(f"add-host {item!r}: host-gateway has no address here (no default bridge)")
            ip = host_gateway
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"invalid IP address in add-host: {ip!r}") from None
        lines.append(f"{ip}\t{name}")
    return lines


def _resolv_conf(resolv: str, network_mode: str, nameservers: list | None, dns: dict) -> str:
    """The container's resolv.conf from the host's: the embedded DNS (``nameservers``)
    or ``--dns`` servers instead of the host's, ``--dns-search``/``--dns-option``
    instead of its search domains and options (Docker's rules)."""
    lines = resolv.splitlines()
    search = [x for x in lines if x.strip().startswith(("search", "domain"))]
    options = [x for x in lines if x.strip().startswith("options")]
    if dns.get("DnsSearch"):
        search = ["search " + " ".join(dns["DnsSearch"])]
    if dns.get("DnsOptions"):
        options = ["options " + " ".join(dns["DnsOptions"])]
    if nameservers:  # the embedded DNS answers (its upstreams are the host's)
        servers = list(nameservers)
        options = ["options " + " ".join(dns["DnsOptions"])] if dns.get("DnsOptions") else ["options ndots:0"]
    elif dns.get("Dns"):
        servers = list(dns["Dns"])
    else:
        servers = [x.split()[1] for x in lines if x.strip().startswith("nameserver") and len(x.split()) > 1]
        if network_mode != "host":  # a loopback resolver of the host is unreachable inside
            servers = [x for x in servers if not x.startswith("127.")]
        if not nameservers and not dns and network_mode == "host":
            return resolv
    return "".join(f"nameserver {x}\n" for x in servers) + "".join(x + "\n" for x in search + options)


def write_etc_files(container_dir: str, hostname: str, network_mode: str, ip: str | None = None,
                    nameservers: list | None = None, extra_hosts: list | tuple = (),
                    dns: dict | None = None) -> dict[str, str]:
    """Write the container's hostname, hosts and resolv.conf; return their paths.

    ``ip``: the container's address (its hostname's line in /etc/hosts);
    ``nameservers``: the resolvers to name instead of the host's (127.0.0.11, the
    embedded DNS of user-defined networks), keeping the host's search domains;
    ``extra_hosts``: more /etc/hosts lines (:func:`extra_host_lines`); ``dns``:
    ``{"Dns", "DnsSearch", "DnsOptions"}`` of the HostConfig."""
    os.makedirs(container_dir, exist_ok=True)
    paths = {
        "hostname": os.path.join(container_dir, "hostname"),
        "hosts": os.path.join(container_dir, "hosts"),
        "resolv.conf": os.path.join(container_dir, "resolv.conf"),
    }
    with open(paths["hostname"], "w") as fh:
        fh.write(hostname + "\n")
    hosts = [
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet", "ff00::0\tip6-mcastprefix",
        "ff02::1\tip6-allnodes", "ff02::2\tip6-allrouters",
    ]
    hosts += list(extra_hosts or ())
    if ip:
        hosts.append(f"{ip}\t{hostname}")
    elif network_mode != "host":
        hosts.append(f"127.0.1.1\t{hostname}")
    with open(paths["hosts"], "w") as fh:
        fh.write("\n".join(hosts) + "\n")
    try:
        with open("/etc/resolv.conf") as fh:
            resolv = fh.read()
    except OSError:
        resolv = ""
    dns = {k: v for k, v in (dns or {}).items() if v}
    with open(paths["resolv.conf"], "w") as fh:
        fh.write(_resolv_conf(resolv, network_mode, nameservers, dns))
    return paths


# --- changes while the container runs (network connect/disconnect) -----------------------
def add_host(path: str, ip: str, hostname: str) -> None:
    """Add ``ip hostname`` to the hosts file at ``path`` (a network connected while
    the container runs: dockerd names the new address too)."""
    line = f"{ip}\t{hostname}"
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return
    if line not in lines:
        _replace(path, "\n".join([*lines, line]) + "\n")


def remove_host(path: str, ip: str, hostname: str) -> None:
    """Remove the ``ip hostname`` line :func:`add_host` (or the start) wrote."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return
    kept = [x for x in lines if x.split() != [ip, hostname]]
    if kept != lines:
        _replace(path, "\n".join(kept) + "\n")


def remove_alias(path: str, alias: str) -> None:
    """Remove the line a legacy link ``alias`` wrote (``docker rm --link``)."""
    try:
        with open(path) as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return
    kept = [x for x in lines if x.split()[1:2] != [alias]]
    if kept != lines:
        _replace(path, "\n".join(kept) + "\n")


def use_embedded_dns(path: str, dns: dict | None = None) -> None:
    """Point the resolv.conf at ``path`` to the embedded DNS (127.0.0.11), the
    host's search domains kept, as dockerd does when a container on the default
    bridge is connected to a user network; ``dns``: HostConfig's ``DnsSearch``
    and ``DnsOptions``."""
    try:
        with open(path) as fh:
            if "nameserver 127.0.0.11" in fh.read().splitlines():
                return
    except FileNotFoundError:
        return
    try:
        with open("/etc/resolv.conf") as fh:
            resolv = fh.read()
    except OSError:
        resolv = ""
    _replace(path, _resolv_conf(resolv, "private", ["127.0.0.11"], {k: v for k, v in (dns or {}).items() if v}))


def _replace(path: str, text: str) -> None:
    """Rewrite ``path`` in place: it is bind-mounted into the container, so the
    inode must stay (a rename would leave the container with the old file)."""
    with open(path, "r+") as fh:
        fh.write(text)
        fh.truncate()
