"""Storage driver hook specs (graphdriver-shaped, snapshotter-minded).

A storage driver keeps *layers*: directory trees identified by an opaque ``id``
chosen by the core (lowercase hex, at most 64 characters).  A layer may have a
``parent``; the child then starts as an exact copy of the parent, and later
changes to the child never show in the parent.  Image layers are created once,
filled by :func:`storage_apply_diff` and never written again; a container's
writable layer is the child of its image's top layer.

General rules, for every hook below:

* ``home`` is a directory the driver owns exclusively (``<data-root>/storage/<name>``);
  it exists before :func:`storage_init` is called.  Keep all state under it.
* Hooks are called from worker threads, never from the daemon's event loop, so
  they **may block** (disk I/O, mount(2), subprocesses).  The core serialises calls
  for the same ``id``; calls for different ids may run concurrently.
* Errors: raise :class:`dockyard.errors.StorageError` (or a subclass) with a
  message naming the id and what failed; ``LayerNotFound`` for an unknown id.
  Any other exception is reported as a driver bug.
* Every hook is ``firstresult``: the first non-``None`` return value wins, which
  lets the core register fallbacks (``trylast``) for diff/apply_diff/changes/size
  that work by walking mounted trees, and lets extensions wrap any call
  (``wrapper=True``).
"""

from __future__ import annotations

from typing import IO, TYPE_CHECKING, Any

from . import hookspec

if TYPE_CHECKING:
    from pathlib import Path


@hookspec(firstresult=True)
def storage_supported(home: Path, options: dict[str, Any]) -> str | None:
    """Say whether this driver can run on this machine with ``home`` as its root.

    :param home: ``pathlib.Path`` the driver would own (may not exist yet).
    :param options: ``dict`` of the driver's options from ``plugins.toml``.
    :return: ``None`` if usable here, else a one-line reason such as
        ``"kernel has no aufs"`` or ``"/var/lib/dockyard is not on btrfs"``.

    Must not change anything on disk. Cheap; may block briefly.
    """


@hookspec(firstresult=True)
def storage_init(home: Path, options: dict[str, Any]) -> None:
    """Prepare the driver for use (called once, after a positive ``supported``).

    May create directories under ``home``; must be idempotent (it runs at every
    daemon start, with layers from earlier runs present). Raise ``StorageError``
    for a bad option, naming it. Return value ignored.
    """


@hookspec(firstresult=True)
def storage_create(id: str, parent: str | None) -> None:
    """Create layer ``id``; if ``parent`` (an existing id) is given, as its copy.

    :raises StorageError: if ``id`` exists already or ``parent`` is unknown.

    Nothing may be left behind on failure. Return value ignored.
    """


@hookspec(firstresult=True)
def storage_remove(id: str) -> None:
    """Remove layer ``id`` and everything the driver kept for it.

    Idempotent: removing an unknown id is not an error.  The core never removes a
    layer that has children or is mounted.  Return value ignored.
    """


@hookspec(firstresult=True)
def storage_mount(id: str) -> str:
    """Make layer ``id`` available as a directory and return its absolute path (str).

    Reference-counted: each call must be balanced by :func:`storage_unmount`; the
    second and later mounts return the same path without mounting again.
    Writes to the path change layer ``id`` only.
    """


@hookspec(firstresult=True)
def storage_unmount(id: str) -> None:
    """Release one reference taken by :func:`storage_mount`.

    The last release unmounts. Unmounting an id that is not mounted is not an
    error (idempotent). Return value ignored.
    """


@hookspec(firstresult=True)
def storage_exists(id: str) -> bool:
    """Return ``True`` if layer ``id`` exists, else ``False``."""


@hookspec(firstresult=True)
def storage_layers() -> list[str]:
    """Return the ids of every layer this driver holds (a ``list`` of str, any order).

    Optional.  The core keeps a record for every layer it makes (written before
    :func:`storage_create`, dropped after :func:`storage_remove`), so an id
    listed here that no record owns was left by a crash or by hand;
    ``dockyard system check`` reports it.  Without this hook the check says it
    cannot tell.

    List every id for which the driver keeps anything under ``home`` outside its
    own scratch space, including pieces of a create or remove that
    :func:`storage_init` did not clear, so that :func:`storage_remove` of each
    frees everything.  Layers being created right now may be listed or not.
    Cheap: read directory names or the driver's metadata, never layer contents.
    """


@hookspec(firstresult=True)
def storage_metadata(id: str) -> dict[str, str] | None:
    """Return what the driver can say about where layer ``id`` lives, shown by
    ``docker inspect`` as ``GraphDriver.Data`` of a container (its writable layer)
    and of an image (its top layer): a ``dict`` of str to str, in the keys Docker's
    driver of the same kind uses (overlay: ``LowerDir`` — the lower layers'
    directories, topmost first, joined by ``:``, absent for a layer without parent
    — ``UpperDir``, ``WorkDir``, ``MergedDir``; devicemapper: ``DeviceId``,
    ``DeviceName``, ``DeviceSize``).

    Optional: without it (or returning ``None``) ``Data`` is null, as Docker's vfs
    and btrfs drivers show it.  Cheap: paths and names the driver already keeps,
    never a mount or a walk of the layer.

    :raises LayerNotFound: for an unknown id.
    """


@hookspec(firstresult=True)
def storage_diff(id: str, parent: str | None) -> IO[bytes]:
    """Return the changes of ``id`` relative to ``parent`` as an uncompressed tar.

    :return: a readable binary file object (the caller closes it) holding an OCI
        layer tar: added and changed files, deletions as ``.wh.<name>`` entries and
        a directory whose lower content is hidden as ``<dir>/.wh..wh..opq``.

    ``parent`` ``None`` means everything in ``id``.  The core's fallback mounts
    both layers and walks them; implement this only for a faster native diff.
    """


@hookspec(firstresult=True)
def storage_apply_diff(id: str, parent: str | None, stream: IO[bytes]) -> int:
    """Apply the OCI layer tar read from ``stream`` to the (new, empty) layer ``id``.

    ``id`` was just created as a child of ``parent``.  Whiteouts (``.wh.*``) delete
    what the parent had; entries may not escape the layer (``..``, absolute links
    pointing out are kept as links but never followed).

    :return: the size in bytes of the applied content (int).
    :raises StorageError: for a corrupt or unsafe tar; the layer is then left to
        the caller to remove.  The core's fallback mounts ``id`` and extracts into it.
    """


@hookspec(firstresult=True)
def storage_changes(id: str, parent: str | None) -> list[tuple[str, int]]:
    """Return the list of changes of ``id`` relative to ``parent``.

    :return: ``list`` of ``(path, kind)``, ``path`` absolute inside the layer
        (``"/etc/passwd"``), ``kind`` 0 = modified, 1 = added, 2 = deleted
        (Docker's ``ChangeType`` numbers), sorted by path.
    """


@hookspec(firstresult=True)
def storage_size(id: str, parent: str | None) -> int:
    """Return the size in bytes of what ``id`` adds to ``parent`` (int)."""


@hookspec(firstresult=True)
def storage_status() -> list[list[str]]:
    """Return a ``list`` of ``[key, value]`` string pairs describing the driver,
    shown by ``/info`` as ``DriverStatus`` (e.g. ``[["Backing Filesystem", "ext4"]]``)."""


@hookspec(firstresult=True)
def storage_cleanup() -> None:
    """Unmount everything this driver mounted (daemon shutdown). Idempotent."""
