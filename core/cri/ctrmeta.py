"""What a CRI container's engine record carries for the CRI, and how it reads
back: the labels the kubelet sees in ``docker ps`` (``io.kubernetes.*``) and
our own (``io.dockyard.cri.*``, JSON where a value is structured), the CRI's
view of the record's state and times.

The engine's record is the only state: nothing of a CRI container is kept
anywhere else, so a restarted daemon answers the kubelet from its records.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..model.container import ContainerRecord
from .api import api_pb2 as pb

KIND = "io.dockyard.cri.kind"  #: ``sandbox`` or ``container``
SANDBOX_ID = "io.dockyard.cri.sandbox-id"
METADATA = "io.dockyard.cri.metadata"  #: JSON of the request's metadata
ANNOTATIONS = "io.dockyard.cri.annotations"  #: JSON
LABELS = "io.dockyard.cri.labels"  #: JSON of the request's own labels
LOG_PATH = "io.dockyard.cri.log-path"
IMAGE = "io.dockyard.cri.image"  #: the image as the kubelet named it
MOUNTS = "io.dockyard.cri.mounts"  #: JSON of the request's mounts, as given (status shows them)
POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"

_ISO = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def iso_ns(text: str | None) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (Go's zero time and
    ``None``: 0), keeping every digit of its fraction (``datetime`` keeps six)."""
    from datetime import datetime

    text = text or ""
    m = _ISO.match(text)
    if not m or text.startswith("0001-"):
        return 0
    base = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    frac = (m.group(2) or "0")[:9].ljust(9, "0")
    return int(base.timestamp()) * 10**9 + int(frac)


def labels_of(rec: ContainerRecord) -> dict[str, str]:
    return dict(rec.config.get("Labels") or {})


def _json(labels: dict[str, str], key: str, default: Any) -> Any:
    try:
        return json.loads(labels[key])
    except (KeyError, ValueError):
        return default


def is_container(rec: ContainerRecord) -> bool:
    return labels_of(rec).get(KIND) == "container"


def own_labels(rec: ContainerRecord) -> dict[str, str]:
    """The labels the request gave (not the image's, not ours)."""
    return {str(k): str(v) for k, v in _json(labels_of(rec), LABELS, {}).items()}


def annotations_of(rec: ContainerRecord) -> dict[str, str]:
    return {str(k): str(v) for k, v in _json(labels_of(rec), ANNOTATIONS, {}).items()}


def metadata(rec: ContainerRecord) -> pb.ContainerMetadata:
    meta = _json(labels_of(rec), METADATA, {})
    return pb.ContainerMetadata(name=str(meta.get("name", "")), attempt=int(meta.get("attempt", 0)))


def sandbox_id(rec: ContainerRecord) -> str:
    return labels_of(rec).get(SANDBOX_ID, "")


def image_spec(rec: ContainerRecord) -> pb.ImageSpec:
    return pb.ImageSpec(image=labels_of(rec).get(IMAGE) or rec.image or rec.image_id)


def mounts(rec: ContainerRecord) -> list[pb.Mount]:
    return [pb.Mount(container_path=m.get("container_path", ""), host_path=m.get("host_path", ""),
                     readonly=bool(m.get("readonly")), propagation=pb.MountPropagation.Name(int(m.get("propagation", 0))))
            for m in _json(labels_of(rec), MOUNTS, [])]


def state(rec: ContainerRecord) -> pb.ContainerState:
    """The CRI state of a record: created, running (paused and restarting too),
    exited, or unknown."""
    s = rec.state
    if s.running or s.paused or s.restarting:
        return pb.CONTAINER_RUNNING
    if s.status == "created":
        return pb.CONTAINER_CREATED
    if s.status in ("exited", "dead"):
        return pb.CONTAINER_EXITED
    return pb.CONTAINER_UNKNOWN


def reason(rec: ContainerRecord) -> str:
    """Why it exited, as the kubelet words it (containerd's reasons)."""
    if state(rec) != pb.CONTAINER_EXITED:
        return ""
    if rec.state.oom_killed:
        return "OOMKilled"
    return "Completed" if rec.state.exit_code == 0 else "Error"


def summary(rec: ContainerRecord) -> pb.Container:
    """An entry of ListContainers."""
    return pb.Container(id=rec.id, pod_sandbox_id=sandbox_id(rec), metadata=metadata(rec), image=image_spec(rec),
                        image_ref=rec.image_id, state=state(rec), created_at=iso_ns(rec.created),
                        labels=own_labels(rec), annotations=annotations_of(rec))


def status(rec: ContainerRecord) -> pb.ContainerStatus:
    s = rec.state
    return pb.ContainerStatus(
        id=rec.id, metadata=metadata(rec), state=state(rec), created_at=iso_ns(rec.created),
        started_at=iso_ns(s.started_at), finished_at=iso_ns(s.finished_at) if state(rec) == pb.CONTAINER_EXITED else 0,
        exit_code=s.exit_code if state(rec) == pb.CONTAINER_EXITED else 0, image=image_spec(rec),
        image_ref=rec.image_id, reason=reason(rec), message=s.error or "", labels=own_labels(rec),
        annotations=annotations_of(rec), mounts=mounts(rec), log_path=labels_of(rec).get(LOG_PATH, ""))


def matches(rec: ContainerRecord, id_prefix: str, sandbox: str, selector: dict[str, str]) -> bool:
    """A filter of ListContainers / ListContainerStats: an id prefix, a sandbox
    id (or its prefix) and labels that must all be there with these values."""
    if id_prefix and not rec.id.startswith(id_prefix):
        return False
    if sandbox and not sandbox_id(rec).startswith(sandbox):
        return False
    own = own_labels(rec)
    return all(own.get(k) == v for k, v in selector.items())
