"""The pause image of the pods' infra containers, made here and never pulled.

A sandbox is an infra container (see :mod:`.pods`) whose process only has to
hold the pod's namespaces and reap the zombies of a shared PID namespace:
``catatonit -P`` (pause mode) does both, and Debian's ``catatonit`` is a static
binary, so one file is a whole image.  It is imported once, through the same
service as ``docker import`` (one layer, its ``CMD`` set), tagged
``cfg.pause_image``; no registry, so pods start offline.  Deleting the image
only costs the next RunPodSandbox its import.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import threading
from typing import Any

from ..errors import DockyardError, NotFound

#: the host's static catatonit (Debian package ``catatonit``)
CATATONIT = "/usr/bin/catatonit"
CMD = ["/catatonit", "-P"]
#: directories the runtime mounts over (or binds /etc files into): there from the start
DIRS = ("dev", "etc", "proc", "sys", "tmp")

_lock = threading.Lock()  # two first pods import it once


def ensure(images: Any, ref: str, binary: str = CATATONIT) -> str:
    """The id of the pause image ``ref``, imported from ``binary`` if it is missing
    (``images``: the engine's image facade)."""
    try:
        return images.resolve(ref)
    except NotFound:
        pass
    with _lock:
        try:
            return images.resolve(ref)
        except NotFound:
            return _import(images, ref, binary)


def _import(images: Any, ref: str, binary: str) -> str:
    if not os.path.isfile(binary):
        raise DockyardError(f"the pods' pause image needs {binary} (apt-get install catatonit)")
    fd, path = images.spool_path()  # the daemon's tmp: swept at its start if this one dies here
    try:
        with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in DIRS:
                info = tarfile.TarInfo(name)
                info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
                tar.addfile(info)
            with open(binary, "rb") as fh:
                data = fh.read()
            info = tarfile.TarInfo("catatonit")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        return images.import_tar(path, ref, changes=[f"CMD {json.dumps(CMD)}"], message="dockyard pause (catatonit -P)")
    finally:
        os.unlink(path)
