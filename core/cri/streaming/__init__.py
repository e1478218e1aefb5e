"""The CRI's streaming server: Exec, Attach and PortForward answer with a URL of
it, and kubelet clients (``kubectl exec``, ``crictl``, critest) connect there.

    server         StreamServer: the RPCs, single-use tokens, the HTTP server (its own threads)
    spdy           SPDY/3.1 frames and a served connection (what client-go speaks)
    websocket      RFC 6455 and Kubernetes' channel subprotocols
    remotecommand  the streams of an exec or attach, their negotiation and final status
    execattach     exec and attach run by the engine's container service
    portforward    portforward.k8s.io: connections into the pod's network namespace
"""

from .server import StreamServer

__all__ = ["StreamServer"]
