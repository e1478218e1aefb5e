"""What every handler shares: the application's keys, the worker pools and
:func:`blocking`, and the hub that brings the engine's events to the event loop.

Handlers never block the event loop: service calls go through :func:`blocking`,
which runs them on the daemon's thread pool.  This module is a leaf: the routers
import it, never the other way round.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from aiohttp import web

T = TypeVar("T")

class EventHub:
    """Fans engine events (emitted in worker threads) out to asyncio listeners.

    A listener may follow one object (``about``: a container's id): it is woken by
    that object's events only.  Every ``docker run -d`` leaves a wait behind until
    the client's hang-up is noticed; were each woken by every event, a burst of
    runs would cost the loop the square of its size."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.listeners: dict[asyncio.Queue, str | None] = {}

    def __call__(self, type_: str, action: str, id_: str, attributes: dict) -> None:  # engine thread
        self.loop.call_soon_threadsafe(self._dispatch, (type_, action, id_, dict(attributes)))

    def _dispatch(self, event: tuple) -> None:
        for queue, about in list(self.listeners.items()):
            if about is None or about == event[2]:
                queue.put_nowait(event)

    def listen(self, about: str | None = None) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue()
        self.listeners[queue] = about
        return queue

    def narrow(self, queue: asyncio.Queue, about: str) -> None:
        """From now on, only ``about``'s events (a listener that had to listen
        before it knew the id; what it holds already stays)."""
        if queue in self.listeners:
            self.listeners[queue] = about

    def close(self, queue: asyncio.Queue) -> None:
        self.listeners.pop(queue, None)


#: the daemon's worker threads (every blocking service call)
POOL = web.AppKey("pool", ThreadPoolExecutor)
#: the threads that read the store for list answers (see listing.py)
LIST_POOL = web.AppKey("list_pool", ThreadPoolExecutor)
#: the engine's events, for the streams that follow a container (wait, logs -f, attach)
HUB = web.AppKey("hub", EventHub)
#: the data root, named by a full disk's error
DATA_ROOT = web.AppKey("data_root", str)


def hub(request: web.Request) -> EventHub:
    return request.app[HUB]


async def blocking(request: web.Request, fn: Callable[..., T], *args: Any, pool: Any = POOL, **kwargs: Any) -> T:
    """Run a blocking service call on the daemon's pool (or the one ``pool`` names)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(request.app[pool], lambda: fn(*args, **kwargs))
