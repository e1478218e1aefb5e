"""The Docker Engine API's routers, one per resource.

Each router module declares the backend it calls as a small ``typing.Protocol``
(``XBackend``: exactly the service methods its handlers use, as moby's
``api/server/router/*/backend.go`` do), an application key holding it
(``BACKEND``) and its ``ROUTES``.  Handlers translate HTTP to typed calls and
errors back; they never reach a hook, a plugin manager or the store.
:mod:`dockyard.daemon.app` puts the engine's services behind the keys.

    containers    /containers/*: lifecycle, logs, attach, stats, cp, export...
    exec          /containers/{id}/exec, /exec/*
    images        /images/*, /commit
    distribution  push, /auth, /distribution
    build         /build, /build/prune
    networks      /networks/*            volumes   /volumes*
    system        /_ping, /version, /info, /system/df, /events, /dockyard/system/check
    storage       /dockyard/storage/migrate
    plugins       /plugins* (no managed plugins)   swarm   /swarm, /nodes, ... (no swarm)

Importing this package imports none of its modules.
"""
