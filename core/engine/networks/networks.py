"""Networks: the records, their drivers' kernel objects, and containers' endpoints.

A network is a row of the store's ``networks`` table holding a
:class:`~dockyard.model.network.NetworkRecord`; its drivers get the hook specs'
network dict (:meth:`~dockyard.model.network.NetworkRecord.to_hook`).  The three
predefined ones are named after their drivers, as Docker's: ``bridge`` (the
default, when the bridge driver is enabled), ``host`` and ``none``.  Creating a
network runs its driver's ``network_create`` (again at every daemon start: the
kernel objects do not outlive a reboot; the hook is idempotent).

A container's endpoints exist while it runs (Docker's model): :meth:`.endpoints.Endpoints.up`
makes its network namespace (pinned under the exec root), allocates an address on
each of its networks (IPAM, transactional), attaches and publishes its ports;
:meth:`.endpoints.Endpoints.down` undoes all of it.  What it is connected to is in its record:
``rec.networks`` = ``{network name: EndpointConfig}``; what is up now in
``rec.network_settings``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import secrets
import threading
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Protocol

from ...errors import Conflict, InvalidParameter, NetworkError, NotFound
from ...model.convert import dumps, loads
from ...model.network import PREDEFINED, IpamPool, NetworkRecord
from . import ipam

if TYPE_CHECKING:
    import sqlite3

    from ...model.container import ContainerRecord

log = logging.getLogger("dockyard.networks")
BRIDGE_NAME = "com.docker.network.bridge.name"
DEFAULT_OPTION = "com.docker.network.bridge.default_bridge"
#: the default network's Linux bridge, unless --bridge names another (dockerd's docker0)
DEFAULT_BRIDGE = "dockyard0"


class NetworkNotFound(NotFound):
    pass


class Containers(Protocol):
    """What networks need of the container records."""

    def all(self) -> list[ContainerRecord]: ...


def _strings(mapping: dict[str, Any] | None) -> dict[str, str]:
    """A ``map[string]string`` of the API as Go decodes it: a null value is ""."""
    return {key: "" if value is None else value for key, value in (mapping or {}).items()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Networks:
    """The network records and their drivers (``slots``: driver name -> plugins.Slot)."""

    def __init__(self, store: Any, slots: dict, containers: Containers,
                 emit: Callable[[str, str, str, dict], None]) -> None:
        self.store = store
        self.slots = slots
        self.containers = containers
        self.emit = emit
        self._lock = threading.RLock()
        self.dns: Any = None  # the embedded resolver, started with the first user network endpoint

    # ------------------------------------------------------------ records
    def all(self) -> list[NetworkRecord]:
        return [loads(r["data"], NetworkRecord) for r in self.store.query("SELECT data FROM networks ORDER BY name")]

    def get(self, ref: str) -> NetworkRecord:
        """The network named ``ref``, with id ``ref`` or a unique id prefix."""
        if not ref:
            raise NetworkNotFound("network  not found")
        row = self.store.one("SELECT data FROM networks WHERE id=? OR name=?", ref, ref)
        if row is None:
            rows = self.store.query("SELECT data FROM networks WHERE id LIKE ?", ref + "%")
            if len(rows) > 1:
                raise InvalidParameter(f"network {ref} is ambiguous ({len(rows)} matches found based on ID prefix)")
            row = rows[0] if rows else None
        if row is None:
            raise NetworkNotFound(f"network {ref} not found")
        return loads(row["data"], NetworkRecord)

    def _save(self, db: sqlite3.Connection, net: NetworkRecord) -> None:
        # an upsert, not INSERT OR REPLACE: a replace deletes the row first, and the
        # delete would cascade to the network's address allocations
        db.execute("INSERT INTO networks(id, name, driver, data) VALUES (?,?,?,?) "
                   "ON CONFLICT(id) DO UPDATE SET data=excluded.data",
                   (net.id, net.name, net.driver, dumps(net)))

    def slot(self, net: NetworkRecord) -> Any:
        try:
            return self.slots[net.driver]
        except KeyError:
            raise NetworkError(f"network {net.name}: its driver {net.driver!r} is not enabled "
                               "(plugins.toml network.drivers)") from None

    def namespace_mode(self, net: NetworkRecord) -> str:
        mode: str = self.slot(net).hook.network_namespace(network=net.to_hook()) or "private"
        return mode

    # ------------------------------------------------------------ create/remove
    def ensure_predefined(self, bridge_options: dict) -> None:
        """The predefined networks of the enabled drivers exist and their kernel
        objects are there; so are every user network's (after a reboot).

        A predefined network that cannot be set up stops the daemon, as dockerd
        stops when docker0 cannot be (another daemon owns the bridge: the
        driver's error names it); a user network's failure is only logged."""
        for name in PREDEFINED:
            if name not in self.slots:
                continue
            row = self.store.one("SELECT data FROM networks WHERE name=?", name)
            current = loads(row["data"], NetworkRecord) if row is not None else None
            if current is not None and name == "bridge":
                current = self._default_bridge_current(current, bridge_options)
            if current is None:
                options, ipam_cfg = {}, {}
                if name == "bridge":
                    options = {BRIDGE_NAME: bridge_options.get("default_bridge") or DEFAULT_BRIDGE,
                               DEFAULT_OPTION: "true"}
                    ipam_cfg = self._default_bridge_ipam(options[BRIDGE_NAME], bridge_options)
                self.create({"Name": name, "Driver": name, "Options": options,
                             "IPAM": {"Config": [ipam_cfg] if ipam_cfg else []}}, predefined=True)
        for net in self.all():
            if net.driver not in self.slots:
                continue
            try:
                data = self.slot(net).hook.network_create(network=net.to_hook()) or {}
            except Exception as exc:  # a network that cannot come back must not stop the daemon
                if net.predefined:
                    raise
                log.error("network %s could not be set up again: %s", net.name, exc)
                continue
            if data != net.driver_data:  # e.g. its rules moved to this daemon's table
                net.driver_data = data
                with self.store.tx() as db:
                    self._save(db, net)

    @staticmethod
    def _default_bridge_ipam(bridge: str, bridge_options: dict) -> dict[str, Any]:
        """The default network's subnet and gateway: the configured ones
        (``--bip``), else those of the address ``bridge`` already has (dockerd
        adopts docker0's), else none (IPAM picks a free pool)."""
        if bridge_options.get("default_subnet"):
            return {"Subnet": bridge_options["default_subnet"], "Gateway": bridge_options.get("default_gateway")}
        found = ipam.interface_address(bridge)
        if found is None:
            return {}
        subnet = found.network
        if subnet.prefixlen > 30:
            log.warning("the default bridge %s has the address %s, too small a network for containers: "
                        "the bridge network takes a free pool (--bip chooses one)", bridge, found)
            return {}
        log.info("the default bridge %s has the address %s: the bridge network uses %s (--bip chooses another)",
                 bridge, found, subnet)
        gateway = found.ip if found.ip not in (subnet.network_address, subnet.broadcast_address) else None
        return {"Subnet": str(subnet), "Gateway": str(gateway) if gateway else None}

    def _default_bridge_current(self, net: NetworkRecord, bridge_options: dict) -> NetworkRecord | None:
        """``net`` (the stored default network), or None after removing it when
        the daemon's flags now name another bridge or subnet (as dockerd makes
        its default network from its flags at each start).  While containers
        run on it, it stays as it is until they have stopped."""
        want_bridge = bridge_options.get("default_bridge") or DEFAULT_BRIDGE
        changed = []
        if net.options.get(BRIDGE_NAME) != want_bridge:
            changed.append(f"bridge {want_bridge}")
        subnet = bridge_options.get("default_subnet")
        if subnet and net.pool:
            now = (ipaddress.ip_network(net.pool.subnet), net.pool.gateway)
            gateway = bridge_options.get("default_gateway") or now[1]
            try:
                if (ipaddress.ip_network(subnet), gateway) != now:
                    changed.append(f"subnet {subnet} (gateway {gateway})")
            except ValueError:
                changed.append(f"subnet {subnet}")
        if not changed:
            return net
        users = self.containers_on(net)
        if users:
            log.warning("the bridge network keeps bridge %s and subnet %s while containers run on it (%s): "
                        "it takes %s when the daemon starts again after they have stopped",
                        net.options.get(BRIDGE_NAME), net.pool.subnet if net.pool else None,
                        ", ".join(u.name.lstrip("/") for u in users[:5]), " and ".join(changed))
            return net
        log.info("the bridge network now takes %s", " and ".join(changed))
        self.slot(net).hook.network_delete(network=net.to_hook())  # its rules; the bridge stays, as docker0 does
        with self.store.tx() as db:
            db.execute("DELETE FROM ip_allocations WHERE network_id=?", (net.id,))
            db.execute("DELETE FROM networks WHERE id=?", (net.id,))
        return None

    def create(self, body: dict, predefined: bool = False) -> str:
        name = body.get("Name") or ""
        if not name:
            raise InvalidParameter("network name is required")
        if not predefined and name in PREDEFINED:
            raise Conflict(f"{name} is a pre-defined network and cannot be created")
        driver = body.get("Driver") or "bridge"
        if driver not in self.slots:
            raise NotFound(f"plugin \"{driver}\" not found (enabled network drivers: "
                           f"{', '.join(sorted(self.slots))})")
        if driver in ("host", "none") and not predefined:
            raise Conflict(f"only one instance of \"{driver}\" network is allowed")
        net = NetworkRecord(id=secrets.token_hex(32), name=name, driver=driver, created=_now(),
                            options=_strings(body.get("Options")), labels=_strings(body.get("Labels")),
                            internal=bool(body.get("Internal")), attachable=bool(body.get("Attachable")),
                            predefined=predefined, enable_ipv6=bool(body.get("EnableIPv6")))
        slot = self.slot(net)
        addressed = slot.hook.network_namespace(network=net.to_hook()) == "private" and driver != "none"
        configs = [c or {} for c in (body.get("IPAM") or {}).get("Config") or []]
        # a free IPv4 pool (none named): held until it is routed
        picked = addressed and not any(c.get("Subnet") and ":" not in str(c["Subnet"]) for c in configs)
        with self._lock, (ipam.pool_lock() if picked else contextlib.nullcontext()):
            if self.store.one("SELECT 1 FROM networks WHERE name=?", name):
                raise Conflict(f"network with name {name} already exists")
            if addressed:
                net.pools = self._ipam(name, configs, net.enable_ipv6)
            with self.store.tx() as db:
                self._save(db, net)
                for pool in net.pools:
                    ipam.allocate(db, net.id, pool.subnet, "gateway" if ":" not in pool.subnet
                                  else ipam.v6("gateway"), pool.gateway)
            try:
                net.driver_data = slot.hook.network_create(network=net.to_hook()) or {}
            except BaseException:
                with self.store.tx() as db:
                    db.execute("DELETE FROM networks WHERE id=?", (net.id,))
                raise
            with self.store.tx() as db:
                self._save(db, net)
        self.emit("network", "create", net.id, {"name": name, "type": driver})
        return net.id

    def _ipam(self, name: str, configs: list[dict], ipv6: bool) -> list[IpamPool]:
        """The network's pools: one IPv4 (named or picked) and, for ``ipv6``, one
        IPv6 (named: as dockerd 20.10, there is no default IPv6 pool)."""
        subnets = [(cfg, ipam.parse_subnet(cfg["Subnet"], ipv6=ipv6)) for cfg in configs if cfg.get("Subnet")]
        if any(not cfg.get("Subnet") for cfg in configs) and len(configs) > 1:
            raise InvalidParameter("every IPAM configuration of a network with several names a subnet")
        for version in (4, 6):
            if len([s for _, s in subnets if s.version == version]) > 1:
                raise InvalidParameter(f"only one IPv{version} subnet per network is supported")
        in_use = [(n.name, ipaddress.ip_network(p.subnet)) for n in self.all() for p in n.pools]
        if not any(s.version == 4 for _, s in subnets):
            subnets.insert(0, ((configs or [{}])[0] if not subnets else {},
                               ipam.pick_subnet([net for _, net in in_use if net.version == 4])))
        if ipv6 and not any(s.version == 6 for _, s in subnets):
            raise NetworkError("could not find an available, non-overlapping IPv6 address pool among the "
                               "defaults to assign to the network")
        pools = []
        for cfg, subnet in sorted(subnets, key=lambda x: x[1].version):
            ipam.check_overlap(subnet, in_use, name)
            gateway = cfg.get("Gateway") or str(next(subnet.hosts()))
            try:
                if ipaddress.ip_address(gateway) not in subnet:
                    raise ValueError("outside")
            except ValueError:
                raise InvalidParameter(f"invalid gateway {gateway!r}: it is not an address of the subnet "
                                       f"{subnet}") from None
            pools.append(IpamPool(subnet=str(subnet), gateway=gateway))
        return pools

    def remove(self, ref: str) -> None:
        net = self.get(ref)
        if net.predefined:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        with self._lock:
            users = self.containers_on(net)
            if users:
                raise Conflict(f"error while removing network: network {net.name} id {net.id} has active "
                               f"endpoints ({', '.join(u.name.lstrip('/') for u in users)})")
            self.slot(net).hook.network_delete(network=net.to_hook())
            with self.store.tx() as db:
                db.execute("DELETE FROM ip_allocations WHERE network_id=?", (net.id,))
                db.execute("DELETE FROM networks WHERE id=?", (net.id,))
        self.emit("network", "destroy", net.id, {"name": net.name, "type": net.driver})

    def containers_on(self, net: NetworkRecord, running_only: bool = True) -> list[ContainerRecord]:
        """Container records connected to ``net`` (running ones, or all)."""
        return [rec for rec in self.containers.all()
                if net.name in (rec.network_settings.endpoints if running_only else rec.networks)]

    def prune(self) -> list[str]:
        removed = []
        for net in self.all():
            if net.predefined or self.containers_on(net, running_only=False):
                continue
            try:
                self.remove(net.id)
                removed.append(net.name)
            except (Conflict, NetworkError) as exc:
                log.warning("prune: %s", exc)
        return removed
