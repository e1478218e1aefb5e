"""Query parameters read as dockerd reads them: a bad value is a 400 naming the parameter."""

from __future__ import annotations

from aiohttp import web

from ..errors import InvalidParameter
from .bodies import json_query


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    value = request.query.get(name)
    if value is None:
        return default
    return value.lower() in ("1", "true", "yes")


def qint(request: web.Request, name: str, default: int | None = None, lo: int = -2 ** 63,
         hi: int = 2 ** 63 - 1) -> int | None:
    """An integer query parameter within ``lo``..``hi`` (by default Go's int, as
    dockerd's ``strconv.Atoi``); anything else is a 400 naming the parameter."""
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        number = int(value.strip(), 10)
    except ValueError:
        raise InvalidParameter(f"invalid value for {name}: {value[:64]!r} (an integer is expected)") from None
    if not lo <= number <= hi:
        raise InvalidParameter(f"invalid value for {name}: {value[:64]} is out of range ({lo} to {hi})")
    return number


def qfloat(request: web.Request, name: str, default: float = 0.0) -> float:
    """A number query parameter (``since``/``until`` of logs: seconds, maybe with a fraction)."""
    value = request.query.get(name)
    if value in (None, ""):
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidParameter(f"invalid value for {name}: {value[:64]!r} (a number is expected)")
    return number


def qfilters(request: web.Request) -> dict[str, list[str]]:
    """``filters`` (``{"key": ["v"]}`` or the legacy ``{"key": {"v": true}}``) → ``{"key": ["v"]}``;
    any other shape is a 400, as dockerd's ``filters.FromJSON``."""
    out = {}
    for key, wanted in json_query(request, "filters", dict).items():
        if isinstance(wanted, dict) and all(isinstance(v, bool) for v in wanted.values()):
            values = [v for v, on in wanted.items() if on]
        elif isinstance(wanted, list) and all(isinstance(v, str) for v in wanted):
            values = list(wanted)
        else:
            raise InvalidParameter(f"invalid filter '{key}': a list of strings or an object of booleans "
                                   "is expected")
        out[key] = values
    return out
