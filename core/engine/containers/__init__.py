"""Containers and their exec instances: :class:`~.service.ContainerService` and what
it stands on (see its module).

Importing this package imports none of its modules.
"""
