"""A ``PodSandboxConfig`` as the engine's create request of the pod's infra container.

The sandbox is an engine container (see :mod:`.pods`), so everything the kubelet
asks of a pod is said in the Docker API's terms the engine already checks and
applies, and ``docker inspect`` shows it:

    hostname, DNS      ``Hostname``; ``Dns``/``DnsSearch``/``DnsOptions`` (and the
                       resolv.conf :func:`resolv_conf` writes after the start)
    port mappings      ``ExposedPorts`` + ``PortBindings`` (host port 0: exposed only)
    namespaces         ``NetworkMode`` the pod network or ``host``; ``IpcMode``
                       ``shareable`` (containers join it) or ``host``; ``PidMode``
                       ``host`` for NODE; ``UTSMode`` ``host`` with a host network
    sysctls            ``Sysctls`` (the engine refuses those of a host namespace)
    cgroup parent      ``CgroupParent``, a systemd slice name expanded to its path
    security context   ``Privileged``, ``ReadonlyRootfs``, ``User``, ``GroupAdd``,
                       ``SecurityOpt seccomp=``
    oom_score_adj      containerd's -998 for sandboxes, clamped (:func:`clamp_oom_score_adj`)

``overhead`` and ``resources`` are accepted and not applied to the infra
process: the kubelet sizes the pod's cgroup (the cgroup parent) itself.
Labels carry what the CRI gives back later (:data:`LABEL_METADATA`, ...).
"""

from __future__ import annotations

import json
import logging
import re
import socket
from typing import Any

from ..errors import InvalidParameter
from .api import api_pb2 as pb

log = logging.getLogger("dockyard.cri")

LABEL_KIND = "io.dockyard.cri.kind"
LABEL_SANDBOX_ID = "io.dockyard.cri.sandbox-id"
LABEL_METADATA = "io.dockyard.cri.metadata"
LABEL_ANNOTATIONS = "io.dockyard.cri.annotations"
LABEL_LABELS = "io.dockyard.cri.labels"
LABEL_LOG_DIRECTORY = "io.dockyard.cri.log-directory"
LABEL_NAMESPACES = "io.dockyard.cri.namespaces"
LABEL_RUNTIME_HANDLER = "io.dockyard.cri.runtime-handler"
KIND_SANDBOX = "sandbox"
#: what containerd gives a sandbox (its ``defaultSandboxOOMAdj``)
SANDBOX_OOM_SCORE_ADJ = -998
PROTOCOLS = {pb.TCP: "tcp", pb.UDP: "udp", pb.SCTP: "sctp"}
_NAME_BAD = re.compile(r"[^a-zA-Z0-9_.-]")
_warned_oom = False


def sandbox_name(md: Any) -> str:
    """``k8s_POD_<name>_<namespace>_<uid>_<attempt>`` (dockershim's), with what an
    engine name cannot hold replaced by ``-``."""
    parts = ["k8s", "POD", md.name, md.namespace, md.uid, str(md.attempt)]
    return "_".join(_NAME_BAD.sub("-", p) for p in parts)


def _own_oom_score_adj() -> int:
    try:
        with open("/proc/self/oom_score_adj") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 0


def _may_lower_oom_score_adj() -> bool:
    """CAP_SYS_RESOURCE (bit 24) in the daemon's effective set: it may go below its own."""
    try:
        with open("/proc/self/status") as fh:
            eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    except (OSError, StopIteration, ValueError):
        return False
    return bool(eff >> 24 & 1)


def clamp_oom_score_adj(value: int) -> int:
    """``value``, or the daemon's own oom_score_adj when ``value`` is lower and the
    daemon may not lower it (no CAP_SYS_RESOURCE: the kernel would refuse the
    container's start).  containerd's ``restrict_oom_score_adj``; said once in the log."""
    global _warned_oom
    own = _own_oom_score_adj()
    if value >= own or _may_lower_oom_score_adj():
        return value
    if not _warned_oom:
        _warned_oom = True
        log.warning("CRI: oom_score_adj below the daemon's own (%d) is raised to it: the daemon lacks "
                    "CAP_SYS_RESOURCE (as containerd's restrict_oom_score_adj)", own)
    return own


def cgroup_parent(value: str) -> str:
    """The kubelet's cgroup parent as the engine's ``CgroupParent`` path: a cgroupfs
    path as it is; a systemd slice name (``kubepods-burstable-pod1.slice``, the
    kubelet's systemd driver) expanded as systemd nests it
    (``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice``)."""
    if not value.endswith(".slice") or "/" in value:
        return value
    name = value[:-len(".slice")]
    if name == "-":
        return "/"
    path, prefix = "", ""
    for part in name.split("-"):
        if not part:
            raise InvalidParameter(f"invalid cgroup parent {value!r}: not a systemd slice name")
        path += f"/{prefix}{part}.slice"
        prefix += part + "-"
    return path


