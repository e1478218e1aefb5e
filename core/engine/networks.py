"""Networks: the records, their drivers' kernel objects, and containers' endpoints.

A network is a row of the store's ``networks`` table holding the hook specs'
network dict (plus ``created``, ``predefined``, ``driver_data``).  The three
predefined ones are named after their drivers, as Docker's: ``bridge`` (the
default, when the bridge driver is enabled), ``host`` and ``none``.  Creating a
network runs its driver's ``network_create`` (again at every daemon start: the
kernel objects do not outlive a reboot; the hook is idempotent).

A container's endpoints exist while it runs (Docker's model): :func:`Networks.up`
makes its network namespace (pinned under the exec root), allocates an address on
each of its networks (IPAM, transactional), attaches and publishes its ports;
:func:`Networks.down` undoes all of it.  What it is connected to is in its record:
``rec["Networks"]`` = ``{network name: {"Aliases": [...], "IPAMConfig": {...}}}``;
what is up now in ``rec["NetworkSettings"]``.
"""

import ipaddress
import json
import logging
import secrets
import threading
from datetime import datetime, timezone

from ..errors import Conflict, InvalidParameter, NetworkError, NotFound
from . import ipam

log = logging.getLogger("dockyard.networks")
PREDEFINED = ("bridge", "host", "none")
BRIDGE_NAME = "com.docker.network.bridge.name"


class NetworkNotFound(NotFound):
    pass


