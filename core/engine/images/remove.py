"""Removing images: Docker's ``rmi`` rules and ``image prune``.

The rules are moby's ``daemon/images/image_delete.go``:

* By *name* (``rmi busybox:latest``): the name goes first (``Untagged:``).  While a
  container uses the image and this is its only name, that is refused unless
  forced.  When the last tag of a repository goes, that repository's digest
  references go with it.  The image itself is deleted only once nothing names it.
* By *id*: with at most one tag (all names in one repository) every name goes and
  the image is deleted; with more, only ``force`` does that.
* Conflicts: a child image (from ``commit``) or a running container is *hard*
  (``cannot be forced``); another name or a stopped container is *soft* (``must
  be forced``).
* After deleting an image, its parent goes too if nothing names or uses it
  (unless ``noprune``), quietly stopping at the first conflict.
* An image deleted past a stopped container (``force``) goes like any other: the
  container keeps its image id, and holds the image's layers until it is removed.

Answers are Docker's list of ``{"Untagged": ref}`` / ``{"Deleted": id}``: the
image id, then the chain id of each layer that went with it.
"""

from __future__ import annotations

import re
from typing import Callable

from ...errors import Conflict, InvalidParameter
from ...model.image import ImageConfig
from ..filters import label_match, parse_timestamp, unix_time
from . import reference
from .store import ImageStore

#: ``users_of(image id) -> [(container id, running)]``: the containers made from an image
UsersOf = Callable[[str], list]

HARD_CHILD, HARD_RUNNING, SOFT_REFERENCE, SOFT_STOPPED = 1, 2, 4, 8
HARD = HARD_CHILD | HARD_RUNNING
SOFT = SOFT_REFERENCE | SOFT_STOPPED


class _Conflict(Conflict):
    def __init__(self, image_id: str, message: str, hard: bool, used: bool) -> None:
        super().__init__(f"conflict: unable to delete {image_id[7:19]} "
                         f"({'cannot be forced' if hard else 'must be forced'}) - {message}")
        self.hard, self.used = hard, used


def _refs(images: ImageStore, image_id: str) -> list[str]:
    """Every name of the image: tags (``name:tag``) and digest references."""
    return images.tags(image_id) + images.repo_digests(image_id)


def _repo(ref_n: str) -> str:
    return ref_n.split("@", 1)[0] if "@" in ref_n else reference.split_tagged(ref_n)[0]


def _single_reference(refs: list[str]) -> bool:
    """At most one tag, and every name in one repository (moby's isSingleReference)."""
    if not refs:
        return False
    tags = [r for r in refs if "@" not in r]
    return len(tags) <= 1 and len({_repo(r) for r in refs}) == 1


def _conflict(images: ImageStore, image_id: str, mask: int, users: list) -> _Conflict | None:
    if mask & HARD_CHILD and images.children(image_id):
        return _Conflict(image_id, "image has dependent child images", True, False)
    running = [c for c, r in users if r]
    if mask & HARD_RUNNING and running:
        return _Conflict(image_id, f"image is being used by running container {running[0][:12]}", True, True)
    if mask & SOFT_REFERENCE and _refs(images, image_id):
        return _Conflict(image_id, "image is referenced in multiple repositories", False, False)
    stopped = [c for c, r in users if not r]
    if mask & SOFT_STOPPED and stopped:
        return _Conflict(image_id, f"image is being used by stopped container {stopped[0][:12]}", False, True)
    return None


def _untag(images: ImageStore, ref_n: str, image_id: str, out: list) -> None:
    """Remove one name.  A digest reference takes the repository's other digest
    records of the image along (a platform's manifest under an index), and the
    manifest blobs nothing else records."""
    dropped = []
    with images.store.tx() as db:
        if "@" in ref_n:
            repo = ref_n.split("@", 1)[0]
            dropped = [r["digest"] for r in db.execute(
                "SELECT digest FROM repo_digests WHERE repo=? AND image_id=?", (repo, image_id))]
            db.execute("DELETE FROM repo_digests WHERE repo=? AND image_id=?", (repo, image_id))
        else:
            db.execute("DELETE FROM tags WHERE ref=?", (ref_n,))
    drop_unrecorded_blobs(images, dropped)
    out.append({"Untagged": ref_n})
    images.emit("image", "untag", image_id, {"name": image_id})  # dockerd 20.10 names the image, not the name


def drop_unrecorded_blobs(images: ImageStore, digests: list[str]) -> None:
    for digest in set(digests):
        if images.store.one("SELECT 1 FROM repo_digests WHERE digest=? LIMIT 1", digest) is None:
            images.content.delete(digest)


def _named_as(images: ImageStore, ref: str, image_id: str) -> str | None:
    """The stored name ``ref`` resolved through (``busybox:latest``,
    ``busybox@sha256:...``), or ``None`` when it named the image by id."""
    if re.fullmatch(r"sha256:[0-9a-f]{64}", ref):
        return None
    try:
        r = reference.parse_reference(ref)
    except InvalidParameter:
        return None
    if r.digest:
        row = images.store.one("SELECT repo FROM repo_digests WHERE repo=? AND digest=? AND image_id=?",
                               r.familiar_name, r.digest, image_id)
        return f"{r.familiar_name}@{r.digest}" if row else None
    row = images.store.one("SELECT ref FROM tags WHERE ref=? AND image_id=?", r.familiar(), image_id)
    return row["ref"] if row else None


