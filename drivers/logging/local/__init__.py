"""The ``local`` log driver: a compact binary file per container, rotated and
compressed by default (:mod:`.driver`; the shim's half: ``dockyard_log_local``)."""
