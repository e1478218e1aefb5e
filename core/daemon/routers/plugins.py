"""``/plugins*``: Dockyard has drivers, not Docker managed plugins, so ``GET /plugins``
is an empty list, a named plugin is a 404 and installing one is a 501 that points at
``dockyard driver ls``.  A request body is checked first, as dockerd decodes it
before it looks for the plugin."""

from __future__ import annotations

from aiohttp import web

from ...errors import DockyardError, NotFound
from ..bodies import json_body


class PluginNotFound(NotFound):
    pass


class NotImplementedHere(DockyardError):
    status = 501


async def plugins_list(request: web.Request) -> web.Response:
    return web.json_response([])


async def plugin_privileges(request: web.Request) -> web.Response:
    remote = request.query.get("remote") or ""
    raise NotImplementedHere(f"Dockyard does not install Docker managed plugins ({remote or 'no name'}): "
                             "its storage, exec, network and volume backends are drivers "
                             "(see `dockyard driver ls`)")


async def plugin_named(request: web.Request) -> web.Response:
    operation = {"set": "PluginSet", "upgrade": "PluginUpgrade"}.get(request.match_info.get("action", ""))
    if operation:
        await json_body(request, operation)
    raise PluginNotFound(f"plugin \"{request.match_info['name']}\" not found")


async def plugin_install(request: web.Request) -> web.Response:
    if request.path.endswith("/pull"):
        await json_body(request, "PluginPull")
    return await plugin_privileges(request)


ROUTES = [
    ("GET", "/plugins", plugins_list),
    ("GET", "/plugins/privileges", plugin_privileges),
    ("POST", "/plugins/pull", plugin_install),
    ("POST", "/plugins/create", plugin_install),
    ("GET", "/plugins/{name:.+}/json", plugin_named),
    ("DELETE", "/plugins/{name:.+}", plugin_named),
    ("POST", "/plugins/{name:.+}/{action:enable|disable|upgrade|push|set}", plugin_named),
]
