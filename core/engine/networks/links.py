"""Legacy container links: ``--link NAME:ALIAS`` (``HostConfig.Links``) on the
default bridge, as dockerd gives them.

A link is checked at create (the container exists; not with ``host`` or
``container:`` networking) and kept in the record's ``HostConfig.Links`` in
dockerd's form, ``/child:/parent/alias``.  At each start the linked container must
run on the default bridge; the new one then gets, as dockerd's
``daemon/links``:

- environment variables: ``ALIAS_NAME=/parent/alias``, ``ALIAS_PORT`` (the lowest
  exposed port, tcp before udp), ``ALIAS_PORT_<port>_<PROTO>`` with ``_ADDR``,
  ``_PORT``, ``_PROTO`` for each exposed port (three or more in a row are also
  a range: ``_START``, ``_END``, ``_PORT_START``, ``_PORT_END``), and
  ``ALIAS_ENV_<var>`` for the linked container's ``Config.Env`` (``HOME`` and
  ``PATH`` left out); the container's own ``Env`` wins over them;
- an ``/etc/hosts`` line: the linked container's address, then the alias, its
  hostname and its name (unless the alias is its name).

On a user network a link is the endpoint's (``EndpointSettings.Links``): the alias
is a name the embedded DNS answers for that container only (see
:meth:`.endpoints.Endpoints.lookup`).
"""

from __future__ import annotations

from typing import Any

from ...errors import DockyardError, InvalidParameter, NotFound


def parse(text: str) -> tuple[str, str]:
    """``"web:db"`` -> ``("web", "db")``; ``"web"`` -> ``("web", "web")``; dockerd's own
    ``"/web:/parent/db"`` (a client re-creating from inspect) -> ``("web", "db")``."""
    parts = str(text).split(":")
    if len(parts) > 2 or not parts[0].strip("/"):
        raise InvalidParameter(f"bad format for links: {text}")
    name = parts[0].strip("/")
    alias = parts[1].rsplit("/", 1)[-1] if len(parts) == 2 else name
    if not alias:
        raise InvalidParameter(f"bad format for links: {text}")
    return name, alias


def normalise(links: list | None, mode: str, parent: str, containers: Any) -> list[str] | None:
    """A create's ``HostConfig.Links`` checked and in dockerd's form (None: no links)."""
    if not links:
        return None
    if mode == "host":
        raise InvalidParameter("conflicting options: host type networking can't be used with links. "
                               "This would result in undefined behavior")
    if mode.startswith("container:"):
        raise InvalidParameter("conflicting options: container type network can't be used with links. "
                               "This would result in undefined behavior")
    if mode != "bridge":  # a user network's links are its endpoint's (the docker CLI sends them there too)
        return None
    out = []
    for text in links:
        name, alias = parse(text)
        try:
            child = containers.get(containers.resolve(name))
        except NotFound:
            raise InvalidParameter(f"could not get container for {name}: No such container: {name}") from None
        out.append(f"/{child.name.lstrip('/')}:/{parent}/{alias}")
    return out


def _sorted_ports(exposed: dict | None) -> list[tuple[int, str]]:
    ports = []
    for key in exposed or {}:
        port, _, proto = str(key).partition("/")
        if port.isdigit():
            ports.append((int(port), (proto or "tcp").lower()))
    return sorted(ports, key=lambda p: (p[0], p[1] != "tcp"))


def to_env(link_name: str, ip: str, exposed: dict | None, env: list | None) -> list[str]:
    """The variables of one link (``link_name``: ``/parent/alias``) to a container at ``ip``."""
    alias = link_name.rsplit("/", 1)[-1].upper().replace("-", "_")
    ports = _sorted_ports(exposed)
    out = []
    if ports:
        out.append(f"{alias}_PORT={ports[0][1]}://{ip}:{ports[0][0]}")
    i = 0
    while i < len(ports):  # ranges first, as dockerd's nextContiguous finds them
        port, proto = ports[i]
        j = i
        while j + 1 < len(ports) and ports[j + 1][0] == ports[j][0] + 1:
            j += 1
        if j > i + 1:  # three ports or more in a row
            key = f"{alias}_PORT_{port}_{proto.upper()}"
            end_port, end_proto = ports[j]
            end = f"{alias}_PORT_{port}_{end_proto.upper()}"
            out += [f"{key}_START={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PROTO={proto}",
                    f"{key}_PORT_START={port}", f"{end}_END={end_proto}://{ip}:{end_port}",
                    f"{end}_PORT_END={end_port}"]
            i = j + 1
        else:
            i += 1
    for port, proto in ports:  # and every port on its own
        key = f"{alias}_PORT_{port}_{proto.upper()}"
        out += [f"{key}={proto}://{ip}:{port}", f"{key}_ADDR={ip}", f"{key}_PORT={port}", f"{key}_PROTO={proto}"]
    out.append(f"{alias}_NAME={link_name}")
    for item in env or []:
        var, sep, value = str(item).partition("=")
        if sep and var not in ("HOME", "PATH"):
            out.append(f"{alias}_ENV_{var}={value}")
    return out


def at_start(rec: Any, containers: Any, default_network: str = "bridge") -> tuple[list[str], list[str]]:
    """``(environment, /etc/hosts lines)`` of ``rec``'s links, for its start on the
    default bridge; a linked container that does not run fails the start (dockerd's
    500 "Cannot link to a non running container")."""
    env: list[str] = []
    hosts: list[str] = []
    for text in rec.host_config.get("Links") or []:
        name, alias = parse(text)
        link_name = f"/{rec.name.lstrip('/')}/{alias}"
        try:
            child = containers.get(containers.resolve(name))
        except NotFound:
            raise DockyardError(f"Cannot link to /{name}, as it does not exist") from None
        if not child.state.running:
            raise DockyardError(f"Cannot link to a non running container: /{child.name.lstrip('/')} AS {link_name}")
        ep = child.network_settings.endpoints.get(default_network)
        if ep is None or not ep.ip_address:
            raise DockyardError(f"container {child.id} not attached to default bridge network")
        env += to_env(link_name, ep.ip_address, child.config.get("ExposedPorts"), child.config.get("Env"))
        names = [alias, child.config.get("Hostname") or child.id[:12]]
        if alias != child.name.lstrip("/"):
            names.append(child.name.lstrip("/"))
        hosts.append(f"{ep.ip_address}\t{' '.join(names)}")
    return env, hosts
