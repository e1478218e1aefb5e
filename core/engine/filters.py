"""Docker's filter values, as every service reads them: times (``until``, ``since``,
a record's ``Created``) and labels (``label``, ``label!``)."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Iterable

from ..errors import InvalidParameter

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h))+$")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def timestamp(iso: object) -> float:
    """Seconds since the epoch (with the fraction) of an RFC 3339 time, whatever
    its precision (Go writes up to nanoseconds); 0.0 when it does not parse."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?$", str(iso).strip())
    if not m:
        return 0.0
    try:
        whole = datetime.fromisoformat(m.group(1) + (m.group(3) or "Z").replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return whole.timestamp() + (float("0" + m.group(2)) if m.group(2) else 0.0)


def unix_time(iso: object) -> int:
    return int(timestamp(iso))


def parse_timestamp(value: str, now: float | None = None) -> float:
    """Docker's ``until``/``since`` values: a Go duration before now (``10m``), a
    unix time, an RFC 3339 time or a date; returns unix seconds."""
    now = time.time() if now is None else now
    if _DURATION.match(value):
        return now - sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value))
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"invalid timestamp {value!r}: a duration (10m), unix time, "
                               "RFC 3339 time or date is expected") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()


def label_match(labels: dict | None, wanted: Iterable[str], negated: Iterable[str] = ()) -> bool:
    """Docker's ``label=key``/``label=key=value`` (all must hold) and ``label!=``."""
    labels = labels or {}

    def has(spec: str) -> bool:
        key, sep, value = spec.partition("=")
        return key in labels and (not sep or labels[key] == value)
    return all(has(s) for s in wanted) and not any(has(s) for s in negated)
