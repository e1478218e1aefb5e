"""Registry access: pull, push and login over the OCI distribution protocol.

    service     engine.registry: Registry.pull/push/login, the X-Registry-Auth header
    pull, push  the two transfers
    manifest    media types, manifests and indexes, platform selection
    session     authenticated requests to one registry
    auth        the /v2/ ping, basic and bearer-token challenges
    transport   HTTP/1.1 with TLS (certs.d), insecure registries, retries, redirects
    authconfig  the client's credentials: Docker's config.json and credential helpers
    progress    Docker's JSON progress messages
    names       a reference's registry host and repository path
    errors      the exception tree

Importing this package imports nothing else: the CLI reads ``authconfig`` without
paying for the rest.
"""
