"""A base for exec drivers built on the shim kit: every hook that only needs the
state directories and the container's cgroup.

A subclass sets :attr:`~.ShimDriver.name` and :attr:`~.ShimDriver.zygote_cmd`
(its fork server: the kit's ``zygote.main`` with its own ``spawn``), calls
:meth:`~.ShimDriver.init_home` from its ``exec_init``, and implements what is
its own: ``exec_supported``, ``exec_create`` (validate, make the state
directory), ``exec_start`` (usually ``shim.start(self.zygote, sdir, ...)``),
``exec_exec`` (:meth:`~.ShimDriver.start_exec` does the common part) and
``exec_update``; :meth:`~.ShimDriver.forget` and :meth:`~.ShimDriver.cgroup_of`
when its state differs from the default (``state["cgroup"]["path"]``).

Pluggy finds the hooks defined here on the subclass like its own.
"""

from __future__ import annotations

import os
import shutil
import signal as _signal
from typing import TYPE_CHECKING, Any

from dockyard.errors import ContainerNotFound, ExecError
from dockyard.hookspecs import hookimpl
from . import client as shim
from .hub import WRITERS as HUB_WRITERS

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Mapping

    from _typeshed import StrPath

    from dockyard.hookspecs.exec import State, Stdin

    from ..cgroups import Cgroup, Layout
    from .hubclient import Hub


