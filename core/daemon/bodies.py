"""Request bodies: bounded, decoded strictly, checked against the API schema.

Two kinds of body reach the API:

* **JSON configs** (create, update, exec, networks, volumes, commit, auth, the
  swarm and plugin ones): read whole, but never more than :data:`JSON_LIMIT`
  bytes.  A declared ``Content-Length`` above it is refused before one byte is
  read; a chunked body is refused as soon as it passes the limit.  4 MiB is twice
  what Linux lets a process start with (``ARG_MAX``: argv and environment together
  get 2 MiB), so a container or exec config at the kernel's own limit fits with
  room for labels and the rest, while one client can no longer make the daemon
  hold gigabytes (Docker has no limit at all);
* **streams** (a build context, an image to load or import, a ``cp`` tar, a
  hijacked stdin): never held in memory, spooled to disk or handed to their
  consumer chunk by chunk with back-pressure, so they have no size limit here.

A JSON body is decoded strictly, with a 400 naming the problem: UTF-8 only (Go
would replace bad bytes; a config is text), no NaN or Infinity (as Go), nesting
at most :data:`MAX_DEPTH` deep (Go allows 10000, where Python's parser and the
validator would run out of stack first), no lone UTF-16 surrogates (Go replaces
them; they could not be written out as UTF-8 later), and the operation's schema
(:mod:`dockyard.daemon.schema`).
"""

import base64
import json
import math
import re

from ..errors import DockyardError, InvalidParameter
from . import schema
from .context import blocking

JSON_LIMIT = 4 << 20
#: far deeper than any Docker body (a service spec is about 8 levels deep), far
#: shallower than the recursion that json.loads and a validator would run into
MAX_DEPTH = 100
_SURROGATE = re.compile(r"[\ud800-\udfff]")


class RequestTooLarge(DockyardError):
    status = 413


def _too_large(limit, what):
    return RequestTooLarge(f"{what} is larger than {limit >> 20} MiB, the daemon's limit for it")


async def read_limited(request, limit=JSON_LIMIT, what="the request body"):
    """The whole body, or :class:`RequestTooLarge` once it passes ``limit`` bytes
    (at once when the declared length does): at most ``limit`` + one chunk is held."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, what)
    buf = bytearray()
    while chunk := await request.content.readany():
        buf += chunk
        if len(buf) > limit:
            raise _too_large(limit, what)
    return bytes(buf)


def _finite(text):
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number {text} is out of range")
    return value


def _refuse_constant(name):
    raise ValueError(f"{name} is not JSON")


def loads(raw, what="the request body"):
    """JSON text (bytes: UTF-8 only) → value, or :class:`InvalidParameter` naming ``what``."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidParameter(f"invalid JSON in {what}: it is not UTF-8 (byte 0x{raw[exc.start]:02x} "
                                   f"at offset {exc.start})") from None
    try:
        value = json.loads(raw, parse_float=_finite, parse_constant=_refuse_constant)
    except RecursionError:
        raise _too_deep(what) from None
    except ValueError as exc:  # JSONDecodeError, and ints past Python's 4300 digits
        raise InvalidParameter(f"invalid JSON in {what}: {exc}") from None
    # A lone surrogate can only come from a \u escape (or a str that had one already):
    # without either, the strings need no look (a create body has a hundred of them).
    strings = "\\u" in raw or _SURROGATE.search(raw) is not None
    return _tidy(value, 0, what, strings)


def _tidy(value, depth, what, strings):
    """Check depth and (if ``strings``) strings; drop null array items (Go would
    decode them as zero values, which an engine iterating the list must not trip
    over).  Containers are changed in place."""
    if depth > MAX_DEPTH:
        raise _too_deep(what)
    if isinstance(value, dict):
        if value and depth >= MAX_DEPTH:
            raise _too_deep(what)
        for key, item in value.items():
            if strings:
                _whole(key, what)
            if isinstance(item, (dict, list)):
                _tidy(item, depth + 1, what, strings)
            elif strings and isinstance(item, str):
                _whole(item, what)
    elif isinstance(value, list):
        if None in value:
            value[:] = [item for item in value if item is not None]
        if value and depth >= MAX_DEPTH:
            raise _too_deep(what)
        for item in value:
            if isinstance(item, (dict, list)):
                _tidy(item, depth + 1, what, strings)
            elif strings and isinstance(item, str):
                _whole(item, what)
    elif strings and isinstance(value, str):
        _whole(value, what)
    return value


def _too_deep(what):
    return InvalidParameter(f"invalid JSON in {what}: nested more than {MAX_DEPTH} levels deep")


def _whole(text, what):
    if _SURROGATE.search(text):
        raise InvalidParameter(f"invalid JSON in {what}: a string holds a lone UTF-16 surrogate")


def decode(raw, operation):
    """Bytes of a JSON body → the checked value (``{}`` for an empty body or ``null``,
    as Go leaves a struct empty for both)."""
    if not raw.strip():
        return {}
    value = loads(raw)
    schema.check(operation, value)
    return {} if value is None else value


async def json_body(request, operation, limit=JSON_LIMIT):
    """The request's JSON body, bounded and checked against ``operation``'s schema
    (an operation id of the API spec).  A body of 64 KiB or more is decoded on the
    daemon's pool, so a large one never stalls the event loop."""
    raw = await read_limited(request, limit)
    if len(raw) < 1 << 16:
        return decode(raw, operation)
    return await blocking(request, decode, raw, operation)


def json_query(request, name, kind=dict):
    """A JSON query parameter (``filters``, ``buildargs``...) of type ``kind``; absent → ``kind()``."""
    raw = request.query.get(name)
    if not raw:
        return kind()
    value = loads(raw, name)
    if value is None:
        return kind()
    if not isinstance(value, kind):
        raise InvalidParameter(f"{name} must be a JSON {'object' if kind is dict else 'array'}")
    return value


def auth_header(request, name="X-Registry-Auth"):
    """Docker's base64url-encoded ``AuthConfig`` header, checked like a body; None if absent."""
    header = (request.headers.get(name) or "").strip()
    if not header:
        return None
    padded = header.replace("-", "+").replace("_", "/") + "=" * (-len(header) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except ValueError:
        raise InvalidParameter(f"{name} is not base64-encoded JSON") from None
    value = loads(raw, f"the {name} header") if raw.strip() else {}
    if not isinstance(value, dict):
        raise InvalidParameter(f"{name} must encode a JSON object")
    schema.check("SystemAuth", value)
    return value
