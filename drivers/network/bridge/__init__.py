"""The ``bridge`` network driver (entry point ``bridge``): Linux bridges, veth
pairs and nftables, with Docker's bridge-driver semantics.  See :mod:`.driver`."""
