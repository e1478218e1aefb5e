"""The container service: every operation a client can ask of containers and of
their exec instances, typed, in one facade.

Front ends (the Docker API's routers, the CRI server) call :class:`ContainerService`
and nothing else of this package.  Behind it, one module per idea:

    records      the records in the store, resolved by name, id or prefix; a lock each
    listing      ``docker ps`` and the other queries that never parse a whole record
    psfilters    ``docker ps``'s filters as SQL, with dockerd's refusals
    create       Docker's checks and merge, the record, its mount points and layer
    lifecycle    start, stop, kill, pause, restart, remove, exits
    recovery     at daemon start: re-attach, record the exits made while it was away
    restart      restart policies        health     health checks
    execs        exec instances          ops        rename, update, top, diff, prune, sizes
    archive      ``docker cp``, ``docker export``; containerfs: the file system they reach
    mountpoints  volumes, binds and tmpfs; shm: shareable ``/dev/shm``
    stats, names, verify
"""

from __future__ import annotations

import os
import socket
from typing import Any, BinaryIO, Callable, Protocol

from ...errors import Conflict, DockyardError, ExecError, NotFound
from ...model.container import ContainerRecord
from . import archive, create, execs, lifecycle, listing, mountpoints, ops, psfilters, stats, verify
from .archive import ContainerArchives
from .create import Creator
from .execs import Execs
from .health import HealthMonitor
from .lifecycle import Lifecycle, NotModified
from .listing import Listed
from .mountpoints import MountPoints
from .ops import Operations
from .records import ContainerRecords
from .restart import RestartManager

__all__ = ["ContainerService", "NotModified", "ContainerRecord", "Listed"]


class Events(Protocol):
    def subscribe(self, callback: Callable[[str, str, str, dict], None]) -> None: ...

    def emit(self, type_: str, action: str, id_: str, attributes: dict) -> None: ...


# The narrow collaborators: what the service's parts need, and nothing else.
class Images(create.Images, Protocol):
    """Of the image store."""


class Layers(create.Layers, lifecycle.Layers, ops.Layers, archive.Layers, Protocol):
    """Of the layer store."""

    def metadata(self, driver_id: str) -> dict[str, str] | None: ...


class Networks(create.Networks, lifecycle.Networks, Protocol):
    """Of the network service."""

    def remove_link(self, name: str) -> None: ...


class Bundles(create.Bundles, lifecycle.Bundles, execs.Bundles, Protocol):
    """Of the bundle service."""


class Logs(create.Logs, lifecycle.Logs, Protocol):
    """Of the log service (``dockyard.engine.logs.service``)."""

    def reader(self, rec: ContainerRecord) -> Callable[[Any], tuple[list[dict[str, Any]], Any]]: ...

    def log_path(self, rec: ContainerRecord) -> str: ...


