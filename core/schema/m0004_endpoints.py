"""Migration 4: the fields issue 15 gave containers' network attachments, their
live endpoints and the network records, written out with their defaults.

* a container's attachment (``networks.<name>``) gets ``mac_address`` ("": derived
  from its IPv4 address) and ``links`` ([]: legacy links of a user network);
* a live endpoint (``network_settings.endpoints.<name>``) gets ``ipv6_gateway``,
  ``global_ipv6_address`` ("") and ``global_ipv6_prefix_len`` (0);
* a network gets ``enable_ipv6`` (false).

Every record reads the same without them (they have defaults); written out, a
stored record is what the model writes, as migrations 2 and 3 left them.  Works on
the JSON and imports nothing of the model.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


def convert_container(rec: dict[str, Any]) -> dict[str, Any]:
    for attachment in (rec.get("networks") or {}).values():
        attachment.setdefault("mac_address", "")
        attachment.setdefault("links", [])
    for endpoint in ((rec.get("network_settings") or {}).get("endpoints") or {}).values():
        endpoint.setdefault("ipv6_gateway", "")
        endpoint.setdefault("global_ipv6_address", "")
        endpoint.setdefault("global_ipv6_prefix_len", 0)
    return rec


def convert_network(rec: dict[str, Any]) -> dict[str, Any]:
    rec.setdefault("enable_ipv6", False)
    return rec


def migrate(db: sqlite3.Connection) -> None:
    """Add the fields to every container and network row."""
    for table, convert in (("containers", convert_container), ("networks", convert_network)):
        for row_id, data in db.execute(f"SELECT id, data FROM {table}").fetchall():
            db.execute(f"UPDATE {table} SET data=? WHERE id=?", (json.dumps(convert(json.loads(data))), row_id))
