"""Checks of a bundle's ``config.json`` that do not depend on the driver (daemon side).

Every exec driver refuses the same malformed or impossible bundles with the same
words; a driver adds its own refusals after these.  Impossible here means what
this host will refuse at start: an rlimit above the daemon's own hard limit, or
an oom_score_adj below its own, without CAP_SYS_RESOURCE (this VM's case).
"""

from __future__ import annotations

import json
import os
import resource
from typing import Any

from dockyard.errors import ExecError
from .runtime import CAP_SYS_RESOURCE, RLIMITS, cap_numbers


def has_cap(cap: int) -> bool:
    """Does the daemon itself hold capability number ``cap``?"""
    with open("/proc/self/status") as fh:
        eff = next(int(line.split()[1], 16) for line in fh if line.startswith("CapEff:"))
    return bool(eff >> cap & 1)


def load_config(id: str, bundle: str) -> dict[str, Any]:
    """``config.json`` of ``bundle``, with its process and root checked."""
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
    for i, m in enumerate(cfg.get("mounts") or ()):
        dest = m.get("destination") if isinstance(m, dict) else None
        if not isinstance(dest, str) or not dest.startswith("/"):
            raise ExecError(f"{where}: mounts[{i}]: destination {dest!r} must be an absolute path")
    return cfg


def check_process(where: str, proc: dict[str, Any]) -> None:
    """An OCI ``process`` (a container's, or an extra process's)."""
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
            cap_numbers(names)
        except ValueError as exc:
            raise ExecError(f"{where}: process.capabilities.{kind}: {exc}") from None
    may_raise: bool | None = None
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


def console_size(proc: dict[str, Any]) -> list[int] | None:
    """``[rows, columns]`` from ``process.consoleSize``, or None."""
    size = proc.get("consoleSize") or {}
    if size.get("height") and size.get("width"):
        return [int(size["height"]), int(size["width"])]
    return None
