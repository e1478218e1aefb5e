"""``cachefrom``: images named by the build (``docker build --cache-from``) as
cache sources, as dockerd's classic builder uses them (moby ``image/cache``).

An image pulled or loaded has no parent chain, so the local cache (the steps
this daemon made, :mod:`.cache`) cannot find it; its *history* can.  With
sources given, a step hits:

* a step this daemon made, only if it is an ancestor (by parent) of a source;
  other local steps are not used, as in dockerd (a build that names sources
  means "from these");
* else a source whose history and layers begin as the parent's do and whose
  next history entry was made by this step (``created_by`` equal).  If that
  entry is the source's last, the step's image is the source itself (its parent
  becomes the step's parent, so ``docker history`` shows the ids); otherwise a
  new image is made of the parent and that entry's layer (no container runs),
  and from then on only that source is followed.

A name that is no local image (or no name) is skipped, with a warning in the daemon's log
(dockerd's "Could not look up ... for cache resolution, skipping").
"""

from __future__ import annotations

import logging
from typing import Any

from .. import __version__
from ..errors import ImageNotFound, InvalidParameter
from ..model.image import ContainerConfig, History, ImageConfig, RootFS

log = logging.getLogger("dockyard.build")


def _same(a: History, b: History) -> bool:
    """Two history entries are the same step (Go's ``reflect.DeepEqual`` of them)."""
    def fields(h: History) -> tuple:
        return h.created, h.created_by or "", h.author or "", h.comment or "", bool(h.empty_layer)
    return fields(a) == fields(b)


class CacheSources:
    """The sources of one build: ``images`` is the image store, ``layers`` the
    layer store, ``refs`` the names given."""

    def __init__(self, images: Any, layers: Any, refs: list[str]) -> None:
        self.images, self.layers = images, layers
        self.sources: list[str] = []
        for ref in refs:
            try:
                self.sources.append(images.resolve(ref))
            except (ImageNotFound, InvalidParameter) as exc:
                log.warning("Could not look up %s for cache resolution, skipping: %s", ref, exc)

    def allows(self, image_id: str) -> bool:
        """Whether a local cache hit ``image_id`` is an ancestor of a source."""
        for source in self.sources:
            seen, here = set(), self.images.parent(source)
            while here and here not in seen:
                if here == image_id:
                    return True
                seen.add(here)
                here = self.images.parent(here)
        return False

    def lookup(self, parent_id: str, created_by: str, config: ContainerConfig) -> str | None:
        """The image of the step ``created_by`` on ``parent_id`` (``""``: scratch)
        found in a source's history, made if need be; ``None`` if no source has it."""
        parent = self.images.config(parent_id) if parent_id else None
        history = list(parent.history or []) if parent else []
        diff_ids = parent.diff_ids if parent else []
        for source in self.sources:
            target = self.images.config(source)
            entries, layers = list(target.history or []), target.diff_ids
            if not self._continues(entries, layers, history, diff_ids):
                continue
            if (entries[len(history)].created_by or "") != created_by:
                continue
            if len(entries) == len(history) + 1:
                if parent_id:
                    self.images.set_parent(source, parent_id)
                return source
            made = self._restore(parent_id, history, diff_ids, source, target, config)
            if made is not None:
                self.sources = [source]  # follow this source from here on, as dockerd does
                return made
        return None

    @staticmethod
    def _continues(entries: list, layers: list, history: list, diff_ids: list) -> bool:
        """moby ``isValidParent``: the source begins with the parent's history and layers."""
        if not entries:
            return False
        if not history and not diff_ids:
            return True
        if len(history) >= len(entries) or len(diff_ids) > len(layers):
            return False
        return all(_same(h, entries[i]) for i, h in enumerate(history)) and layers[:len(diff_ids)] == diff_ids

    def _restore(self, parent_id: str, history: list, diff_ids: list, source: str, target: ImageConfig,
                 config: ContainerConfig) -> str | None:
        """A new image: the parent with the source's next history entry (and its
        layer, which the source's chain already holds)."""
        entry = target.history[len(history)]  # type: ignore[index]  # (_continues checked it)
        top = self.images.top_layer(parent_id) if parent_id else None
        new_ids = list(diff_ids)
        if not entry.empty_layer:
            chain = self.layers.chain(self.images.top_layer(source))
            if len(chain) <= len(diff_ids):
                return None
            row = chain[len(diff_ids)]
            top = row["chain_id"]
            new_ids.append(row["diff_id"])
        image = ImageConfig(
            architecture=target.architecture, os=target.os, config=config, created=entry.created,
            docker_version=f"dockyard-{__version__}", rootfs=RootFS(type="layers", diff_ids=new_ids),
            history=history + [entry])
        for name in ("author", "variant", "os_version", "os_features"):
            if getattr(target, name):
                setattr(image, name, getattr(target, name))
        return self.images.add(image, top, parent=parent_id or None)