def delete(images: ImageStore, users_of: UsersOf, ref: str, force: bool = False, prune: bool = True) -> list[dict]:
    """``DELETE /images/{name}``; returns the Untagged/Deleted records; ``users_of``
    says which containers use an image."""
    with images.lock:
        image_id = images.resolve(ref)
        users = list(users_of(image_id))
        refs = _refs(images, image_id)
        out, quiet = [], False
        named = _named_as(images, ref, image_id)
        if named is not None:
            r = reference.parse_reference(named)
            if not force and _single_reference(refs) and users:
                raise Conflict(f'conflict: unable to remove repository reference "{ref}" (must force) - '
                               f"container {users[0][0][:12]} is using its referenced image {image_id[7:19]}")
            _untag(images, named, image_id, out)
            if not r.digest and not any(_repo(t) == r.familiar_name for t in images.tags(image_id)):
                for d in images.repo_digests(image_id):  # the repository's last tag went: its digests go too
                    if _repo(d) == r.familiar_name:
                        _untag(images, d, image_id, out)
            if _refs(images, image_id):
                return out
            quiet = True
        elif _single_reference(refs):
            mask = HARD | (0 if force else SOFT & ~SOFT_REFERENCE)
            problem = _conflict(images, image_id, mask, users)
            if problem:
                raise problem
            for name in refs:
                _untag(images, name, image_id, out)
        _delete_helper(images, users_of, image_id, out, force, prune, quiet, users)
        return out


def _delete_helper(images: ImageStore, users_of: UsersOf, image_id: str, out: list, force: bool, prune: bool,
                   quiet: bool, users: list | None = None) -> None:
    users = users if users is not None else list(users_of(image_id))
    problem = _conflict(images, image_id, HARD | (0 if force else SOFT), users)
    if problem:
        dangling = not _refs(images, image_id) and not images.children(image_id)
        if quiet and (not dangling or problem.used):
            return
        raise problem
    parent = images.parent(image_id)
    for name in _refs(images, image_id):
        _untag(images, name, image_id, out)
    # forced past a stopped container, the image goes as in Docker: the container
    # keeps its image id, and its row holds the layers (the layer store's users)
    delete_image(images, image_id, out)
    if prune and parent and images.store.one("SELECT 1 FROM images WHERE id=?", parent):
        _delete_helper(images, users_of, parent, out, False, True, True)


def delete_image(images: ImageStore, image_id: str, out: list) -> None:
    """Remove the image record, release its layers and drop the blobs only it
    used; appends ``Deleted`` records (the image, then each layer that went)."""
    with images.lock:
        top = images.get(image_id)["top_layer"]
        chain = [row["chain_id"] for row in images.layers.chain(top)] if top else []
        manifests = [r["digest"] for r in images.store.query("SELECT digest FROM repo_digests WHERE image_id=?",
                                                             image_id)]
        with images.store.tx() as db:
            db.execute("DELETE FROM tags WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM repo_digests WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM image_parents WHERE image_id=?", (image_id,))
            db.execute("DELETE FROM images WHERE id=?", (image_id,))
        if top:
            images.layers.release(top)
        out.append({"Deleted": image_id})
        out += [{"Deleted": c} for c in reversed(chain) if images.layers.get(c) is None]
        images.content.delete(image_id)
        drop_unrecorded_blobs(images, manifests)
    images.emit("image", "delete", image_id, {"name": image_id})


# prune ------------------------------------------------------------------------

def prune(images: ImageStore, users_of: UsersOf, filters: dict) -> dict:
    """``POST /images/prune``: dangling images (``dangling=false``: every unused
    image) created before ``until``, matching ``label``; returns Docker's
    ``{"ImagesDeleted", "SpaceReclaimed"}``."""
    for key in filters:
        if key not in ("dangling", "until", "label", "label!"):
            raise InvalidParameter(f"invalid filter '{key}'")
    dangling_values = {v.lower() for v in filters.get("dangling", [])}
    if dangling_values - {"true", "false", "1", "0"}:
        raise InvalidParameter(f"invalid filter 'dangling={sorted(dangling_values)[0]}'")
    dangling_only = not dangling_values or bool(dangling_values & {"true", "1"})
    until = [parse_timestamp(v) for v in filters.get("until", [])]
    deleted = []
    with images.lock:
        sizes = {r["chain_id"]: r["size"] for r in images.store.query("SELECT chain_id, size FROM layers")}
        for row in images.all():
            image_id = row["id"]
            if images.store.one("SELECT 1 FROM images WHERE id=?", image_id) is None:
                continue  # went with an image pruned before it
            if dangling_only and images.children(image_id):
                continue
            cfg = ImageConfig.parse(row["config"])
            if until and not all(_created(cfg, row) < u for u in until):
                continue
            if not label_match(cfg.defaults.labels, filters.get("label", []),
                               filters.get("label!", [])):
                continue
            if users_of(image_id):
                continue
            tags = images.tags(image_id)
            if tags and dangling_only:
                continue
            for name in (tags + images.repo_digests(image_id)) or [image_id]:
                try:
                    deleted += delete(images, users_of, name, force=False, prune=True)
                except (Conflict, LookupError):
                    continue
    reclaimed = sum(sizes.get(r.get("Deleted"), 0) for r in deleted)
    return {"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed}


def _created(cfg: ImageConfig, row: dict) -> int:
    return unix_time(cfg.created or row["created"])
