"""The metadata store's schema: every table, and the numbered migrations that make
a database of any earlier Dockyard the current one.

The database says which migrations it has had in ``PRAGMA user_version``: a
release before this package has version 0 (and the tables its modules made), a
database made now has :data:`LATEST`.  :func:`upgrade` runs the missing ones in
order, all in one write transaction (``BEGIN IMMEDIATE``: two processes opening
one data root at once migrate it once, and a crash leaves the old version), and
refuses a database a newer Dockyard made (:class:`SchemaTooNew`): there is no
downgrade.

The tables (each migration module says what it made or changed):

=================  ===========================================================
meta               key -> value: daemon id, storage driver pin, migrations
layers             layer chains -> storage driver ids
layer_tarsplit     a layer's tar-split record
scratch_layers     the builder's short-lived rw layers
staged_layers      driver ids being written or removed
images, tags       image configs, ``name:tag`` -> image
image_parents      image -> the image it was committed from
repo_digests       (repository, manifest digest) -> image
layer_blobs        diff ID -> compressed blobs a registry knows it as
build_cache        (parent image, step) -> image
containers         container records (``data``: JSON), the image id and top
                   layer each was made on (no foreign key to ``images``)
networks           :class:`~dockyard.model.network.NetworkRecord` (``data``)
ip_allocations     (network, address) -> owner
volumes            volume records (``data``: JSON)
storage_migration  progress of ``dockyard storage migrate``
=================  ===========================================================

Adding a migration (a new table, a column, a record's new form):

1. write ``m00NN_what.py`` beside the others with ``migrate(db)``, which gets the
   open transaction's ``sqlite3.Connection`` (rows are ``sqlite3.Row``) and must not
   commit.  Let it work on the JSON as the previous version left it, importing
   nothing of the model (the model moves on; the migration must not), and say
   in its docstring what it changes and why;
2. append it to :data:`MIGRATIONS` below: its number is its place in the list.
   Never reorder, remove or edit one that has been released;
3. test it in tests/unit/test_schema.py from the release's database
   (tests/data/store-1, made by tests/data/make_release_store.py).
"""

from __future__ import annotations

import sqlite3
from types import ModuleType

from ..errors import StorageError
from . import m0001_release, m0002_networks, m0003_containers, m0004_endpoints, m0005_container_layers

#: the migrations, in order: ``MIGRATIONS[n - 1]`` makes version ``n``
MIGRATIONS: list[ModuleType] = [
    m0001_release,
    m0002_networks,
    m0003_containers,
    m0004_endpoints,
    m0005_container_layers,
]

#: the version this Dockyard makes and understands
LATEST = len(MIGRATIONS)


class SchemaTooNew(StorageError):
    """The database was made by a newer Dockyard than this one."""


def version(db: sqlite3.Connection) -> int:
    """The database's ``PRAGMA user_version``."""
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def upgrade(db: sqlite3.Connection, path: str = "the metadata store") -> int:
    """Bring the database on connection ``db`` (autocommit: ``isolation_level=None``)
    to :data:`LATEST` in one write transaction; return the version it had.  A
    database of a newer Dockyard is refused before anything is written."""
    db.execute("BEGIN IMMEDIATE")  # read the version under the write lock: one process migrates
    try:
        found = version(db)
        if found > LATEST:
            raise SchemaTooNew(
                f"{path} has schema version {found}, made by a newer Dockyard; this one knows versions "
                f"up to {LATEST} and cannot downgrade it: run the newer Dockyard, or use another --data-root")
        for number in range(found + 1, LATEST + 1):
            MIGRATIONS[number - 1].migrate(db)
        if found != LATEST:
            db.execute(f"PRAGMA user_version = {LATEST:d}")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return found
