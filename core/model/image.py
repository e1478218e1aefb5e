"""The image config (OCI image-spec ``config.json``, Docker's image JSON) as typed
records: :class:`ImageConfig` with its :class:`ContainerConfig` (``config``: what a
container of the image runs), :class:`RootFS` and :class:`History` entries.

An image *is* its config's bytes: the image id is their digest, so they are stored
as they came (from a registry, an archive, a commit) and never rewritten.  These
records are how the engine *reads* them (:meth:`ImageConfig.parse`), and how it
writes a new config (:meth:`ImageConfig.to_json`, which the image store serialises).
The Docker API's ``image inspect``, ``images`` and ``history`` shapes are views built
from them (:mod:`dockyard.engine.images.listing`).

Configs come from anywhere, so reading is tolerant as Docker's is: keys this model
does not know are kept (``extra``), and so is which keys a document had and in what
order (``keys``), so that a view passing a part through (``Config`` of ``image
inspect``) shows it as stored, ``"OnBuild": null`` included.  Setting a field makes
its key present, as assigning a dict key did: ``cfg.cmd = None`` writes
``"Cmd": null``.  The JSON keys (``Env``, ``os.version``, ``diff_ids``) differ from
the fields' names; each field names its key in its metadata (:func:`key`), and
:data:`dockyard.model.convert.converter` structures the records with those renames.
A document whose values are not of the types Docker's own structs hold (``"Env":
5``) does not parse: :class:`~dockyard.imagespec.BadDocument`, as dockerd refuses it.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, TypeVar

import attrs
from cattrs.errors import BaseValidationError
from cattrs.gen import make_dict_structure_fn, override

from ..imagespec import BadDocument
from .convert import converter

__all__ = ["ContainerConfig", "HealthConfig", "History", "ImageConfig", "RootFS", "key"]

D = TypeVar("D", bound="Document")
_BOOKKEEPING = ("keys", "extra")


def key(name: str) -> dict[str, str]:
    """A field's metadata naming its JSON key: ``attrs.field(metadata=key("Env"))``."""
    return {"key": name}


def _json_key(attribute: attrs.Attribute) -> str:
    return str(attribute.metadata.get("key", attribute.name))


def _mark_present(instance: Any, attribute: attrs.Attribute, value: Any) -> Any:
    """``on_setattr``: a field that is set is present in the document."""
    if attribute.name not in _BOOKKEEPING:
        json_key = _json_key(attribute)
        if json_key not in instance.keys:
            instance.keys = (*instance.keys, json_key)
    return value


