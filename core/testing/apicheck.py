"""Daemon responses checked against the Docker Engine API spec (v1.41), with openapi-core.

The e2e tests drive the daemon with the real docker CLI and SDK through a recording
relay (:mod:`.apiproxy`); every complete JSON response they receive is checked here
against the operation's response schema in Docker's spec, so a shape that drifts from
dockerd's (a field of the wrong type, a value outside its enum, a required field
missing, a status the operation does not have) fails the test that caused it, with
the operation, the path in the body and the violation::

    checker = ApiChecker.load()
    for v in checker.check(exchange):
        print(v)   # ContainerInspect 200 $.State.Status: 'weird' is not one of [...]

The spec is Docker's Swagger 2.0, converted once to OpenAPI 3.0 (openapi-core reads
only 3.x) by ``scripts/gen_openapi_spec.py``; the file beside this module is its
output.  Streams (events, logs, attach, pull progress, ...) are not checked: only
their error responses are, which are single JSON documents.

Where the spec is known to be wrong about what dockerd sends, :data:`ERRATA` excuses
exactly that field of that operation, each entry saying why; nothing is loosened in
general.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import parse_qsl, quote, urlsplit

import attrs

SPEC_FILE = Path(__file__).with_name("docker-api-v1.41.openapi.json")
API_VERSION = "1.41"

#: operations whose successful body is a stream (several JSON documents, raw or
#: multiplexed frames, a tar): passed through unchecked, except their error responses
STREAMS = frozenset({
    "SystemEvents", "ContainerLogs", "ContainerAttach", "ContainerAttachWebsocket", "ContainerStats",
    "ContainerExport", "ContainerArchive", "ExecStart", "ImageCreate", "ImagePush", "ImageBuild",
    "ImageLoad", "ImageGet", "ImageGetAll", "PluginPull", "PluginUpgrade", "PluginPush", "PluginCreate",
    "ServiceLogs", "TaskLogs", "Session",
})

#: path parameters that may hold slashes: Docker's router matches them with ``{name:.*}``
#: (an image reference ``localhost:5000/team/app:1``), where OpenAPI's match one segment
_GREEDY = re.compile(r"^/(images|distribution|plugins)/")


@attrs.frozen
class Exchange:
    """One request and its complete response, as the relay saw them.  ``body`` is
    None when it was not kept (a stream, not JSON, over the relay's limit)."""

    method: str
    target: str  # path and query, as sent: ``/v1.41/containers/json?all=1``
    status: int
    content_type: str
    body: bytes | None


@attrs.frozen
class Violation:
    """A response that the spec does not allow."""

    operation: str
    status: int
    where: str  # the path in the body, ``$.State.Status``, or ``$`` for the whole
    message: str
    request: str  # ``GET /v1.41/containers/abc/json``

    def __str__(self) -> str:
        return f"{self.operation} {self.status} {self.where}: {self.message}  ({self.request})"


@attrs.frozen
class Erratum:
    """A place where the spec is wrong about what dockerd sends, excused precisely:
    ``operation``, a ``where`` pattern (``*`` stands for one key or array index:
    ``$.Volumes[*].Labels``, ``$.NetworkSettings.Networks.*.Links``), and ``allows``:
    ``"null"`` (the value may be null) or the one JSON Schema keyword it may break."""

    operation: str
    where: str
    allows: str
    why: str

    def excuses(self, operation: str, where: str, keyword: str, value: Any) -> bool:
        if operation != self.operation or not _glob(self.where).match(where):
            return False
        return value is None if self.allows == "null" else keyword == self.allows


@functools.lru_cache(maxsize=None)
def _glob(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(pattern).replace(r"\*", r"[^.\[\]]+") + "$")


#: Go encodes a nil slice, map or pointer as null, and the spec (generated from Go
#: types by go-swagger) marks few of them ``x-nullable``: every field below was null
#: in dockerd 20.10.24's own answers (API 1.41, Debian's docker.io, the docker CLI and
#: SDK through this checker) where the spec says array or object.
_GO_NIL = "dockerd 20.10 sends null here (a nil Go slice, map or pointer); the spec says not nullable"
_HOST_CONFIG = ("Binds", "VolumesFrom", "CapAdd", "CapDrop", "ExtraHosts", "GroupAdd", "Links", "SecurityOpt",
                "DeviceCgroupRules", "DeviceRequests", "MemorySwappiness", "BlkioWeightDevice",
                "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
                "Devices", "Ulimits", "PortBindings", "Dns", "DnsOptions", "DnsSearch",
                "MaskedPaths", "ReadonlyPaths")  # the last two: a privileged container's
_CONFIG = ("Env", "Cmd", "Volumes", "Entrypoint", "Labels")
_ENDPOINT = ("Links", "Aliases")
#: the storage driver's metadata: dockerd's vfs (and btrfs, aufs) driver has none, a nil
#: map: ``{"Name": "vfs", "Data": null}`` in dockerd 20.10.24's container and image inspect
#: (``--storage-driver vfs``); overlay2 and devicemapper send their keys
_GRAPH_DRIVER = "$.GraphDriver.Data"
_NULLS: dict[str, tuple[str, ...]] = {
    "ContainerInspect": (*(f"$.HostConfig.{f}" for f in _HOST_CONFIG), *(f"$.Config.{f}" for f in _CONFIG),
                         *(f"$.NetworkSettings.Networks.*.{f}" for f in _ENDPOINT), _GRAPH_DRIVER),
    "ContainerList": tuple(f"$[*].NetworkSettings.Networks.*.{f}" for f in _ENDPOINT),
    "ContainerWait": ("$.Error",),
    "ContainerPrune": ("$.ContainersDeleted",),
    "ImagePrune": ("$.ImagesDeleted",),
    "BuildPrune": ("$.CachesDeleted",),
    "ExecInspect": ("$.ExitCode",),  # a pointer in moby's backend.ExecInspect: null while it runs
    "ContainerChanges": ("$",),
    "ContainerUpdate": ("$.Warnings",),
    "ImageList": ("$[*].RepoDigests", "$[*].Labels"),
    "ImageInspect": (*(f"$.{part}.{f}" for part in ("Config", "ContainerConfig") for f in _CONFIG), _GRAPH_DRIVER),
    "VolumeCreate": ("$.Labels", "$.Options"),
    "VolumeInspect": ("$.Labels", "$.Options"),
    "VolumeList": ("$.Volumes[*].Labels", "$.Volumes[*].Options", "$.Warnings"),
    "NetworkList": ("$[*].IPAM.Options",),
    "NetworkInspect": ("$.IPAM.Options",),
    "NetworkPrune": ("$.NetworksDeleted",),
    "SystemInfo": ("$.Plugins.Authorization", "$.GenericResources", "$.Warnings"),
    "SystemDataUsage": ("$.Images[*].RepoDigests", "$.Images[*].Labels", "$.Volumes[*].Labels",
                        "$.Volumes[*].Options", "$.BuildCache",
                        *(f"$.Containers[*].NetworkSettings.Networks.*.{f}" for f in _ENDPOINT)),
}

#: dockerd answers an error with the status of its class (moby's errdefs: invalid
#: parameter 400, not found 404, conflict 409), whether or not the operation's spec
#: lists it, and always as a JSON ErrorResponse, whatever media type the operation's
#: spec declares: each below was dockerd 20.10's answer (a stopped container's top,
#: pause or resize; an empty new name; a bad volume name; an unknown volume driver; an
#: update of the restart policy of an auto-removed container)
_ERROR_STATUS = "dockerd 20.10 answers this error with this status (errdefs), which the spec does not list"
_STATUSES: dict[str, tuple[int, ...]] = {
    "ContainerTop": (409,), "ContainerPause": (409,), "ContainerResize": (409,), "ContainerRename": (400,),
    "VolumeCreate": (400, 404), "ContainerUpdate": (409,),
    # logs of a container whose log driver cannot read back (none, syslog): errdefs.NotImplemented
    "ContainerLogs": (501,),
}

#: the spec's known errors, each seen in dockerd 20.10's answers
ERRATA: tuple[Erratum, ...] = (
    *(Erratum(op, where, "null", _GO_NIL) for op, paths in _NULLS.items() for where in paths),
    *(Erratum(op, "$", f"status {status}", _ERROR_STATUS) for op, statuses in _STATUSES.items()
      for status in statuses),
    # dockerd 20.10 has the "local" log driver (HostConfig.LogConfig.Type "local"); the enum lacks it
    Erratum("ContainerInspect", "$.HostConfig.LogConfig.Type", "enum",
            "dockerd 20.10 answers LogConfig.Type 'local', which the spec's enum lacks"),
    # its spec says text/plain; dockerd 20.10 sent {"message": ...} for a stopped container
    Erratum("ContainerResize", "$", "json error", "dockerd 20.10 answers errors as a JSON ErrorResponse"),
)


def body_path(parts: Iterable[str | int]) -> str:
    """``["State", "Status"]`` -> ``$.State.Status``; ``["Mounts", 0]`` -> ``$.Mounts[0]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class ApiChecker:
    """The spec, loaded once (about a second), and the checks of exchanges against it."""

    def __init__(self, spec: dict[str, Any], errata: Iterable[Erratum] = ERRATA):
        from openapi_core import OpenAPI  # heavy: only where responses are checked

        self.spec = spec
        self.errata = tuple(errata)
        self.openapi = OpenAPI.from_dict(spec)
        self.routes = _routes(spec)

    @staticmethod
    def load(path: Path = SPEC_FILE) -> "ApiChecker":
        """The checker of the spec beside this module, made once per process."""
        return _load(path)

    def operation(self, method: str, target: str) -> tuple[str, str, dict[str, str]] | None:
        """``(operationId, template, path parameters)`` of a request, or None for a path
        the spec does not have (our own extensions, a later API's)."""
        path = _unversioned(urlsplit(target).path)
        for verb, regex, template, op_id in self.routes:
            if verb == method.lower() and (m := regex.match(path)):
                return op_id, template, m.groupdict()
        return None

    def wants(self, method: str, target: str, status: int, content_type: str) -> bool:
        """Whether the relay should keep this response's body for :meth:`check`: JSON,
        of an operation in the spec, and not a stream (a stream's error is kept)."""
        if not _is_json(content_type):
            return False
        found = self.operation(method, target)
        return found is not None and (found[0] not in STREAMS or status >= 400)

    def check(self, ex: Exchange) -> list[Violation]:
        """What in ``ex``'s response the spec does not allow (empty: conformant, or
        not checked: no body kept, a path the spec does not have)."""
        if ex.status == 0:  # the relay could not read the daemon's HTTP
            return [Violation("HTTP", 0, "$", (ex.body or b"").decode(), f"{ex.method} {ex.target}")]
        found = self.operation(ex.method, ex.target)
        if found is None or ex.body is None or ex.method == "HEAD" or not self.wants(
                ex.method, ex.target, ex.status, ex.content_type):
            return []
        op_id, template, params = found
        request = f"{ex.method} {ex.target}"

        def violation(where: str, message: str) -> Violation:
            return Violation(op_id, ex.status, where, message, request)

        try:
            json.loads(ex.body)
        except ValueError as exc:
            return [violation("$", f"not one JSON document ({exc}): {ex.body[:120]!r}")]
        from openapi_core.testing import MockRequest, MockResponse

        concrete = template
        for name, value in params.items():
            concrete = concrete.replace("{" + name + "}", quote(value, safe=""))
        req = MockRequest("http://docker", ex.method, f"/v{API_VERSION}{concrete}",
                          args=dict(parse_qsl(urlsplit(ex.target).query)))
        if ex.status >= 400 and self._excused(op_id, "json error"):
            return self._error_response(ex.body, violation)
        status = ex.status
        if self._excused(op_id, f"status {status}"):
            status = 500  # an error the spec does not list: its body is still an ErrorResponse
        resp = MockResponse(ex.body, status_code=status, content_type=ex.content_type.split(";")[0].strip())
        out: list[Violation] = []
        for error in self.openapi.iter_response_errors(req, resp):
            out += self._explain(error, op_id, violation)
        return _unique(out)

    def _excused(self, op_id: str, allows: str) -> bool:
        """Whether an erratum excuses ``allows`` (``"status 409"``, ``"json error"``) of
        the whole response of ``op_id``."""
        return any(e.operation == op_id and e.allows == allows for e in self.errata)

    def _error_response(self, body: bytes, violation: Any) -> list[Violation]:
        """An error answered as dockerd answers every error: Docker's ErrorResponse."""
        from openapi_schema_validator import OAS30Validator

        schema = self.spec["components"]["schemas"]["ErrorResponse"]
        return [violation(body_path(e.absolute_path), e.message)
                for e in OAS30Validator(schema).iter_errors(json.loads(body))]

    def _explain(self, error: Exception, op_id: str, violation: Any) -> list[Violation]:
        schema_errors = getattr(error.__cause__, "schema_errors", None)
        if schema_errors is None:  # a status or media type the operation lacks, ...
            return [violation("$", f"{type(error).__name__}: {error}")]
        out = []
        for se in _leaves(schema_errors):
            where = body_path(se.absolute_path)
            if not any(e.excuses(op_id, where, str(se.validator), se.instance) for e in self.errata):
                out.append(violation(where, se.message))
        return out


@functools.lru_cache(maxsize=None)
def _load(path: Path) -> ApiChecker:
    return ApiChecker(json.loads(path.read_text()))


def _leaves(errors: Iterable[Any]) -> Iterable[Any]:
    """The errors themselves, or for an ``allOf``/``oneOf``/``anyOf`` failure its
    causes, so that a message names the innermost field."""
    for error in errors:
        if error.context:
            yield from _leaves(error.context)
        else:
            yield error


def _unique(violations: list[Violation]) -> list[Violation]:
    """One violation per place: a null where an array belongs is reported by two
    keywords (``nullable`` and ``type``); the first says it."""
    seen, out = set(), []
    for v in violations:
        if (v.request, v.where) not in seen:
            seen.add((v.request, v.where))
            out.append(v)
    return out


def _is_json(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower() == "application/json"


def _unversioned(path: str) -> str:
    """``/v1.41/containers/json`` -> ``/containers/json`` (clients may also omit it)."""
    return re.sub(r"^/v\d+\.\d+(?=/)", "", path)


def _routes(spec: dict[str, Any]) -> list[tuple[str, re.Pattern[str], str, str]]:
    """Every operation as ``(method, regex, template, operationId)``, templates with
    fewer parameters first, so that ``/images/search`` wins over ``/images/{name}``."""
    routes = []
    for template, item in spec["paths"].items():
        for method, op in item.items():
            if not isinstance(op, dict) or "operationId" not in op:
                continue
            one = ".+" if _GREEDY.match(template) else "[^/]+"
            regex = re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m.group(1)}>{one})", re.escape(template))
            routes.append((template.count("{"), method, re.compile(f"^{regex}$"), template, op["operationId"]))
    routes.sort(key=lambda r: r[0])
    return [(method, regex, template, op_id) for _, method, regex, template, op_id in routes]


def report(violations: Iterable[Violation]) -> str:
    """The message of a test that got responses the spec does not allow."""
    lines = [str(v) for v in violations]
    return (f"{len(lines)} response(s) from the daemon differ from the Docker Engine API v{API_VERSION} spec "
            f"(dockyard.testing.apicheck):\n  " + "\n  ".join(lines))
