"""The metadata store: one SQLite database in WAL mode under the data root.

Images, tags, layers and containers live here so that a crash leaves them
consistent: every change that touches several rows happens in one transaction
(``with store.tx() as db:``).  Each thread gets its own connection.
"""

import json
import os
import sqlite3
import threading
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS layers (
    chain_id TEXT PRIMARY KEY,          -- sha256:... of the layer chain
    driver_id TEXT NOT NULL UNIQUE,     -- the storage driver's opaque id
    parent TEXT REFERENCES layers(chain_id),
    diff_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    created TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,                -- sha256:... of the config
    config TEXT NOT NULL,               -- the exact config JSON bytes
    top_layer TEXT REFERENCES layers(chain_id),
    created TEXT NOT NULL,
    last_tag_time TEXT
);
CREATE TABLE IF NOT EXISTS tags (
    ref TEXT PRIMARY KEY,               -- familiar name:tag, e.g. busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id)
);
CREATE TABLE IF NOT EXISTS containers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    image_id TEXT NOT NULL REFERENCES images(id),
    data TEXT NOT NULL                  -- JSON: config, host config, state
);
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,
    data TEXT NOT NULL                  -- JSON: the network dict of the hook specs
);
CREATE TABLE IF NOT EXISTS ip_allocations (
    network_id TEXT NOT NULL REFERENCES networks(id) ON DELETE CASCADE,
    address TEXT NOT NULL,              -- dotted IPv4, no prefix length
    owner TEXT NOT NULL,                -- the container id (or "gateway")
    PRIMARY KEY (network_id, address),
    UNIQUE (network_id, owner)
);
"""


#: SQLite's companions of the database file, which it creates with the database's mode
COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path):
    """Create the database file ``0600`` before SQLite first opens it, and narrow
    an older store's files (made ``0644``) to that: they hold every container's
    environment, i.e. its passwords and tokens.  SQLite creates ``-wal``, ``-shm``
    and ``-journal`` with the database file's mode, so a new store needs no more."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for suffix in COMPANIONS:
        try:
            if os.stat(path + suffix).st_mode & 0o077:
                os.chmod(path + suffix, 0o600)
        except FileNotFoundError:
            pass


class Store:
    def __init__(self, path):
        self.path = str(path)
        make_private(self.path)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)  # idempotent DDL; executescript commits itself

    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self):
        """A write transaction (``BEGIN IMMEDIATE``), committed on success."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            if conn.in_transaction:  # SQLite ends it itself on some errors (SQLITE_FULL)
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def query(self, sql, *args):
        return self._conn().execute(sql, args).fetchall()

    def one(self, sql, *args):
        return self._conn().execute(sql, args).fetchone()

    # small helpers used across the engine
    def get_meta(self, key, default=None):
        row = self.one("SELECT value FROM meta WHERE key=?", key)
        return row["value"] if row else default

    def set_meta(self, key, value):
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def read_meta(data_root, key):
    """Read one meta value of the store under ``data_root`` without opening it for
    writing (for tools that must not disturb a daemon); ``None`` if absent."""
    path = os.path.join(data_root, "dockyard.db")
    if not os.path.exists(path):
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def dumps(obj):
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
