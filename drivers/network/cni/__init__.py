"""The ``cni`` network driver (entry point ``cni``): a network whose endpoints
are made by standard CNI plugins (bridge, host-local, loopback, portmap...), as
Kubernetes' runtimes do for pods.  See :mod:`.driver`."""
