"""``/volumes*``: create, list, inspect, remove, prune (Docker Engine API 1.41)."""

from aiohttp import web

from ..engine import container_list
from ..errors import InvalidParameter
from .app import blocking, engine, qbool, qfilters
from .bodies import json_body
from .listing import json_array

LIST_FILTERS = ("dangling", "driver", "label", "name")


def _filters(request, allowed):
    out = qfilters(request)
    for key in out:
        if key not in allowed:
            raise InvalidParameter(f"invalid filter '{key}'")
    return out


def _dangling(values):
    wanted = set()
    for v in values:
        if v.lower() in ("true", "1"):
            wanted.add(True)
        elif v.lower() in ("false", "0"):
            wanted.add(False)
        else:
            raise InvalidParameter(f"invalid filter 'dangling={v}'")
    return wanted


def _matches(vol, filters, used):
    from ..engine.volumes import label_match

    if "name" in filters and not any(v in vol["Name"] for v in filters["name"]):
        return False
    if "driver" in filters and vol["Driver"] not in filters["driver"]:
        return False
    if "dangling" in filters and (vol["Name"] not in used) not in _dangling(filters["dangling"]):
        return False
    return label_match(vol.get("Labels"), {"label": filters.get("label", ())})


async def list_(request):
    eng = engine(request)
    filters = _filters(request, LIST_FILTERS)

    def run():
        used = container_list.volumes_in_use(eng.containers.store) if "dangling" in filters else set()
        return (eng.volumes.view(v) for v in eng.volumes.all() if _matches(v, filters, used))
    return await json_array(request, run, head=b'{"Volumes": ', tail=b', "Warnings": null}')


async def create(request):
    body = await json_body(request, "VolumeCreate")
    if not isinstance(body, dict):
        raise InvalidParameter("invalid volume create request: not an object")
    eng = engine(request)
    rec = await blocking(request, eng.volumes.create, body.get("Name") or None, body.get("Driver") or None,
                         body.get("DriverOpts") or {}, body.get("Labels") or {})
    return web.json_response(eng.volumes.view(rec), status=201)


async def inspect(request):
    eng = engine(request)
    rec = await blocking(request, eng.volumes.get, request.match_info["name"])
    return web.json_response(eng.volumes.view(rec))


async def delete(request):
    eng = engine(request)
    await blocking(request, eng.volumes.remove, request.match_info["name"], qbool(request, "force"))
    return web.Response(status=204)


async def prune(request):
    eng = engine(request)
    filters = _filters(request, ("label", "label!", "all"))
    filters.pop("all", None)  # API 1.42's "named ones too": 1.41 prunes every unused volume anyway
    removed, reclaimed = await blocking(request, eng.volumes.prune, filters)
    return web.json_response({"VolumesDeleted": removed, "SpaceReclaimed": reclaimed})


ROUTES = [
    ("GET", "/volumes", list_),
    ("POST", "/volumes/create", create),
    ("POST", "/volumes/prune", prune),
    ("GET", "/volumes/{name}", inspect),
    ("DELETE", "/volumes/{name}", delete),
]
