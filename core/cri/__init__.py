"""The Kubernetes CRI (``runtime.v1``): a second front end of the engine, beside
the Docker API, serving a kubelet's RuntimeService and ImageService over gRPC on
a unix socket (``dockyard daemon --cri-socket``, default ``/run/dockyard/cri.sock``).

    config      CriConfig: the socket, CNI, streaming and pod defaults
    errors      the engine's errors as gRPC status codes (:func:`rpc`)
    server      the gRPC server and its lifetime beside the Docker API
    runtime     RuntimeService: dispatches to pods, containers and streaming
    images      ImageService over the engine's image store and registry client
    pods        pod sandboxes: an infra container holding the pod's namespaces
    containers  the pod's containers, their security context, status and stats
    streaming   the streaming server of Exec, Attach and PortForward
    api/        protoc's stubs of api.proto (scripts/gen_cri_stubs.py)

See docs/kubernetes.md.
"""
