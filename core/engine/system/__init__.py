"""The daemon as a whole: :class:`~.service.SystemService` (``/info``, ``/version``,
``system df``, ``system check``, ``/events``) and the host's facts (:mod:`.host`).

Importing this package imports none of its modules.
"""
