"""``GET /events``: the engine's events as a stream of JSON lines (Docker's EventMessage).

``since`` replays what the bus kept; ``until`` ends the stream once that time has
passed (at once when it is in the past); without it the stream runs until the
client goes away.  Delivery from engine threads is one ``call_soon_threadsafe``
per event: nothing here blocks the loop.
"""

import asyncio
import json
import time

from aiohttp import web

from ..engine.events import matches, normalize_filters, parse_time
from ..errors import InvalidParameter
from .app import engine
from .bodies import json_query

IDLE = 1.0  # seconds between looks at a quiet stream's connection and clock


def _query(request):
    raw = json_query(request, "filters", dict)
    try:
        filters = normalize_filters(raw)
    except ValueError as exc:
        raise InvalidParameter(f"invalid filters: {exc}") from None
    times = {}
    for key in ("since", "until"):
        try:
            times[key] = parse_time(request.query.get(key))
        except ValueError as exc:
            raise InvalidParameter(f"{key}: {exc}") from None
    since, until = times["since"], times["until"]
    if since is not None and until is not None and until < since:
        raise InvalidParameter(f"`since` time ({request.query['since']}) cannot be after "
                               f"`until` time ({request.query['until']})")
    return filters, since, until


async def events(request):
    filters, since, until = _query(request)
    bus = engine(request).bus
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    def deliver(msg):  # an engine thread, under the bus's lock
        loop.call_soon_threadsafe(queue.put_nowait, msg)

    past = bus.subscribe(deliver, since)
    try:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for msg in past:
            if until is not None and msg["timeNano"] > until:
                break
            if matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        while True:
            now = time.time_ns()
            if until is not None and now > until:
                break
            wait = IDLE if until is None else min(IDLE, max(0.0, (until - now) / 1e9))
            try:
                msg = await asyncio.wait_for(queue.get(), wait)
            except TimeoutError:
                if request.transport is None or request.transport.is_closing():
                    break  # the client went away
                continue
            if until is not None and msg["timeNano"] > until:
                break
            if matches(msg, filters):
                await resp.write(json.dumps(msg).encode() + b"\n")
        try:
            await resp.write_eof()
        except ConnectionError:
            pass
        return resp
    except ConnectionError:
        return resp
    finally:
        bus.unsubscribe(deliver)


ROUTES = [
    ("GET", "/events", events),
]
