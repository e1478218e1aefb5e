"""Swarm mode, answered as a single engine that is not part of a swarm.

Every swarm endpoint (``/swarm``, ``/nodes``, ``/services``, ``/tasks``,
``/secrets``, ``/configs``) answers 503 with Docker's own message, which is what
``docker node ls``, ``docker service ls``, ``docker secret ls`` ... print against a
non-swarm Docker; ``/info`` says ``Swarm.LocalNodeState: "inactive"``.
``POST /swarm/init`` and ``/swarm/join`` say plainly that Dockyard has no swarm mode;
``/swarm/leave`` is Docker's "not part of a swarm".  A request body is checked
first, as dockerd decodes it before it asks the cluster: a malformed one is a 400.
"""

from typing import Awaitable, Callable

from aiohttp import web

from ...errors import DockyardError
from ..bodies import json_body

Handler = Callable[[web.Request], Awaitable[web.Response]]
NOT_MANAGER = ('This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect '
               "this node to swarm and try again.")
NOT_IN_SWARM = "This node is not part of a swarm"


class NotASwarmManager(DockyardError):
    status = 503


async def not_manager(request: web.Request) -> web.Response:
    raise NotASwarmManager(NOT_MANAGER)


async def not_in_swarm(request: web.Request) -> web.Response:
    raise NotASwarmManager(NOT_IN_SWARM)


def _body_first(operation: str, handler: Handler) -> Handler:
    async def checked(request: web.Request) -> web.Response:
        await json_body(request, operation)
        return await handler(request)
    return checked


async def no_swarm_mode(request: web.Request) -> web.Response:
    raise NotASwarmManager("Dockyard is a single engine without swarm mode: it cannot initialise or join a "
                           "swarm")


ROUTES = [("POST", "/swarm/init", _body_first("SwarmInit", no_swarm_mode)),
          ("POST", "/swarm/join", _body_first("SwarmJoin", no_swarm_mode)),
          ("POST", "/swarm/leave", not_in_swarm), ("GET", "/swarm", not_manager),
          ("POST", "/swarm/update", _body_first("SwarmUpdate", not_manager)), ("GET", "/swarm/unlockkey", not_manager),
          ("POST", "/swarm/unlock", _body_first("SwarmUnlock", not_manager))]
_UPDATES = {"nodes": "NodeUpdate", "services": "ServiceUpdate", "secrets": "SecretUpdate", "configs": "ConfigUpdate"}
for _kind in ("nodes", "services", "tasks", "secrets", "configs"):
    _update = _body_first(_UPDATES[_kind], not_manager) if _kind in _UPDATES else not_manager
    ROUTES += [("GET", f"/{_kind}", not_manager), ("GET", f"/{_kind}/{{id}}", not_manager),
               ("DELETE", f"/{_kind}/{{id}}", not_manager), ("POST", f"/{_kind}/{{id}}/update", _update)]
ROUTES += [("POST", "/services/create", _body_first("ServiceCreate", not_manager)),
           ("GET", "/services/{id}/logs", not_manager), ("GET", "/tasks/{id}/logs", not_manager),
           ("POST", "/secrets/create", _body_first("SecretCreate", not_manager)),
           ("POST", "/configs/create", _body_first("ConfigCreate", not_manager))]