def _now():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Networks:
    def __init__(self, engine):
        self.engine = engine
        self.store = engine.store
        self._lock = threading.RLock()
        self.dns = None  # the embedded resolver, started with the first user network endpoint

    # ------------------------------------------------------------ records
    def all(self):
        return [json.loads(r["data"]) for r in self.store.query("SELECT data FROM networks ORDER BY name")]

    def get(self, ref):
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
        return json.loads(row["data"])

    def _save(self, db, net):
        # an upsert, not INSERT OR REPLACE: a replace deletes the row first, and the
        # delete would cascade to the network's address allocations
        db.execute("INSERT INTO networks(id, name, driver, data) VALUES (?,?,?,?) "
                   "ON CONFLICT(id) DO UPDATE SET data=excluded.data",
                   (net["id"], net["name"], net["driver"], json.dumps(net)))

    def slot(self, net):
        try:
            return self.engine.network_slots[net["driver"]]
        except KeyError:
            raise NetworkError(f"network {net['name']}: its driver {net['driver']!r} is not enabled "
                               "(plugins.toml network.drivers)") from None

    def namespace_mode(self, net):
        return self.slot(net).hook.network_namespace(network=net) or "private"

    # ------------------------------------------------------------ create/remove
    def ensure_predefined(self, bridge_options):
        """The predefined networks of the enabled drivers exist and their kernel
        objects are there; so are every user network's (after a reboot)."""
        for name in PREDEFINED:
            if name in self.engine.network_slots and not self.store.one("SELECT 1 FROM networks WHERE name=?", name):
                options = {}
                subnet = gateway = None
                if name == "bridge":
                    options = {BRIDGE_NAME: bridge_options.get("default_bridge") or "dockyard0",
                               "com.docker.network.bridge.default_bridge": "true"}
                    subnet, gateway = bridge_options.get("default_subnet"), bridge_options.get("default_gateway")
                self.create({"Name": name, "Driver": name, "Options": options,
                             "IPAM": {"Config": [{"Subnet": subnet, "Gateway": gateway}] if subnet else []}},
                            predefined=True)
        for net in self.all():
            if net["driver"] in self.engine.network_slots:
                try:
                    self.slot(net).hook.network_create(network=net)
                except Exception as exc:  # a network that cannot come back must not stop the daemon
                    log.error("network %s could not be set up again: %s", net["name"], exc)

    def create(self, body, predefined=False):
        name = body.get("Name") or ""
        if not name:
            raise InvalidParameter("network name is required")
        if not predefined and name in PREDEFINED:
            raise Conflict(f"{name} is a pre-defined network and cannot be created")
        driver = body.get("Driver") or "bridge"
        if driver not in self.engine.network_slots:
            raise NotFound(f"plugin \"{driver}\" not found (enabled network drivers: "
                           f"{', '.join(sorted(self.engine.network_slots))})")
        if driver in ("host", "none") and not predefined:
            raise Conflict(f"only one instance of \"{driver}\" network is allowed")
        if body.get("EnableIPv6"):
            raise InvalidParameter("IPv6 networks are not supported")
        net = {"id": secrets.token_hex(32), "name": name, "driver": driver, "created": _now(),
               "options": dict(body.get("Options") or {}), "labels": dict(body.get("Labels") or {}),
               "internal": bool(body.get("Internal")), "attachable": bool(body.get("Attachable")),
               "predefined": predefined, "ipam": None, "driver_data": {}}
        slot = self.slot(net)
        with self._lock:
            if self.store.one("SELECT 1 FROM networks WHERE name=?", name):
                raise Conflict(f"network with name {name} already exists")
            if slot.hook.network_namespace(network=net) == "private" and driver != "none":
                net["ipam"] = self._ipam(name, body.get("IPAM") or {})
            with self.store.tx() as db:
                self._save(db, net)
                if net["ipam"]:
                    ipam.allocate(db, net["id"], net["ipam"]["subnet"], "gateway", net["ipam"]["gateway"])
            try:
                net["driver_data"] = slot.hook.network_create(network=net) or {}
            except BaseException:
                with self.store.tx() as db:
                    db.execute("DELETE FROM networks WHERE id=?", (net["id"],))
                raise
            with self.store.tx() as db:
                self._save(db, net)
        self.engine.emit("network", "create", net["id"], {"name": name, "type": driver})
        return net["id"]

    def _ipam(self, name, body):
        configs = body.get("Config") or []
        if len(configs) > 1:
            raise InvalidParameter("only one IPAM configuration (subnet) per network is supported")
        cfg = configs[0] if configs else {}
        in_use = [(n["name"], ipaddress.ip_network(n["ipam"]["subnet"])) for n in self.all() if n.get("ipam")]
        if cfg.get("Subnet"):
            subnet = ipam.parse_subnet(cfg["Subnet"])
            ipam.check_overlap(subnet, in_use, name)
        else:
            subnet = ipam.pick_subnet([net for _, net in in_use])
        gateway = cfg.get("Gateway") or str(next(subnet.hosts()))
        try:
            if ipaddress.ip_address(gateway) not in subnet:
                raise ValueError("outside")
        except ValueError:
            raise InvalidParameter(f"invalid gateway {gateway!r}: it is not an address of the subnet {subnet}") from None
        return {"subnet": str(subnet), "gateway": gateway}

    def remove(self, ref):
        net = self.get(ref)
        if net.get("predefined"):
            raise Conflict(f"{net['name']} is a pre-defined network and cannot be removed")
        with self._lock:
            users = self.containers_on(net)
            if users:
                raise Conflict(f"error while removing network: network {net['name']} id {net['id']} has active "
                               f"endpoints ({', '.join(u['Name'].lstrip('/') for u in users)})")
            self.slot(net).hook.network_delete(network=net)
            with self.store.tx() as db:
                db.execute("DELETE FROM ip_allocations WHERE network_id=?", (net["id"],))
                db.execute("DELETE FROM networks WHERE id=?", (net["id"],))
        self.engine.emit("network", "destroy", net["id"], {"name": net["name"], "type": net["driver"]})

    def containers_on(self, net, running_only=True):
        """Container records connected to ``net`` (running ones, or all)."""
        out = []
        for rec in self.engine.containers.all():
            attached = net["name"] in (rec.get("NetworkSettings") or {}).get("Networks", {}) \
                if running_only else net["name"] in (rec.get("Networks") or {})
            if attached:
                out.append(rec)
        return out

    def prune(self):
        removed = []
        for net in self.all():
            if net.get("predefined") or self.containers_on(net, running_only=False):
                continue
            try:
                self.remove(net["id"])
                removed.append(net["name"])
            except (Conflict, NetworkError) as exc:
                log.warning("prune: %s", exc)
        return removed
