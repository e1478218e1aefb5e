"""Pod sandboxes: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
ListPodSandbox and the pods' stats.

**A sandbox is an infra process, not a pinned set of namespaces.**  Each pod is
one engine container (dockershim's and podman's infra container): the pause
image (:mod:`.pause`, ``catatonit -P``, which also reaps the zombies of a shared
PID namespace) started with the pod's hostname, DNS, port mappings, sysctls,
cgroup parent and security context (:mod:`.sandbox_config`).  While it runs it
holds the pod's network, IPC and UTS namespaces (and its PID namespace, for
``NamespaceOption.pid == POD``); the pod's containers join them
(``container:<sandbox id>``), so the network the engine set up for it (the
``cni`` network ``cfg.pod_network``, or the host's for a NODE network) is the
pod's.  The sandbox id is the infra container's id; the sandbox is READY while
the infra runs and NOTREADY once it stopped, and its namespaces go with it
(nothing is pinned in a file), so a stopped pod has no network left to leak.
We chose the process over pinned namespaces because the engine already makes,
tears down and recovers containers' namespaces, networks and cgroups after a
daemon restart; pinning would have duplicated all of it.  The cost is one idle
catatonit (a few hundred kB) per pod.

Everything goes through the engine's container facade, so ``docker ps`` shows
the infra containers (``k8s_POD_<name>_<namespace>_<uid>_<attempt>``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc

from ..engine.containers.service import NotModified
from ..errors import Conflict, DockyardError, InvalidParameter, NotFound
from ..model.container import ContainerRecord
from . import pause, sandbox_status as st
from .api import api_pb2 as pb
from .config import CriConfig
from .errors import CriError, rpc
from .sandbox_config import (KIND_SANDBOX, LABEL_KIND, LABEL_SANDBOX_ID, create_body, resolv_conf,
                             sandbox_name)

log = logging.getLogger("dockyard.cri")
#: runtime handlers (a RuntimeClass's handler) a pod may name besides the exec driver's
#: own name: the default (``""``) and ``runc``, the name clients take for it (as /info's)
HANDLERS = ("", "runc")


class PodService:
    """The pod sandboxes of engine ``eng`` (its container and image facades)."""

    def __init__(self, eng: Any, cfg: CriConfig) -> None:
        self._containers = eng.containers
        self._images = eng.images
        self._networks = eng.networks
        self._cfg = cfg
        self._driver = eng.exec_slot.name
        self._sampler = st.Sampler()

    # --- helpers of the other CRI parts -----------------------------------------------------
    def sandbox(self, pod_id: str) -> ContainerRecord:
        """The infra container of sandbox ``pod_id`` (an id or a unique prefix of one)."""
        if pod_id:
            try:
                cid = self._containers.resolve(pod_id)
            except NotFound:
                cid = ""
            if cid.startswith(pod_id):
                rec = self._containers.get(cid)
                if (rec.config.get("Labels") or {}).get(LABEL_KIND) == KIND_SANDBOX:
                    return rec
        raise NotFound(f"pod sandbox {pod_id!r} not found")

    def netns_path(self, pod_id: str) -> str | None:
        """The path of the pod's network namespace; None for a pod on the host's network."""
        rec = self.sandbox(pod_id)
        if rec.network_mode == "host":
            return None
        if not rec.state.running:
            raise Conflict(f"pod sandbox {rec.id} is not ready: it has no network namespace")
        return rec.network_settings.sandbox_key or f"/proc/{rec.state.pid}/ns/net"

    def _find(self, pod_id: str) -> ContainerRecord | None:
        try:
            return self.sandbox(pod_id)
        except NotFound:
            return None

    def _members(self, pod_id: str) -> list[str]:
        """The ids of the pod's containers (not its infra)."""
        listed = self._containers.summaries(show_all=True, filters={"label": [f"{LABEL_SANDBOX_ID}={pod_id}"]})
        return [item.summary.id for item in listed]

    # --- RPCs --------------------------------------------------------------------------------
    @rpc
    def RunPodSandbox(self, request: pb.RunPodSandboxRequest, context: Any) -> pb.RunPodSandboxResponse:
        config = request.config
        if request.runtime_handler not in (*HANDLERS, self._driver):
            raise InvalidParameter(f"no runtime for {request.runtime_handler!r} is configured (the daemon's exec "
                                   f"driver is {self._driver!r})")
        body = create_body(config, self._cfg.pause_image, self._cfg.pod_network, request.runtime_handler)
        if body["HostConfig"]["NetworkMode"] != "host":
            self._check_network()
        pause.ensure(self._images, self._cfg.pause_image)
        cid = self._containers.create(body, sandbox_name(config.metadata))
        try:
            self._containers.start(cid)
            text = resolv_conf(config.dns_config)
            if text is not None:  # exactly the kubelet's servers, whatever the network's DNS would be
                _rewrite(self._containers.get(cid).resolv_conf_path, text)
        except BaseException:
            try:
                self._containers.remove(cid, force=True, volumes=True)
            except DockyardError as exc:
                log.warning("CRI: removing the sandbox %s that failed to start: %s", cid, exc)
            raise
        return pb.RunPodSandboxResponse(pod_sandbox_id=cid)

    def _check_network(self) -> None:
        """A pod that is not on the host's network needs the pod network (as
        containerd's fails without a CNI configuration): refused with the reason."""
        try:
            self._networks.get(self._cfg.pod_network)
        except NotFound:
            raise CriError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"the pod network {self._cfg.pod_network!r} does not exist: the daemon has no cni network "
                           "driver enabled, or could not make the network (see its log)") from None

    @rpc
    def StopPodSandbox(self, request: pb.StopPodSandboxRequest, context: Any) -> pb.StopPodSandboxResponse:
        """The pod's containers are killed, then its infra, whose end takes the pod's
        network down.  A stopped or missing pod is no error (the CRI's idempotence)."""
        rec = self._find(request.pod_sandbox_id)
        if rec is not None:
            for cid in [*self._members(rec.id), rec.id]:
                self._stop(cid)
        return pb.StopPodSandboxResponse()

    def _stop(self, cid: str) -> None:
        try:
            self._containers.stop(cid, timeout=0)
        except (NotFound, NotModified):  # gone, or not running
            pass

    @rpc
    def RemovePodSandbox(self, request: pb.RemovePodSandboxRequest, context: Any) -> pb.RemovePodSandboxResponse:
        """The pod's containers and its infra, running or not; a missing pod is no error."""
        rec = self._find(request.pod_sandbox_id)
        if rec is not None:
            ids = [*self._members(rec.id), rec.id]
            for cid in ids:
                try:
                    self._containers.remove(cid, force=True, volumes=True)
                except NotFound:
                    pass
            self._sampler.forget(ids)
        return pb.RemovePodSandboxResponse()

    @rpc
    def PodSandboxStatus(self, request: pb.PodSandboxStatusRequest, context: Any) -> pb.PodSandboxStatusResponse:
        rec = self.sandbox(request.pod_sandbox_id)
        info = {}
        if request.verbose:
            netns = None if rec.network_mode == "host" or not rec.state.running else \
                (rec.network_settings.sandbox_key or f"/proc/{rec.state.pid}/ns/net")
            info = st.verbose_info(rec, netns)
        return pb.PodSandboxStatusResponse(status=st.status(rec), info=info, timestamp=st.now_ns())

    @rpc
    def ListPodSandbox(self, request: pb.ListPodSandboxRequest, context: Any) -> pb.ListPodSandboxResponse:
        return pb.ListPodSandboxResponse(items=[item for item, _ in self._listed(request.filter)])

    def _listed(self, flt: Any) -> list[tuple[pb.PodSandbox, bool]]:
        """The sandboxes that ``flt`` (a PodSandboxFilter or PodSandboxStatsFilter) selects,
        with whether each runs: by id prefix, state and the request's own labels."""
        listed = self._containers.summaries(show_all=True, filters={"label": [f"{LABEL_KIND}={KIND_SANDBOX}"]})
        want_state = flt.state.state if "state" in flt.DESCRIPTOR.fields_by_name and flt.HasField("state") else None
        selector = dict(flt.label_selector)
        out = []
        for item in listed:
            s = item.summary
            if flt.id and not s.id.startswith(flt.id):
                continue
            running = s.state.running
            if want_state is not None and st.state(running) != want_state:
                continue
            labels = json.loads(self._containers.labels_json(item))
            if labels.get(LABEL_KIND) != KIND_SANDBOX:
                continue
            pod = st.pod_sandbox(s.id, labels, s.created, running)
            if any(pod.labels.get(k) != v for k, v in selector.items()):
                continue
            out.append((pod, running))
        return out

    # --- stats ---------------------------------------------------------------------------------
    @rpc
    def PodSandboxStats(self, request: pb.PodSandboxStatsRequest, context: Any) -> pb.PodSandboxStatsResponse:
        rec = self.sandbox(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self._stats(rec))

    @rpc
    def ListPodSandboxStats(self, request: pb.ListPodSandboxStatsRequest,
                            context: Any) -> pb.ListPodSandboxStatsResponse:
        out = []
        for pod, running in self._listed(request.filter):
            if not running:
                continue
            try:
                out.append(self._stats(self._containers.get(pod.id)))
            except NotFound:  # removed meanwhile
                continue
        return pb.ListPodSandboxStatsResponse(stats=out)

    def _stats(self, rec: ContainerRecord) -> pb.PodSandboxStats:
        """The infra's and its containers' engine samples: the pod's CPU, memory and
        processes are their sums, its network the infra's namespace's."""
        labels = rec.config.get("Labels") or {}
        mine, notes = st.own(labels)
        attrs = pb.PodSandboxAttributes(id=rec.id, metadata=st.metadata(labels), labels=mine, annotations=notes)
        if not rec.state.running:
            return pb.PodSandboxStats(attributes=attrs)
        now = st.now_ns()
        infra = self._containers.stats(rec.id)
        samples, containers = [infra], []
        for cid in self._members(rec.id):
            try:
                crec = self._containers.get(cid)
            except NotFound:
                continue
            if not crec.state.running:
                continue
            sample = self._containers.stats(cid)
            samples.append(sample)
            containers.append(pb.ContainerStats(
                attributes=st.container_attributes(cid, crec.config.get("Labels") or {}),
                cpu=self._sampler.cpu(cid, [sample], now), memory=st.Sampler.memory([sample], now)))
        linux = pb.LinuxPodSandboxStats(cpu=self._sampler.cpu(rec.id, samples, now),
                                        memory=st.Sampler.memory(samples, now), network=st.network(infra, now),
                                        process=st.processes(samples, now), containers=containers)
        return pb.PodSandboxStats(attributes=attrs, linux=linux)


def _rewrite(path: str, text: str) -> None:
    """Replace the file at ``path`` in place: it is bound into the infra (and, through
    it, into the pod's containers), so its inode must stay."""
    with open(path, "r+") as fh:
        fh.write(text)
        fh.truncate()
