"""Images: :class:`~.service.ImageService` and what it stands on (see its module).

Importing this package imports none of its modules.
"""
