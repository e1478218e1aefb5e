"""The metadata store: one SQLite database in WAL mode under the data root.

Images, tags, layers, containers, networks and volumes live here so that a crash
leaves them consistent: every change that touches several rows happens in one
transaction (``with store.tx() as db:``).  Each thread gets its own connection.
The tables are :mod:`dockyard.schema`'s: opening the store brings an older
database to the current schema (its numbered migrations) and refuses a newer one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from . import schema

#: SQLite's companions of the database file, which it creates with the database's mode
COMPANIONS = ("-wal", "-shm", "-journal")


def make_private(path: str) -> None:
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


def _enter_wal(conn: sqlite3.Connection, patience: float = 30.0) -> None:
    """Put the database in WAL mode.  Switching a rollback-journal database needs
    its exclusive lock, and SQLite answers ``database is locked`` at once, without
    the busy handler, when another connection holds or is taking it (two daemons,
    or two threads, opening an older store together): retry until ``patience``."""
    deadline = time.monotonic() + patience
    delay = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class Store:
    """The database at ``path`` (created ``0600`` if absent), at the current schema."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(path)
        make_private(self.path)
        self._local = threading.local()
        try:
            self.schema_found = schema.upgrade(self._conn(), self.path)  # the version it had
        except BaseException:
            self.close()
            raise

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            _enter_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
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

    def query(self, sql: str, *args: Any) -> list[Any]:
        """The rows (``sqlite3.Row``) of ``sql`` with ``args``."""
        return self._conn().execute(sql, args).fetchall()

    def one(self, sql: str, *args: Any) -> Any:
        """The first row (``sqlite3.Row``) of ``sql`` with ``args``, or ``None``."""
        return self._conn().execute(sql, args).fetchone()

    # small helpers used across the engine
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.one("SELECT value FROM meta WHERE key=?", key)
        return str(row["value"]) if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.tx() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def read_meta(data_root: str, key: str) -> str | None:
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
    return str(row[0]) if row else None


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
