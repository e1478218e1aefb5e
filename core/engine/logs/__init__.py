"""Log drivers of containers (``--log-driver``, ``--log-opt``): :mod:`.service`."""
