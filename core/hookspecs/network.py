"""Network driver hook specs.

A *network* is a dict the core persists: ``{"id", "name", "driver", "options",
"ipam", "internal", "labels"}``.  An *endpoint* is a container's membership in a
network: ``{"id", "container_id", "network_id", "name", "aliases", "ipv4",
"mac"}`` (the core's IPAM fills ``ipv4`` before ``network_attach`` is called, for
drivers that use addresses).

Rules: ``home`` is ``<data-root>/network/<driver>``.  Hooks run in worker threads
and may block.  Raise :class:`dockyard.errors.NetworkError` naming the network or
endpoint.  Create/delete/attach/detach must be idempotent and, on failure, leave
nothing behind (no interfaces, rules or addresses).  Every hook is ``firstresult``.
"""

from . import hookspec


@hookspec(firstresult=True)
def network_supported(home, options):
    """Return ``None`` if usable here, else a one-line reason. Changes nothing."""


@hookspec(firstresult=True)
def network_init(home, options):
    """Prepare the driver (once per daemon start; idempotent)."""


@hookspec(firstresult=True)
def network_namespace(network):
    """Return how containers on ``network`` get their network namespace:
    ``"host"`` (share the host's; no isolation) or ``"private"`` (a new one, which
    the core creates and passes to :func:`network_attach`)."""


@hookspec(firstresult=True)
def network_create(network):
    """Create the kernel objects for ``network`` (bridge, rules...).

    Return a dict of driver data to persist with the network (may be empty).
    """


@hookspec(firstresult=True)
def network_delete(network):
    """Remove what :func:`network_create` made. Idempotent."""


@hookspec(firstresult=True)
def network_attach(network, endpoint, netns):
    """Connect ``endpoint`` to ``network`` inside the namespace at path ``netns``
    (``None`` for a ``"host"`` network).

    Return a dict: ``{"interface": "eth0"|None, "ipv4": "10.0.0.2/24"|None,
    "gateway": str|None, "mac": str|None, "dns": [str], "mtu": int|None}``.
    """


@hookspec(firstresult=True)
def network_detach(network, endpoint, netns):
    """Undo :func:`network_attach`. Idempotent; ``netns`` may already be gone."""


@hookspec(firstresult=True)
def network_publish(network, endpoint, ports):
    """Publish ``ports`` (list of ``{"proto", "host_ip", "host_port",
    "container_port"}``) of ``endpoint``. Optional hook; return the bound ports."""
