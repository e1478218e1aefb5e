"""Validation of a bundle's ``config.json`` at create time (daemon side).

Everything the native driver cannot do, or that this host will refuse at start
(an rlimit above the daemon's hard limit without CAP_SYS_RESOURCE, say), is
refused here with an ``ExecError`` naming the field, so ``docker create``
fails cleanly instead of ``start`` failing half-way.
"""

import os

from dockyard.errors import ExecError
from dockyard.driverkit.shim import oci

KNOWN_NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "cgroup", "user"}


def load_config(id, bundle):
    cfg = oci.load_config(id, bundle)
    where = f"container {id}: config.json"
    root = cfg["root"]["path"]
    if cfg.get("hooks"):
        raise ExecError(f"{where}: hooks are not supported by the native exec driver")
    lx = cfg.get("linux") or {}
    for key in ("intelRdt", "personality"):
        if lx.get(key):
            raise ExecError(f"{where}: linux.{key} is not supported by the native exec driver")
    types = []
    for ns in lx.get("namespaces") or ():
        kind = ns.get("type") if isinstance(ns, dict) else None
        if kind not in KNOWN_NAMESPACES:
            raise ExecError(f"{where}: linux.namespaces: unknown type {kind!r}")
        if kind == "user" and not ns.get("path"):
            check_mappings(where, lx)
            check_reachable(where, os.path.join(bundle, root), lx)
        if ns.get("path") and not os.path.exists(ns["path"]):
            raise ExecError(f"{where}: linux.namespaces: {kind} namespace {ns['path']} does not exist")
        if kind == "mount" and ns.get("path"):
            raise ExecError(f"{where}: linux.namespaces: joining an existing mount namespace is not supported")
        types.append(kind)
    if "mount" not in types:
        raise ExecError(f"{where}: linux.namespaces must include a mount namespace")
    return cfg


def check_mappings(where, lx):
    """A new user namespace needs maps that give its root a host uid and gid."""
    for key in ("uidMappings", "gidMappings"):
        maps = lx.get(key)
        if not isinstance(maps, list) or not maps:
            raise ExecError(f"{where}: a new user namespace needs linux.{key}")
        for m in maps:
            if not isinstance(m, dict) or not all(isinstance(m.get(k), int) and m[k] >= 0
                                                  for k in ("containerID", "hostID", "size")) or not m["size"]:
                raise ExecError(f"{where}: linux.{key}: {m!r} needs non-negative containerID, hostID "
                                "and a size above 0")
        if not any(m["containerID"] == 0 for m in maps):
            raise ExecError(f"{where}: linux.{key} must map the container's root (containerID 0)")
    if any(m.get("path") for m in lx.get("namespaces") or () if m.get("type") == "pid"):
        raise ExecError(f"{where}: a new user namespace cannot join an existing pid namespace")


def _host_id(maps, cid):
    for m in maps:
        if m["containerID"] <= cid < m["containerID"] + m["size"]:
            return m["hostID"] + cid - m["containerID"]
    return None


def check_reachable(where, root, lx):
    """The container's root sets its file system up as the mapped host uid: every
    directory above ``root`` must let that uid through (as with runc)."""
    uid, gid = _host_id(lx["uidMappings"], 0), _host_id(lx["gidMappings"], 0)
    path = os.path.dirname(os.path.realpath(root))
    while True:
        st = os.stat(path)
        bit = 0o100 if st.st_uid == uid else 0o010 if st.st_gid == gid else 0o001
        if not st.st_mode & bit:
            raise ExecError(f"{where}: root.path {root} is not reachable by the user namespace's root (host uid "
                            f"{uid}): {path} is mode {st.st_mode & 0o7777:04o}, owned by {st.st_uid}:{st.st_gid}")
        if path == "/":
            return
        path = os.path.dirname(path)


check_process = oci.check_process
console_size = oci.console_size
