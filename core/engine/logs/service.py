"""The containers' log drivers: choosing, checking and reading back.

Every enabled log driver (``[logging] drivers`` of ``plugins.toml``) is loaded at
daemon start, each in its own plugin manager; a container names one in
``HostConfig.LogConfig`` or gets the daemon's default (``[logging] default``,
``dockyard daemon --log-driver``) with its options (``log_opts``,
``--log-opt``), merged as dockerd merges them.  The writing happens in the
container's shim (``dockyard.hookspecs.logging`` says why); this service

* settles and checks a create's ``LogConfig`` (:meth:`LogService.settle`):
  an unknown driver or option is refused before anything is made;
* gives the exec driver the writer spec at each start (:meth:`LogService.writer`);
* reads the output back for ``docker logs`` (:meth:`LogService.reader`), or
  refuses as dockerd does when the driver cannot.
"""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any, Callable

from ...errors import DockyardError, InvalidParameter
from ...hookspecs.logging import Container, LogDriverError

if TYPE_CHECKING:
    from ...model.container import ContainerRecord
    from ...plugins import Slot

#: the stream file of a container whose driver is not json-file: enough for
#: ``docker attach``, truncated when it fills (dockerd keeps no file at all)
STREAM_ROTATION = {"max_size": 1 << 20, "max_file": 1}

#: ``read(cursor, tail=-1)`` -> ``(entries, cursor)``: from a cursor (``None``:
#: from the oldest entry kept), only the last ``tail`` when 0 or more (see
#: ``dockyard.hookspecs.logging.logging_read``)
Reader = Callable[..., "tuple[list[dict[str, Any]], Any]"]


class ReadingNotSupported(DockyardError, NotImplementedError):
    """``docker logs`` of a container whose log driver cannot read back (dockerd's 501)."""

    status = 501


class StartRefused(DockyardError):
    """The log driver cannot log this container: the start fails (dockerd's 500)."""


class LogService:
    """The log drivers of one daemon: ``slots`` by name, the ``default`` driver and
    its ``default_opts``; ``exec_driver`` names the exec driver, which passes the
    writer spec to its shims only if its ``exec_create`` takes ``log``
    (``exec_takes_log``)."""

    def __init__(self, slots: dict[str, Slot], default: str, default_opts: dict[str, str],
                 exec_driver: str = "", exec_takes_log: bool = True) -> None:
        self.slots, self.default, self.default_opts = slots, default, dict(default_opts)
        self.exec_driver, self.exec_takes_log = exec_driver, exec_takes_log
        self.daemon_name = socket.gethostname()

    def names(self) -> list[str]:
        return sorted(self.slots)

    def settle(self, host: dict[str, Any]) -> None:
        """At create: fill ``host["LogConfig"]`` as dockerd stores it (the default
        driver when none is named, the daemon's options under the client's for
        the default driver) and check it with the driver; refuse an unknown one."""
        lc = host.get("LogConfig") or {}
        kind = lc.get("Type") or self.default
        config = dict(lc.get("Config") or {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in config.items()):
            raise InvalidParameter("LogConfig.Config: option names and values must be strings")
        if kind == self.default:
            config = {**self.default_opts, **config}
        slot = self.slots.get(kind)
        if slot is None:
            raise InvalidParameter(f'error looking up logging plugin {kind}: plugin "{kind}" not found')
        slot.hook.logging_validate(config=config)
        host["LogConfig"] = {"Type": kind, "Config": config}

    def container(self, rec: ContainerRecord) -> Container:
        labels = rec.config.get("Labels") or {}
        return Container(id=rec.id, name=rec.name, image_name=rec.image, image_id=rec.image_id,
                         created=rec.created, labels=dict(labels), env=list(rec.config.get("Env") or []),
                         dir=os.path.dirname(rec.log_path), log_path=rec.log_path, daemon_name=self.daemon_name)

    def _driver(self, rec: ContainerRecord) -> tuple[Slot, dict[str, str]]:
        lc = rec.host_config.get("LogConfig") or {}
        kind = lc.get("Type") or "json-file"  # a record from before log drivers
        slot = self.slots.get(kind)
        if slot is None:
            raise StartRefused(f'failed to initialize logging driver: error looking up logging plugin {kind}: '
                               f'plugin "{kind}" not found')
        return slot, dict(lc.get("Config") or {})

    def writer(self, rec: ContainerRecord) -> dict[str, Any]:
        """The exec driver's ``log`` for a start of ``rec``: the stream file's
        rotation and the driver's writer, with what it knows of the container."""
        slot, config = self._driver(rec)
        info = self.container(rec)
        try:
            spec = dict(slot.hook.logging_writer(container=info, config=config) or {})
        except (LogDriverError, InvalidParameter, ValueError, OSError) as exc:
            raise StartRefused(f"failed to initialize logging driver: {exc}") from None
        stream = dict(spec.get("stream") or {})
        rotates = (stream.get("rotation") or {}).get("max_size", -1) > 0
        if not self.exec_takes_log and (spec.get("module") or rotates or stream.get("attrs")):
            raise StartRefused(f"failed to initialize logging driver: the {self.exec_driver} exec driver cannot "
                               f"run the {slot.name} log driver (its exec_create takes no log)")
        stream.setdefault("rotation", None if slot.name == "json-file" else dict(STREAM_ROTATION))
        spec["stream"] = stream
        if spec.get("module"):
            spec["container"] = dict(info)
        return spec

    def reader(self, rec: ContainerRecord) -> Reader:
        """What ``docker logs`` reads ``rec``'s output with; 501 when its driver
        cannot read back."""
        slot, config = self._driver(rec)
        if not slot.pm.hook.logging_read.get_hookimpls():
            raise ReadingNotSupported("configured logging driver does not support reading")
        info = self.container(rec)

        def read(cursor: Any, tail: int = -1) -> tuple[list[dict[str, Any]], Any]:
            entries, cursor = slot.hook.logging_read(container=info, config=config, cursor=cursor, tail=tail)
            if tail >= 0:  # a driver without ``tail`` returned everything
                entries = entries[-tail:] if tail else []
            return entries, cursor
        return read

    def reopen(self, rec: ContainerRecord) -> None:
        """Reopen ``rec``'s log file after a rotation (the CRI's ReopenContainerLog);
        refused for a driver that has no file to reopen."""
        slot, config = self._driver(rec)
        if not slot.pm.hook.logging_reopen.get_hookimpls():
            raise InvalidParameter(f"the {slot.name} log driver cannot reopen its log")
        try:
            slot.hook.logging_reopen(container=self.container(rec), config=config)
        except (LogDriverError, OSError) as exc:
            raise StartRefused(f"failed to reopen the log: {exc}") from None

    def log_path(self, rec: ContainerRecord) -> str:
        """``LogPath`` of inspect: the driver's, ``""`` when it has none (as dockerd)."""
        try:
            slot, config = self._driver(rec)
        except StartRefused:
            return ""
        return slot.hook.logging_log_path(container=self.container(rec), config=config) or ""
