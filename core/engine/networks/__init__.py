"""Networks: :class:`~.service.NetworkService` and what it stands on.

    service    the facade: networks, connect/disconnect, a container's networking
    networks   the records and their drivers' kernel objects
    endpoints  a container's namespace, addresses, attachments, published ports
    settings   the API's endpoint settings and port bindings, checked
    links      legacy links (``--link``): their variables and /etc/hosts lines
    ipam       address pools and allocations (transactional, in the store)
    dns        the embedded resolver at 127.0.0.11 of user networks
    netns      pinned network namespaces

Importing this package imports none of its modules.
"""
