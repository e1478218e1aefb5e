"""The CRI's gRPC server beside the Docker API: one socket, its own threads.

``dockyard daemon`` starts a :class:`CriServer` once the engine has restored
what the last daemon left, before the Docker API answers, and stops it at
shutdown.  gRPC serves from a pool of its own threads (``grpc.server`` with a
``ThreadPoolExecutor``), so a kubelet's calls never block the daemon's asyncio
loop; each RPC calls the engine's services, which are thread-safe.

The socket (default ``/run/dockyard/cri.sock``) is ``0660 root:root``: a kubelet
runs as root, and whoever can connect runs pods, which is being root.  Its
directory is made ``0755`` when missing.  A socket file left by a daemon that is
gone is replaced; one that answers belongs to another runtime, and start-up is
refused (:class:`~dockyard.errors.ConfigError`).

The parts (pods, containers, streaming) are imported here and given what they
share: the engine and the :class:`~.config.CriConfig`.  A part whose module is
not installed is left out, its RPCs then answering UNIMPLEMENTED.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import stat
from concurrent import futures
from typing import Any

import grpc

from ..errors import ConfigError, DockyardError, NotFound
from .api import api_pb2_grpc
from .config import CriConfig
from .images import ImageService
from .runtime import RuntimeService

log = logging.getLogger("dockyard.cri")

#: threads serving RPCs at once (a kubelet makes a few calls at a time; pulls and
#: stops take a thread each while they last)
WORKERS = 16
#: a kubelet's own limit on a message (ListContainers of a big node)
MAX_MESSAGE = 16 << 20


def answers(path: str) -> bool:
    """Whether a process accepts connections on the unix socket at ``path``."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    s.settimeout(2)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def check_socket(path: str) -> None:
    """Refuse a ``path`` that another process serves, or that is not a socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ConfigError(f"--cri-socket {path}: exists and is not a socket")
    if answers(path):
        raise ConfigError(f"--cri-socket {path}: another process is serving on it (containerd? another daemon?): "
                          "stop it, or give this daemon another --cri-socket, or --no-cri")


def _part(module: str, cls: str, *args: Any) -> Any:
    """``dockyard.cri.<module>.<cls>(*args)``, or None when that module (or its
    class) is not there; an error inside the module is raised."""
    name = f"{__package__}.{module}"
    try:
        factory = getattr(importlib.import_module(name), cls)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        factory = None
    except AttributeError:
        factory = None
    if factory is None:
        log.warning("CRI: %s.%s is not installed: its RPCs answer UNIMPLEMENTED", name, cls)
        return None
    return factory(*args)


class CriServer:
    """The gRPC server of ``runtime.v1`` on ``cfg.socket``, over ``eng``."""

    def __init__(self, eng: Any, cfg: CriConfig) -> None:
        self.eng = eng
        self.cfg = cfg
        self.server: grpc.Server | None = None
        self.streams: Any = None
        self.runtime: RuntimeService | None = None
        self._inode: tuple[int, int] | None = None

    def start(self) -> None:
        """Bind the socket and serve; blocking work, for a thread of the daemon's
        (the engine's parts are made here, the pod network too)."""
        path = self.cfg.socket
        check_socket(path)
        os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
        os.makedirs(self.cfg.root, mode=0o700, exist_ok=True)
        ensure_pod_network(self.eng, self.cfg)
        pods = _part("pods", "PodService", self.eng, self.cfg)
        containers = _part("containers", "ContainerService", self.eng, self.cfg, pods) if pods else None
        streams = _part("streaming", "StreamServer", self.eng, self.cfg, pods) if pods else None
        images = ImageService(self.eng, self.cfg)
        self.runtime = RuntimeService(self.eng, self.cfg, pods, containers, streams)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="cri"),
                             options=[("grpc.max_receive_message_length", MAX_MESSAGE),
                                      ("grpc.max_send_message_length", MAX_MESSAGE)])
        api_pb2_grpc.add_RuntimeServiceServicer_to_server(self.runtime, server)
        api_pb2_grpc.add_ImageServiceServicer_to_server(images, server)
        if os.path.lexists(path):
            os.unlink(path)  # stale: check_socket found nobody answering
        # the file is made with the umask's mode (0755 under the daemon's 022: no one
        # but root may connect), then narrowed before the server answers anyone
        try:
            server.add_insecure_port(f"unix://{path}")
        except RuntimeError as exc:
            raise ConfigError(f"--cri-socket {path}: could not bind: {exc}") from None
        os.chown(path, 0, 0)
        os.chmod(path, 0o660)
        st = os.stat(path)
        self._inode = (st.st_dev, st.st_ino)
        if streams is not None:
            streams.start()
        self.streams = streams
        server.start()
        self.server = server
        log.info("CRI (runtime.v1) serving on %s", path)

    def stop(self, grace: float | None = 2.0) -> None:
        """Stop answering: calls in progress get ``grace`` seconds; then the
        streaming server stops and the socket, if still ours, goes."""
        if self.server is not None:
            self.server.stop(grace).wait()
            self.server = None
        if self.streams is not None:
            try:
                self.streams.stop()
            except Exception:  # shutting down: report, and go on
                log.exception("CRI: the streaming server did not stop cleanly")
            self.streams = None
        try:
            st = os.stat(self.cfg.socket)
            if (st.st_dev, st.st_ino) == self._inode:
                os.unlink(self.cfg.socket)
        except OSError:
            pass


def ensure_pod_network(eng: Any, cfg: CriConfig) -> None:
    """The Docker network ``cfg.pod_network`` (driver ``cni``) the pods join, made
    if missing; skipped, with a log line, when the daemon has no ``cni`` driver."""
    if "cni" not in eng.networks.drivers:
        log.warning("CRI: no cni network driver is enabled: pods get no network (%s is not made)", cfg.pod_network)
        return
    try:
        eng.networks.get(cfg.pod_network)
        return
    except NotFound:
        pass
    # the driver reads the configuration directory itself (--cni-conf-dir reaches it as an option)
    body = {"Name": cfg.pod_network, "Driver": "cni", "CheckDuplicate": True,
            "Labels": {"io.dockyard.cri": "pod-network"}}
    try:
        eng.networks.create(body)
        log.info("CRI: made the pod network %s (driver cni, configuration from %s)", cfg.pod_network,
                 cfg.cni_conf_dir)
    except DockyardError as exc:  # Status then says why NetworkReady is false
        log.error("CRI: could not make the pod network %s: %s", cfg.pod_network, exc)
