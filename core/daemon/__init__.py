"""``dockyard daemon``: the Docker Engine API over a unix socket.

    main     the entry point: flags, systemd, the socket, the composition root started
    app      the aiohttp application: the services behind the routers, middlewares
    routers  one router per resource, each with its backend Protocol
    the helpers the routers share: context, middleware, query, bodies, schema,
    listing, jsonstream, attach, tarstream, streams, gate

Importing this package imports none of its modules.
"""
