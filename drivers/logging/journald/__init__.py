"""The ``journald`` log driver: entries sent to systemd's journal over its native
protocol (:mod:`.driver`; the shim's half: ``dockyard_log_journald``)."""
