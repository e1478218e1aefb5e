"""Creating a container: Docker's checks of the request, the merge with the image's
config, the record, its mount points and its writable layer.

Everything a create refuses is refused before anything is made (moby's
create-time checks, :mod:`.verify`; the bundle's, the network's, the restart
policy's); a failure after the record is written undoes all of it.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from datetime import datetime, timezone
from typing import Any, Callable, Protocol

from ...errors import Conflict, InvalidParameter
from ...model.container import ZERO_TIME, ContainerRecord, EndpointConfig
from ...model.image import ContainerConfig, ImageConfig
from .. import modes
from ..bundle.ocispec import MASKED_PATHS, READONLY_PATHS
from . import names, verify
from .health import merged as merged_healthcheck
from .mountpoints import MountPoints
from .records import ContainerRecords
from .restart import validate as validate_restart_policy

log = logging.getLogger("dockyard.containers")
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class Images(Protocol):
    """What a create needs of the image store."""

    def resolve(self, ref: str) -> str: ...

    def config(self, image_id: str) -> ImageConfig: ...

    def top_layer(self, image_id: str) -> str | None: ...


class Networks(Protocol):
    """What a create needs of the network service."""

    def network_mode(self, mode: str | None, missing_ok: bool = False) -> str: ...

    def links(self, links: list | None, mode: str, name: str) -> list[str] | None: ...

    def endpoint_configs(self, mode: str, networking: dict | None) -> dict[str, EndpointConfig]: ...

    def check_ports(self, host_config: dict, exposed: dict | None) -> None: ...


class Layers(Protocol):
    @property
    def driver_name(self) -> str: ...

    def create_rw(self, container_id: str, parent_chain: str | None) -> None: ...


class Bundles(Protocol):
    def check_extra_hosts(self, host_config: dict) -> None: ...


class Logs(Protocol):
    """Of the log service: a create's ``LogConfig`` settled and checked."""

    def settle(self, host: dict) -> None: ...


