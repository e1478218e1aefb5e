"""``docker ps``'s filters as SQL over the store's container records, with dockerd's
rules (moby ``daemon/list.go``) and its refusals of bad values.

Each filter is a condition on the JSON record (``containers.data``) that SQLite
checks, so that a container a filter drops is never parsed in Python (see
:mod:`.listing`).  Filters whose values name other objects (``ancestor`` an
image, ``before``/``since`` a container) are resolved by the service first
(:func:`resolved`): the values here are then ids.

* ``ancestor``: the image and every image built or committed from it, at any
  depth (``image_parents``), as dockerd walks an image's children;
* ``volume``: a mount point's volume name or destination;
* ``network``: a network the container is connected to, by name or id prefix;
* ``publish`` / ``expose``: ``PORT[/PROTO]`` or ``START-END[/PROTO]`` (tcp if no
  protocol), a host port bound / a container port of a running container's
  ports, as dockerd's (its ``NetworkSettings.Ports``);
* ``is-task``: swarm tasks only (``true``: none here) or none of them.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from ...errors import InvalidParameter

FILTERS = ("status", "name", "id", "label", "exited", "health", "ancestor", "before", "since", "volume",
           "network", "publish", "expose", "is-task")
#: the filters whose values the service resolves to ids before the query
RESOLVED = ("ancestor", "before", "since")
_UINT = re.compile(r"[0-9]+")


def check(filters: dict) -> None:
    """Refuse an unknown filter or a bad value as dockerd does, before any listing."""
    for key, values in filters.items():
        if key not in FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
        if key == "is-task" and "true" not in values and "false" not in values:
            raise InvalidParameter(f"Invalid filter 'is-task=[{' '.join(values)}]'")
        if key in ("publish", "expose"):
            for value in values:
                port_range(key, value)


def port_range(key: str, value: str) -> tuple[int, int, str]:
    """``(start, end, proto)`` of a ``publish``/``expose`` value (go-connections'
    ``nat.SplitProtoPort`` and ``ParsePortRange``, with dockerd's messages)."""
    if ":" in value:
        raise InvalidParameter(f"filter for '{key}' should not contain ':': {value}")
    port, _, proto = value.partition("/")
    proto = proto or "tcp"
    first, dash, rest = port.partition("-")
    numbers = [first, rest.split("-")[0]] if dash else [first]
    parsed = []
    for text in numbers:
        if not _UINT.fullmatch(text):
            raise InvalidParameter(f'error while looking up for {key} {value}: strconv.ParseUint: '
                                   f'parsing "{text}": invalid syntax')
        if int(text) > 65535:
            raise InvalidParameter(f'error while looking up for {key} {value}: strconv.ParseUint: '
                                   f'parsing "{text}": value out of range')
        parsed.append(int(text))
    start, end = parsed[0], parsed[-1]
    if end < start:
        raise InvalidParameter(f"error while looking up for {key} {value}: "
                               f"Invalid range specified for the Port: {port}")
    return start, end, proto


def resolved(filters: dict, image_id: Callable[[str], str | None],
             container_id: Callable[[str], str | None]) -> dict:
    """``filters`` with the values of :data:`RESOLVED` as ids: an ``ancestor`` image
    that does not exist matches nothing (dockerd only logs it); a ``before``/``since``
    container that does not exist is refused with dockerd's message (its status is
    500, an error it did not type; a bad filter is the client's: 400 here)."""
    out = dict(filters)
    if "ancestor" in filters:
        out["ancestor"] = [i for i in (image_id(v) for v in filters["ancestor"]) if i]
    for key in ("before", "since"):
        if key in filters:
            ids = []
            for value in filters[key]:
                cid = container_id(value)
                if cid is None:
                    raise InvalidParameter(f"no such container {value}")
                ids.append(cid)
            out[key] = ids
    return out


def where(show_all: bool, filters: dict) -> tuple[list[str], list[Any]]:
    """SQL conditions on ``containers`` (its ``data``) and their parameters."""
    conds: list[str] = []
    args: list[Any] = []
    if not show_all:
        conds.append("(data ->> '$.state.running' OR data ->> '$.state.restarting')")

    def any_of(template: str, values: list, per_value: Callable[[Any], list]) -> None:
        conds.append("(" + " OR ".join([template] * len(values)) + ")" if values else "0")
        for v in values:
            args.extend(per_value(v))

    for key, values in filters.items():
        if key == "status":
            any_of("data ->> '$.state.status' = ?", values, lambda v: [v])
        elif key == "name":
            any_of("instr('/' || name, ?) > 0", values, lambda v: [v.lstrip("/")])
        elif key == "id":
            any_of("substr(id, 1, ?) = ?", values, lambda v: [len(v), v])
        elif key == "label":
            for v in values:  # every label given must match
                k, sep, val = v.partition("=")
                conds.append("EXISTS (SELECT 1 FROM json_each(data, '$.config.Labels') WHERE key = ?"
                             + (" AND value = ?)" if sep else ")"))
                args.extend([k, val] if sep else [k])
        elif key == "exited":
            any_of("CAST(data ->> '$.state.exit_code' AS TEXT) = ?", values, lambda v: [v])
            conds.append("data ->> '$.state.status' = 'exited'")
        elif key == "health":
            any_of("coalesce(data ->> '$.state.health.status', 'none') = ?", values, lambda v: [v])
        elif key == "ancestor":
            if not values:
                conds.append("0")
                continue
            conds.append("image_id IN (WITH RECURSIVE tree(id) AS (VALUES " + ", ".join(["(?)"] * len(values))
                         + " UNION SELECT p.image_id FROM image_parents AS p JOIN tree ON p.parent = tree.id)"
                         " SELECT id FROM tree)")
            args.extend(values)
        elif key in ("before", "since"):
            for cid in values:  # dockerd: created before / after that container
                conds.append(f"data ->> '$.created' {'<' if key == 'before' else '>'} "
                             "(SELECT c.data ->> '$.created' FROM containers AS c WHERE c.id = ?)")
                args.append(cid)
        elif key == "volume":
            any_of("EXISTS (SELECT 1 FROM json_each(data, '$.mount_points') AS m "
                   "WHERE m.value ->> '$.name' = ? OR m.value ->> '$.destination' = ?)", values, lambda v: [v, v])
        elif key == "network":
            any_of("(EXISTS (SELECT 1 FROM json_each(data, '$.networks') AS n WHERE n.key = ?)"
                   " OR (data ->> '$.network_mode' = ? AND NOT EXISTS (SELECT 1 FROM json_each(data, '$.networks')))"
                   " OR EXISTS (SELECT 1 FROM json_each(data, '$.network_settings.endpoints') AS e"
                   "  WHERE substr(e.value ->> '$.network_id', 1, ?) = ?)"
                   " OR EXISTS (SELECT 1 FROM networks AS w, json_each(data, '$.networks') AS n"
                   "  WHERE n.key = w.name AND substr(w.id, 1, ?) = ?))",
                   values, lambda v: [v, v, len(v), v, len(v), v])
        elif key in ("publish", "expose"):
            port = ("CAST(b.value ->> '$.host_port' AS INTEGER)" if key == "publish"
                    else "CAST(substr(p.key, 1, instr(p.key || '/', '/') - 1) AS INTEGER)")
            source = (", json_each(p.value) AS b" if key == "publish" else "")
            any_of(f"EXISTS (SELECT 1 FROM json_each(data, '$.network_settings.ports') AS p{source} "
                   f"WHERE {port} BETWEEN ? AND ? AND substr(p.key, instr(p.key, '/') + 1) = ?)",
                   [port_range(key, v) for v in values], list)
        elif key == "is-task":
            if "true" in values:  # no swarm here: no container is a task
                conds.append("0")
    return conds, args
