"""Migration 5: a container names its image without holding it, and holds its layers.

dockerd's ``rmi -f`` of the image a stopped container was made from deletes the
image (``Untagged:``, ``Deleted:``: gone from ``images -a``, ``system df`` and
``rmi <id>``), while the container keeps the image's layers and its image id (in
inspect, and as ``ps``'s IMAGE).  Here the ``containers.image_id REFERENCES
images(id)`` foreign key forbade that, so such an image stayed, dangling, until the
container went.  What changes:

* ``containers.image_id`` loses its foreign key (SQLite cannot drop one: the table
  is rebuilt, rows unchanged, in the migration's transaction);
* ``containers.top_layer`` (new) is the chain id of the top layer of the image the
  container was made on (NULL: an image without layers), taken from the image
  row.  It is what the container's read-write layer is made on, so the layer store
  keeps that chain while a container names it, whatever becomes of the image.

Works on the tables as migration 1 made them and imports nothing of the model.
"""

from __future__ import annotations

import sqlite3

TABLE = """
CREATE TABLE containers_new (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL,             -- the image it was made from (which may be gone since)
    top_layer TEXT REFERENCES layers(chain_id),  -- what its rw layer is on: held while it exists
    data TEXT NOT NULL                  -- JSON: the ContainerRecord
)
"""


def migrate(db: sqlite3.Connection) -> None:
    """Rebuild ``containers`` without the foreign key to ``images``, with ``top_layer``."""
    db.execute(TABLE)
    db.execute("INSERT INTO containers_new (id, name, image_id, top_layer, data) "
               "SELECT c.id, c.name, c.image_id, i.top_layer, c.data "
               "FROM containers AS c LEFT JOIN images AS i ON i.id = c.image_id")
    db.execute("DROP TABLE containers")
    db.execute("ALTER TABLE containers_new RENAME TO containers")
    db.execute("CREATE INDEX containers_top_layer ON containers(top_layer)")
