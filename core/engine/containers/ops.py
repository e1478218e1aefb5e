"""Container operations beside the lifecycle: ``rename``, ``update``, ``top``,
``changes`` (``docker diff``) and ``container prune``, with moby's rules and
messages (``daemon/rename.go``, ``update.go``, ``top_unix.go``, ``changes.go``,
``prune.go``)."""

from __future__ import annotations

import logging
import stat
import subprocess
from typing import Any, Callable, Protocol

from ...driverkit.fdwalk import Tree
from ...errors import Conflict, ExecError, InvalidParameter
from ...model.container import ContainerRecord
from ..bundle import ocispec
from ..filters import label_match, parse_timestamp, unix_time
from . import restart, verify
from .create import NAME_RE
from .records import ContainerRecords

log = logging.getLogger("dockyard.containers")

#: HostConfig fields ``docker update`` may change, and the part of
#: ``linux.resources`` each one lands in
RESOURCE_FIELDS = {
    "Memory": "memory", "MemorySwap": "memory", "MemoryReservation": "memory",
    "CpuShares": "cpu", "NanoCpus": "cpu", "CpuPeriod": "cpu", "CpuQuota": "cpu",
    "CpusetCpus": "cpu", "CpusetMems": "cpu", "PidsLimit": "pids", "BlkioWeight": "blockIO",
}
#: fields of the update body accepted but not applied live (kept as they were)
IGNORED = ("KernelMemory", "KernelMemoryTCP", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpuCount",
           "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "MemorySwappiness", "OomKillDisable",
           "CgroupParent", "Ulimits", "Devices", "DeviceCgroupRules", "DeviceRequests",
           "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
           "BlkioDeviceWriteIOps")
#: mount points the runtime makes in a container's layer (Docker keeps them in its
#: ``-init`` layer, so ``docker diff`` never shows them)
INIT_PATHS = {"/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev", "/dev/shm", "/dev/pts",
              "/dev/console", "/dev/mqueue", "/proc", "/sys", "/.dockerenv", "/etc/mtab", "/sbin/docker-init"}


class Layers(Protocol):
    def mount(self, driver_id: str) -> str: ...

    def unmount(self, driver_id: str) -> None: ...

    def changes(self, driver_id: str, parent_chain: str | None) -> list: ...

    def diff_size(self, driver_id: str, parent_chain: str | None) -> int: ...

    def size(self, top: str | None) -> int: ...


def _attrs(rec: ContainerRecord) -> dict:
    return rec.event_attributes()


def _int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"invalid {key}: {value!r} (an integer is expected)")
    return value


def _merge(host: dict, body: dict) -> tuple[dict, set[str]]:
    """The new HostConfig and the resource fields that changed (moby's
    ``container.UpdateContainer`` rules: what clashes with the container's settings
    is a Conflict, 409, as dockerd's)."""
    new, changed = dict(host), set()
    for key in ("Memory", "MemorySwap", "MemoryReservation", "CpuShares", "NanoCpus", "CpuPeriod",
                "CpuQuota", "PidsLimit", "BlkioWeight"):
        value = _int(body, key)
        if value is None or (value == 0 and key != "PidsLimit"):
            continue  # 0 means "leave as it is", as the docker CLI sends every field
        if key == "PidsLimit" and value == 0 and not host.get("PidsLimit"):
            continue
        new[key] = value
        changed.add(key)
    for key in ("CpusetCpus", "CpusetMems"):
        if body.get(key):
            new[key] = body[key]
            changed.add(key)
    if "NanoCpus" in changed and (host.get("CpuQuota") or host.get("CpuPeriod")) and not (
            {"CpuQuota", "CpuPeriod"} & changed):
        raise Conflict("Conflicting options: NanoCPUs cannot be updated as CPU Period/Quota has already been set")
    if {"CpuQuota", "CpuPeriod"} & changed and host.get("NanoCpus") and "NanoCpus" not in changed:
        raise Conflict("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
    if "Memory" in changed and "MemorySwap" not in changed:
        swap = host.get("MemorySwap") or 0
        if swap > 0 and new["Memory"] > swap:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, update the "
                           "memoryswap at the same time")
    if body.get("KernelMemory"):
        raise InvalidParameter("Cannot update container: kernel memory limits are not supported (the kernel "
                               "dropped them), as Docker on cgroup v2")
    return new, changed