def merge_config(body: dict, image_cfg: ContainerConfig) -> dict:
    """Docker's merge of the create request with the image's defaults."""
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    env = list(image_cfg.env or [])
    for item in cfg.get("Env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    cfg["Env"] = env
    if cfg.get("Entrypoint") is not None:
        if isinstance(cfg["Entrypoint"], str):
            cfg["Entrypoint"] = [cfg["Entrypoint"]]
        cfg["Entrypoint"] = cfg["Entrypoint"] or None
    else:
        cfg["Entrypoint"] = image_cfg.entrypoint
        if not cfg.get("Cmd"):
            cfg["Cmd"] = image_cfg.cmd
    if isinstance(cfg.get("Cmd"), str):
        cfg["Cmd"] = [cfg["Cmd"]]
    for key, value in (("WorkingDir", image_cfg.working_dir), ("User", image_cfg.user),
                       ("StopSignal", image_cfg.stop_signal)):
        if not cfg.get(key) and value:
            cfg[key] = value
    cfg["Labels"] = {**(image_cfg.labels or {}), **(cfg.get("Labels") or {})}
    cfg["ExposedPorts"] = {**(image_cfg.exposed_ports or {}), **(cfg.get("ExposedPorts") or {})} or None
    cfg["Volumes"] = cfg.get("Volumes") or image_cfg.volumes
    image_health = image_cfg.healthcheck.to_json() if image_cfg.healthcheck is not None else None
    health = merged_healthcheck(cfg.get("Healthcheck"), image_health)
    if health:  # unset times and retries are left out (Go's omitempty), as dockerd stores them
        cfg["Healthcheck"] = {k: v for k, v in health.items() if k == "Test" or v}
    else:
        cfg.pop("Healthcheck", None)
    for key in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr"):
        cfg[key] = bool(cfg.get(key))
    cfg.setdefault("Domainname", "")
    cfg.setdefault("OnBuild", image_cfg.on_build)
    return cfg


def settle_host_config(host: dict) -> None:
    """Fill in what the daemon decides of a create's ``HostConfig`` where the client
    left it unset, as dockerd stores it (and inspect shows it): the network mode,
    the cgroup namespace mode our exec drivers give (``private``: they always make
    one, on cgroup v1 too, where dockerd's default would be ``host``), the paths the
    bundle masks and makes read-only in a container that is not privileged
    (:data:`~dockyard.engine.bundle.ocispec.MASKED_PATHS`), no swappiness for
    ``-1`` (the kernel's, as dockerd's null), and ``MemorySwap`` twice ``Memory``
    when only ``Memory`` is given.  The log driver is the log service's
    (``Logs.settle``)."""
    host["NetworkMode"] = host.get("NetworkMode") or "default"
    host.setdefault("AutoRemove", False)
    host["CgroupnsMode"] = host.get("CgroupnsMode") or "private"
    if not host.get("Privileged"):
        for key, default in (("MaskedPaths", MASKED_PATHS), ("ReadonlyPaths", READONLY_PATHS)):
            if host.get(key) is None:
                host[key] = list(default)
    if host.get("MemorySwappiness") == -1:
        host["MemorySwappiness"] = None
    memory = host.get("Memory")
    if isinstance(memory, int) and memory > 0 and not host.get("MemorySwap"):
        host["MemorySwap"] = min(2 * memory, 2 ** 63 - 1)  # dockerd's default: twice the memory


class Creator:
    """``POST /containers/create``: records a container and makes what it needs
    before it first starts (its volumes, its writable layer); ``data_root`` holds
    the containers' directories."""

    def __init__(self, records: ContainerRecords, images: Images, layers: Layers, networks: Networks,
                 mounts: MountPoints, bundles: Bundles, emit: Callable[[str, str, str, dict], None],
                 data_root: str, logs: Logs, runtime: str = "runc") -> None:
        self.records, self.images, self.layers, self.networks = records, images, layers, networks
        self.mounts, self.bundles, self.emit = mounts, bundles, emit
        self.data_root, self.logs = data_root, logs
        self.runtime = runtime

    def settle_runtime(self, host: dict) -> None:
        """``HostConfig.Runtime``: the exec driver, by the name ``/info`` lists it
        under (``Runtimes``, ``DefaultRuntime``), so a client that checks one against
        the other, or re-creates a container from its inspect, finds it; ``runc``,
        the name Docker clients take for the default, is accepted for it.  Any
        other name is refused with dockerd's message."""
        asked = host.get("Runtime") or self.runtime
        if asked not in (self.runtime, "runc"):
            raise InvalidParameter(f"Unknown runtime specified {asked}")
        host["Runtime"] = self.runtime

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.data_root, "containers", cid)

    def create(self, body: Any, name: str | None = None) -> str:
        """Create the container ``body`` asks for; returns its id."""
        if not isinstance(body, dict) or not body.get("Image"):
            raise InvalidParameter("config: an image is required (the Image field is empty)")
        if name is not None and name != "" and not NAME_RE.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        verify.container_settings(body)  # moby's create-time checks: nothing is made for a bad config
        host = dict(body.get("HostConfig") or {})
        validate_restart_policy(host)
        self.settle_runtime(host)
        self.logs.settle(host)  # the log driver and its options: dockerd refuses a bad one before anything
        try:
            self.bundles.check_extra_hosts(host)  # refused at create, as Docker does
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        mode = self.networks.network_mode(host.get("NetworkMode"), missing_ok=True)  # dockerd: 404 at start
        if mode.startswith("container:") and body.get("Hostname"):  # it takes the other's hostname
            raise InvalidParameter("conflicting options: hostname and the network mode")
        networks = self.networks.endpoint_configs(mode, body.get("NetworkingConfig"))
        self.networks.check_ports(host, body.get("ExposedPorts"))  # refuse a bad -p now, not at start
        image_id = self.images.resolve(body["Image"])
        image_cfg = self.images.config(image_id).defaults
        cfg = merge_config(body, image_cfg)
        cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        if not cmd:
            raise InvalidParameter("No command specified")
        cid = secrets.token_hex(32)
        cfg["Hostname"] = cfg.get("Hostname") or cid[:12]
        cfg["Image"] = body["Image"]
        settle_host_config(host)
        name_given = bool((name or "").lstrip("/"))
        name = (name or "").lstrip("/") or names.generate(self.records.name_free)
        links = host.get("Links")
        host["Links"] = self.networks.links(links, mode, name)  # checked, as dockerd's /child:/name/alias
        cdir = self.container_dir(cid)
        rec = ContainerRecord(
            id=cid, name=name, created=now_iso(), path=cmd[0], args=cmd[1:], image_id=image_id, config=cfg,
            host_config=host, network_mode=mode, networks=networks, driver=self.layers.driver_name,
            log_path=os.path.join(cdir, f"{cid}-json.log"), hostname_path=os.path.join(cdir, "hostname"),
            hosts_path=os.path.join(cdir, "hosts"), resolv_conf_path=os.path.join(cdir, "resolv.conf"))
        top = self.images.top_layer(image_id)
        self._insert(rec, top, generated=not name_given, links=links)
        name = rec.name
        try:
            rec.mount_points = self.mounts.prepare(rec)  # creates the volumes it names
            self.records.save(rec)
            modes.private_dir(cdir, modes.SHARED_DIR)  # 0710, as Docker's: its log is 0600 inside
            self.layers.create_rw(cid, top)
        except BaseException:
            self.mounts.discard(rec)
            shutil.rmtree(cdir, ignore_errors=True)
            self.records.delete(cid)
            raise
        self.emit("container", "create", cid, {"name": name, "image": cfg["Image"]})
        return cid

    def _insert(self, rec: ContainerRecord, top: str | None, generated: bool, links: Any) -> None:
        """Insert ``rec``.  A ``generated`` name that a concurrent create took
        between the check and the insert is drawn again, as dockerd retries it (and
        the client's ``links``, which name the container, settled again); a name the
        client gave stays a conflict."""
        for _ in range(10):
            try:
                self.records.insert(rec, top)
                return
            except Conflict:
                if not generated:
                    raise
                rec.name = names.generate(self.records.name_free)
                rec.host_config["Links"] = self.networks.links(links, rec.network_mode, rec.name)
        self.records.insert(rec, top)
