"""The engine's events: what happened, to its listeners, to extensions and to ``GET /events``.

Every service reports what it did through :meth:`Emitter.emit` ``(type, action, id,
attributes)``: the emitter calls its subscribers (in the emitting thread, outside any
lock: the health monitor, the daemon's stream hub, the bus) and the extensions'
``dockyard_container_event``/``dockyard_image_event`` hooks.  The
:class:`EventBus` subscribes to it, stamps each event with the time, adds what
Docker adds to container events (the container's labels, ``name`` and ``image``),
keeps the last :data:`HISTORY` messages so that ``GET /events?since=`` replays them,
and hands every message to its listeners in one order.

Any type is carried (``container``, ``image``, ``network``, ``volume``, ``daemon``,
...); a listener is a plain callable called in the emitting thread, under the bus's
lock (so every listener sees the same order): it must not block.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from datetime import datetime
from typing import Any, Callable, Protocol

from ..model.container import ContainerRecord

log = logging.getLogger("dockyard.engine")
#: a subscriber of the emitter: ``(type, action, id, attributes)``
Listener = Callable[[str, str, str, dict], None]

HISTORY = 1000  # Docker keeps 256; `since` replays from here
# filters whose value may be a prefix of the action (Docker's #25798)
FUZZY_EVENTS = ("health_status", "exec_create", "exec_start", "exec_die")
FILTER_KEYS = ("type", "event", "container", "image", "network", "volume", "label", "daemon", "scope",
               "plugin", "node", "service", "secret", "config")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_SCALE = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}


class Emitter:
    """Fans the engine's events out; ``extensions`` is the plugin manager of the
    ``dockyard.plugins`` extensions (their event hooks), or None."""

    def __init__(self, extensions: Any = None) -> None:
        self._extensions = extensions
        self._subscribers: list[Listener] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Listener) -> None:
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Listener) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def emit(self, type_: str, action: str, id_: str, attributes: dict) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for cb in subscribers:
            try:
                cb(type_, action, id_, attributes)
            except Exception:
                log.exception("event subscriber failed")
        if self._extensions is None or type_ not in ("container", "image"):
            return
        try:
            if type_ == "container":
                self._extensions.hook.dockyard_container_event(container_id=id_, action=action,
                                                               attributes=dict(attributes))
            else:
                self._extensions.hook.dockyard_image_event(image_id=id_, action=action, attributes=dict(attributes))
        except Exception:
            log.exception("extension failed on %s %s", type_, action)


class _Source(Protocol):
    def subscribe(self, callback: Listener) -> None: ...


class _Records(Protocol):
    def get(self, cid: str) -> ContainerRecord: ...


class EventBus:
    """Docker's event stream of ``source`` (an :class:`Emitter`); container events
    get the container's labels, name and image from ``containers`` (its records)."""

    def __init__(self, source: _Source, containers: _Records, history: int = HISTORY) -> None:
        self.containers = containers
        self._history: deque[dict] = deque(maxlen=history)
        self._listeners: list[Callable[[dict], None]] = []
        self._lock = threading.Lock()
        self._actors: dict[str, tuple] = {}  # container id -> (labels, name, image), after its record is gone
        source.subscribe(self._on_event)

    # --- in -------------------------------------------------------------------------
    def _on_event(self, type_: str, action: str, id_: str, attributes: dict) -> None:
        now = time.time_ns()
        attrs = {str(k): "" if v is None else str(v) for k, v in (attributes or {}).items()}
        if type_ == "container":
            attrs = self._container_attributes(id_, action, attrs)
        msg = {"Type": type_, "Action": action, "Actor": {"ID": id_ or "", "Attributes": attrs},
               "scope": "local", "time": now // 10**9, "timeNano": now}
        if type_ in ("container", "image"):  # the pre-1.22 fields docker still sends
            msg.update(status=action, id=id_ or "")
            if type_ == "container":
                msg["from"] = attrs.get("image", "")
        with self._lock:
            self._history.append(msg)
            for fn in list(self._listeners):
                try:
                    fn(msg)
                except Exception:  # a listener's bug must not stop the engine
                    pass

    def _container_attributes(self, cid: str, action: str, attrs: dict[str, str]) -> dict[str, str]:
        known = self._actors.get(cid)
        if known is None or action in ("rename", "update"):
            try:
                rec = self.containers.get(cid)
            except Exception:  # gone (destroy) or not yet readable
                rec = None
            if rec is not None:
                known = (dict(rec.config.get("Labels") or {}), rec.name, rec.image)
                self._actors[cid] = known
        if action == "destroy":
            self._actors.pop(cid, None)
        if known is None:
            return attrs
        labels, name, image = known
        out = {str(k): str(v) for k, v in labels.items()}
        out.update(attrs)
        out.setdefault("name", name)
        out.setdefault("image", image)
        return out

    # --- out ------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[dict], None], since_ns: int | None = None) -> list[dict]:
        """Add ``fn(message)``; returns the kept messages at or after ``since_ns``
        (none when it is None), atomically with the subscription: no gap, no repeat."""
        with self._lock:
            past = [] if since_ns is None else [m for m in self._history if m["timeNano"] >= since_ns]
            self._listeners.append(fn)
        return past

    def unsubscribe(self, fn: Callable[[dict], None]) -> None:
        with self._lock:
            if fn in self._listeners:
                self._listeners.remove(fn)

    def history(self) -> list[dict]:
        with self._lock:
            return list(self._history)


# --- filters ----------------------------------------------------------------------------

def normalize_filters(raw: dict | None) -> dict[str, list[str]]:
    """``{"type": {"container": true}}`` or ``{"type": ["container"]}`` -> ``{"type": [...]}``."""
    out = {}
    for key, wanted in (raw or {}).items():
        if isinstance(wanted, dict):
            values = [k for k, on in wanted.items() if on]
        elif isinstance(wanted, (list, tuple)):
            values = list(wanted)
        else:
            values = [str(wanted)]
        if key not in FILTER_KEYS:
            raise ValueError(f"invalid filter '{key}'")
        out[key] = [str(v) for v in values]
    return out


def _exact(filters: dict, key: str, *sources: str | None) -> bool:
    values = filters.get(key)
    return not values or any(s in values for s in sources if s is not None)


def _fuzzy(filters: dict, key: str, *sources: str | None) -> bool:
    values = filters.get(key)
    return not values or any(s is not None and s.startswith(v) for v in values for s in sources)


def _strip_tag(ref: str | None) -> str | None:
    if not ref or "@" in ref:
        return ref.split("@", 1)[0] if ref else ref
    head, sep, tail = ref.rpartition(":")
    return head if sep and "/" not in tail else ref


def matches(msg: dict, filters: dict) -> bool:
    """Docker's events filter (daemon/events/filter.go): every given key must match."""
    if not filters:
        return True
    actor = msg["Actor"]
    aid, attrs = actor["ID"], actor["Attributes"]
    action = msg["Action"]
    if filters.get("event"):
        wanted = filters["event"]
        if not (action in wanted or any(w in FUZZY_EVENTS and action.startswith(w) for w in wanted)):
            return False
    if not _exact(filters, "type", msg["Type"]) or not _exact(filters, "scope", msg.get("scope")):
        return False
    for key in ("container", "network", "volume", "daemon", "plugin", "node", "service", "secret", "config"):
        if not _fuzzy(filters, key, aid, attrs.get("name")):  # Docker: any type, by ID or name
            return False
    if filters.get("image"):
        name = attrs.get("name" if msg["Type"] == "image" else "image")
        if not _exact(filters, "image", aid, name, _strip_tag(aid), _strip_tag(name)):
            return False
    for item in filters.get("label") or ():
        key, sep, value = item.partition("=")
        if key not in attrs or (sep and attrs[key] != value):
            return False
    return True


# --- times ------------------------------------------------------------------------------

def parse_time(value: object, now_ns: int | None = None) -> int | None:
    """``since``/``until`` -> nanoseconds since the epoch, or None when empty.

    What the docker CLI and SDK send (``1700000000`` or ``1700000000.123456789``),
    and, for people typing URLs, RFC 3339 and Go durations before now (``10m``)."""
    if value is None or str(value).strip() == "":
        return None
    text = str(value).strip()
    now_ns = time.time_ns() if now_ns is None else now_ns
    m = re.fullmatch(r"(-?\d+)(?:\.(\d{1,9}))?", text)
    if m:
        return int(m.group(1)) * 10**9 + int((m.group(2) or "0").ljust(9, "0"))
    parts = _DURATION.findall(text)
    if parts and "".join(n + u for n, u in parts) == text:
        return now_ns - int(sum(float(n) * _SCALE[u] for n, u in parts))
    try:
        stamp = datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", text.replace("Z", "+00:00")))
    except ValueError:
        raise ValueError(f"invalid time {text!r}: expected unix seconds[.nanoseconds], RFC 3339 "
                         "or a duration such as 10m") from None
    if stamp.tzinfo is None:
        stamp = stamp.astimezone()
    return int(stamp.timestamp() * 10**9)
