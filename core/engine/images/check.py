"""``dockyard system check``: verify every stored digest.

What is checked (each problem names its object):

* every blob of the content store hashes to its name;
* every image: its config row hashes to its id, its config blob is there, its
  ``rootfs.diff_ids`` are the diff ids of its layer chain and their chain ids
  end at its top layer, a parent it records exists;
* every layer: the storage driver has it, and its original tar, rebuilt from the
  tar-split record and the layer's files, hashes to its diff id (a layer without
  a record -- GNU sparse files -- is listed as skipped, not as a problem);
* every repository digest: its manifest or index blob is there and parses, and a
  manifest's config is the image it is recorded for;
* every tag names an image that exists;
* the storage driver holds no layer that no record owns (a layer, a
  container, a build step, a layer being written or removed): such a layer was
  left by a crash or by hand and nothing would ever remove it.  A driver that
  cannot list its layers (the optional ``storage_layers`` hook) is listed as
  skipped: the check cannot tell.

The check holds the image store's lock, so no image is added or removed while
it runs.
"""

from __future__ import annotations

from typing import Any

from ... import imagespec
from ...driverkit.tarsplit import TarSplitReader
from ...errors import DockyardError
from ...imagespec import BadDocument
from ...model.image import ImageConfig
from ..layers.content import digest_of
from ..layers.store import chain_id


def check(images: Any) -> dict:
    """Returns ``{"Problems": [{"Object", "Problem"}], "Skipped": [...], "Checked": {...}}``."""
    problems, skipped = [], []

    def bad(obj, problem):
        problems.append({"Object": obj, "Problem": problem})

    with images.lock:
        blobs = images.content.digests()
        for digest, problem in images.content.verify():
            bad(f"blob {digest}", problem)
        image_rows = images.store.query("SELECT * FROM images")
        for row in image_rows:
            _check_image(images, row, bad)
        layer_rows = images.store.query("SELECT * FROM layers")
        for row in layer_rows:
            _check_layer(images, row, bad, skipped)
        for row in images.store.query("SELECT * FROM repo_digests"):
            _check_repo_digest(images, row, bad)
        for row in images.store.query(
                "SELECT t.ref FROM tags t LEFT JOIN images i ON t.image_id=i.id WHERE i.id IS NULL"):
            bad(f"tag {row['ref']}", "names an image that does not exist")
        _check_unowned(images.layers, bad, skipped)
    return {"Problems": problems, "Skipped": skipped,
            "Checked": {"Blobs": len(blobs), "Images": len(image_rows), "Layers": len(layer_rows)}}


def _check_image(images, row, bad):
    obj = f"image {row['id']}"
    raw = row["config"].encode()
    if digest_of(raw) != row["id"]:
        bad(obj, f"its config hashes to {digest_of(raw)}")
    if not images.content.has(row["id"]):
        bad(obj, "its config blob is missing from the content store")
    try:
        diff_ids = ImageConfig.parse(raw).diff_ids
    except BadDocument as exc:
        bad(obj, f"its config does not parse: {exc}")
        return
    expected = None
    for diff_id in diff_ids:
        expected = chain_id(expected, diff_id)
    if expected != row["top_layer"]:
        bad(obj, f"its diff ids give top layer {expected}, the record says {row['top_layer']}")
    elif expected:
        try:
            have = [r["diff_id"] for r in images.layers.chain(expected)]
        except DockyardError as exc:
            bad(obj, f"its layer chain is broken: {exc}")
        else:
            if have != diff_ids:
                bad(obj, "its layer chain's diff ids differ from its config's")
    parent = images.parent(row["id"])
    if parent and images.store.one("SELECT 1 FROM images WHERE id=?", parent) is None:
        bad(obj, f"its parent image {parent} does not exist")


def _check_layer(images, row, bad, skipped):
    obj = f"layer {row['chain_id']}"
    layers = images.layers
    try:
        exists = layers.hook.storage_exists(id=row["driver_id"])
    except DockyardError as exc:
        bad(obj, f"the storage driver cannot tell whether it has it: {exc}")
        return
    if not exists:
        bad(obj, f"the storage driver ({layers.driver_name}) does not have it ({row['driver_id']})")
        return
    record = layers.tar_split(row["chain_id"])
    if record is None:
        skipped.append(f"{obj}: no tar-split record, its diff id cannot be verified")
        return
    try:
        root = layers.mount(row["driver_id"])
    except DockyardError as exc:
        bad(obj, f"cannot be mounted: {exc}")
        return
    try:
        with TarSplitReader(record, root) as reader:
            rebuilt = reader.drain()
        if rebuilt != row["diff_id"]:
            bad(obj, f"its content rebuilds to a tar hashing to {rebuilt}, not its diff id {row['diff_id']}")
    except DockyardError as exc:
        bad(obj, str(exc))
    finally:
        layers.unmount(row["driver_id"])


def _check_unowned(layers, bad, skipped):
    try:
        unowned = layers.unowned()
    except DockyardError as exc:
        bad(f"storage driver {layers.driver_name}", f"cannot list its layers: {exc}")
        return
    if unowned is None:
        skipped.append(f"storage driver {layers.driver_name}: it cannot list its layers, so layers that no "
                       "record owns cannot be found")
        return
    for driver_id in unowned:
        bad(f"storage driver layer {driver_id}", f"the storage driver ({layers.driver_name}) holds it, but no "
            "layer, container or build step owns it (left by a daemon that was killed?)")


def _check_repo_digest(images, row, bad):
    obj = f"repository digest {row['repo']}@{row['digest']}"
    if not images.content.has(row["digest"]):
        bad(obj, f"its {row['kind']} blob is missing from the content store")
        return
    data = images.content.read(row["digest"])
    try:
        if row["kind"] == "index":
            imagespec.parse_index(data, row["media_type"])
            return
        manifest = imagespec.parse_manifest(data, row["media_type"])
    except DockyardError as exc:
        bad(obj, f"its {row['kind']} does not parse: {exc}")
        return
    if manifest.config.digest != row["image_id"]:
        bad(obj, f"its manifest's config is {manifest.config.digest}, not image {row['image_id']}")
