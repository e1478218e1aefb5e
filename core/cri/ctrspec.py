"""CreateContainer's request as the engine's create body (Docker's ``Config``
with its ``HostConfig``): the container joins its pod's infra container.

* command -> ``Entrypoint``, args -> ``Cmd`` (Kubernetes' rule: a command
  without args drops the image's Cmd, as Docker's entrypoint override does);
* the pod's namespaces: network and IPC ``container:<infra>`` (``host`` for a
  NODE pod), PID per ``NamespaceOption`` (POD: the infra's, CONTAINER: its
  own, NODE: the host's, TARGET: the target container's); the hostname is the
  infra's (the engine gives a ``container:`` network member its owner's);
* mounts as binds, the host path's symlinks resolved and a missing one made a
  directory (containerd's rule), propagation PRIVATE/HOST_TO_CONTAINER/
  BIDIRECTIONAL as rprivate/rslave/rshared; devices; resources; the security
  context (:mod:`.security`);
* the log: the ``cri`` log driver at the sandbox's ``log_directory`` joined
  with the container's ``log_path`` (none given: a small json-file).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from ..errors import InvalidParameter
from ..model.container import ContainerRecord
from . import ctrmeta, security
from .sandbox_config import clamp_oom_score_adj
from .api import api_pb2 as pb

log = logging.getLogger("dockyard.cri")

PROPAGATION = {pb.PROPAGATION_PRIVATE: "rprivate", pb.PROPAGATION_HOST_TO_CONTAINER: "rslave",
               pb.PROPAGATION_BIDIRECTIONAL: "rshared"}
#: the log of a container the kubelet gave no log path: enough for ``docker logs``
NO_PATH_LOG = {"Type": "json-file", "Config": {"max-size": "10m"}}


def container_name(meta: pb.ContainerMetadata, pod: dict[str, str]) -> str:
    """``k8s_<container>_<pod>_<namespace>_<pod uid>_<attempt>`` (dockershim's)."""
    return "_".join(("k8s", meta.name, pod["name"], pod["namespace"], pod["uid"], str(meta.attempt)))


def resources(res: pb.LinuxContainerResources) -> dict[str, Any]:
    """HostConfig's resource fields of ``res`` (zero: unset)."""
    out: dict[str, Any] = {}
    for field, key in (("cpu_period", "CpuPeriod"), ("cpu_quota", "CpuQuota"), ("cpu_shares", "CpuShares"),
                       ("memory_limit_in_bytes", "Memory"), ("memory_swap_limit_in_bytes", "MemorySwap"),
                       ("cpuset_cpus", "CpusetCpus"), ("cpuset_mems", "CpusetMems")):
        value = getattr(res, field)
        if value:
            out[key] = value
    if out.get("Memory") and not out.get("MemorySwap"):
        out["MemorySwap"] = out["Memory"]  # no swap, as the kubelet means it
    if res.hugepage_limits or res.unified:
        log.debug("hugepage limits and unified cgroup settings are not applied")
    return out


def binds(mounts: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """HostConfig ``Mounts`` of the CRI ``mounts``, and the mounts as given (for status)."""
    out, given = [], []
    for m in mounts:
        if not m.host_path or not m.container_path:
            raise InvalidParameter(f"mount {m.host_path!r} -> {m.container_path!r}: both paths are needed")
        if m.propagation not in PROPAGATION:
            raise InvalidParameter(f"mount {m.container_path}: unknown propagation {m.propagation}")
        source = os.path.realpath(m.host_path)  # the kubelet's symlinks resolved, as containerd does
        if not os.path.exists(source):
            os.makedirs(source, 0o755, exist_ok=True)
        out.append({"Type": "bind", "Source": source, "Target": m.container_path, "ReadOnly": bool(m.readonly),
                    "BindOptions": {"Propagation": PROPAGATION[m.propagation]}})
        given.append({"container_path": m.container_path, "host_path": m.host_path, "readonly": bool(m.readonly),
                      "propagation": int(m.propagation)})
    return out, given


def namespaces(opts: pb.NamespaceOption, infra: ContainerRecord) -> dict[str, str]:
    """NetworkMode, IpcMode and PidMode of a pod container."""
    join = f"container:{infra.id}"
    out = {"NetworkMode": "host" if opts.network == pb.NODE else join,
           "IpcMode": "host" if opts.ipc == pb.NODE else join}
    if opts.pid == pb.NODE:
        out["PidMode"] = "host"
    elif opts.pid == pb.POD:
        out["PidMode"] = join
    elif opts.pid == pb.TARGET:
        if not opts.target_id:
            raise InvalidParameter("namespace_options.pid is TARGET but target_id is empty")
        out["PidMode"] = f"container:{opts.target_id}"
    return out


def log_config(sandbox_config: pb.PodSandboxConfig, cfg: pb.ContainerConfig) -> tuple[dict[str, Any], str]:
    """The container's LogConfig and its log file ("" when the kubelet gave none)."""
    if not (sandbox_config.log_directory and cfg.log_path):
        return dict(NO_PATH_LOG), ""
    path = os.path.join(sandbox_config.log_directory, cfg.log_path)
    return {"Type": "cri", "Config": {"path": path}}, path


def pod_identity(infra: ContainerRecord, sandbox_config: pb.PodSandboxConfig) -> dict[str, str]:
    """The pod's name, namespace and uid: the infra's labels, else the request's."""
    labels = ctrmeta.labels_of(infra)
    meta = sandbox_config.metadata
    return {"name": labels.get(ctrmeta.POD_NAME) or meta.name,
            "namespace": labels.get(ctrmeta.POD_NAMESPACE) or meta.namespace,
            "uid": labels.get(ctrmeta.POD_UID) or meta.uid}


def create_body(req: pb.CreateContainerRequest, infra: ContainerRecord) -> tuple[str, dict[str, Any]]:
    """``(name, body)`` of the engine's create for ``req`` in the pod of ``infra``."""
    cfg = req.config
    if not cfg.metadata.name:
        raise InvalidParameter("the container's metadata.name is empty")
    if not cfg.image.image:
        raise InvalidParameter("the container's image is empty")
    pod = pod_identity(infra, req.sandbox_config)
    mounts, given = binds(cfg.mounts)
    logc, log_path = log_config(req.sandbox_config, cfg)
    labels = {**dict(cfg.labels), ctrmeta.POD_NAME: pod["name"], ctrmeta.POD_NAMESPACE: pod["namespace"],
              ctrmeta.POD_UID: pod["uid"], ctrmeta.CONTAINER_NAME: cfg.metadata.name,
              ctrmeta.KIND: "container", ctrmeta.SANDBOX_ID: infra.id,
              ctrmeta.METADATA: json.dumps({"name": cfg.metadata.name, "attempt": cfg.metadata.attempt}),
              ctrmeta.ANNOTATIONS: json.dumps(dict(cfg.annotations), sort_keys=True),
              ctrmeta.LABELS: json.dumps(dict(cfg.labels), sort_keys=True),
              ctrmeta.LOG_PATH: log_path, ctrmeta.IMAGE: cfg.image.image, ctrmeta.MOUNTS: json.dumps(given)}
    linux = cfg.linux
    sc = linux.security_context
    host: dict[str, Any] = {
        "Mounts": mounts or None, "LogConfig": logc, "RestartPolicy": {"Name": "no"},
        "CgroupParent": infra.host_config.get("CgroupParent") or "",
        "Devices": [{"PathOnHost": d.host_path, "PathInContainer": d.container_path,
                     "CgroupPermissions": d.permissions or "rwm"} for d in cfg.devices] or None,
        **namespaces(sc.namespace_options, infra), **resources(linux.resources),
    }
    host["OomScoreAdj"] = clamp_oom_score_adj(linux.resources.oom_score_adj)
    body: dict[str, Any] = {
        "Image": cfg.image.image, "Entrypoint": list(cfg.command) or None, "Cmd": list(cfg.args) or None,
        "WorkingDir": cfg.working_dir, "Env": [f"{kv.key}={kv.value}" for kv in cfg.envs], "Labels": labels,
        "Tty": bool(cfg.tty), "OpenStdin": bool(cfg.stdin), "StdinOnce": bool(cfg.stdin_once),
        "AttachStdin": bool(cfg.stdin), "AttachStdout": True, "AttachStderr": not cfg.tty,
    }
    security.apply(sc, body, host)
    body["HostConfig"] = host
    return container_name(cfg.metadata, pod), body
