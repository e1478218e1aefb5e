"""The composition root: the chosen drivers, the stores and every service, wired.

Each service is built with the narrow collaborators it uses, never with the
engine (see each facade's constructor); the front ends get the facades:

    containers  :class:`~.containers.service.ContainerService` (and exec instances)
    images      :class:`~.images.service.ImageService`
    networks    :class:`~.networks.service.NetworkService`
    volumes     :class:`~.volumes.service.VolumeService`
    logs        :class:`~.logs.service.LogService` (containers' log drivers)
    storage     :class:`~.layers.service.StorageService`
    system      :class:`~.system.service.SystemService` (info, df, check, events)
    registry    :class:`dockyard.registry.service.Registry`
    builder     :class:`dockyard.builder.service.BuildService`

Construction validates everything first (config, driver names, support, plugin
hooks: :func:`dockyard.plugins.choose`) and only then touches the disk, so a
refused configuration leaves no trace.
"""

from __future__ import annotations

import logging
import os
import shutil
from typing import Any

import attrs

from .. import plugins
from ..config import Config
from ..store import Store
from . import modes
from .bundle.service import Bundles
from .containers.records import ContainerRecords
from .containers.service import ContainerService
from .events import Emitter, EventBus
from .images.commit import ImageWriter
from .images.service import ImageService
from .images.store import ImageStore
from .logs.service import LogService
from .layers.content import ContentStore
from .layers.service import StorageService
from .layers.store import LayerStore
from .networks.service import NetworkService
from .system.service import SystemService
from .volumes.service import VolumeService

log = logging.getLogger("dockyard.engine")


@attrs.frozen
class RegistryOptions:
    """The daemon's registry flags (``--insecure-registry``, ``--registry-certs-dir``,
    the transfer limits): the keyword arguments of the registry service."""

    insecure: list[str] = attrs.Factory(list)
    certs_dir: list[str] | None = None
    #: ``{registry host: [mirror URL, ...]}`` (``--registry-mirror``, ``[registry."HOST"] mirrors``)
    mirrors: dict[str, list[str]] = attrs.Factory(dict)
    #: hosts whose pulls stop when every mirror missed (``mirror_fallback = false``)
    no_fallback: list[str] = attrs.Factory(list)
    max_downloads: int = 3
    max_uploads: int = 5
    upload_chunk: int = 16 << 20


