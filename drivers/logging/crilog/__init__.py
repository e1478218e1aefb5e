"""The ``cri`` log driver: a Kubernetes container's output in the CRI log
format at the path the kubelet chose (:mod:`.driver`, :mod:`.dockyard_log_cri`)."""
