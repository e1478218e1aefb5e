"""The image service: every operation a client can ask of images, typed, in one facade.

Front ends call :class:`ImageService` and nothing else of this package.  Behind it:

    store         the records: configs by digest, tags, repository digests, parents
    listing       ``docker images`` and ``image inspect`` shapes, the list filters
    remove        ``rmi`` and ``image prune`` (moby's rules)
    importer      ``docker import``; reading compressed archives
    save, load    ``docker save`` and ``docker load``
    commit        ``docker commit``; a layer's diff and a new image (the builder's too)
    distribution  the registry client's side of pull and push
    check         ``dockyard system check``
    reference     Docker's reference grammar; changes: ``--change`` lines
"""

from __future__ import annotations

from typing import Any, BinaryIO, Callable, Iterator, Protocol

from ...errors import InvalidParameter
from . import check, listing, load, remove, save
from . import reference
from .commit import CommitOptions, ImageWriter
from .importer import import_tar
from .store import ImageStore

__all__ = ["CommitOptions", "ImageService"]

Progress = Callable[[dict], None]


class Containers(Protocol):
    """What the image service needs of the container records."""

    def users_of_image(self, image_id: str) -> list[tuple[str, bool]]: ...


class Puller(Protocol):
    """The registry service's pull and search."""

    def pull(self, ref: str, auth: dict | None = None, progress: Any = None, cancel: Any = None,
             platform: str | None = None, tag: str | None = None) -> str: ...

    def search(self, term: str, limit: int | None = None, filters: dict[str, list[str]] | None = None,
               auth: dict | None = None) -> list[dict]: ...


class ImageService:
    """The images of one daemon: ``images`` (the image store) records them,
    ``containers`` says which containers use an image, ``writer`` makes images of
    containers' layers, ``registry`` pulls."""

    def __init__(self, images: ImageStore, containers: Containers, writer: ImageWriter,
                 registry: Puller | None = None) -> None:
        self.store = images
        self.containers = containers
        self.writer = writer
        self.registry = registry

    def _users_of(self, image_id: str) -> list[tuple[str, bool]]:
        return self.containers.users_of_image(image_id)

    # --- reading ------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """The image id of a full id, a tag, ``name@digest`` or an id prefix."""
        return self.store.resolve(ref)

    def inspect(self, ref: str) -> dict:
        """``GET /images/{name}/json``."""
        return listing.inspect(self.store, self.store.resolve(ref))

    def summaries(self, show_all: bool, filters: dict[str, list[str]]) -> Iterator[dict]:
        """``GET /images/json``: the summaries, one at a time (the filters checked first)."""
        return listing.iter_images(self.store, show_all, filters)

    def history(self, ref: str) -> list[dict]:
        return self.store.history(ref)

    def check(self) -> dict:
        """``dockyard system check``: every stored digest verified."""
        return check.check(self.store)

    # --- names --------------------------------------------------------------------------
    def tag(self, ref: str, repo: str | None, tag: str | None) -> str:
        """``POST /images/{name}/tag``: tag the image ``ref`` names as ``repo:tag``."""
        if not repo:
            raise InvalidParameter("repository name must have at least one component (repo is empty)")
        target = f"{repo}:{tag}" if tag else repo
        r = reference.parse_reference(target)
        if r.digest:
            raise InvalidParameter(f"refusing to create a tag with a digest reference: {target}")
        with self.store.lock:
            return self.store.tag(self.store.resolve(ref), r.familiar())

    def tags_in_repository(self, familiar: str) -> list[str]:
        return self.store.tags_in_repository(familiar)

    def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict]:
        """``DELETE /images/{name}``: Docker's ``Untagged``/``Deleted`` records."""
        return remove.delete(self.store, self._users_of, ref, force=force, prune=prune)

    def prune(self, filters: dict[str, list[str]]) -> dict:
        """``POST /images/prune``: Docker's ``{"ImagesDeleted", "SpaceReclaimed"}``."""
        report = remove.prune(self.store, self._users_of, filters)
        self.store.emit("image", "prune", "", {"reclaimed": str(report["SpaceReclaimed"])})
        return report

    # --- in and out ---------------------------------------------------------------------
    def spool_path(self, suffix: str = ".tar") -> tuple[int, str]:
        """A new file under the data root for a request body (``(fd, path)``)."""
        return self.store.spool_path(suffix)

    def check_reference(self, ref: str) -> None:
        """Refuse a name that does not parse (before a body is read)."""
        reference.parse_reference(ref)

    def import_tar(self, path: str, ref: str | None = None, changes: list | None = None, message: str = "") -> str:
        """``docker import`` of the tarball at ``path``; returns the image id."""
        return import_tar(self.store, path, ref, changes, message)

    def load(self, path: str) -> list[str]:
        """``docker load`` of the archive at ``path``: Docker's ``Loaded image`` lines."""
        return load.load(self.store, path)

    def check_save(self, refs: list[str]) -> None:
        """Refuse, before a byte is written, names a save would not find."""
        if not refs:
            raise InvalidParameter("no image named to save")
        save.select(self.store, refs)

    def save(self, refs: list[str], fileobj: BinaryIO) -> list[str]:
        """``docker save``: the images ``refs`` name as one archive; returns their ids."""
        return save.save(self.store, refs, fileobj)

    def commit(self, container: str, opts: CommitOptions = CommitOptions()) -> str:
        """``POST /commit`` of ``container``; returns the new image's id."""
        return self.writer.commit(container, opts)

    def pull(self, ref: str, auth: dict | None = None, tag: str | None = None, platform: str | None = None,
             progress: Progress | None = None, cancel: Any = None) -> str:
        """``POST /images/create?fromImage=``: pull through the registry service."""
        if self.registry is None:
            raise InvalidParameter("this daemon has no registry client")
        return self.registry.pull(ref, auth=auth, tag=tag, platform=platform, progress=progress, cancel=cancel)

    def search(self, term: str, limit: int | None = None, filters: dict[str, list[str]] | None = None,
               auth: dict | None = None) -> list[dict]:
        """``GET /images/search``: the registry's search API (:mod:`dockyard.registry.search`)."""
        if self.registry is None:
            raise InvalidParameter("this daemon has no registry client")
        return self.registry.search(term, limit=limit, filters=filters, auth=auth)
