"""Volumes: :class:`~.service.VolumeService`, their records and drivers (one module).

Importing this package imports none of its modules.
"""
