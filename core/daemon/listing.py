"""List answers streamed item by item (``/containers/json``, ``/images/json``,
``/networks``, ``/volumes``).

A list used to be built whole, then serialised whole, then handed to the
transport whole: three copies of everything it held, per client.  Here the items
come from an iterator run on the daemon's pool, a few at a time, and each is
written as soon as it is encoded, in slices that wait for the client to take
them; so a request holds about one item (and a socket buffer) at a time.

The items are made on two threads of their own (``LIST_POOL``), whatever the
number of clients: reading large records leaves memory behind in the thread that
read them (SQLite's page cache is per connection, hence per thread, and so is
malloc's arena), and on the daemon's 64-thread pool that was 64 times what two
threads keep.

An error before the first item is a plain HTTP error (a bad filter is a 400);
one after it cuts the connection, so no client takes half a list for a whole one.
"""

import json
import logging

from aiohttp import web

from .context import LIST_POOL, blocking

log = logging.getLogger("dockyard.api")
BATCH = 1 << 20  # bytes of items encoded per trip to the pool
SLICE = 1 << 18  # bytes per write: the transport copies what the socket does not take at once
_END = object()


class Raw(list):
    """A JSON value already encoded, as a list of byte strings (e.g. labels as the
    store extracted them): written out as it is."""


def _encode(item):
    return item if isinstance(item, Raw) else [json.dumps(item).encode()]


def _batch(items):
    """The next items, encoded, up to :data:`BATCH` bytes; ``[]`` at the end."""
    out, size = [], 0
    while size < BATCH and len(out) < 256:
        item = next(items, _END)
        if item is _END:
            break
        chunks = _encode(item)
        out.append(chunks)
        size += sum(len(c) for c in chunks)
    return out


async def _write(resp, data):
    view = memoryview(data)
    for start in range(0, len(view), SLICE):
        await resp.write(view[start:start + SLICE])


async def json_array(request, produce, head=b"", tail=b""):
    """Answer ``head + [items...] + tail``; ``produce()`` (called on the pool) returns
    an iterator of JSON values or :class:`Raw` items."""
    items = await blocking(request, lambda: iter(produce()), pool=LIST_POOL)
    batch = await blocking(request, _batch, items, pool=LIST_POOL)
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    await resp.prepare(request)
    try:
        await resp.write(head + b"[")
        first = True
        while batch:
            for chunks in batch:
                if not first:
                    await resp.write(b",")
                first = False
                for chunk in chunks:
                    await _write(resp, chunk)
            batch = None  # let the last batch go before the next is made
            batch = await blocking(request, _batch, items, pool=LIST_POOL)
        await resp.write(b"]" + tail + b"\n")
    except (ConnectionError, RuntimeError):
        return resp  # the client went away
    except Exception:
        log.exception("%s %s failed while streaming", request.method, request.path)
        if request.transport is not None:
            request.transport.close()
        return resp
    await resp.write_eof()
    return resp
