"""The build service: what clients ask of the builder (``POST /build``, ``POST
/build/prune``, the build cache of ``system df``), with the narrow collaborators
the builder uses: the image store and the image writer, the container service (a
RUN's container), the layer store (COPY's scratch layers), the registry service
(a base image to pull) and the network service (a build's network mode)."""

from __future__ import annotations

from typing import Any, Callable

from ..engine.filters import parse_timestamp
from ..engine.images import reference
from ..errors import InvalidParameter
from . import cache
from .build import BuildOptions, build

__all__ = ["BuildOptions", "BuildService"]

PRUNE_FILTERS = ("until", "unused-for", "type", "id", "description", "inuse", "shared", "private")


class BuildService:
    """The classic builder of one daemon; ``store`` keeps the build cache,
    ``data_root`` the build contexts while they are used."""

    def __init__(self, images: Any, writer: Any, containers: Any, layers: Any, networks: Any, registry: Any,
                 store: Any, data_root: str) -> None:
        self.images, self.writer, self.containers, self.layers = images, writer, containers, layers
        self.networks, self.registry, self.store, self.data_root = networks, registry, store, data_root

    def check_network_mode(self, mode: str) -> None:
        """Refuse a build's network that does not exist, before the build starts."""
        self.networks.network_mode(mode)

    def tag_reference(self, tag: str) -> str:
        """A build's ``-t`` normalised (a digest reference is refused)."""
        ref = reference.normalize(tag)
        if "@" in ref:
            raise InvalidParameter(f"refusing to tag with a digest reference: {tag}")
        return ref

    def auth_by_registry(self, configs: dict[str, dict]) -> dict[str, dict]:
        """``X-Registry-Config`` (``{registry: AuthConfig}``) keyed by registry host."""
        from ..registry.names import registry_host

        return {registry_host(k): v for k, v in configs.items()}

    def spool_path(self, suffix: str = ".context") -> tuple[int, str]:
        """A new file under the data root for a build context (``(fd, path)``)."""
        return self.images.spool_path(suffix)

    def build(self, context_path: str, opts: BuildOptions, progress: Callable[[dict], None],
              cancel: Any = None) -> str:
        """Build from the context tar at ``context_path``; returns the image id."""
        return build(self, context_path, opts, progress, cancel)

    def prune(self, filters: dict[str, list[str]]) -> dict:
        """``POST /build/prune``: forget the cached steps (before ``until``)."""
        for key in filters:
            if key not in PRUNE_FILTERS:
                raise InvalidParameter(f"invalid filter '{key}'")
        until = filters.get("until") or filters.get("unused-for")
        cutoff = min(parse_timestamp(v) for v in until) if until else None
        keys = cache.prune(self.store, cutoff)
        return {"CachesDeleted": [k.removeprefix("sha256:")[:25] for k in keys] or None, "SpaceReclaimed": 0}

    def cache_records(self) -> None:
        """The build cache of ``system df``: BuildKit's records, of which this
        classic builder keeps none (its steps are images, which df lists as
        images), so ``null``, as dockerd answers when only its classic builder
        has run."""
        return None
