"""Pieces of the ``devicemapper`` storage driver: the ``dmsetup``/``losetup``
wrapper (:mod:`.dmsetup`), the thin-pool (:mod:`.pool`), the driver's JSON
metadata (:mod:`.metadata`) and its options (:mod:`.options`)."""
