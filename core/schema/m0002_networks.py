"""Migration 2: network rows hold :class:`~dockyard.model.network.NetworkRecord`\\ s.

The release stored the hook specs' network dict itself; the record differs from
it in one field, the addresses: ``"ipam": {"subnet", "gateway"} | null`` became
``"pools": [{"subnet", "gateway"}]`` (empty for a network without addresses, a
list as the API's ``IPAM.Config`` is).  A key the dict lacked gets the default
the release's code read it with (``.get``): not attachable, not predefined, no
driver data; a network with no ``created`` shows Go's zero time, as Docker does.

This module works on the JSON as that release wrote it and imports nothing of
the model, so that it stays right when the record changes again (a later
migration moves on from here).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from typing import Any

log = logging.getLogger("dockyard.schema")

ZERO_TIME = "0001-01-01T00:00:00Z"
KNOWN = {"id", "name", "driver", "created", "options", "labels", "internal", "attachable", "predefined",
         "ipam", "driver_data"}


def convert(old: dict[str, Any]) -> dict[str, Any]:
    """The record form of one network dict of the release."""
    ipam = old.get("ipam")
    extra = set(old) - KNOWN
    if extra:  # no release wrote any: said, not kept (the record has no place for them)
        log.warning("network %s: dropping the unknown keys %s of its record", old.get("name"), sorted(extra))
    return {"id": old["id"], "name": old["name"], "driver": old["driver"],
            "created": old.get("created") or ZERO_TIME,
            "options": {k: "" if v is None else str(v) for k, v in (old.get("options") or {}).items()},
            "labels": {k: "" if v is None else str(v) for k, v in (old.get("labels") or {}).items()},
            "internal": bool(old.get("internal")), "attachable": bool(old.get("attachable")),
            "predefined": bool(old.get("predefined")),
            "pools": [{"subnet": ipam["subnet"], "gateway": ipam["gateway"]}] if ipam else [],
            "driver_data": dict(old.get("driver_data") or {})}


def migrate(db: sqlite3.Connection) -> None:
    """Rewrite every network row in the record form."""
    for row_id, data in db.execute("SELECT id, data FROM networks").fetchall():
        db.execute("UPDATE networks SET data=? WHERE id=?", (json.dumps(convert(json.loads(data))), row_id))
