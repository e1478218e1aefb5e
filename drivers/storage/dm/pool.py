"""The thin-pool: setting it up (loop-lvm or an existing ``dm.thinpooldev``),
allocating thin device ids, snapshots, deletion and usage.

A thin-pool target maps a *metadata* device (the block mappings of every thin
device) and a *data* device (the blocks)::

    0 <data sectors> thin-pool <metadata dev> <data dev> <block sectors> <low water blocks> 1 skip_block_zeroing

Thin devices are then created by messages to the pool (``create_thin <id>``,
``create_snap <id> <origin id>``, ``delete <id>``) and activated with a ``thin``
target (``0 <sectors> thin <pool dev> <id>``).  Ids are 24-bit numbers chosen
here; the next one to try is kept in ``metadata/pool.json``.
"""

import os
from pathlib import Path

from . import dmsetup
from .dmsetup import DmError

SECTOR = 512
META_BLOCK = 4096  # thin-pool metadata blocks are always 4 KiB
MAX_DEVICE_ID = (1 << 24) - 1


def parse_pool_status(line):
    """The fields of a thin-pool status line, as a dict (``mode`` ``"Fail"`` if failed)::

        0 2097152 thin-pool 1 14/4096 20/16384 - rw discard_passdown queue_if_no_space - 1024
    """
    parts = line.split()
    if len(parts) < 4 or parts[2] != "thin-pool":
        raise ValueError(f"not a thin-pool status: {line!r}")
    if parts[3] in ("Fail", "Error"):
        return {"mode": parts[3]}
    meta_used, meta_total = (int(x) for x in parts[4].split("/"))
    data_used, data_total = (int(x) for x in parts[5].split("/"))
    return {"transaction_id": int(parts[3]), "meta_used": meta_used, "meta_total": meta_total,
            "data_used": data_used, "data_total": data_total, "mode": parts[7] if len(parts) > 7 else "rw",
            "needs_check": "needs_check" in parts[8:]}


class ThinPool:
    def __init__(self, home, opts, store, prefix):
        self.opts, self.store = opts, store
        self.owned = opts.thinpooldev is None
        self.dir = Path(home) / "devicemapper"
        self.data_file, self.meta_file = self.dir / "data", self.dir / "metadata"
        if self.owned:
            self.name = f"{prefix}-pool"
        else:
            self.name = os.path.basename(opts.pool_device)
        self.block_bytes = opts.blocksize
        self.dev = None  # major:minor of the active pool, for thin tables
        self._up = False

    # ------------------------------------------------------------ life cycle
    def ensure(self):
        """Make sure the pool is active (set it up from the loop files if it is ours)."""
        if self._up:
            return
        devices = dmsetup.devices()
        if self.name not in devices:
            if not self.owned:
                raise DmError("using thin-pool", self.opts.pool_device,
                              "no such device-mapper device (dm.thinpooldev)")
            self._create()
            devices = dmsetup.devices()
            self.block_bytes = self.opts.blocksize
        else:  # found active: an external pool, or ours left by an earlier daemon
            table = dmsetup.table(self.name).split()
            if len(table) < 7 or table[2] != "thin-pool":
                raise DmError("using thin-pool", self.name, f"not a thin-pool (table {' '.join(table)!r})")
            self.block_bytes = int(table[5]) * SECTOR
        major, minor = devices[self.name]
        self.dev = f"{major}:{minor}"
        self._up = True

    def _create(self):
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, size in ((self.data_file, self.opts.loopdatasize), (self.meta_file, self.opts.loopmetadatasize)):
            if not path.exists():  # sparse; a fresh metadata file is all zeros: an empty pool
                with open(path, "xb") as f:
                    f.truncate(size)
        data = dmsetup.loop_attach(self.data_file)
        try:
            meta = dmsetup.loop_attach(self.meta_file)
        except DmError:
            dmsetup.loop_detach(self.data_file)
            raise
        block_sectors = self.opts.blocksize // SECTOR
        blocks = dmsetup.block_size(data) // self.opts.blocksize
        low_water = max(1, min(32768, blocks // 100))
        table = (f"0 {blocks * block_sectors} thin-pool {meta} {data} {block_sectors} {low_water} "
                 "1 skip_block_zeroing")
        try:
            dmsetup.create(self.name, table)
        except DmError:
            try:
                dmsetup.loop_detach(self.data_file, self.meta_file)
            except DmError:
                pass
            raise

    def deactivate(self):
        """Remove our pool and detach its loop devices (an external pool stays)."""
        self._up = False
        if not self.owned:
            return
        if self.name in dmsetup.devices():
            dmsetup.remove(self.name)
        dmsetup.loop_detach(self.data_file, self.meta_file)

    # ------------------------------------------------------------ thin devices
    def thin_table(self, device_id, size):
        return f"0 {size // SECTOR} thin {self.dev} {device_id}"

    def new_device(self, layer, origin=None, origin_name=None):
        """Create a thin device (a snapshot of device ``origin`` if given) and
        return its id.  The active origin ``origin_name`` is suspended meanwhile.
        An open transaction names the new id until the caller commits it."""
        info = self.store.pool()
        next_id = info.get("next_device_id", 1)
        for _ in range(MAX_DEVICE_ID):
            device_id, next_id = next_id, next_id % MAX_DEVICE_ID + 1
            self.store.save_pool({**info, "next_device_id": next_id})
            self.store.begin(device_id, layer)
            try:
                if origin is None:
                    self.message(f"create_thin {device_id}")
                elif origin_name is None:
                    self.message(f"create_snap {device_id} {origin}")
                else:
                    dmsetup.suspend(origin_name)
                    try:
                        self.message(f"create_snap {device_id} {origin}")
                    finally:
                        dmsetup.resume(origin_name)
            except DmError as exc:
                self.store.commit(device_id)
                if "File exists" in exc.message:  # used by another user of the pool
                    continue
                raise
            return device_id
        raise DmError("allocating a device id in", self.name, "no free thin device id")

    def delete(self, device_id):
        """Delete a thin device; one the pool does not know is already gone."""
        try:
            self.message(f"delete {device_id}")
        except DmError as exc:
            if "No data available" not in exc.message:
                raise

    def message(self, text):
        dmsetup.message(self.name, text)

    # ------------------------------------------------------------ usage
    def usage(self):
        """Pool usage in bytes: ``{data_used, data_total, meta_used, meta_total, mode}``."""
        st = parse_pool_status(dmsetup.status(self.name))
        if "data_total" not in st:
            raise DmError("reading the usage of", self.name, f"the pool is in {st['mode']} mode")
        return {"data_used": st["data_used"] * self.block_bytes, "data_total": st["data_total"] * self.block_bytes,
                "meta_used": st["meta_used"] * META_BLOCK, "meta_total": st["meta_total"] * META_BLOCK,
                "mode": st["mode"], "needs_check": st["needs_check"]}

    def check_free_space(self, percent):
        """``DmError`` if less than ``percent`` of the data or metadata space is free,
        or the pool is read-only/out of space."""
        use = self.usage()
        if use["mode"] != "rw":
            raise DmError("creating a device in", self.name, f"the pool is in {use['mode']} mode")
        for kind in ("data", "meta"):
            total, used = use[f"{kind}_total"], use[f"{kind}_used"]
            if total - used < total * percent / 100:
                what = "data" if kind == "data" else "metadata"
                raise DmError("creating a device in", self.name,
                              f"{total - used} bytes of {what} space free, less than dm.min_free_space "
                              f"({percent:g}% of {total}); free space in the pool or lower dm.min_free_space")
