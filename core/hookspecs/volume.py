"""Volume driver hook specs (Docker's ``volume.Driver``).

A *volume* is named storage that outlives containers.  The core keeps the
records (name, driver, labels, options, created) in its metadata store and asks
the volume's driver for the storage itself; a driver keeps whatever it needs to
find a volume again (the ``local`` driver: ``<home>/<name>/_data`` and its
options in ``<home>/<name>/opts.json``).

Rules for implementers:

* ``home`` is the driver's own directory under the data root (the ``local``
  driver's is ``<data-root>/volumes``, Docker's layout).  Hooks run in worker
  threads and may block.  Every hook is ``firstresult``.
* Names reaching :func:`volume_create` are already checked by the core against
  Docker's rule ``[a-zA-Z0-9][a-zA-Z0-9_.-]+`` and are new to the driver.
* Refuse options you do not know with :class:`dockyard.errors.InvalidParameter`
  naming the option; report other failures with :class:`VolumeError` naming the
  volume.  A failed hook leaves nothing behind (no directory, no mount).
* :func:`volume_mount` / :func:`volume_unmount` are reference-counted by the
  caller's ``id`` (a container id, or a core-made id for a short job such as
  measuring): the first mount may really mount something, the last unmount must
  undo it.  Mounting again with an ``id`` already counted is a no-op that returns
  the same path; unmounting an ``id`` never counted is a no-op.  After a daemon
  restart the core mounts again for every running container, so a driver must
  accept that its storage is already mounted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, TypedDict

from ..errors import DockyardError
from . import hookspec

if TYPE_CHECKING:
    from pathlib import Path


class Capabilities(TypedDict):
    """What :func:`volume_capabilities` returns."""

    scope: Literal["local", "global"]


class Created(TypedDict):
    """What :func:`volume_create` returns."""

    mountpoint: str
    status: dict[str, Any] | None


class Listed(TypedDict):
    """One volume of :func:`volume_list`."""

    name: str
    mountpoint: str


class Volume(Listed):
    """What :func:`volume_get` returns."""

    status: dict[str, Any] | None


class VolumeError(DockyardError):
    """A volume driver operation failed (HTTP 500); the message names the volume."""


@hookspec(firstresult=True)
def volume_supported(home: Path, options: dict[str, Any]) -> str | None:
    """Return ``None`` if usable here, else a one-line reason. Changes nothing."""


@hookspec(firstresult=True)
def volume_init(home: Path, options: dict[str, Any]) -> None:
    """Prepare the driver (once per daemon start; idempotent)."""


@hookspec(firstresult=True)
def volume_capabilities() -> Capabilities:
    """Return ``{"scope": "local"|"global"}`` (Docker's capabilities; optional,
    ``local`` when not implemented)."""


@hookspec(firstresult=True)
def volume_create(name: str, options: dict[str, str]) -> Created:
    """Create volume ``name`` with the driver options ``options`` (``DriverOpts``:
    a dict of strings, maybe empty).

    Return ``{"mountpoint": host path, "status": dict or None}``; the mountpoint is
    what ``docker volume inspect`` shows (the path is valid once mounted).
    """


@hookspec(firstresult=True)
def volume_remove(name: str) -> None:
    """Delete volume ``name`` and its data.  The core calls it only when no
    container uses the volume.  Idempotent."""


@hookspec(firstresult=True)
def volume_mount(name: str, id: str) -> str:
    """Make volume ``name`` usable for ``id``; return the host path to bind into
    the container.  Reference-counted (see the module notes)."""


@hookspec(firstresult=True)
def volume_unmount(name: str, id: str) -> None:
    """Release ``id``'s use of volume ``name``; the last user's release undoes what
    the first mount did.  Idempotent."""


@hookspec(firstresult=True)
def volume_get(name: str) -> Volume | None:
    """Return ``{"name", "mountpoint", "status"}`` of volume ``name``, or ``None``
    if the driver has no such volume."""


@hookspec(firstresult=True)
def volume_list() -> list[Listed]:
    """Return the driver's volumes: a list of ``{"name", "mountpoint"}``."""
