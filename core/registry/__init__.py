"""Registry access: pull, push and login over the OCI distribution protocol.

    service     the registry service: Registry.pull/push/login/inspect, the X-Registry-Auth header
    distribution  a remote image's descriptor and platforms (GET /distribution/{name}/json)
    pull, push  the two transfers (parallel: what they share; gzipper: a push's gzip)
    session     authenticated requests to one registry
    auth        the /v2/ ping, basic and bearer-token challenges
    endpoints   insecure registries (names, CIDRs, loopback) and the mirrors of each registry host
    search      GET /images/search: a registry's v1 search API
    transport   HTTP/1.1 on urllib3: TLS (certs.d), insecure registries, pools, redirects
    retry       the one backoff policy (urllib3's Retry, Retry-After) of pulls and pushes
    progress    Docker's JSON progress messages
    names       a reference's registry host and repository path
    errors      the exception tree

Manifests, indexes and platforms are the image model's, :mod:`dockyard.imagespec`.
Importing this package imports nothing else.  The client's own credentials (Docker's
config.json) are :mod:`dockyard.client.authconfig`'s: the daemon is handed them.
"""