def _str_list(value: Any, _: Any = None) -> list[str] | None:
    """Docker's ``strslice``: a command (``Cmd``, ``Entrypoint``, ``Shell``, a
    health check's ``Test``) given as one string is a list of one."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    return converter.structure(value, list[str])


def _command(json_name: str) -> Any:
    return attrs.field(default=None, metadata={"key": json_name, "struct_hook": _str_list})


def _field(json_name: str) -> Any:
    return attrs.field(default=None, metadata=key(json_name))


@attrs.define(on_setattr=_mark_present)
class Document:
    """A JSON object read into fields: ``keys`` are the keys it had, in order, and
    ``extra`` the values of those that no field holds."""

    keys: tuple[str, ...] = attrs.field(default=(), kw_only=True, eq=False, repr=False)
    extra: dict[str, Any] = attrs.field(factory=dict, kw_only=True, repr=False)

    @classmethod
    def from_json(cls: type[D], obj: Any) -> D:
        """The record of JSON object ``obj``; :class:`BadDocument` if it does not fit."""
        try:
            return converter.structure(obj, cls)
        except BaseValidationError as exc:
            raise BadDocument(f"{cls.__name__}: {_reason(exc)}") from None
        except (TypeError, ValueError, AttributeError) as exc:
            raise BadDocument(f"{cls.__name__}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        """The JSON object: its keys in the order it was read, then keys set since."""
        out: dict[str, Any] = {}
        fields = {_json_key(a): a for a in attrs.fields(type(self)) if a.name not in _BOOKKEEPING}
        for k in self.keys:
            if k in fields:
                out[k] = converter.unstructure(getattr(self, fields[k].name))
            elif k in self.extra:
                out[k] = self.extra[k]
        for k, a in fields.items():
            value = getattr(self, a.name)
            if k not in out and value is not None:
                out[k] = converter.unstructure(value)
        for k, value in self.extra.items():
            out.setdefault(k, value)
        return out

    def has(self, json_key: str) -> bool:
        """Whether the document has ``json_key`` (a JSON key; ``null`` counts)."""
        return json_key in self.keys or json_key in self.extra


def _reason(exc: BaseException) -> str:
    """The innermost message of a cattrs validation error (it names no field by
    itself: the notes it carries do)."""
    def walk(e: BaseException, where: tuple[str, ...]) -> Iterator[str]:
        notes = [n for n in getattr(e, "__notes__", []) if isinstance(n, str)]
        here = where + tuple(notes[-1:])
        for sub in getattr(e, "exceptions", ()):
            yield from walk(sub, here)
        if not getattr(e, "exceptions", None):
            yield f"{' / '.join(here)}: {e}" if here else str(e)

    return "; ".join(walk(exc, ())) or str(exc)


@attrs.define(on_setattr=_mark_present)
class HealthConfig(Document):
    """``Healthcheck``: the command (``["NONE"]`` disables the image's), and the
    durations in nanoseconds."""

    test: list[str] | None = _command("Test")
    interval: int | None = _field("Interval")
    timeout: int | None = _field("Timeout")
    start_period: int | None = _field("StartPeriod")
    start_interval: int | None = _field("StartInterval")
    retries: int | None = _field("Retries")


@attrs.define(on_setattr=_mark_present)
class ContainerConfig(Document):
    """The image config's ``config`` (and ``container_config``): the defaults of a
    container made of the image, in Docker's field order."""

    hostname: str | None = _field("Hostname")
    domainname: str | None = _field("Domainname")
    user: str | None = _field("User")
    attach_stdin: bool | None = _field("AttachStdin")
    attach_stdout: bool | None = _field("AttachStdout")
    attach_stderr: bool | None = _field("AttachStderr")
    exposed_ports: dict[str, Any] | None = _field("ExposedPorts")
    tty: bool | None = _field("Tty")
    open_stdin: bool | None = _field("OpenStdin")
    stdin_once: bool | None = _field("StdinOnce")
    env: list[str] | None = _field("Env")
    cmd: list[str] | None = _command("Cmd")
    healthcheck: HealthConfig | None = _field("Healthcheck")
    args_escaped: bool | None = _field("ArgsEscaped")
    image: str | None = _field("Image")
    volumes: dict[str, Any] | None = _field("Volumes")
    working_dir: str | None = _field("WorkingDir")
    entrypoint: list[str] | None = _command("Entrypoint")
    network_disabled: bool | None = _field("NetworkDisabled")
    mac_address: str | None = _field("MacAddress")
    on_build: list[str] | None = _field("OnBuild")
    labels: dict[str, str] | None = _field("Labels")
    stop_signal: str | None = _field("StopSignal")
    stop_timeout: int | None = _field("StopTimeout")
    shell: list[str] | None = _command("Shell")

    def replace(self, **changes: Any) -> ContainerConfig:
        """A copy with ``changes`` (field names) set, their keys present (``None``
        too: ``"Cmd": null``), as ``dict(cfg, Cmd=...)`` was."""
        new = attrs.evolve(self, extra=dict(self.extra))
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def copy(self) -> ContainerConfig:
        """A deep copy (the lists and dicts too), to change without touching this one."""
        return ContainerConfig.from_json(self.to_json())


@attrs.define(on_setattr=_mark_present)
class RootFS(Document):
    """``rootfs``: the layers' diff IDs, bottom first."""

    type: str | None = _field("type")
    diff_ids: list[str] | None = _field("diff_ids")


@attrs.define(on_setattr=_mark_present)
class History(Document):
    """One ``history`` entry: an instruction; ``empty_layer`` if it made no layer."""

    created: str | None = _field("created")
    created_by: str | None = _field("created_by")
    author: str | None = _field("author")
    comment: str | None = _field("comment")
    empty_layer: bool | None = _field("empty_layer")


@attrs.define(on_setattr=_mark_present)
class ImageConfig(Document):
    """An image config: platform, dates and authorship, the container defaults
    (``config``), the layers (``rootfs``) and the ``history``."""

    architecture: str | None = _field("architecture")
    os: str | None = _field("os")
    os_version: str | None = _field("os.version")
    os_features: list[str] | None = _field("os.features")
    variant: str | None = _field("variant")
    created: str | None = _field("created")
    author: str | None = _field("author")
    comment: str | None = _field("comment")
    docker_version: str | None = _field("docker_version")
    container: str | None = _field("container")
    config: ContainerConfig | None = _field("config")
    container_config: ContainerConfig | None = _field("container_config")
    rootfs: RootFS | None = _field("rootfs")
    history: list[History] | None = _field("history")

    @classmethod
    def parse(cls, data: bytes | str) -> ImageConfig:
        """The config of JSON text ``data`` (the stored bytes); :class:`BadDocument`
        if it is not a JSON object of the config's shape."""
        import json

        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadDocument(f"image config is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise BadDocument("image config is not a JSON object")
        return cls.from_json(obj)

    @property
    def diff_ids(self) -> list[str]:
        """The layers' diff IDs, bottom first (none: ``[]``)."""
        return list((self.rootfs.diff_ids if self.rootfs else None) or [])

    @property
    def defaults(self) -> ContainerConfig:
        """``config``, or an empty one: what a container of the image starts from."""
        return self.config if self.config is not None else ContainerConfig()

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.defaults.labels or {})


# --- the converter's hooks: renames, unknown keys kept, order and presence recorded --------
def _structure_fn(cls: type[D]) -> Callable[[Any, Any], D]:
    fields = [a for a in attrs.fields(cls) if a.name not in _BOOKKEEPING]
    overrides: dict[str, Any] = {a.name: override(rename=_json_key(a), struct_hook=a.metadata.get("struct_hook")) for a in fields}
    base = make_dict_structure_fn(cls, converter, _cattrs_forbid_extra_keys=False,
                                  keys=override(omit=True), extra=override(omit=True), **overrides)
    known = {_json_key(a) for a in fields}

    def structure(obj: Any, _: Any) -> D:
        if not isinstance(obj, dict):
            raise BadDocument(f"{cls.__name__} must be a JSON object, not {type(obj).__name__}")
        record = base(obj, cls)
        record.keys = tuple(obj)
        record.extra = {k: v for k, v in obj.items() if k not in known}
        return record

    return structure


for _cls in (HealthConfig, ContainerConfig, RootFS, History, ImageConfig):
    converter.register_structure_hook(_cls, _structure_fn(_cls))
    converter.register_unstructure_hook(_cls, Document.to_json)
