"""Migration 1: the tables of the release before numbered migrations.

Until then every module made its own tables (``CREATE TABLE IF NOT EXISTS`` when it
was constructed) and ``PRAGMA user_version`` stayed 0.  This migration makes every
one of them, so that a new database gets them all and a database of that release
(version 0, with some or all of them) gets those it lacks; the statements are that
release's, byte for byte in meaning.  Never edit this module: a change of a table is
a new migration.
"""

from __future__ import annotations

import sqlite3

TABLES = """
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
CREATE TABLE IF NOT EXISTS layer_tarsplit (
    chain_id TEXT PRIMARY KEY REFERENCES layers(chain_id) ON DELETE CASCADE,
    data BLOB NOT NULL                  -- tar-split record of the layer's tar
);
CREATE TABLE IF NOT EXISTS scratch_layers (
    id TEXT PRIMARY KEY                 -- driver id of a builder step's short-lived rw layer
);
CREATE TABLE IF NOT EXISTS staged_layers (
    id TEXT PRIMARY KEY                 -- driver id of a layer being written or removed: no record owns it
);
CREATE TABLE IF NOT EXISTS image_parents (
    image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    parent TEXT NOT NULL                -- the image it was committed from
);
CREATE TABLE IF NOT EXISTS repo_digests (
    repo TEXT NOT NULL,                 -- familiar repository name: busybox, host:5000/app
    digest TEXT NOT NULL,               -- a manifest's or an index's digest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    media_type TEXT NOT NULL,
    kind TEXT NOT NULL,                 -- manifest | index
    shown INTEGER NOT NULL,             -- 1: listed in RepoDigests (what the tag named)
    PRIMARY KEY (repo, digest, image_id)
);
CREATE TABLE IF NOT EXISTS layer_blobs (
    diff_id TEXT NOT NULL,              -- the uncompressed layer's digest
    digest TEXT NOT NULL,               -- a compressed blob of it, as a registry has it
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    repo TEXT NOT NULL,                 -- familiar repository name the blob was seen in
    PRIMARY KEY (diff_id, digest, repo)
);
CREATE TABLE IF NOT EXISTS build_cache (
    key TEXT PRIMARY KEY,               -- sha256 of (parent image id, step description)
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    parent TEXT NOT NULL,               -- the parent image id ('' for scratch)
    step TEXT NOT NULL,                 -- the description (for `system check` and debugging)
    created TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS build_cache_image ON build_cache(image_id);
CREATE TABLE IF NOT EXISTS volumes (
    name TEXT PRIMARY KEY,
    driver TEXT NOT NULL,
    data TEXT NOT NULL                  -- JSON: the Docker Volume object (+ Anonymous)
);
CREATE TABLE IF NOT EXISTS storage_migration (
    driver_id TEXT PRIMARY KEY,         -- the layer's id, the same on both drivers
    kind TEXT NOT NULL,                 -- 'layer' or 'container'
    digest TEXT NOT NULL,               -- the diff ID or canonical diff digest verified
    verified TEXT NOT NULL              -- 'diff ID' or 'tree'
);
"""


def migrate(db: sqlite3.Connection) -> None:
    """Make the tables of the release that a database lacks (all, for a new one)."""
    for statement in TABLES.split(";"):
        if statement.strip():
            db.execute(statement)
