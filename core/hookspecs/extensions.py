"""Extension hook specs (entry-point group ``dockyard.plugins``).

An extension is an object with :data:`dockyard.hookspecs.hookimpl` methods.  It may
implement these lifecycle hooks, and it may also *wrap* any driver hook
(``@hookimpl(wrapper=True)`` on a method named like the driver spec, e.g.
``storage_mount``) to observe, time or veto driver calls; the core registers it in
every driver slot whose hooks it names (``storage_*``, ``exec_*``, ``network_*``).

Lifecycle hooks are called in worker threads after the event has happened; they
must return quickly and must not raise (an exception is logged and ignored).
"""

from __future__ import annotations

from . import hookspec


@hookspec
def dockyard_container_event(container_id: str, action: str, attributes: dict[str, str]) -> None:
    """A container changed: ``action`` is one of ``create``, ``start``, ``die``,
    ``kill``, ``stop``, ``destroy``, ``rename``; ``attributes`` a dict of strings
    (``name``, ``image``, ``exitCode`` ...) as in Docker's events."""


@hookspec
def dockyard_image_event(image_id: str, action: str, attributes: dict[str, str]) -> None:
    """An image changed: ``action`` is one of ``import``, ``tag``, ``untag``,
    ``delete``, ``pull``, ``push``; ``attributes`` a dict of strings."""
