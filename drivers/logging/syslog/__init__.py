"""The ``syslog`` log driver: each line a syslog message (:mod:`.driver`; the
shim's half: ``dockyard_log_syslog``)."""