def _live_resources(new: dict, changed: set[str]) -> dict:
    """The part of ``linux.resources`` the changed fields make (validated as at
    create, with Docker's messages)."""
    try:
        verify.bounds(new)
        full = ocispec.linux_resources(new)
    except ValueError as exc:
        raise InvalidParameter(f"Cannot update container: {exc}") from None
    out = {}
    for key in changed:
        part = RESOURCE_FIELDS[key]
        out.setdefault(part, {}).update(full.get(part) or {})
    if "pids" in out or "PidsLimit" in changed:
        limit = new.get("PidsLimit") or 0
        out["pids"] = {"limit": limit if limit > 0 else -1}
    if "NanoCpus" in changed or "CpuPeriod" in changed or "CpuQuota" in changed:
        out.setdefault("cpu", {})
        if "NanoCpus" in changed:
            out["cpu"]["period"], out["cpu"]["quota"] = 100000, new["NanoCpus"] * 100000 // 10 ** 9
    return out


def _ps_pids_arg(pids: list[int]) -> str:
    return "-q" + ",".join(str(p) for p in pids)


def parse_ps(output: bytes, pids: list[int]) -> dict:
    """moby's ``parsePSOutput``: the titles and the rows whose PID is one of ``pids``."""
    lines = output.decode(errors="replace").splitlines()
    if not lines:
        raise InvalidParameter("ps printed nothing")
    titles = lines[0].split()
    try:
        pid_index = titles.index("PID")
    except ValueError:
        raise InvalidParameter("Couldn't find PID field in ps output") from None
    wanted = set(pids)
    rows = []
    for line in lines[1:]:
        if not line.strip():
            continue
        fields = line.split(None, len(titles) - 1)
        if len(fields) <= pid_index:
            continue
        try:
            pid = int(fields[pid_index])
        except ValueError:
            raise InvalidParameter(f"Unexpected pid '{fields[pid_index]}'") from None
        if pid in wanted:
            rows.append(fields)
    return {"Titles": titles, "Processes": rows}


# prune -------------------------------------------------------------------------


