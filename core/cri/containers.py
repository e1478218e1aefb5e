"""The CRI's container RPCs: a pod's containers are engine containers joining
their pod's infra container (:mod:`.ctrspec` builds the create), read back
from their records (:mod:`.ctrmeta`), their usage from the engine's stats
(:mod:`.cristats`).

The kubelet's lifecycle is stricter than Docker's, and followed here as
containerd follows it: a container starts once (StartContainer of one that is
not CREATED is refused), StopContainer of a stopped one and RemoveContainer of
a missing one succeed, and ExecSync's timeout ends the command with
DEADLINE_EXCEEDED (the kubelet's probe timeout).  Docker clients see the same
containers (``docker ps``) but cannot remove one without ``-f``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from typing import Any, Protocol

import grpc

from ..engine.containers.service import NotModified
from ..errors import Conflict, ExecError, NotFound
from ..model.container import ContainerRecord
from . import ctrmeta, ctrspec
from .api import api_pb2 as pb
from .config import CriConfig
from .cristats import Stats
from .errors import CriError, rpc

log = logging.getLogger("dockyard.cri")

#: most bytes of an ExecSync's output kept per stream (containerd's limit)
EXEC_OUTPUT_LIMIT = 16 << 20
#: how long a timed-out exec is given to be seen dead once killed
KILL_GRACE = 5.0


class Pods(Protocol):
    def sandbox(self, pod_id: str) -> ContainerRecord: ...


class ContainerService:
    """The container half of ``runtime.v1.RuntimeService`` on engine ``eng``;
    ``pods`` gives the infra container of a pod."""

    def __init__(self, eng: Any, cfg: CriConfig, pods: Pods) -> None:
        self.eng, self.cfg, self.pods = eng, cfg, pods
        self.containers = eng.containers
        self.stats = Stats(eng.containers, eng.data_root)

    # --- records ----------------------------------------------------------------------
    def record(self, ref: str) -> ContainerRecord:
        """The record of CRI container ``ref`` (its id or a unique prefix of it)."""
        if not ref:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "the container id is empty")
        try:
            rec = self.containers.get(self.containers.resolve(ref))
        except NotFound:
            raise NotFound(f"container {ref!r} not found") from None
        if not ctrmeta.is_container(rec) or not rec.id.startswith(ref):
            raise NotFound(f"container {ref!r} not found (not a CRI container)")
        return rec

    def _all(self) -> list[ContainerRecord]:
        return [r for r in self.containers.all() if ctrmeta.is_container(r)]

    # --- lifecycle --------------------------------------------------------------------
    @rpc
    def CreateContainer(self, request: pb.CreateContainerRequest, context: Any) -> pb.CreateContainerResponse:
        infra = self.pods.sandbox(request.pod_sandbox_id)
        name, body = ctrspec.create_body(request, infra)
        cid = self.containers.create(body, name)
        return pb.CreateContainerResponse(container_id=cid)

    @rpc
    def StartContainer(self, request: pb.StartContainerRequest, context: Any) -> pb.StartContainerResponse:
        rec = self.record(request.container_id)
        if ctrmeta.state(rec) != pb.CONTAINER_CREATED:
            raise Conflict(f"container {rec.id} is in state {pb.ContainerState.Name(ctrmeta.state(rec))}: "
                           "only a created container starts")
        self.containers.start(rec.id)
        return pb.StartContainerResponse()

    @rpc
    def StopContainer(self, request: pb.StopContainerRequest, context: Any) -> pb.StopContainerResponse:
        rec = self.record(request.container_id)
        if rec.state.running or rec.state.restarting:
            try:
                self.containers.stop(rec.id, max(int(request.timeout), 0))
            except NotModified:  # it ended meanwhile
                pass
        return pb.StopContainerResponse()

    @rpc
    def RemoveContainer(self, request: pb.RemoveContainerRequest, context: Any) -> pb.RemoveContainerResponse:
        try:
            rec = self.record(request.container_id)
        except NotFound:
            return pb.RemoveContainerResponse()  # removed already: the kubelet retries removals
        self.containers.remove(rec.id, force=True, volumes=True)
        self.stats.forget(rec.id)
        return pb.RemoveContainerResponse()

    # --- queries ------------------------------------------------------------------------
    @rpc
    def ListContainers(self, request: pb.ListContainersRequest, context: Any) -> pb.ListContainersResponse:
        f = request.filter
        out = []
        for rec in self._all():
            if not ctrmeta.matches(rec, f.id, f.pod_sandbox_id, dict(f.label_selector)):
                continue
            if f.HasField("state") and ctrmeta.state(rec) != f.state.state:
                continue
            out.append(ctrmeta.summary(rec))
        return pb.ListContainersResponse(containers=out)

    @rpc
    def ContainerStatus(self, request: pb.ContainerStatusRequest, context: Any) -> pb.ContainerStatusResponse:
        rec = self.record(request.container_id)
        info = {}
        if request.verbose:
            info["info"] = json.dumps({
                "sandboxID": ctrmeta.sandbox_id(rec), "pid": rec.state.pid, "name": rec.name,
                "image": rec.image_id, "logPath": ctrmeta.labels_of(rec).get(ctrmeta.LOG_PATH, ""),
                "config": {"command": rec.command, "env": rec.config.get("Env") or [],
                           "workingDir": rec.config.get("WorkingDir") or "", "user": rec.config.get("User") or ""},
                "hostConfig": rec.host_config, "runtimeType": "dockyard"}, sort_keys=True)
        return pb.ContainerStatusResponse(status=ctrmeta.status(rec), info=info)

    # --- changes to a running one -------------------------------------------------------
    @rpc
    def UpdateContainerResources(self, request: pb.UpdateContainerResourcesRequest,
                                 context: Any) -> pb.UpdateContainerResourcesResponse:
        rec = self.record(request.container_id)
        body = ctrspec.resources(request.linux)
        if body:
            self.containers.update(rec.id, body)
        return pb.UpdateContainerResourcesResponse()

    @rpc
    def ReopenContainerLog(self, request: pb.ReopenContainerLogRequest,
                           context: Any) -> pb.ReopenContainerLogResponse:
        """The kubelet renamed the log file: make a new one at its path, which the
        container's log writer follows from its next line on."""
        rec = self.record(request.container_id)
        if not rec.state.running:
            raise Conflict(f"container {rec.id} is not running")
        if not ctrmeta.labels_of(rec).get(ctrmeta.LOG_PATH):
            raise Conflict(f"container {rec.id} has no log path")
        self.eng.logs.reopen(rec)
        return pb.ReopenContainerLogResponse()

    @rpc
    def ExecSync(self, request: pb.ExecSyncRequest, context: Any) -> pb.ExecSyncResponse:
        rec = self.record(request.container_id)
        if not request.cmd:
            raise CriError(grpc.StatusCode.INVALID_ARGUMENT, "ExecSync: the command is empty")
        code, out, err = self.exec_sync(rec.id, list(request.cmd), request.timeout)
        return pb.ExecSyncResponse(stdout=out, stderr=err, exit_code=code)

    def exec_sync(self, cid: str, cmd: list[str], timeout: int) -> tuple[int, bytes, bytes]:
        """Run ``cmd`` in the container through the engine's exec instances;
        ``(exit code, stdout, stderr)``.  A command that outlives ``timeout``
        seconds (0: none) is killed and DEADLINE_EXCEEDED raised."""
        eid = self.containers.exec_create(cid, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        try:
            inst = self.containers.exec_start(eid)
        except ExecError as exc:  # the command could not run (not found, not executable)
            return exc.exit_code or 126, b"", (str(exc) + "\n").encode()
        try:
            if not inst["_done"].wait(timeout if timeout > 0 else None):
                if inst.get("Pid"):
                    try:
                        os.kill(inst["Pid"], signal.SIGKILL)
                    except OSError:
                        pass
                inst["_done"].wait(KILL_GRACE)
                raise CriError(grpc.StatusCode.DEADLINE_EXCEEDED,
                               f"command {cmd!r} timed out after {timeout}s")
            out, err = read_exec_output(inst["_log"])
            return int(inst["ExitCode"] or 0), out, err
        finally:
            self.containers.exec_finished(inst)

    # --- usage ----------------------------------------------------------------------------
    @rpc
    def ContainerStats(self, request: pb.ContainerStatsRequest, context: Any) -> pb.ContainerStatsResponse:
        return pb.ContainerStatsResponse(stats=self.stats.of(self.record(request.container_id)))

    @rpc
    def ListContainerStats(self, request: pb.ListContainerStatsRequest,
                           context: Any) -> pb.ListContainerStatsResponse:
        f = request.filter
        out = []
        for rec in self._all():
            if not rec.state.running or not ctrmeta.matches(rec, f.id, f.pod_sandbox_id, dict(f.label_selector)):
                continue
            try:
                out.append(self.stats.of(rec))
            except NotFound:  # removed meanwhile
                continue
        return pb.ListContainerStatsResponse(stats=out)


def read_exec_output(path: str) -> tuple[bytes, bytes]:
    """The stdout and stderr of an exec, from its log (json-file lines)."""
    streams = {"stdout": bytearray(), "stderr": bytearray()}
    try:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                buf = streams.get(entry.get("stream"))
                if buf is not None and len(buf) < EXEC_OUTPUT_LIMIT:
                    buf += entry.get("log", "").encode("utf-8", "surrogateescape")
    except FileNotFoundError:
        pass
    return bytes(streams["stdout"][:EXEC_OUTPUT_LIMIT]), bytes(streams["stderr"][:EXEC_OUTPUT_LIMIT])