class ShimDriver:
    name = "shim"
    zygote_cmd: list[str] | None = None
    #: runs the kit's ``keeper.main`` with the driver's ``spawn``: the exec option
    #: ``supervisor = "hub"`` (one supervisor for every container) if set
    hub_cmd: list[str] | None = None
    #: the ``supervisor`` option's default
    default_supervisor = "shim"

    def __init__(self) -> None:
        self.home: str | None = None
        self.options: dict[str, Any] = {}
        self.zygote: shim.Zygote | Hub | None = None
        self._shim_zygote: shim.Zygote | None = None  # under the hub: for what the hub does not run
        self.layout: Layout | None = None
        self.cgroup_parent = "dockyard"

    # ------------------------------------------------------------------ setup
    def init_home(self, home: StrPath, options: Mapping[str, Any] | None) -> None:
        """Prepare ``home``, check the ``cgroup_parent`` option, start the zygote."""
        from .. import cgroups

        os.makedirs(home, 0o711, exist_ok=True)
        self.home = str(home)
        self.options = dict(options or {})
        parent = str(self.options.get("cgroup_parent", "dockyard")).strip("/")
        if not parent or ".." in parent.split("/") or any(c.isspace() for c in parent):
            raise ExecError(f"exec option cgroup_parent {parent!r} must be a relative cgroup path")
        self.cgroup_parent = parent
        self.layout = cgroups.detect()
        if self.zygote_cmd is None:
            raise ExecError(f"{self.name} exec driver: its class sets no zygote_cmd")
        supervisor = str(self.options.get("supervisor", self.default_supervisor if self.hub_cmd else "shim"))
        if supervisor not in ("shim", "hub"):
            raise ExecError(f"exec option supervisor {supervisor!r}: must be 'shim' (one per container) or 'hub'")
        if supervisor == "hub":
            if self.hub_cmd is None:
                raise ExecError(f"exec option supervisor=hub: the {self.name} exec driver has no hub")
            from .hubclient import Hub

            self.zygote = Hub(self.hub_cmd, self.home)
        else:
            self.zygote = shim.Zygote(self.zygote_cmd, os.path.join(self.home, "zygote.log"))
        self.zygote.warm()

    def launcher(self, st: dict[str, Any]) -> shim.Launcher:
        """What starts the process of state ``st``: the hub, or the zygote's shim
        for a log writer the hub does not run (one that may block: syslog)."""
        if self.zygote is None:
            raise ExecError(f"{self.name} exec driver used before exec_init")
        module = (st.get("log") or {}).get("module")
        if not isinstance(self.zygote, shim.Zygote) and module and module not in HUB_WRITERS:
            if self._shim_zygote is None:
                assert self.zygote_cmd is not None and self.home is not None
                self._shim_zygote = shim.Zygote(self.zygote_cmd, os.path.join(self.home, "zygote.log"))
            return self._shim_zygote
        return self.zygote

    def cgroup_path(self, id: str, lx: dict[str, Any]) -> str:
        """The container's cgroup: ``linux.cgroupsPath`` (a relative one under
        ``cgroup_parent``), checked."""
        rel = (lx.get("cgroupsPath") or id).strip()
        path = rel.strip("/") if rel.startswith("/") else f"{self.cgroup_parent}/{rel.strip('/')}"
        parts = path.split("/")
        if not path or ".." in parts or "." in parts or any(c.isspace() for c in path):
            raise ExecError(f"container {id}: config.json: linux.cgroupsPath {rel!r} must be a cgroup path "
                            "without '..' or white space")
        return path

    # ---------------------------------------------------------------- places
    def dir_of(self, id: str) -> str:
        if self.home is None:
            raise ExecError(f"{self.name} exec driver used before exec_init")
        if not id or "/" in id or id in (".", "..") or any(c.isspace() for c in id):
            raise ExecError(f"invalid container id {id!r}")
        return os.path.join(self.home, id)

    def load(self, id: str) -> tuple[str, dict[str, Any]]:
        """``(state dir, state.json)`` of container ``id``, or ContainerNotFound."""
        sdir = self.dir_of(id)
        st = shim.read_json(os.path.join(sdir, "state.json"))
        if st is None:
            raise ContainerNotFound(f"No such container: {id}")
        return sdir, st

    def exec_dir(self, id: str, exec_id: str) -> str:
        sdir, _ = self.load(id)
        if not exec_id or "/" in exec_id or exec_id in (".", ".."):
            raise ExecError(f"invalid exec id {exec_id!r}")
        edir = os.path.join(sdir, "exec", exec_id)
        if not os.path.isdir(edir):
            raise ContainerNotFound(f"No such exec instance: {exec_id}")
        return edir

    def proc_dir(self, id: str, exec_id: str | None) -> str:
        return self.load(id)[0] if exec_id is None else self.exec_dir(id, exec_id)

    @staticmethod
    def what(id: str, exec_id: str | None = None) -> str:
        return f"container {id}" if exec_id is None else f"exec {exec_id} in container {id}"

    # --------------------------------------------------------------- cgroups
    def cgroup_of(self, st: dict[str, Any] | None) -> Cgroup | None:
        """The container's :class:`dockyard.driverkit.cgroups.Cgroup`, or None."""
        if not st or not st.get("cgroup"):
            return None
        from .. import cgroups

        if self.layout is None:
            raise ExecError(f"{self.name} exec driver used before exec_init")

        return cgroups.Cgroup(self.layout, st["cgroup"]["path"])

    def frozen(self, st: dict[str, Any] | None) -> bool:
        """Is the container frozen?  False when it has no cgroup, or it is going away."""
        from .. import cgroups

        cg = self.cgroup_of(st)
        try:
            return cg is not None and cg.exists() and cg.frozen()
        except (cgroups.CgroupError, OSError):
            return False

    def current(self, id: str, sdir: str, st: dict[str, Any] | None) -> State:
        state = shim.current(sdir, self.what(id))
        if state["status"] == "running" and self.frozen(st):
            state["status"] = "paused"
        return state

    def forget(self, id: str, sdir: str, st: dict[str, Any] | None) -> None:
        """Drop every trace of the container (it does not run)."""
        cg = self.cgroup_of(st)
        if cg is not None:
            cg.destroy()
        shutil.rmtree(sdir, ignore_errors=True)

    def clear_for_create(self, id: str, stdin: Stdin) -> str:
        """Before ``exec_create``: refuse a running namesake and a bad ``stdin``;
        forget a stopped one.  Returns the state directory (not made yet)."""
        sdir = self.dir_of(id)
        if os.path.isdir(sdir):
            old = shim.read_json(os.path.join(sdir, "state.json")) or {}
            if self.current(id, sdir, old)["status"] in ("running", "paused"):
                raise ExecError(f"container {id} already exists and is running")
            self.forget(id, sdir, old)
        if stdin not in (None, "open", "once"):
            raise ExecError(f"container {id}: stdin must be None, 'open' or 'once', not {stdin!r}")
        return sdir

    # --------------------------------------------------------------- lifecycle
    @hookimpl
    def exec_state(self, id: str) -> State:
        sdir, st = self.load(id)
        return self.current(id, sdir, st)

    @hookimpl
    def exec_kill(self, id: str, signal: int) -> None:
        sdir, st = self.load(id)
        shim.kill(sdir, signal, self.what(id))
        cg = self.cgroup_of(st)
        if int(signal) == _signal.SIGKILL and cg is not None and self.frozen(st):
            cg.thaw()  # a frozen process cannot die

    @hookimpl
    def exec_wait(self, id: str, timeout: float | None) -> State:
        sdir, st = self.load(id)
        shim.wait(sdir, timeout)
        return self.current(id, sdir, st)

    @hookimpl
    def exec_exit_fd(self, id: str) -> int | None:
        sdir, _ = self.load(id)
        return shim.exit_fd(sdir)

    @hookimpl
    def exec_delete(self, id: str) -> None:
        try:
            sdir, st = self.load(id)
        except ContainerNotFound:
            if self.home is not None and os.path.isdir(self.dir_of(id)):
                shutil.rmtree(self.dir_of(id), ignore_errors=True)
            return None
        if self.current(id, sdir, st)["status"] in ("running", "paused"):
            self.exec_kill(id=id, signal=_signal.SIGKILL)  # not meant to happen: never leak
            shim.wait(sdir, 10)
        self.forget(id, sdir, st)
        return None

    @hookimpl
    def exec_restore(self, id: str) -> State | None:
        try:
            sdir, st = self.load(id)
        except ContainerNotFound:
            return None
        return self.current(id, sdir, st)

    # ---------------------------------------------------------- extra processes
    def start_exec(self, id: str, exec_id: str, process: dict[str, Any], log_path: str, stdin: Stdin,
                   extra: Callable[[dict[str, Any], State], dict[str, Any]]) -> int:
        """The common part of ``exec_exec``: refuse a stopped or paused container
        and a used exec id, write the extra process's state (``extra`` adds the
        driver's keys) and start its shim; returns its pid."""
        sdir, st = self.load(id)
        state = self.current(id, sdir, st)
        if state["status"] != "running":
            raise ExecError(f"container {id} is not running" if state["status"] != "paused"
                            else f"container {id} is paused, unpause the container before exec")
        edir = os.path.join(sdir, "exec", str(exec_id))
        if not exec_id or "/" in str(exec_id) or os.path.exists(edir):
            raise ExecError(f"exec id {exec_id!r} is invalid or already used")
        from .oci import console_size

        os.makedirs(edir, 0o700)
        data = {"id": id, "exec_id": exec_id, "log_path": os.path.abspath(log_path), "stdin": stdin,
                "terminal": bool(process.get("terminal")), "console_size": console_size(process)}
        data.update(extra(st, state))
        shim.write_json(os.path.join(edir, "state.json"), data)
        if self.zygote is None:
            raise ExecError(f"{self.name} exec driver used before exec_init")
        try:
            return shim.start(self.zygote, edir, self.what(id, exec_id))
        except ExecError:
            shutil.rmtree(edir, ignore_errors=True)
            raise

    @hookimpl
    def exec_exec_wait(self, id: str, exec_id: str, timeout: float | None) -> State:
        edir = self.exec_dir(id, exec_id)
        if timeout != 0:
            shim.wait(edir, timeout)
        return shim.current(edir, self.what(id, exec_id))

    @hookimpl
    def exec_attach_stdin(self, id: str, exec_id: str | None) -> socket.socket:
        return shim.attach_stdin(self.proc_dir(id, exec_id), self.what(id, exec_id))

    @hookimpl
    def exec_resize(self, id: str, exec_id: str | None, height: int, width: int) -> None:
        shim.resize(self.proc_dir(id, exec_id), height, width, self.what(id, exec_id))

    # ------------------------------------------------------------------ cgroups
    def _running_cgroup(self, id: str, verb: str) -> Cgroup:
        sdir, st = self.load(id)
        cg = self.cgroup_of(st)
        if cg is None or not cg.exists() or self.current(id, sdir, st)["status"] == "stopped":
            raise ExecError(f"cannot {verb} container {id}: it is not running")
        return cg

    @hookimpl
    def exec_pause(self, id: str) -> None:
        from .. import cgroups

        try:
            self._running_cgroup(id, "pause").freeze()
        except cgroups.CgroupError as exc:
            raise ExecError(f"pausing container {id}: {exc}") from None

    @hookimpl
    def exec_resume(self, id: str) -> None:
        from .. import cgroups

        try:
            self._running_cgroup(id, "unpause").thaw()
        except cgroups.CgroupError as exc:
            raise ExecError(f"unpausing container {id}: {exc}") from None

    @hookimpl
    def exec_pids(self, id: str) -> list[int]:
        from .. import cgroups

        sdir, st = self.load(id)
        cg = self.cgroup_of(st)
        try:
            pids = cg.pids() if cg is not None and cg.exists() else []
        except cgroups.CgroupError:
            pids = []  # it ended meanwhile
        state = self.current(id, sdir, st)
        init = state["pid"] if state["status"] in ("running", "paused") else None
        return ([init] if init in pids else []) + sorted(p for p in pids if p != init)

    @hookimpl
    def exec_stats(self, id: str) -> dict[str, Any]:
        from .. import cgroups

        sdir, st = self.load(id)
        cg = self.cgroup_of(st)
        try:
            return cg.stats() if cg is not None and cg.exists() else {}
        except cgroups.CgroupError:
            return {}  # it ended meanwhile
