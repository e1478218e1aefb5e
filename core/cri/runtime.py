"""The CRI's RuntimeService: Version, Status and UpdateRuntimeConfig answered
here; the pod, container and streaming RPCs handed to their parts.

A part that is not there (``None``: its module is not installed) answers its
RPCs UNIMPLEMENTED, as does what Dockyard does not do:

* ``CheckpointContainer``: the kubelet calls it only for the alpha
  ``ContainerCheckpoint`` feature's checkpoint API, and passes the error back to
  whoever asked;
* ``GetContainerEvents``: only the alpha ``EventedPLEG`` feature listens to it,
  and a kubelet falls back to relisting (the generic PLEG) when it fails;
* ``ListMetricDescriptors``/``ListPodSandboxMetrics`` (newer than v1.26): the
  base servicer's UNIMPLEMENTED; kubelets then use cAdvisor's metrics.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from .. import __version__
from ..errors import NotFound
from .api import api_pb2 as pb
from .api import api_pb2_grpc
from .config import RUNTIME_API_VERSION, RUNTIME_NAME, CriConfig
from .errors import CriError, rpc

log = logging.getLogger("dockyard.cri")

#: what Version calls the CRI API's own version (the kubelet's ``KubeRuntimeAPIVersion``)
KUBE_API_VERSION = "0.1.0"
#: the file names a CNI configuration may have (libcni's ConfFiles)
CNI_SUFFIXES = (".conf", ".conflist", ".json")

POD_RPCS = ("RunPodSandbox", "StopPodSandbox", "RemovePodSandbox", "PodSandboxStatus", "ListPodSandbox",
            "PodSandboxStats", "ListPodSandboxStats")
CONTAINER_RPCS = ("CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "ListContainers",
                  "ContainerStatus", "UpdateContainerResources", "ReopenContainerLog", "ExecSync",
                  "ContainerStats", "ListContainerStats")
STREAM_RPCS = ("Exec", "Attach", "PortForward")


class Networks(Protocol):
    def get(self, ref: str) -> Any: ...


class Engine(Protocol):
    """What the runtime's own RPCs use of :class:`dockyard.engine.engine.Engine`."""

    networks: Networks


def cni_configs(conf_dir: str) -> list[str]:
    """The CNI configuration files of ``conf_dir``, by name (the first is used)."""
    try:
        names = sorted(os.listdir(conf_dir))
    except OSError:
        return []
    return [n for n in names if n.endswith(CNI_SUFFIXES) and os.path.isfile(os.path.join(conf_dir, n))]


def _delegate(part: str, name: str) -> Callable[..., Any]:
    """A servicer method handing ``name`` to ``self.<part>``, or UNIMPLEMENTED without one."""

    def method(self: RuntimeService, request: Any, context: grpc.ServicerContext) -> Any:
        target = getattr(self, part)
        if target is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{name}: this daemon has no CRI {part} service")
        return getattr(target, name)(request, context)

    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"``{name}``: :attr:`{part}`'s."
    return method


class RuntimeService(api_pb2_grpc.RuntimeServiceServicer):
    """The ``runtime.v1.RuntimeService`` servicer; ``pods``, ``containers`` and
    ``streams`` serve their RPCs (each may be ``None``)."""

    def __init__(self, eng: Engine, cfg: CriConfig, pods: Any = None, containers: Any = None,
                 streams: Any = None) -> None:
        self.eng = eng
        self.cfg = cfg
        self.pods, self.containers, self.streams = pods, containers, streams
        self._lock = threading.Lock()
        #: the node's pod CIDR, as the kubelet last gave it (UpdateRuntimeConfig)
        self.pod_cidr = ""

    @rpc
    def Version(self, request: pb.VersionRequest, context: grpc.ServicerContext) -> pb.VersionResponse:
        return pb.VersionResponse(version=KUBE_API_VERSION, runtime_name=RUNTIME_NAME,
                                  runtime_version=__version__, runtime_api_version=RUNTIME_API_VERSION)

    def network_problem(self) -> str | None:
        """Why pods can't get a network yet, or None."""
        configs = cni_configs(self.cfg.cni_conf_dir)
        if not configs:
            return f"cni plugin not initialized: no network configuration in {self.cfg.cni_conf_dir}"
        try:
            self.eng.networks.get(self.cfg.pod_network)
        except NotFound:
            return f"the pod network {self.cfg.pod_network!r} does not exist (is the cni network driver enabled?)"
        return None

    @rpc
    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.StatusResponse:
        """RuntimeReady (the engine answers), NetworkReady (a CNI configuration and
        the pod network are there); ``verbose``: the CRI's settings as JSON."""
        problem = self.network_problem()
        conditions = [pb.RuntimeCondition(type="RuntimeReady", status=True),
                      pb.RuntimeCondition(type="NetworkReady", status=problem is None,
                                          reason="NetworkPluginNotReady" if problem else "",
                                          message=f"Network plugin returns error: {problem}" if problem else "")]
        info = {}
        if request.verbose:
            configs = cni_configs(self.cfg.cni_conf_dir)
            info = {
                "config": json.dumps({"socket": self.cfg.socket, "cniConfDir": self.cfg.cni_conf_dir,
                                      "cniBinDir": self.cfg.cni_bin_dir, "streamAddress": self.cfg.stream_address,
                                      "podNetwork": self.cfg.pod_network, "sandboxImage": self.cfg.pause_image,
                                      "podCIDR": self.pod_cidr}),
                "cniconfig": json.dumps({"confDir": self.cfg.cni_conf_dir, "binDir": self.cfg.cni_bin_dir,
                                         "files": configs, "used": configs[0] if configs else None}),
                "lastCNILoadStatus": problem or "OK",
                "runtime": json.dumps({"name": RUNTIME_NAME, "version": __version__,
                                       "parts": {p: getattr(self, p) is not None
                                                 for p in ("pods", "containers", "streams")}}),
            }
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions), info=info)

    @rpc
    def UpdateRuntimeConfig(self, request: pb.UpdateRuntimeConfigRequest,
                            context: grpc.ServicerContext) -> pb.UpdateRuntimeConfigResponse:
        """The kubelet's pod CIDR: kept (Status shows it); the CNI configuration's
        own IPAM ranges are what pods get."""
        cidr = request.runtime_config.network_config.pod_cidr
        with self._lock:
            if cidr and cidr != self.pod_cidr:
                log.info("CRI: the node's pod CIDR is %s", cidr)
                self.pod_cidr = cidr
        return pb.UpdateRuntimeConfigResponse()

    @rpc
    def CheckpointContainer(self, request: pb.CheckpointContainerRequest,
                            context: grpc.ServicerContext) -> pb.CheckpointContainerResponse:
        raise CriError(grpc.StatusCode.UNIMPLEMENTED, "CheckpointContainer: Dockyard does not checkpoint containers")

    def GetContainerEvents(self, request: pb.GetEventsRequest, context: grpc.ServicerContext) -> Any:
        """A streaming RPC: UNIMPLEMENTED (the kubelet then relists instead)."""
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "GetContainerEvents: Dockyard sends no container events; "
                                                     "the kubelet's generic PLEG relists instead")


for _part, _names in (("pods", POD_RPCS), ("containers", CONTAINER_RPCS), ("streams", STREAM_RPCS)):
    for _name in _names:
        setattr(RuntimeService, _name, _delegate(_part, _name))
