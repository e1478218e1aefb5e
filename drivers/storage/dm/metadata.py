"""The devicemapper driver's own metadata: small JSON files under ``home/metadata``.

::

    metadata/pool.json              {"next_device_id": 7, "prefix": "dockyard-8:1-1234"}
    metadata/base.json              the base device: {"device_id": 1, "size": ..., "fs": "ext4"}
    metadata/layers/<id>.json       {"device_id": 5, "size": ..., "parent": "<id>" | null}
    metadata/transactions/<n>.json  a thin device being made: {"device_id": n, "layer": "<id>"}

Every file is written whole to a temporary name, fsync'ed and renamed over the
old one, so a crash leaves either the old or the new content.  A transaction
file is written before a thin device is created in the pool and removed once
its layer file exists: one still there at start-up names a device whose layer
was never recorded, and the driver deletes it from the pool (rollback).
"""

import json
import os
import threading
from pathlib import Path


def write_json(path, data):
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    with open(tmp, "w") as f:
        json.dump(data, f, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def read_json(path):
    """The file's content, ``None`` if it is missing."""
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class Store:
    def __init__(self, root):
        self.root = Path(root)
        self.layers_dir = self.root / "layers"
        self.tx_dir = self.root / "transactions"

    def init(self):
        for d in (self.root, self.layers_dir, self.tx_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.root, self.layers_dir, self.tx_dir):  # interrupted writes
            for tmp in d.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)

    # layers
    def layer(self, id):
        return read_json(self.layers_dir / f"{id}.json")

    def save_layer(self, id, info):
        write_json(self.layers_dir / f"{id}.json", info)

    def delete_layer(self, id):
        (self.layers_dir / f"{id}.json").unlink(missing_ok=True)

    def layer_ids(self):
        return sorted(p.name[:-5] for p in self.layers_dir.glob("*.json"))

    # base device and pool
    def base(self):
        return read_json(self.root / "base.json")

    def save_base(self, info):
        write_json(self.root / "base.json", info)

    def pool(self):
        return read_json(self.root / "pool.json") or {}

    def save_pool(self, info):
        write_json(self.root / "pool.json", info)

    # transactions
    def begin(self, device_id, layer):
        write_json(self.tx_dir / f"{device_id}.json", {"device_id": device_id, "layer": layer})

    def commit(self, device_id):
        (self.tx_dir / f"{device_id}.json").unlink(missing_ok=True)

    def pending(self):
        """Open transactions: ``[{"device_id": n, "layer": id}, ...]``."""
        out = []
        for path in sorted(self.tx_dir.glob("*.json")):
            data = read_json(path)
            if isinstance(data, dict) and isinstance(data.get("device_id"), int):
                out.append(data)
            else:
                path.unlink(missing_ok=True)
        return out
