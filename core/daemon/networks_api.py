"""``/networks/*``: create, list, inspect, remove, connect, disconnect, prune."""

from aiohttp import web

from ..engine import container_list
from ..errors import InvalidParameter
from .app import blocking, engine, qfilters
from .bodies import json_body
from .listing import json_array


def network_view(eng, net, containers=True):
    """Docker's network object."""
    ipam = net.get("ipam")
    out = {"Name": net["name"], "Id": net["id"], "Created": net["created"], "Scope": "local",
           "Driver": net["driver"], "EnableIPv6": False,
           "IPAM": {"Driver": "default", "Options": None,
                    "Config": [{"Subnet": ipam["subnet"], "Gateway": ipam["gateway"]}] if ipam else []},
           "Internal": net["internal"], "Attachable": net.get("attachable", False), "Ingress": False,
           "ConfigFrom": {"Network": ""}, "ConfigOnly": False, "Containers": {},
           "Options": net["options"], "Labels": net["labels"]}
    if containers:  # from the store's JSON, not whole records: one may hold megabytes of labels
        for cid, name, s in container_list.on_network(eng.containers.store, net["name"]):
            out["Containers"][cid] = {
                "Name": name, "EndpointID": s.get("EndpointID", ""),
                "MacAddress": s.get("MacAddress", ""),
                "IPv4Address": f"{s['IPAddress']}/{s['IPPrefixLen']}" if s.get("IPAddress") else "",
                "IPv6Address": ""}
    return out


def _filters(request):
    filters = qfilters(request)
    for key in filters:
        if key not in ("name", "id", "driver", "type", "label", "scope", "dangling"):
            raise InvalidParameter(f"invalid filter '{key}'")
    return filters


def _matches(net, filters):
    for key, values in filters.items():
        if key == "name" and not any(v in net["name"] for v in values):
            return False
        if key == "id" and not any(net["id"].startswith(v) for v in values):
            return False
        if key == "driver" and net["driver"] not in values:
            return False
        if key == "type" and ("builtin" if net.get("predefined") else "custom") not in values:
            return False
        if key == "label":
            for v in values:
                k, sep, val = v.partition("=")
                if k not in net["labels"] or (sep and net["labels"][k] != val):
                    return False
        if key not in ("name", "id", "driver", "type", "label", "scope", "dangling"):
            raise InvalidParameter(f"invalid filter '{key}'")
    return True


async def list_(request):
    eng = engine(request)
    filters = _filters(request)

    def run():
        return (network_view(eng, n) for n in eng.networks.all() if _matches(n, filters))
    return await json_array(request, run)


async def inspect(request):
    eng = engine(request)
    net = await blocking(request, eng.networks.get, request.match_info["id"])
    return web.json_response(await blocking(request, network_view, eng, net))


async def create(request):
    body = await json_body(request, "NetworkCreate")
    eng = engine(request)
    nid = await blocking(request, eng.networks.create, body)
    return web.json_response({"Id": nid, "Warning": ""}, status=201)


async def delete(request):
    eng = engine(request)
    await blocking(request, eng.networks.remove, request.match_info["id"])
    return web.Response(status=204)


async def connect(request):
    body = await json_body(request, "NetworkConnect")
    eng = engine(request)
    if not body.get("Container"):
        raise InvalidParameter("a container (Container) is required")
    await blocking(request, eng.endpoints.connect, request.match_info["id"], body["Container"],
                   body.get("EndpointConfig"))
    return web.Response(status=200)


async def disconnect(request):
    body = await json_body(request, "NetworkDisconnect")
    eng = engine(request)
    if not body.get("Container"):
        raise InvalidParameter("a container (Container) is required")
    await blocking(request, eng.endpoints.disconnect, request.match_info["id"], body["Container"],
                   bool(body.get("Force")))
    return web.Response(status=200)


async def prune(request):
    eng = engine(request)
    removed = await blocking(request, eng.networks.prune)
    return web.json_response({"NetworksDeleted": removed})


ROUTES = [
    ("GET", "/networks", list_),
    ("POST", "/networks/create", create),
    ("POST", "/networks/prune", prune),
    ("GET", "/networks/{id}", inspect),
    ("DELETE", "/networks/{id}", delete),
    ("POST", "/networks/{id}/connect", connect),
    ("POST", "/networks/{id}/disconnect", disconnect),
]