class Engine:
    """Every service of one daemon on ``data_root`` (persistent state) and
    ``exec_root`` (runtime state); ``storage_driver``/``exec_driver`` are the
    daemon's overrides of ``config``."""

    def __init__(self, config: Config, data_root: str, exec_root: str, storage_driver: str | None = None,
                 exec_driver: str | None = None, registry: RegistryOptions | None = None) -> None:
        from ..builder.service import BuildService
        from ..registry.service import Registry

        self.data_root = os.path.abspath(data_root)
        self.exec_root = os.path.abspath(exec_root)
        # 1. choose and validate: nothing is written yet
        storage_slot, = plugins.choose("storage", config, self.data_root, self.exec_root, storage_driver)
        self.exec_slot, = plugins.choose("exec", config, self.data_root, self.exec_root, exec_driver)
        network_slots = {s.name: s for s in plugins.choose("network", config, self.data_root, self.exec_root)}
        volume_slots = {s.name: s for s in plugins.choose("volume", config, self.data_root, self.exec_root)}
        logging_slots = {s.name: s for s in plugins.choose("logging", config, self.data_root, self.exec_root)}
        if storage_driver:
            config = config.with_override("storage", storage_driver)
        if exec_driver:
            config = config.with_override("exec", exec_driver)
        self.config = attrs.evolve(config, source=plugins.choice_source(config, self.data_root, storage_driver))
        slots = [storage_slot, self.exec_slot, *network_slots.values(), *volume_slots.values(),
                 *logging_slots.values()]
        self.events = Emitter(plugins.load_extensions(config, slots))
        # 2. only now create state
        modes.make_roots(self.data_root, self.exec_root)  # 0710: nothing made below is ever reachable
        # the store's schema brought up to date, or a newer Dockyard's refused, before a driver sets up
        self.store = Store(os.path.join(self.data_root, "dockyard.db"))
        for slot in slots:
            slot.init()
        modes.secure_tree(self.data_root, self.exec_root)  # the homes just made; an older Dockyard's modes
        emit = self.events.emit
        tmp = os.path.join(self.data_root, "tmp")
        self.layers = LayerStore(storage_slot, self.store)
        self.content = ContentStore(os.path.join(self.data_root, "content"))  # configs, manifests, layer blobs
        self.image_store = ImageStore(self.store, self.layers, tmp, emit, content=self.content)
        records = ContainerRecords(self.store)
        self.volumes = VolumeService(self.store, volume_slots, config.default_volume, records, emit)
        self.networks = NetworkService(self.store, network_slots, records, os.path.join(self.exec_root, "netns"),
                                       emit, config.default_network)
        self.networks.ensure_predefined(config.options["network"].get("bridge", {}))
        self.bus = EventBus(self.events, records)  # GET /events: stamped messages, filters, a replayable history
        self.bundles = Bundles()
        takes_log = any("log" in (*impl.argnames, *impl.kwargnames)
                        for impl in self.exec_slot.pm.hook.exec_create.get_hookimpls())
        self.logs = LogService(logging_slots, config.default_log_driver, config.log_opts, self.exec_slot.name,
                               takes_log)
        self.containers = ContainerService(records, self.image_store, self.layers, self.exec_slot, self.networks,
                                           self.volumes, self.bundles, self.events, self.data_root, self.exec_root,
                                           self.logs)
        writer = ImageWriter(self.image_store, self.layers, self.containers, self.data_root)
        opts = registry or RegistryOptions()
        self.registry = Registry(self.image_store, self.layers, self.content, self.data_root, insecure=opts.insecure,
                                 mirrors=opts.mirrors, no_fallback=opts.no_fallback, certs_dir=opts.certs_dir, max_downloads=opts.max_downloads,
                                 max_uploads=opts.max_uploads, upload_chunk=opts.upload_chunk)
        self.images = ImageService(self.image_store, records, writer, self.registry)
        self.storage = StorageService(self.layers, self.data_root, config.options.get("storage", {}), config.source)
        self.builder = BuildService(self.image_store, writer, self.containers, self.layers, self.networks,
                                    self.registry, self.store, self.data_root)
        self.system = SystemService(
            containers=self.containers, images=self.images, image_store=self.image_store, layers=self.layers,
            volumes=self.volumes, networks=self.networks, storage=self.storage, bundles=self.bundles,
            registry=self.registry, builder=self.builder, bus=self.bus, store=self.store,
            exec_driver=self.exec_slot.name, data_root=self.data_root, exec_root=self.exec_root,
            config_source=self.config.source, logs=self.logs)

    def restore(self) -> None:
        """At daemon start, before the first request: what the last daemon left."""
        self.layers.sweep_scratch()  # a build step it did not finish
        self.layers.sweep_staged()  # layers it was writing or removing (load, commit, pull, import, rmi)
        self.content.sweep_ingest()  # blobs it was writing, except resumable pulls
        _empty(os.path.join(self.data_root, "tmp"))  # its spools and half-made diffs
        self.containers.restore()  # re-attached, exits recorded, restart policies and health checks re-armed

    def drivers_info(self) -> dict[str, Any]:
        return self.system.drivers()

    def close(self) -> None:
        self.containers.close()
        self.networks.close()
        self.store.close()


def _empty(directory: str) -> None:
    for entry in os.scandir(directory):
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError as exc:
            log.warning("could not remove the leftover %s: %s", entry.path, exc)