def seccomp_option(sc: Any) -> str | None:
    """``SecurityOpt`` of the sandbox's seccomp profile (None: the default profile).
    Without a profile (the kubelet always sends one) it is unconfined, as in containerd."""
    if sc.HasField("seccomp"):
        kind, ref = sc.seccomp.profile_type, sc.seccomp.localhost_ref
        if kind == pb.SecurityProfile.Unconfined:
            return "seccomp=unconfined"
        if kind == pb.SecurityProfile.Localhost:
            return "seccomp=" + _profile(ref)
        return None
    path = sc.seccomp_profile_path
    if path in ("", "unconfined"):
        return "seccomp=unconfined"
    if path in ("runtime/default", "docker/default"):
        return None
    if path.startswith("localhost/"):
        return "seccomp=" + _profile(path[len("localhost/"):])
    raise InvalidParameter(f"unknown seccomp profile path {path!r}")


def _profile(path: str) -> str:
    try:
        with open(path) as fh:
            return fh.read()
    except OSError as exc:
        raise InvalidParameter(f"seccomp profile {path!r}: {exc.strerror}") from None


def namespace_options(ns: Any) -> dict[str, Any]:
    return {"network": int(ns.network), "pid": int(ns.pid), "ipc": int(ns.ipc), "target_id": ns.target_id}


def create_body(config: Any, image: str, pod_network: str, runtime_handler: str = "") -> dict[str, Any]:
    """The engine's create request (Docker's shape) of the infra container of ``config``."""
    md = config.metadata
    if not config.HasField("metadata") or not md.name:
        raise InvalidParameter("the pod sandbox config needs metadata with a name")
    linux = config.linux
    sc = linux.security_context
    ns = sc.namespace_options
    host_net = ns.network == pb.NODE
    labels = {**config.labels, "io.kubernetes.pod.name": md.name, "io.kubernetes.pod.namespace": md.namespace,
              "io.kubernetes.pod.uid": md.uid, LABEL_KIND: KIND_SANDBOX,
              LABEL_METADATA: json.dumps({"name": md.name, "uid": md.uid, "namespace": md.namespace,
                                          "attempt": md.attempt}),
              LABEL_ANNOTATIONS: json.dumps(dict(config.annotations)), LABEL_LABELS: json.dumps(dict(config.labels)),
              LABEL_LOG_DIRECTORY: config.log_directory, LABEL_NAMESPACES: json.dumps(namespace_options(ns)),
              LABEL_RUNTIME_HANDLER: runtime_handler}
    host: dict[str, Any] = {
        "NetworkMode": "host" if host_net else pod_network,
        "IpcMode": "host" if ns.ipc == pb.NODE else "shareable",
        "PidMode": "host" if ns.pid == pb.NODE else "",
        "UTSMode": "host" if host_net else "",
        "OomScoreAdj": clamp_oom_score_adj(SANDBOX_OOM_SCORE_ADJ),
        "Privileged": sc.privileged, "ReadonlyRootfs": sc.readonly_rootfs,
        "Sysctls": dict(linux.sysctls) or None,
        "CgroupParent": cgroup_parent(linux.cgroup_parent),
        "GroupAdd": [str(g) for g in sc.supplemental_groups] or None,
        "SecurityOpt": [o for o in [seccomp_option(sc)] if o] or None,
        "RestartPolicy": {"Name": "no"},
    }
    dns = config.dns_config
    host.update(Dns=list(dns.servers) or None, DnsSearch=list(dns.searches) or None,
                DnsOptions=list(dns.options) or None)
    exposed: dict[str, dict] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for pm in config.port_mappings:
        if not 0 < pm.container_port < 65536 or not 0 <= pm.host_port < 65536:
            raise InvalidParameter(f"invalid port mapping {pm.host_port}:{pm.container_port}")
        key = f"{pm.container_port}/{PROTOCOLS.get(pm.protocol, 'tcp')}"
        exposed[key] = {}
        if pm.host_port and not host_net:  # a container port alone is reached at the pod's IP
            bindings.setdefault(key, []).append({"HostIp": pm.host_ip, "HostPort": str(pm.host_port)})
    host["PortBindings"] = bindings or None
    user = ""
    if sc.HasField("run_as_user"):
        user = str(sc.run_as_user.value)
        if sc.HasField("run_as_group"):
            user += f":{sc.run_as_group.value}"
    return {"Image": image, "Hostname": config.hostname or (socket.gethostname() if host_net else ""),
            "User": user, "Labels": labels, "ExposedPorts": exposed or None, "HostConfig": host}


def resolv_conf(dns: Any) -> str | None:
    """The pod's resolv.conf from its DNS config, as containerd writes it; None
    without one (the engine's, from the host's, stays)."""
    if not (dns.servers or dns.searches or dns.options):
        return None
    lines = []
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    lines += [f"nameserver {s}" for s in dns.servers]
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"