class Operations:
    """``rename``, ``update``, ``top``, ``changes`` and ``prune`` of the containers of
    ``records``; ``exec_slot`` is the exec driver's slot (its hooks and name),
    ``remove`` the lifecycle's."""

    def __init__(self, records: ContainerRecords, layers: Layers, exec_slot: Any,
                 remove: Callable[..., None], emit: Callable[[str, str, str, dict], None]) -> None:
        self.records, self.layers, self.exec_slot = records, layers, exec_slot
        self.remove, self.emit = remove, emit

    def rename(self, ref: str, new_name: str | None) -> ContainerRecord:
        """``POST /containers/{id}/rename``; returns the renamed record."""
        containers = self.records
        old_ref = (ref or "").lstrip("/")
        new = (new_name or "").lstrip("/")
        if not old_ref or not new:
            raise InvalidParameter("Neither old nor new names may be empty")
        if not NAME_RE.match(new):
            raise InvalidParameter(f"Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        cid = containers.resolve(ref)
        with containers.lock(cid):
            rec = containers.get(cid)
            old = rec.name
            if old == new:
                raise InvalidParameter("Renaming a container with the same name as its current name")
            rec.name = new
            containers.rename(rec)
        # the embedded DNS answers from the records, so the new name resolves at once
        self.emit("container", "rename", cid, {**_attrs(rec), "oldName": "/" + old})
        return rec

    def update(self, ref: str, body: Any) -> list[str]:
        """``POST /containers/{id}/update``: apply the resources live through the exec
        driver (running containers) and keep them, and the restart policy, in
        HostConfig.  Returns the warnings (a list)."""
        if not isinstance(body, dict):
            raise InvalidParameter("the update body must be a JSON object")
        containers = self.records
        cid = containers.resolve(ref)
        warnings = []
        with containers.lock(cid):
            rec = containers.get(cid)
            host = rec.host_config
            try:
                new, changed = _merge(host, body)
            except Conflict as exc:
                raise Conflict(f"Cannot update container {cid}: {exc}") from None
            policy = body.get("RestartPolicy")
            if policy is not None:
                if isinstance(policy, dict) and policy.get("Name") not in (None, "", "no") and host.get("AutoRemove"):
                    raise Conflict(f"Cannot update container {cid}: Restart policy cannot be updated because "
                                   "AutoRemove is enabled for the container")  # dockerd's 409
                restart.validate({"RestartPolicy": policy})  # the same rules as at create
            resources = _live_resources(new, changed) if changed else {}
            if rec.state.running and resources:
                try:
                    self.exec_slot.hook.exec_update(id=cid, resources=resources)
                except ExecError as exc:
                    raise InvalidParameter(f"Cannot update container {cid}: {exc}") from None
            if policy is not None:
                new["RestartPolicy"] = {"Name": policy.get("Name") or "no",
                                        "MaximumRetryCount": int(policy.get("MaximumRetryCount") or 0)}
            rec.host_config = new
            containers.save(rec)
        self.emit("container", "update", cid, _attrs(rec))
        return warnings

    def top(self, ref: str, ps_args: str | None = None) -> dict:
        containers = self.records
        cid = containers.resolve(ref)
        rec = containers.get(cid)
        if not rec.state.running:
            raise Conflict(f"Container {cid} is not running")
        pids = self.exec_slot.hook.exec_pids(id=cid)
        if pids is None:
            raise InvalidParameter(f"the {self.exec_slot.name} exec driver cannot list a container's processes")
        args = (ps_args or "-ef").split()
        if any(a.startswith("-q") or a == "q" for a in args):
            raise InvalidParameter("ps_args: the -q option is used by the daemon; choose processes another way")
        try:
            res = subprocess.run(["ps", *args, _ps_pids_arg(pids)], capture_output=True, timeout=30)
            if res.returncode != 0:  # some options (f) do not go with -q: filter ourselves
                res = subprocess.run(["ps", *args], capture_output=True, timeout=30)
        except FileNotFoundError:
            raise InvalidParameter("ps is not installed on the host (apt-get install procps)") from None
        if res.returncode != 0:
            raise InvalidParameter(f"Error running ps: {res.stderr.decode(errors='replace').strip()}")
        out = parse_ps(res.stdout, pids)
        self.emit("container", "top", cid, _attrs(rec))
        return out

    def changes(self, ref: str) -> list[dict]:
        """``[{"Path", "Kind"}]`` of the container's layer against its image."""
        containers = self.records
        cid = containers.resolve(ref)
        rec = containers.get(cid)
        found = self.layers.changes(cid, self.records.top_layer(cid))  # its image may be gone (rmi -f)
        kept, hidden = [], []
        for path, kind in found:
            if path in INIT_PATHS and kind != 2 and self._is_placeholder(cid, path):
                hidden.append(path)
            else:
                kept.append((path, kind))
        # a directory "modified" only by the mount points made in it (/etc) is not
        # listed either: Docker makes those in its init layer, below the container's
        out = []
        for path, kind in kept:
            below = path.rstrip("/") + "/"
            if kind == 0 and any(h.startswith(below) for h in hidden) and \
                    not any(k.startswith(below) for k, _ in kept):
                continue
            out.append({"Path": path, "Kind": kind})
        return out

    def _is_placeholder(self, cid: str, path: str) -> bool:
        """An empty file or directory the runtime made as a mount point."""
        root = self.layers.mount(cid)
        try:
            with Tree(root) as tree:  # the container may be running: no path strings through its tree
                st = tree.lstat(path.strip("/"))
            if st is None or stat.S_ISLNK(st.st_mode):
                return False
            return stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and st.st_size == 0)
        except OSError:
            return False
        finally:
            self.layers.unmount(cid)

    def prune(self, filters: dict) -> dict:
        """``POST /containers/prune``: remove every stopped container created before
        ``until`` and matching ``label``/``label!``; Docker's report."""
        for key in filters:
            if key not in ("until", "label", "label!"):
                raise InvalidParameter(f"invalid filter '{key}'")
        until = [parse_timestamp(v) for v in filters.get("until", [])]
        deleted, reclaimed = [], 0
        for rec in self.records.all():
            if rec.state.running or rec.state.paused:
                continue
            if until and not all(unix_time(rec.created) < u for u in until):
                continue
            if not label_match(rec.config.get("Labels"), filters.get("label", []), filters.get("label!", [])):
                continue
            try:
                size = self.rw_size(rec)
                self.remove(rec.id)
            except (Conflict, LookupError) as exc:
                log.info("prune: %s stays: %s", rec.id[:12], exc)
                continue
            deleted.append(rec.id)
            reclaimed += size
        self.emit("container", "prune", "", {"reclaimed": str(reclaimed)})
        return {"ContainersDeleted": deleted or None, "SpaceReclaimed": reclaimed}

    def rw_size(self, rec: ContainerRecord) -> int:
        """Bytes the container's layer adds to its image (0 when the layer is in trouble)."""
        return self.sizes(rec.id)[0]

    def sizes(self, cid: str) -> tuple[int, int]:
        """dockerd's ``SizeRw`` and ``SizeRootFs`` of container ``cid``: the bytes its
        layer adds (0 when the layer is in trouble), and everything it sees, the
        layers it was made on included (its image's, which outlive an ``rmi -f``)."""
        top_layer = self.records.top_layer(cid)
        try:
            rw = self.layers.diff_size(cid, top_layer)
        except Exception:  # a layer in trouble does not stop a prune or a listing
            log.exception("size of %s", cid[:12])
            rw = 0
        return rw, rw + (self.layers.size(top_layer) if top_layer else 0)
