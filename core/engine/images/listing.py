"""``docker images`` and ``docker image inspect``: images as the API shows them,
with Docker's list filters (``before``, ``since``, ``dangling``, ``label``,
``reference``)."""

from __future__ import annotations

from typing import Any, Iterator

from ...errors import InvalidParameter
from ...model.image import ContainerConfig, ImageConfig
from ..filters import label_match, timestamp, unix_time
from . import reference
from .store import ImageStore

LIST_FILTERS = ("before", "since", "dangling", "label", "reference")


def summary(images: ImageStore, row: Any, tags: list[str], digests: list[str],
            cfg: ImageConfig | None = None) -> dict:
    """One ``GET /images/json`` entry: the image of ``row`` (its config ``cfg``, if
    already read) with its ``tags`` and repository ``digests``."""
    cfg = cfg or ImageConfig.parse(row["config"])
    if not tags and not digests:
        tags, digests = ["<none>:<none>"], ["<none>@<none>"]
    size = images.layers.size(row["top_layer"])
    return {"Id": row["id"], "ParentId": images.parent(row["id"]), "RepoTags": tags, "RepoDigests": digests,
            "Created": unix_time(cfg.created or row["created"]), "Size": size, "SharedSize": -1,
            "VirtualSize": size, "Labels": cfg.labels, "Containers": -1}


def _part(part: ContainerConfig | None) -> dict:
    """``Config`` or ``ContainerConfig`` as the image has it (``{}``: none)."""
    return part.to_json() if part is not None else {}


def inspect(images: ImageStore, image_id: str) -> dict:
    """``GET /images/{name}/json``: the view of the image's config and records."""
    row = images.get(image_id)
    cfg = ImageConfig.parse(row["config"])
    size = images.layers.size(row["top_layer"])
    out = {
        "Id": image_id, "RepoTags": images.tags(image_id), "RepoDigests": images.repo_digests(image_id),
        "Parent": images.parent(image_id), "Comment": _shown(cfg, "comment", ""),
        "Created": _shown(cfg, "created", row["created"]), "Container": _shown(cfg, "container", ""),
        "ContainerConfig": _part(cfg.container_config), "DockerVersion": _shown(cfg, "docker_version", ""),
        "Author": _shown(cfg, "author", ""), "Config": _part(cfg.config),
        "Architecture": _shown(cfg, "architecture", ""), "Os": _shown(cfg, "os", "linux"), "Size": size,
        "VirtualSize": size,
        "GraphDriver": {"Name": images.layers.driver_name, "Data": _graph_data(images, row["top_layer"])},
        "RootFS": {"Type": "layers", "Layers": cfg.diff_ids},
        "Metadata": {"LastTagTime": row["last_tag_time"] or "0001-01-01T00:00:00Z"},
    }
    if cfg.variant:
        out["Variant"] = cfg.variant
    return out


def _graph_data(images: ImageStore, top_layer: str | None) -> dict[str, str] | None:
    """``GraphDriver.Data``: what the storage driver says of the image's top layer."""
    return images.layers.metadata(images.layers.driver_id(top_layer)) if top_layer else None


def _shown(cfg: ImageConfig, name: str, default: str) -> str | None:
    """Field ``name`` of ``cfg`` as inspect shows it: ``default`` when the config
    does not have it; a ``null`` it holds stays ``null``."""
    value = getattr(cfg, name)  # these fields' JSON keys are their names
    return default if value is None and not cfg.has(name) else value


def _created(row: Any, cfg: ImageConfig | None = None) -> float:
    return timestamp((cfg or ImageConfig.parse(row["config"])).created or row["created"])


def _created_of(images: ImageStore, ref: str) -> float:
    return _created(images.get(images.resolve(ref)))


def check_filters(filters: dict[str, list[str]]) -> None:
    for key in filters:
        if key not in LIST_FILTERS:
            raise InvalidParameter(f"invalid filter '{key}'")
    dangling = {v.lower() for v in filters.get("dangling", [])}
    if dangling - {"true", "false", "1", "0"}:
        raise InvalidParameter(f"invalid filter 'dangling={sorted(dangling)[0]}'")


def iter_images(images: ImageStore, show_all: bool, filters: dict[str, list[str]]) -> Iterator[dict]:
    """``docker images``' summaries, one at a time (the filters checked first)."""
    check_filters(filters)
    dangling = {v.lower() for v in filters.get("dangling", [])}
    dangling_only = bool(dangling & {"true", "1"})
    before = [_created_of(images, r) for r in filters.get("before", [])]
    since = [_created_of(images, r) for r in filters.get("since", [])]
    labels = filters.get("label", [])
    refs = filters.get("reference", [])
    for row in images.all():
        image_id = row["id"]
        cfg = ImageConfig.parse(row["config"])
        created = _created(row, cfg)
        if any(created >= b for b in before) or any(created <= s for s in since):
            continue
        if labels and not label_match(cfg.defaults.labels, labels):
            continue
        tags, digests = images.tags(image_id), images.repo_digests(image_id)
        if refs:
            tags = [t for t in tags if any(reference.matches(p, t) for p in refs)]
            digests = [d for d in digests if any(reference.matches(p, d.split("@")[0]) for p in refs)]
            if not tags and not digests:
                continue
        if not tags and not digests:
            if dangling and not dangling_only:
                continue
            if (dangling_only or not show_all) and images.children(image_id):
                continue  # an intermediate image
        elif dangling_only and tags:
            continue
        yield summary(images, row, tags, digests, cfg)
