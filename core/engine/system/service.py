"""The system service: what clients ask of the daemon as a whole.

``/info`` and ``/version`` (the daemon, its drivers and the host), ``/system/df``
(:meth:`SystemService.data_usage`: what images, containers, volumes and the build
cache hold), ``/dockyard/system/check`` and ``/events`` (the event bus).
"""

from __future__ import annotations

import os
import platform
from typing import Any, Callable

import attrs

from ... import __version__
from ...model.container import ContainerRecord
from .. import events
from . import host

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"


@attrs.frozen
class ContainerUsage:
    """A container of ``system df``: its record and the bytes it holds."""

    record: ContainerRecord
    size_rw: int
    size_root_fs: int


@attrs.frozen
class DataUsage:
    """``system df``: images as ``docker images`` lists them (with ``SharedSize``
    and ``Containers``), containers, volumes (with ``UsageData``), the build cache."""

    layers_size: int
    images: list[dict]
    containers: list[ContainerUsage]
    volumes: list[dict]
    build_cache: list[dict] | None  # BuildKit's records: None (null) for the classic builder


@attrs.define
class SystemService:
    """The daemon as a whole.  Its collaborators: the container, image, volume,
    network and storage services, the image store and the layer store (df's
    sizes), the bundle service (the ``--init`` binary), the registry service (its
    insecure registries), the build service (its cache), the event bus, the
    metadata store (the daemon's id), the exec driver's name and where the
    daemon keeps its state."""

    containers: Any
    images: Any
    image_store: Any
    layers: Any
    volumes: Any
    networks: Any
    storage: Any
    bundles: Any
    registry: Any
    builder: Any
    bus: Any
    store: Any
    exec_driver: str
    data_root: str
    exec_root: str
    config_source: str
    #: the log service (``dockyard.engine.logs.service``): the enabled log drivers and the default
    logs: Any = None

    # --- the drivers -----------------------------------------------------------------
    def drivers(self) -> dict:
        """Every active driver by kind."""
        out = {"storage": self.storage.driver_name, "exec": self.exec_driver, "network": self.networks.drivers}
        out["volume"] = sorted(self.volumes.slots)
        if self.logs is not None:
            out["logging"] = self.logs.names()
        return out

    # --- /events ---------------------------------------------------------------------
    def subscribe_events(self, listener: Callable[[dict], None], since_ns: int | None = None) -> list[dict]:
        """Add ``listener``; returns the kept messages at or after ``since_ns``."""
        return self.bus.subscribe(listener, since_ns)

    def unsubscribe_events(self, listener: Callable[[dict], None]) -> None:
        self.bus.unsubscribe(listener)

    def event_filters(self, raw: dict | None) -> dict[str, list[str]]:
        """Docker's events filters normalised (ValueError naming a bad one)."""
        return events.normalize_filters(raw)

    def event_time(self, value: object) -> int | None:
        """``since``/``until`` in nanoseconds (ValueError when it does not parse)."""
        return events.parse_time(value)

    def event_matches(self, message: dict, filters: dict[str, list[str]]) -> bool:
        return events.matches(message, filters)

    # --- /system/check ---------------------------------------------------------------
    def check(self) -> dict:
        return self.images.check()

    # --- /version --------------------------------------------------------------------
    def version(self) -> dict:
        """``/version``: the engine, a component per active driver, the ``--init`` binary."""
        uname = os.uname()
        version: dict[str, Any] = {
            "Platform": {"Name": "Dockyard"},
            "Components": [{"Name": "Engine", "Version": __version__,
                            "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                        "Os": "linux", "Arch": host.arch(), "KernelVersion": uname.release}}],
            "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
            "GitCommit": "", "GoVersion": "python" + platform.python_version(), "Os": "linux",
            "Arch": host.arch(), "KernelVersion": uname.release, "BuildTime": "",
        }
        drivers = self.drivers()
        components = list(version["Components"])
        details = components[0].setdefault("Details", {})  # what `docker version` prints for the engine
        for key in ("GitCommit", "GoVersion", "BuildTime"):
            details.setdefault(key, version.get(key, ""))
        details.setdefault("Experimental", "false")
        components.append({"Name": f"exec driver {drivers['exec']}", "Version": __version__,
                           "Details": {"Kind": "exec"}})
        components.append({"Name": f"storage driver {drivers['storage']}", "Version": __version__,
                           "Details": {"Kind": "storage"}})
        tini = self.bundles.init_version()
        if tini:
            components.append({"Name": "docker-init", "Version": tini, "Details": {"GitCommit": ""}})
        version["Components"] = components
        return version

    # --- /info -----------------------------------------------------------------------
    def info(self, listeners: int = 0) -> dict:
        """``/info``; ``listeners``: the clients following ``/events``."""
        recs = self.containers.all()
        running = sum(1 for r in recs if r.state.running and not r.state.paused)
        paused = sum(1 for r in recs if r.state.paused)
        status = self.storage.driver_status()
        if not any(key == "Layers" for key, _ in status):  # image layers + one writable layer per container
            status.append(["Layers", str(self.storage.layer_count() + len(recs))])
        uname = os.uname()
        drivers = self.drivers()
        cgroup_version, features = host.kernel_features()
        forwarding = host.read("/proc/sys/net/ipv4/ip_forward", "0") == "1"
        tini = self.bundles.init_version()
        exec_name = drivers["exec"]
        info = {
            "ID": self.store.get_meta("daemon_id") or "", "Containers": len(recs),
            "ContainersRunning": running, "ContainersPaused": paused,
            "ContainersStopped": len(recs) - running - paused,
            "Images": len(self.image_store.all()), "Driver": drivers["storage"], "DriverStatus": status,
            "Plugins": {"Volume": sorted(self.volumes.slots) or ["local"], "Network": drivers["network"],
                        "Authorization": None, "Log": self.logs.names() if self.logs else ["json-file"]},
            "MemoryLimit": False, "SwapLimit": False, "KernelMemory": False, "CpuCfsPeriod": False,
            "CpuCfsQuota": False, "CPUShares": False, "CPUSet": False, "PidsLimit": False,
            "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False,
            "NGoroutines": 0, "SystemTime": host.now(),
            "LoggingDriver": self.logs.default if self.logs else "json-file",
            "KernelVersion": uname.release, "OperatingSystem": host.os_name(), "OSVersion": host.os_version(),
            "OSType": "linux", "Architecture": platform.machine(),
            "NCPU": os.cpu_count(), "MemTotal": host.memtotal(), "DockerRootDir": self.data_root,
            "Name": uname.nodename, "Labels": [], "ExperimentalBuild": False,
            "ServerVersion": __version__, "LiveRestoreEnabled": True, "Isolation": "",
            # Dockyard's own: every active driver by kind
            "Drivers": drivers, "ExecRoot": self.exec_root, "PluginsConfig": self.config_source,
        }
        info.update(features)
        info.update({
            "CgroupVersion": cgroup_version, "CgroupDriver": "cgroupfs", "NEventsListener": listeners,
            "IPv4Forwarding": forwarding,
            "BridgeNfIptables": host.read("/proc/sys/net/bridge/bridge-nf-call-iptables", "0") == "1",
            "BridgeNfIp6tables": host.read("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0") == "1",
            "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": self._registry_config(),
            "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                      "Error": "", "RemoteManagers": None},
            "Runtimes": {exec_name: {"path": f"dockyard exec driver {exec_name}"}}, "DefaultRuntime": exec_name,
            "ContainerdCommit": {"ID": "", "Expected": ""},
            "RuncCommit": {"ID": f"dockyard-{exec_name}-{__version__}",
                           "Expected": f"dockyard-{exec_name}-{__version__}"},
            "InitBinary": "docker-init" if tini else "", "InitCommit": {"ID": tini, "Expected": tini},
            "SecurityOptions": ["name=seccomp,profile=builtin"], **host.proxies(),
            "GenericResources": None, "DefaultAddressPools": [], "ProductLicense": "",
        })
        warnings = [w for key, w in host.WARNINGS if not features.get(key, True)]
        if not forwarding:
            warnings.append("WARNING: IPv4 forwarding is disabled")
        info["Warnings"] = warnings
        return info

    def _registry_config(self) -> dict:
        return self.registry.policy.info()

    # --- /system/df ------------------------------------------------------------------
    def data_usage(self) -> DataUsage:
        rows = {r["id"]: r for r in self.image_store.all()}
        chains = {image_id: [(r["chain_id"], r["size"]) for r in self.layers.chain(row["top_layer"])]
                  if row["top_layer"] else [] for image_id, row in rows.items()}
        layers_size = self.store.one("SELECT COALESCE(SUM(size), 0) AS n FROM layers")["n"]
        recs = self.containers.all()
        users: dict[str, int] = {}
        for rec in recs:
            users[rec.image_id] = users.get(rec.image_id, 0) + 1
        images = list(self.images.summaries(False, {}))
        count: dict[str, int] = {}
        for image_id in {i["Id"] for i in images}:
            for chain, _ in chains.get(image_id, []):
                count[chain] = count.get(chain, 0) + 1
        for img in images:
            img["SharedSize"] = sum(size for chain, size in chains.get(img["Id"], []) if count.get(chain, 0) > 1)
            img["Containers"] = users.get(img["Id"], 0)
        containers = []
        for rec in sorted(recs, key=lambda r: r.created, reverse=True):
            size_rw, size_root = self.containers.record_sizes(rec)  # its image may be gone (rmi -f)
            containers.append(ContainerUsage(rec, size_rw, size_root))
        volumes = []
        for rec, size, refs in self.volumes.usage():
            view = self.volumes.view(rec)
            view["UsageData"] = {"Size": size, "RefCount": refs}
            volumes.append(view)
        return DataUsage(layers_size, images, containers, volumes, self.builder.cache_records())
