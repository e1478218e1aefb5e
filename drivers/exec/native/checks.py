"""Validation of a bundle's ``config.json`` at create time (daemon side).

Everything the native driver cannot do, or that this host will refuse at start
(an rlimit above the daemon's hard limit without CAP_SYS_RESOURCE, say), is
refused here with an ``ExecError`` naming the field, so ``docker create``
fails cleanly instead of ``start`` failing half-way.
"""

import json
import os
import resource

from dockyard.errors import ExecError

from . import linux
from .linux import RLIMITS

KNOWN_NAMESPACES = {"pid", "network", "mount", "ipc", "uts", "cgroup", "user"}
CAP_SYS_RESOURCE = 24


def has_cap(cap):
    with open("/proc/self/status") as fh:
        eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    return bool(eff >> cap & 1)


def load_config(id, bundle):
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as fh:
            cfg = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ExecError(f"container {id}: cannot read config.json ({path}): {exc}") from None
    if not isinstance(cfg, dict):
        raise ExecError(f"container {id}: config.json is not a JSON object")
    where = f"container {id}: config.json"
    if not isinstance(cfg.get("process"), dict):
        raise ExecError(f"{where}: process is missing")
    check_process(where, cfg["process"])
    root = cfg["root"].get("path") if isinstance(cfg.get("root"), dict) else None
    if not isinstance(root, str) or not os.path.isdir(os.path.join(bundle, root)):
        raise ExecError(f"{where}: root.path {root!r} is not a directory")
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
    for i, m in enumerate(cfg.get("mounts") or ()):
        dest = m.get("destination") if isinstance(m, dict) else None
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise ExecError(f"{where}: mounts[{i}]: destination {dest!r} must be an absolute path")
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


def check_process(where, proc):
    args = proc.get("args")
    if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args) or not args[0]:
        raise ExecError(f"{where}: process.args must be a non-empty list of strings")
    if not str(proc.get("cwd", "/")).startswith("/"):
        raise ExecError(f"{where}: process.cwd must be an absolute path")
    if not isinstance(proc.get("env", []), list):
        raise ExecError(f"{where}: process.env must be a list")
    user = proc.get("user") or {}
    for key in ("uid", "gid"):
        if not isinstance(user.get(key, 0), int) or user.get(key, 0) < 0:
            raise ExecError(f"{where}: process.user.{key} must be a non-negative integer")
    for kind, names in (proc.get("capabilities") or {}).items():
        try:
            linux.cap_numbers(names)
        except ValueError as exc:
            raise ExecError(f"{where}: process.capabilities.{kind}: {exc}") from None
    may_raise = None
    for r in proc.get("rlimits") or ():
        kind, soft, hard = r.get("type"), r.get("soft"), r.get("hard")
        if kind not in RLIMITS:
            raise ExecError(f"{where}: process.rlimits: unknown type {kind!r}")
        if not isinstance(soft, int) or not isinstance(hard, int) or soft > hard:
            raise ExecError(f"{where}: process.rlimits: {kind}: soft {soft} must not be above hard {hard}")
        have = resource.getrlimit(RLIMITS[kind])[1]
        if have != resource.RLIM_INFINITY and hard > have:
            if may_raise is None:
                may_raise = has_cap(CAP_SYS_RESOURCE)
            if not may_raise:
                raise ExecError(f"{where}: process.rlimits: {kind} hard limit {hard} is above this "
                                f"daemon's own hard limit {have}, and the daemon lacks CAP_SYS_RESOURCE "
                                "to raise it")
    adj = proc.get("oomScoreAdj")
    if adj is not None:
        if not isinstance(adj, int) or not -1000 <= adj <= 1000:
            raise ExecError(f"{where}: process.oomScoreAdj {adj!r} must be an integer in -1000..1000")
        with open("/proc/self/oom_score_adj") as fh:
            own = int(fh.read())
        if adj < own and not has_cap(CAP_SYS_RESOURCE):
            raise ExecError(f"{where}: process.oomScoreAdj {adj} is below the daemon's own ({own}), "
                            "and lowering it needs CAP_SYS_RESOURCE, which the daemon lacks")


def console_size(proc):
    size = proc.get("consoleSize") or {}
    if size.get("height") and size.get("width"):
        return [int(size["height"]), int(size["width"])]
    return None
