"""What a pull and a push share: their parts (layers, the config) run on a
thread pool, the first part that fails stops the others, and a cancel (the
client went away) stops them all.  Each part calls :meth:`Transfer.check`
between chunks, and waits out its retries through :meth:`Transfer.listener`.

A transfer is given its local side (:class:`LocalSide`: the stores, one lock per
blob) by the registry service that runs it, which satisfies the protocol; it
does not import that service, which imports the transfers.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, wait
from typing import TYPE_CHECKING, Any, Protocol

from .errors import PullCancelled

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from contextlib import AbstractContextManager

    from .progress import Progress


class LocalSide(Protocol):
    """What a pull and a push need of the registry service that runs them
    (:class:`~dockyard.registry.service.Registry`); :class:`~.pull.PullSide` and
    :class:`~.push.PushSide` add what only one of them needs."""

    @property
    def content(self) -> Any:
        """The content store (:class:`dockyard.engine.layers.content.ContentStore`):
        blobs, and the ingests a transfer writes them through."""

    def images_api(self) -> tuple[Callable[..., str], Callable[..., dict[str, Any]], Callable[..., None]]:
        """The image store's registry half: ``(add_from_registry, push_plan,
        record_pushed)``."""

    def blob_lock(self, key: str) -> AbstractContextManager[None]:
        """Held while one transfer works on the blob ``key`` (two pulls of one
        blob share its ingest)."""


class Stopped(PullCancelled):
    """Another part of the same transfer failed first."""


class Transfer:
    """Base of :class:`~.pull.Puller` and :class:`~.push.Pusher` (which set
    ``progress`` before calling this constructor)."""

    verb = "transfer"  # "pull", "push": for the messages
    progress: Progress | None = None

    def __init__(self, name: object, cancel: threading.Event | None = None, resume_hint: str = "") -> None:
        self.cancel = cancel or threading.Event()
        self.stop = threading.Event()
        self._cancelled = f"{self.verb} of {name} cancelled{resume_hint}"

    def check(self) -> None:
        """Raise if the transfer was cancelled or another part of it failed."""
        if self.cancel.is_set():
            raise PullCancelled(self._cancelled)
        if self.stop.is_set():
            raise Stopped(f"stopped: another part of the {self.verb} failed")

    def listener(self, id: str | None = None) -> _PartListener:
        """The :class:`~dockyard.registry.retry.Listener` of the part ``id`` (a
        layer's short id; None: a part without a progress line)."""
        return _PartListener(self, id)

    def wait_all(self, futures: Sequence[Future[Any]]) -> None:
        """Wait for the parts; after the first failure stop the others and raise
        the error that started it (not a part's :class:`Stopped`)."""
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            self.stop.set()
            wait(futures)
            errors = [e for f in futures if (e := f.exception()) is not None]
            raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])


class _PartListener:
    """Docker's "Retrying in N seconds" on the part's progress line; a wait that a
    cancel or another part's failure cuts short."""

    def __init__(self, transfer: Transfer, id: str | None) -> None:
        self.transfer, self.id = transfer, id

    def retrying(self, attempt: int, delay: float, reason: str) -> None:
        if self.id and self.transfer.progress is not None:
            n = max(1, math.ceil(delay))
            self.transfer.progress.layer(self.id, f"Retrying in {n} second{'s' if n != 1 else ''}")

    def wait(self, delay: float) -> None:
        self.transfer.check()
        if self.transfer.cancel.wait(delay) or self.transfer.stop.is_set():
            self.transfer.check()