class ContainerService:
    """The containers of one daemon.

    ``records`` are their records; ``images`` the image store (resolve, config,
    top layer); ``layers`` the layer store; ``exec_slot`` the exec driver;
    ``networks`` and ``volumes`` the network and volume services; ``bundles`` makes
    OCI bundles; ``events`` carries what happens; ``data_root``/``exec_root`` hold
    the containers' directories and bundles."""

    def __init__(self, records: ContainerRecords, images: Images, layers: Layers, exec_slot: Any, networks: Networks,
                 volumes: mountpoints.Volumes, bundles: Bundles, events: Events, data_root: str,
                 exec_root: str, logs: Logs) -> None:
        emit = events.emit
        self._networks = networks
        self._records = records
        self._layers = layers
        self._images = images
        self._exec_hook = exec_slot.hook
        mounts = MountPoints(volumes, records)
        self._restarts = RestartManager(records)
        self._creator = Creator(records, images, layers, networks, mounts, bundles, emit, data_root, logs,
                                runtime=exec_slot.name)
        self._lifecycle = Lifecycle(records, layers, self._exec_hook, networks, mounts, bundles, self._restarts, emit,
                                    data_root, exec_root, logs)
        self._logs = logs
        self._restarts.start_container = self._lifecycle.start
        self._execs = Execs(records, self._exec_hook, bundles, self._lifecycle.bundle_dir, emit)
        self._health = HealthMonitor(records, self._execs, events)
        self._ops = Operations(records, layers, exec_slot, self._lifecycle.remove, emit)
        self._archives = ContainerArchives(records, layers, bundles.resolve_user, emit,
                                           os.path.join(data_root, "tmp"))
        self._emit = emit

    # --- the daemon's start and end ---------------------------------------------------
    def restore(self) -> None:
        """At daemon start: re-attach to running containers, record the exits that
        happened meanwhile, apply restart policies, re-arm health checks."""
        self._lifecycle.restore()
        self._restarts.start()  # restart policies, once every record is current
        self._health.start()  # re-arm the health checks of the running containers

    def close(self) -> None:
        self._health.close()
        self._lifecycle.close()

    # --- records ----------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The full id of a name, an id or a unique id prefix."""
        return self._records.resolve(ref)

    def get(self, cid: str) -> ContainerRecord:
        """The record of container ``cid`` (a full id)."""
        return self._records.get(cid)

    def inspect(self, ref: str) -> ContainerRecord:
        """The record of the container ``ref`` names (its ``to_api()`` is Docker's inspect)."""
        return self._records.get(self._records.resolve(ref))

    def inspect_api(self, ref: str, size: bool = False) -> dict[str, Any]:
        """``GET /containers/{id}/json``: the record's view, with what the storage
        driver says of its writable layer (``GraphDriver.Data``); ``size``:
        ``SizeRw`` and ``SizeRootFs`` too (``docker inspect --size``)."""
        rec = self.inspect(ref)
        data = self._layers.metadata(rec.id) if rec.driver == self._layers.driver_name else None
        view = rec.to_api(graph_data=data)
        view["LogPath"] = self._logs.log_path(rec)  # "" for a driver without a file, as dockerd
        if size:
            view["SizeRw"], view["SizeRootFs"] = self._ops.sizes(rec.id)
        return view

    def log_reader(self, ref: str) -> tuple[ContainerRecord, Callable[[Any], tuple[list[dict[str, Any]], Any]]]:
        """``docker logs``: the container's record and what reads its log driver's
        entries from a cursor (``None``: from the oldest); dockerd's 501 when the
        driver cannot read back."""
        rec = self.inspect(ref)
        return rec, self._logs.reader(rec)

    def all(self) -> list[ContainerRecord]:
        return self._records.all()

    def summaries(self, show_all: bool = False, filters: dict | None = None, limit: int = -1) -> list[Listed]:
        """``docker ps``: the listed containers, newest first (see :func:`.listing.records`)."""
        filters = filters or {}
        listing.check_filters(filters)
        resolved = psfilters.resolved(filters, self._image_id, self._container_id)
        listed = listing.records(self._records.store, show_all, resolved, limit)
        names: dict[str, str | None] = {}
        for item in listed:  # dockerd's IMAGE: the reference while it still names the image, else the id
            summary = item.summary
            if summary.image not in names:
                names[summary.image] = self._image_id(summary.image) if summary.image else None
            if names[summary.image] != summary.image_id:
                summary.image = summary.image_id
        return listed

    def _image_id(self, ref: str) -> str | None:
        """An ``ancestor`` filter's image, None if there is none (dockerd matches nothing)."""
        try:
            return self._images.resolve(ref)
        except DockyardError:
            return None

    def _container_id(self, ref: str) -> str | None:
        """A ``before``/``since`` filter's container, None if there is none."""
        try:
            return self._records.resolve(ref)
        except DockyardError:
            return None

    def check_list_filters(self, filters: dict) -> None:
        listing.check_filters(filters)

    def labels_json(self, listed: Listed) -> str:
        """The labels of a container of :meth:`summaries`, as JSON text (never decoded)."""
        return listing.labels_json(self._records.store, listed)

    # --- lifecycle --------------------------------------------------------------------
    def create(self, body: Any, name: str | None = None) -> str:
        """``POST /containers/create``; returns the id."""
        return self._creator.create(body, name)

    def start(self, ref: str) -> None:
        """Raises :class:`NotModified` if it runs."""
        self._lifecycle.start(ref)

    def stop(self, ref: str, timeout: int | None = None) -> None:
        """Raises :class:`NotModified` if it is not running."""
        self._lifecycle.stop(ref, timeout)

    def kill(self, ref: str, signal: str | int = "SIGKILL") -> None:
        self._lifecycle.kill(ref, signal)

    def restart(self, ref: str, timeout: int | None = None) -> None:
        self._lifecycle.restart(ref, timeout)

    def pause(self, ref: str) -> None:
        self._lifecycle.pause(ref)

    def unpause(self, ref: str) -> None:
        self._lifecycle.unpause(ref)

    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """``volumes``: ``rm -v``, the anonymous volumes go too (named ones stay)."""
        self._lifecycle.remove(ref, force=force, volumes=volumes)

    def remove_link(self, name: str) -> None:
        """``docker rm --link /parent/alias``: the network service's."""
        self._networks.remove_link(name)

    def wait_exit(self, cid: str, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s for the process to end; True if it did."""
        return self._lifecycle.wait_exit(cid, timeout)

    # --- a running container's streams -------------------------------------------------
    def attach_stdin(self, cid: str) -> socket.socket:
        """The socket that feeds the container's stdin (``ExecError``/``NotFound``
        until it runs)."""
        return self._exec_hook.exec_attach_stdin(id=cid, exec_id=None)

    def attached(self, cid: str) -> None:
        """A client attached to the container's streams (the ``attach`` event)."""
        self._emit("container", "attach", cid, {})

    def detached(self, cid: str) -> None:
        """A client detached with its detach keys (the ``detach`` event)."""
        self._emit("container", "detach", cid, {})

    def resize(self, ref: str, height: int, width: int) -> None:
        """Resize the terminal of a running container (nothing without a terminal)."""
        rec = self.inspect(ref)
        if not rec.state.running:
            raise Conflict(f"Container {rec.id} is not running")
        if rec.config.get("Tty") and height and width:
            try:
                self._exec_hook.exec_resize(id=rec.id, exec_id=None, height=height, width=width)
            except (ExecError, NotFound):  # the driver's state of it, or its terminal, is gone
                if self._process_runs(rec.id):
                    raise
                # it ended since its record was read (``docker run -t`` of a short
                # command resizes as it exits): dockerd's answer, not a failure
                raise Conflict(f"Container {rec.id} is not running") from None

    def _process_runs(self, cid: str) -> bool:
        """Whether the container's process still runs, given a moment to be seen
        ending: a terminal that cannot be reached is most often its process's end."""
        try:
            return (self._exec_hook.exec_wait(id=cid, timeout=1.0) or {}).get("status") in ("running", "paused")
        except (ExecError, NotFound):
            return False

    def stats(self, cid: str, previous: dict | None = None) -> dict:
        """One ``docker stats`` sample (see :func:`.stats.sample`)."""
        return stats.sample(self._exec_hook, self._records.get(cid), previous)

    # --- operations ---------------------------------------------------------------------
    def rename(self, ref: str, new_name: str | None) -> ContainerRecord:
        return self._ops.rename(ref, new_name)

    def update(self, ref: str, body: Any) -> list[str]:
        """Returns the warnings."""
        return self._ops.update(ref, body)

    def top(self, ref: str, ps_args: str | None = None) -> dict:
        return self._ops.top(ref, ps_args)

    def changes(self, ref: str) -> list[dict]:
        return self._ops.changes(ref)

    def prune(self, filters: dict) -> dict:
        return self._ops.prune(filters)

    def rw_size(self, rec: ContainerRecord) -> int:
        """Bytes the container's layer adds to its image."""
        return self._ops.rw_size(rec)

    def record_sizes(self, rec: ContainerRecord) -> tuple[int, int]:
        """``SizeRw`` and ``SizeRootFs`` of container ``rec`` (``system df``)."""
        return self._ops.sizes(rec.id)

    def sizes(self, listed: Listed) -> tuple[int, int]:
        """``SizeRw`` and ``SizeRootFs`` of a container of :meth:`summaries` (``ps -s``)."""
        return self._ops.sizes(listed.summary.id)

    # --- files -------------------------------------------------------------------------
    def stat_path(self, ref: str, path: str) -> dict:
        return self._archives.stat_path(ref, path)

    def get_archive(self, ref: str, path: str, fileobj: BinaryIO) -> None:
        self._archives.write_archive(ref, path, fileobj)

    def put_archive(self, ref: str, path: str, stream: Any, no_overwrite_dir_non_dir: bool = False,
                    copy_uid_gid: bool = False) -> int:
        return self._archives.put_archive(ref, path, stream, no_overwrite_dir_non_dir, copy_uid_gid)

    def export(self, ref: str, fileobj: BinaryIO) -> None:
        self._archives.export(ref, fileobj)

    # --- exec instances -----------------------------------------------------------------
    def exec_create(self, ref: str, body: dict) -> str:
        return self._execs.create(ref, body)

    def exec_check(self, eid: str, console_size: Any = None) -> dict:
        """The instance, if it can start now (and ``console_size`` is a terminal's)."""
        verify.console_size(console_size)
        return self._execs.check(eid)

    def exec_start(self, eid: str, tty: bool | None = None, console_size: list | None = None) -> dict:
        return self._execs.start(eid, tty, console_size)

    def exec_finished(self, inst: dict) -> None:
        """The instance's output was read to the end (or nobody reads it)."""
        self._execs.finished(inst)

    def exec_inspect(self, eid: str) -> dict:
        return self._execs.inspect(eid)

    def exec_resize(self, eid: str, height: int, width: int) -> None:
        self._execs.resize(eid, height, width)

    def exec_attach_stdin(self, cid: str, eid: str) -> socket.socket:
        return self._exec_hook.exec_attach_stdin(id=cid, exec_id=eid)

    def exec_detached(self, cid: str, eid: str) -> None:
        self._emit("container", "exec_detach", cid, {"execID": eid})
