"""What the CRI front end is configured with: ``dockyard daemon``'s CRI flags."""

from __future__ import annotations

import attrs

DEFAULT_SOCKET = "/run/dockyard/cri.sock"
DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CNI_BIN_DIR = "/usr/lib/cni"
#: the Docker network (driver ``cni``) the pods' infra containers join
POD_NETWORK = "cri-pods"
#: the image of the pods' infra containers, made locally (no registry)
PAUSE_IMAGE = "dockyard.local/pause:catatonit"
#: what the runtime calls itself in Version
RUNTIME_NAME = "dockyard"
RUNTIME_API_VERSION = "v1"


@attrs.frozen
class CriConfig:
    """The CRI's settings. ``stream_address`` is ``HOST:PORT`` of the streaming
    server (port 0: one the kernel picks); ``root`` is where the CRI keeps its
    own state (under the daemon's exec root)."""

    socket: str = DEFAULT_SOCKET
    cni_conf_dir: str = DEFAULT_CNI_CONF_DIR
    cni_bin_dir: str = DEFAULT_CNI_BIN_DIR
    stream_address: str = "127.0.0.1:0"
    pod_network: str = POD_NETWORK
    pause_image: str = PAUSE_IMAGE
    root: str = "/run/dockyard/cri"
