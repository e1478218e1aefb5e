"""A CRI container's ``LinuxContainerSecurityContext`` as the engine's
HostConfig and Config fields, with Kubernetes' meanings (containerd's CRI
plugin is the reference):

* ``run_as_user``/``run_as_username`` (and ``run_as_group``, an error without
  one of them) -> ``User``; the image's groups of that user come with it (the
  bundle reads them from the image's ``/etc/group``), ``supplemental_groups``
  are added (``GroupAdd``);
* ``privileged``, ``capabilities`` (names with or without ``CAP_``, ``ALL``),
  ``readonly_rootfs``, ``no_new_privs``;
* seccomp: ``runtime/default`` and ``docker/default`` are Dockyard's default
  profile, ``unconfined`` and the empty profile none (the CRI's default),
  ``localhost/<file>`` the profile in that file; any other name is refused.  A
  privileged container runs without a filter whatever it asks (as runc);
* ``masked_paths``/``readonly_paths`` as given.  Protobuf cannot tell an empty
  list from a missing one, so empty means the engine's defaults (containerd
  does the same), and a privileged container has none;
* AppArmor and SELinux options are ignored: neither is enabled here.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import InvalidParameter
from .api import api_pb2 as pb

log = logging.getLogger("dockyard.cri")

LOCALHOST = "localhost/"
DEFAULT_PROFILES = ("runtime/default", "docker/default")
#: a seccomp profile file larger than this is not one
MAX_PROFILE_BYTES = 1 << 20


def user(sc: pb.LinuxContainerSecurityContext) -> str | None:
    """``User`` of the container (``None``: the image's)."""
    group = str(sc.run_as_group.value) if sc.HasField("run_as_group") else ""
    if sc.HasField("run_as_user"):
        name = str(sc.run_as_user.value)
    elif sc.run_as_username:
        name = sc.run_as_username
    elif group:
        raise InvalidParameter("run_as_group is set without run_as_user or run_as_username")
    else:
        return None
    return f"{name}:{group}" if group else name


def seccomp_profile(sc: pb.LinuxContainerSecurityContext) -> str | None:
    """What the container's seccomp is: ``None`` for the default profile,
    ``"unconfined"``, or the text of a profile; refused for a name we don't know
    or a file that can't be read."""
    if sc.HasField("seccomp"):
        kind = sc.seccomp.profile_type
        if kind == pb.SecurityProfile.RuntimeDefault:
            return None
        if kind == pb.SecurityProfile.Unconfined:
            return "unconfined"
        ref = sc.seccomp.localhost_ref
        path = ref[len(LOCALHOST):] if ref.startswith(LOCALHOST) else ref
    else:
        name = sc.seccomp_profile_path
        if name in ("", "unconfined"):
            return "unconfined"
        if name in DEFAULT_PROFILES:
            return None
        if not name.startswith(LOCALHOST):
            raise InvalidParameter(f"seccomp profile {name!r}: not runtime/default, docker/default, unconfined "
                                   f"or {LOCALHOST}<file>")
        path = name[len(LOCALHOST):]
    if not os.path.isabs(path):
        raise InvalidParameter(f"seccomp profile {path!r}: the file's name must be absolute")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_PROFILE_BYTES + 1)
    except OSError as exc:
        raise InvalidParameter(f"seccomp profile {path}: {exc.strerror}") from None
    if len(data) > MAX_PROFILE_BYTES:
        raise InvalidParameter(f"seccomp profile {path}: larger than {MAX_PROFILE_BYTES} bytes")
    return data.decode("utf-8", "replace")


def apply(sc: pb.LinuxContainerSecurityContext, cfg: dict[str, Any], host: dict[str, Any]) -> None:
    """Set the create body's ``cfg`` (Config) and ``host`` (HostConfig) fields of ``sc``."""
    who = user(sc)
    if who is not None:
        cfg["User"] = who
    if sc.supplemental_groups:
        host["GroupAdd"] = [str(g) for g in sc.supplemental_groups]
    privileged = bool(sc.privileged)
    host["Privileged"] = privileged
    if sc.HasField("capabilities"):
        host["CapAdd"] = list(sc.capabilities.add_capabilities) or None
        host["CapDrop"] = list(sc.capabilities.drop_capabilities) or None
    host["ReadonlyRootfs"] = bool(sc.readonly_rootfs)
    opts = []
    if sc.no_new_privs:
        opts.append("no-new-privileges=true")
    if not privileged:  # a privileged container has no filter (the bundle's rule): its profile is not read
        profile = seccomp_profile(sc)
        if profile is not None:
            opts.append(f"seccomp={profile}")
        if sc.masked_paths:
            host["MaskedPaths"] = list(sc.masked_paths)
        if sc.readonly_paths:
            host["ReadonlyPaths"] = list(sc.readonly_paths)
    elif sc.seccomp_profile_path or sc.HasField("seccomp"):
        log.debug("privileged container: its seccomp profile is ignored")
    host["SecurityOpt"] = opts or None
