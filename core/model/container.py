"""A container's record: what the engine keeps of a container, typed.

:class:`ContainerRecord` is what the metadata store holds (``containers.data``, as
:data:`dockyard.model.convert.converter` unstructures it) and what every part of the
engine reads and changes.  The Docker API's shapes are views of it:
:meth:`ContainerRecord.to_api` is ``GET /containers/{id}/json``, and
:meth:`ContainerRecord.summary` (a :class:`ContainerSummary`) an entry of
``GET /containers/json``; the parts of both are :mod:`.container_views`.

Two parts of a record stay the Docker API's own input shapes, as dicts:
``config`` (the create request's ``Config``, merged with the image's) and
``host_config`` (its ``HostConfig``, updated by ``docker update``).  They are what
the client asked for, field for field; moby itself stores ``hostconfig.json`` in the
API type.  Everything the engine decides is typed (here and in :mod:`.container_parts`): the state and its health
checks, what the container is connected to and what is up now (its endpoints and
published ports), its mount points, its paths, its restart count and whether the
user stopped it.

Records are mutable and are changed under the container's lock
(:meth:`dockyard.engine.containers.records.ContainerRecords.lock`), then saved whole.
"""

from __future__ import annotations

from typing import Any

import attrs

from . import container_views
from .container_parts import (ZERO_TIME, Endpoint, EndpointConfig, Health, HealthResult, MountPoint,
                              NetworkSettings, PortBinding, State)

__all__ = ["ContainerRecord", "ContainerSummary", "Endpoint", "EndpointConfig", "Health", "HealthResult",
           "MountPoint", "NetworkSettings", "PortBinding", "State", "ZERO_TIME"]


# --- the record -------------------------------------------------------------------------
@attrs.define
class ContainerRecord:
    """A container.  ``name`` has no leading ``/`` (the API's ``Name`` has);
    ``image_id`` is the image's id and ``config["Image"]`` the reference the client
    gave; ``path`` and ``args`` are the command (entrypoint and cmd, merged);
    ``network_mode`` is the resolved mode (a network's name or ``container:<id>``;
    ``host_config["NetworkMode"]`` keeps what the client asked); ``driver`` is the
    storage driver holding its layer; ``manually_stopped``: stopped by the user, so no
    restart policy brings it back until it is started again."""

    id: str
    name: str
    created: str
    path: str
    args: list[str]
    image_id: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    network_mode: str
    driver: str
    log_path: str
    hostname_path: str
    hosts_path: str
    resolv_conf_path: str
    state: State = attrs.Factory(State)
    restart_count: int = 0
    manually_stopped: bool = False
    networks: dict[str, EndpointConfig] = attrs.Factory(dict)
    network_settings: NetworkSettings = attrs.Factory(NetworkSettings)
    mount_points: list[MountPoint] = attrs.Factory(list)

    @property
    def command(self) -> list[str]:
        return [self.path, *self.args]

    @property
    def image(self) -> str:
        """The image reference the client gave (``busybox``), ``""`` if none."""
        return str(self.config.get("Image") or "")

    def event_attributes(self) -> dict[str, str]:
        """``name`` and ``image``: what most of its events carry."""
        return {"name": self.name, "image": self.image}

    def to_api(self, graph_data: dict[str, str] | None = None) -> dict[str, Any]:
        """``GET /containers/{id}/json``: Docker's ContainerInspect (a restarting
        container shows as running, as Docker's does); ``graph_data`` is what the
        storage driver says of its writable layer (``GraphDriver.Data``)."""
        host = dict(self.host_config)
        host["RestartPolicy"] = {"Name": "", "MaximumRetryCount": 0, **(host.get("RestartPolicy") or {})}
        return {
            "Id": self.id, "Created": self.created, "Path": self.path, "Args": list(self.args),
            "Image": self.image_id, "ResolvConfPath": self.resolv_conf_path, "HostnamePath": self.hostname_path,
            "HostsPath": self.hosts_path, "LogPath": self.log_path, "Name": "/" + self.name,
            "RestartCount": self.restart_count, "Driver": self.driver, "State": container_views.state(self.state),
            "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "", "ExecIDs": None,
            "HostConfig": host, "GraphDriver": {"Name": self.driver, "Data": graph_data},
            "Mounts": [mp.to_api() for mp in self.mount_points], "Config": dict(self.config),
            "NetworkSettings": container_views.network_settings(self.networks, self.network_mode,
                                                                self.network_settings),
        }

    def summary(self) -> ContainerSummary:
        """What ``docker ps`` shows of it."""
        return ContainerSummary(
            id=self.id, name=self.name, image=self.image, image_id=self.image_id, command=self.command,
            created=self.created, state=self.state,
            host_network_mode=str(self.host_config.get("NetworkMode", "default")),
            network_mode=self.network_mode, networks=self.networks, network_settings=self.network_settings,
            mount_points=self.mount_points, labels=dict(self.config.get("Labels") or {}))


@attrs.define
class ContainerSummary:
    """The part of a record that ``docker ps`` shows; the listing reads just these
    fields out of the store (:mod:`dockyard.engine.containers.listing`), where
    ``labels`` stay empty and are streamed as the store holds them."""

    id: str
    name: str
    image: str
    image_id: str
    command: list[str]
    created: str
    state: State
    host_network_mode: str
    network_mode: str
    networks: dict[str, EndpointConfig] = attrs.Factory(dict)
    network_settings: NetworkSettings = attrs.Factory(NetworkSettings)
    mount_points: list[MountPoint] = attrs.Factory(list)
    labels: dict[str, str] = attrs.Factory(dict)
    #: the names other containers' legacy links give it (``/parent/alias``)
    link_names: list[str] = attrs.Factory(list)

    def to_api(self) -> dict[str, Any]:
        """An entry of ``GET /containers/json``: Docker's ContainerSummary (``Names``:
        its name, then its link names, as dockerd's)."""
        return {
            "Id": self.id, "Names": ["/" + self.name, *self.link_names], "Image": self.image, "ImageID": self.image_id,
            "Command": " ".join(self.command), "Created": container_views.unix_time(self.created),
            "Ports": container_views.port_list(self.network_settings), "Labels": dict(self.labels),
            "State": self.state.status, "Status": container_views.status_text(self.state),
            "HostConfig": {"NetworkMode": self.host_network_mode},
            "NetworkSettings": {"Networks": container_views.networks(self.networks, self.network_mode,
                                                                     self.network_settings)},
            "Mounts": [mp.to_api() for mp in self.mount_points],
        }
