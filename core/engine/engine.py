"""The engine: the chosen drivers, the stores and the container engine, wired.

Construction validates everything first (config, driver names, support, plugin
hooks) and only then touches the disk, so a refused configuration leaves no trace.
"""

import logging
import os
import shutil
import threading

from .. import plugins
from ..errors import ConfigError, InvalidParameter

log = logging.getLogger("dockyard.engine")


class Engine:
    def __init__(self, config, data_root, exec_root, storage_driver=None, exec_driver=None):
        self.config = config
        self.data_root = os.path.abspath(data_root)
        self.exec_root = os.path.abspath(exec_root)
        # a data root pinned to a storage driver (`dockyard storage migrate`) keeps it
        from .migrate import recorded_storage_driver

        pinned = recorded_storage_driver(self.data_root)
        if pinned and storage_driver and storage_driver != pinned:
            raise ConfigError(f"{self.data_root} keeps its layers with storage driver {pinned!r}, not "
                              f"{storage_driver!r}: drop --storage-driver, or move them first with "
                              f"`dockyard storage migrate --to {storage_driver}`")
        if storage_driver:
            config = config.with_override("storage", storage_driver)
        elif pinned:
            import attrs

            config = attrs.evolve(config.with_override("storage", pinned),
                                  source=f"{config.source} (storage driver pinned by a migration)")
        if exec_driver:
            config = config.with_override("exec", exec_driver)
        self.config = config
        # 1. choose and validate: nothing is written yet
        self.storage_slot = plugins.select_driver(
            "storage", config.drivers["storage"], os.path.join(self.data_root, "storage"),
            config.options["storage"], config.source, prior_wins=True)
        self.exec_slot = plugins.select_driver(
            "exec", config.drivers["exec"], os.path.join(self.exec_root, "exec"),
            config.options["exec"], config.source)
        self.network_slots = {}
        for name in config.drivers["network"]:
            self.network_slots[name] = plugins.select_driver(
                "network", [name], os.path.join(self.data_root, "network"),
                config.options["network"], config.source)
        from .volumes import select_slots as volume_slots

        self.volume_slots = volume_slots(config, self.data_root)
        slots = [self.storage_slot, self.exec_slot, *self.network_slots.values(), *self.volume_slots.values()]
        self.events = plugins.load_extensions(config, slots)
        self._subscribers = []
        self._sub_lock = threading.Lock()
        # 2. only now create state
        from ..store import Store
        from .containers import Containers
        from .content import ContentStore
        from .endpoints import Endpoints
        from .execs import Execs
        from .networks import Networks
        from .images import ImageStore
        from .layers import LayerStore

        from . import modes

        modes.make_roots(self.data_root, self.exec_root)  # 0710: nothing made below is ever reachable
        for slot in slots:
            slot.init()
        modes.secure_tree(self.data_root, self.exec_root)  # the homes just made; an older Dockyard's modes
        self.store = Store(os.path.join(self.data_root, "dockyard.db"))
        self.layers = LayerStore(self.storage_slot, self.store)
        self.content = ContentStore(os.path.join(self.data_root, "content"))  # configs, manifests, layer blobs
        self.images = ImageStore(self.store, self.layers, os.path.join(self.data_root, "tmp"), self.emit,
                                 content=self.content)
        self.containers = Containers(self)
        self.execs = Execs(self)
        self.networks = Networks(self)
        from .volumes import Volumes

        self.volumes = Volumes(self, self.volume_slots)
        self.endpoints = Endpoints(self)
        self.networks.ensure_predefined(config.options["network"].get("bridge", {}))
        from .events import EventBus
        from .health import HealthMonitor
        from .restart import RestartManager

        self.bus = EventBus(self)  # GET /events: stamped messages, filters, a replayable history
        self.restarts = RestartManager(self)
        self.health = HealthMonitor(self)

    def restore(self):
        """At daemon start, before the first request: what the last daemon left."""
        self.layers.sweep_scratch()  # a build step it did not finish
        self.layers.sweep_staged()  # layers it was writing or removing (load, commit, pull, import, rmi)
        self.content.sweep_ingest()  # blobs it was writing, except resumable pulls
        _empty(os.path.join(self.data_root, "tmp"))  # its spools and half-made diffs
        self.containers.restore()
        self.restarts.start()  # restart policies, once every record is current
        self.health.start()  # re-arm the health checks of the running containers

    # networks
    def network_mode(self, mode):
        """HostConfig.NetworkMode -> the record's: a network's name, or container:ID."""
        if not mode or mode == "default":
            return self.config.default_network
        if mode.startswith("container:"):
            return "container:" + self.containers.resolve(mode.split(":", 1)[1])
        return self.networks.get(mode)["name"]

    def endpoint_configs(self, mode, networking):
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
            net = self.networks.get(ref)
            cfg = dict(cfg or {})
            if net["driver"] in ("host", "none") and (len(wanted) or ref != mode):
                raise InvalidParameter(f"container cannot be connected to network {net['name']} along with others")
            ip = ((cfg.get("IPAMConfig") or {}).get("IPv4Address"))
            if ip and (net.get("predefined") or not net.get("ipam")):
                raise InvalidParameter("user specified IP address is supported on user defined networks only")
            out[net["name"]] = {"Aliases": list(cfg.get("Aliases") or []),
                                "IPAMConfig": {"IPv4Address": ip} if ip else None}
        return out

    def network_slot(self, name):
        return self.network_slots[name]

    # events
    def subscribe(self, callback):
        with self._sub_lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback):
        with self._sub_lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def emit(self, type_, action, id_, attributes):
        with self._sub_lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(type_, action, id_, attributes)
            except Exception:
                log.exception("event subscriber failed")
        hook = self.events.hook.dockyard_container_event if type_ == "container" else (
            self.events.hook.dockyard_image_event if type_ == "image" else None)
        if hook is None:
            return
        try:
            if type_ == "container":
                hook(container_id=id_, action=action, attributes=dict(attributes))
            else:
                hook(image_id=id_, action=action, attributes=dict(attributes))
        except Exception:
            log.exception("extension failed on %s %s", type_, action)

    def drivers_info(self):
        return {
            "storage": self.storage_slot.name,
            "exec": self.exec_slot.name,
            "network": sorted(self.network_slots),
        }

    def close(self):
        self.health.close()
        if self.networks.dns is not None:
            self.networks.dns.close()
        self.store.close()


def _empty(directory):
    for entry in os.scandir(directory):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            log.warning("could not remove the leftover %s: %s", entry.path, exc)
