"""``docker ps`` without reading whole container records.

A container is one JSON document in the store (``containers.data``: a
:class:`~dockyard.model.container.ContainerRecord` as the model's converter
unstructures it, so the paths below name its fields), and a label
in it may be megabytes (up to the API's body limit).  Listing used to parse every
record in Python for every client, even the ones a filter then dropped, and copy
their labels into each answer: 200 concurrent listings of one container with a
100 MB label took the daemon to 23 GB.  Here SQLite's JSON functions pick the
few fields a listing needs and apply the filters inside the database, so

* a record that is not listed is never parsed in Python at all;
* a listed record yields only its small summary fields (:func:`records`), and
  its labels come as the JSON text SQLite extracted, to be written out as they
  are: never decoded, and large ones (more than :data:`INLINE` bytes of record)
  fetched one container at a time (:func:`labels_json`), never gathered into a
  list of every container's labels;
* at most :data:`SCANS` listings read the table at once, so the memory SQLite
  uses to read large records does not grow with the number of clients.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import attrs

from ...model.container import ContainerSummary, Endpoint, EndpointConfig, MountPoint, NetworkSettings, State
from ...model.convert import converter
from . import psfilters

#: listings reading the store at once (each may have SQLite load a few-MiB record)
SCANS = 2
#: records up to this size bring their labels along; larger ones are fetched alone
INLINE = 64 << 10
_scans = threading.BoundedSemaphore(SCANS)
#: what a summary shows, picked out of the record (``->``: as JSON text, ``->>``: as an SQL value)
_COLUMNS = {"created": "data ->> '$.created'", "image": "data ->> '$.config.Image'",
            "path": "data ->> '$.path'", "args": "data -> '$.args'", "state": "data -> '$.state'",
            "settings": "data -> '$.network_settings'", "networks": "data -> '$.networks'",
            "mode": "data ->> '$.network_mode'", "host_mode": "data ->> '$.host_config.NetworkMode'",
            "mounts": "data -> '$.mount_points'",
            "labels": f"CASE WHEN length(data) <= {INLINE} THEN data -> '$.config.Labels' END"}


def check_filters(filters: dict) -> None:
    psfilters.check(filters)


@attrs.frozen
class Listed:
    """A listed container: its summary (without labels) and, for a small record, its
    labels as the JSON text the store holds (None: :func:`labels_json` fetches them)."""

    summary: ContainerSummary
    labels: str | None = None


def records(store: Any, show_all: bool = False, filters: dict | None = None, limit: int = -1) -> list[Listed]:
    """The listed containers, newest first (``filters`` as :func:`.psfilters.resolved`
    makes them)."""
    filters = filters or {}
    check_filters(filters)
    conds, args = psfilters.where(show_all, filters)
    sql = ("SELECT id, name, image_id, " + ", ".join(f"{expr} AS {alias}" for alias, expr in _COLUMNS.items())
           + " FROM containers" + (" WHERE " + " AND ".join(conds) if conds else "")
           + " ORDER BY created DESC, id")
    if limit and limit > 0:
        sql += " LIMIT ?"
        args.append(limit)
    with _scans:
        rows = store.query(sql, *args)
    links = link_names(store) if rows else {}
    out = []
    for row in rows:
        summary = ContainerSummary(
            id=row["id"], name=row["name"], image=row["image"] or "", image_id=row["image_id"],
            command=[row["path"], *_load(row["args"], [])], created=row["created"],
            state=converter.structure(_load(row["state"], {}), State),
            host_network_mode=row["host_mode"] if row["host_mode"] is not None else "default",
            network_mode=row["mode"],
            networks=converter.structure(_load(row["networks"], {}), dict[str, EndpointConfig]),
            network_settings=converter.structure(_load(row["settings"], {}), NetworkSettings),
            mount_points=converter.structure(_load(row["mounts"], []), list[MountPoint]),
            link_names=links.get(row["name"], []))
        out.append(Listed(summary, row["labels"]))
    return out


def link_names(store: Any) -> dict[str, list[str]]:
    """Container name -> the names the legacy links of others give it: a link
    ``/db:/web/alias`` in ``web``'s ``HostConfig.Links`` names ``db`` ``/web/alias``."""
    out: dict[str, list[str]] = {}
    with _scans:
        rows = store.query("SELECT l.value AS link FROM containers AS c, json_each(c.data, '$.host_config.Links') AS l"
                           " WHERE json_type(c.data, '$.host_config.Links') = 'array'")
    for row in rows:
        child, sep, name = str(row["link"]).partition(":")
        if sep:
            out.setdefault(child.lstrip("/"), []).append(name)
    return {child: sorted(names) for child, names in out.items()}


def _load(text: str | None, default: Any) -> Any:
    return json.loads(text) if text is not None else default


def on_network(store: Any, network: str) -> list[tuple[str, str, dict[str, Any]]]:
    """``(id, name, endpoint settings)`` of the running containers with an endpoint
    on ``network`` (a network's ``Containers``), without reading their records whole;
    the settings in the API's shape (:meth:`~dockyard.model.container.Endpoint.to_api`)."""
    with _scans:
        rows = store.query("SELECT c.id AS id, c.name AS name, n.value AS settings FROM containers AS c, "
                           "json_each(c.data, '$.network_settings.endpoints') AS n WHERE n.key = ?", network)
    return [(row["id"], row["name"], converter.structure(json.loads(row["settings"]), Endpoint).to_api())
            for row in rows]


def volumes_in_use(store: Any) -> set[str]:
    """Names of the volumes some container's mount points name (``dangling=false``)."""
    with _scans:
        rows = store.query("SELECT DISTINCT m.value ->> '$.name' AS name FROM containers AS c, "
                           "json_each(c.data, '$.mount_points') AS m WHERE m.value ->> '$.type' = 'volume'")
    return {row["name"] for row in rows if row["name"]}


def labels_json(store: Any, listed: Listed) -> str:
    """The labels of a container of :func:`records` as the JSON text of an object
    (``{}`` if it has none, or is gone meanwhile)."""
    text = listed.labels
    if text is None:
        with _scans:
            row = store.one("SELECT data -> '$.config.Labels' AS labels FROM containers WHERE id = ?",
                            listed.summary.id)
        text = row["labels"] if row is not None else None
    return text if text and text.startswith("{") else "{}"
