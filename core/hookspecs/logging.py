"""Logging driver hook specs (Docker's log drivers: ``docker run --log-driver``).

A container's output is written where the container runs, not in the daemon: the
exec driver's shim (``dockyard.driverkit.shim``) copies the process's stdout and
stderr while the daemon may be stopped or restarting, so **a log driver's writing
half runs inside the shim**.  The shim is a ``python -E -S`` process that imports
nothing but the standard library; a driver therefore hands the core a *writer
spec* (:class:`Writer`): the bare name of a stdlib-only module, the directory it
lives in, and JSON-serialisable options.  The shim puts the directory on
``sys.path``, imports the module and calls its ``open_log``::

    # <directory>/dockyard_log_mine.py  (stdlib only: it runs in the shim)
    def open_log(options, container):
        '''Return an object with write(entries) and close(), or raise
        (OSError, ValueError) with a one-line reason: the start fails with
        "failed to initialize logging driver: <reason>".'''

    # write(entries): entries is a list of (stream, data, time_ns, partial):
    #   stream "stdout" or "stderr", data the bytes of one line (its "\\n"
    #   included; at most 16 KiB: longer lines come in several entries, all but
    #   the last with partial True, like a line cut short by the process's
    #   exit or a prompt logged after a pause), time_ns the shim's clock.
    #   Never block for long and never raise: a log that cannot take the output
    #   drops it, the container must not stop (dockerd's non-blocking mode).

The daemon's half (this module) validates a container's options at create,
produces the writer spec at start, and, for a driver that can be **read back**,
reads entries for ``docker logs``.

Whatever the driver, the shim also keeps the container's *stream file*
(``container["log_path"]``, Docker's json-file format), which ``docker attach``
follows.  A driver's :class:`Writer` may give its rotation; the ``json-file``
driver *is* that file (it names no module), every other driver leaves the core's
default (a small file truncated as it fills).

Rules for implementers:

* Every hook is ``firstresult``.  ``config`` is the container's ``LogConfig.Config``
  (a dict of strings; the daemon's ``--log-opt`` defaults already merged in).
* Refuse what you do not know at :func:`logging_validate`, with
  :class:`dockyard.errors.InvalidParameter` and dockerd's words
  (``unknown log opt 'x' for <name> log driver``): nothing is created for a bad
  configuration.  Values you only check at start raise :class:`LogDriverError`
  from :func:`logging_writer`.
* ``container`` is a :class:`Container`: what a driver may use to tag or place
  its output.  ``container["dir"]`` is the container's own directory (removed
  with the container): keep files there.
* Hooks run in the daemon's worker threads and may block briefly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypedDict

from ..errors import DockyardError
from . import hookspec

if TYPE_CHECKING:
    from pathlib import Path


class Container(TypedDict):
    """What a log driver learns of the container it logs."""

    id: str
    name: str  #: without the leading "/"
    image_name: str  #: as the client named it (``busybox``)
    image_id: str
    created: str  #: RFC 3339
    labels: dict[str, str]
    env: list[str]  #: ``KEY=VALUE``
    dir: str  #: the container's directory
    log_path: str  #: the stream file (json-file)
    daemon_name: str  #: the host name the daemon reports


class Rotation(TypedDict, total=False):
    """How the shim rotates a file (json-file's options): ``max_size`` in bytes
    (-1: never), ``max_file`` files kept (1: truncate in place), ``compress``
    (gzip the rotated files)."""

    max_size: int
    max_file: int
    compress: bool


class Writer(TypedDict, total=False):
    """What :func:`logging_writer` returns (JSON-serialisable: it is written
    into the shim's state).

    ``module``/``path``: the stdlib-only writer module the shim imports by bare
    name from directory ``path`` (``None``: no writer besides the stream file);
    pick a name no other module uses (``dockyard_log_<driver>``).  ``options``:
    what its ``open_log`` gets.  ``stream``: ``{"rotation": Rotation, "attrs":
    {...}}``, the stream file's :class:`Rotation` and extra fields of each of
    its entries (Docker's ``attrs``).  The core adds ``container`` (the
    :class:`Container`, ``open_log``'s second argument) before the shim gets it.
    """

    module: str | None
    path: str | None
    options: dict[str, Any]
    stream: dict[str, Any]
    container: dict[str, Any]


class Entry(TypedDict, total=False):
    """One entry read back: ``log`` text, ``stream`` name, ``time`` RFC 3339
    with nanoseconds (what ``docker logs --timestamps`` prints)."""

    log: str
    stream: str
    time: str


class LogDriverError(DockyardError):
    """A log driver cannot log this container (bad option value, no journal, no
    syslog): the start fails with ``failed to initialize logging driver: ...``."""


@hookspec(firstresult=True)
def logging_supported(home: Path, options: dict[str, Any]) -> str | None:
    """Return ``None`` if usable here, else a one-line reason.  Changes nothing.

    A driver whose destination may come and go (a journal, a syslog daemon)
    says ``None`` and checks at :func:`logging_writer`, as dockerd does."""


@hookspec(firstresult=True)
def logging_init(home: Path, options: dict[str, Any]) -> None:
    """Prepare the driver (once per daemon start; idempotent).  ``options`` are
    the driver's own (``[logging.options.<name>]`` of ``plugins.toml``), not a
    container's."""


@hookspec(firstresult=True)
def logging_validate(config: dict[str, str]) -> None:
    """Refuse, at create, a ``config`` naming an option this driver does not
    have (:class:`~dockyard.errors.InvalidParameter`).  Return value ignored."""


@hookspec(firstresult=True)
def logging_writer(container: Container, config: dict[str, str]) -> Writer:
    """Return the :class:`Writer` spec the container's shim runs, at each start.

    Check the option values here (raise :class:`LogDriverError` with dockerd's
    reason); make the directories your writer needs."""


@hookspec(firstresult=True)
def logging_read(container: Container, config: dict[str, str], cursor: Any,
                 tail: int) -> tuple[list[Entry], Any]:
    """Return ``(entries, cursor)``: the complete entries written after
    ``cursor`` (``None``: from the oldest kept), oldest first, and the cursor
    to pass next time (JSON-like; opaque to the core).  Never blocks waiting for
    output: ``docker logs -f`` calls again.

    ``tail`` (``docker logs --tail N``; only with ``cursor`` ``None``): when
    0 or more, only the last ``tail`` entries are wanted, and the cursor
    returned is the one after the newest entry, so that ``docker logs -f
    --tail N`` follows on from there.  Read them from the end, across rotated
    files, so that the cost is that of the entries returned, not of the whole
    log; count every entry kept, whatever its stream, as dockerd counts (the
    core filters streams and ``--since``/``--until`` after the tail, as
    dockerd does).  -1: every entry.  Optional argument: a driver that
    does not take it returns every entry and the core keeps the last ``tail``
    (correct, at the cost of reading the whole log).

    Optional: a driver that cannot read its output back (``none``,
    ``journald``, ``syslog``) does not implement it, and ``docker logs`` is
    refused as dockerd refuses it (501, ``configured logging driver does not
    support reading``)."""


@hookspec(firstresult=True)
def logging_reopen(container: Container, config: dict[str, str]) -> None:
    """Reopen the running container's log file after someone rotated it (the
    kubelet's ``ReopenContainerLog``: it renamed the file and expects a new one
    at the path when this returns).  Raise :class:`LogDriverError` if it cannot.

    Optional: the core refuses a reopen for a driver without it."""


@hookspec(firstresult=True)
def logging_log_path(container: Container, config: dict[str, str]) -> str:
    """Return what inspect shows as ``LogPath`` (optional: ``""``, as dockerd
    shows for drivers other than json-file)."""
