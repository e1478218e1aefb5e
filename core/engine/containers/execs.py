"""Exec instances: ``docker exec``, an extra process in a running container.

Like Docker, instances live in memory (a restarted daemon forgets them) and are
dropped a while after they end.  The process itself is the exec driver's
(:func:`exec_exec`): it joins every namespace, the cgroup and the seccomp filter
of the container; this module turns Docker's exec config into its OCI process.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Callable, Protocol

from ...errors import Conflict, ContainerNotFound, InvalidParameter, NotFound
from ...model.container import ContainerRecord

log = logging.getLogger("dockyard.execs")
KEEP_ENDED = 600  # seconds an ended instance stays inspectable
REWAITS = 100  # looks again at an exec whose wait returned before its end...
REWAIT_PAUSE = 0.05  # ...this many seconds apart


class ExecNotFound(NotFound):
    pass


class Containers(Protocol):
    def resolve(self, ref: str) -> str: ...

    def get(self, cid: str) -> ContainerRecord: ...


class Bundles(Protocol):
    def resolve_user(self, rootfs: str, user: str | None) -> dict: ...

    def exec_env(self, process_env: list[str], config_env: list[str], exec_env: list[str], tty: bool,
                 rootfs: str, uid: int) -> list[str]: ...

    def all_capabilities(self) -> list[str]: ...


class Execs:
    """The exec instances of the containers of ``containers`` (their records), run
    by the exec driver (``exec_hook``); ``bundle_dir(cid)`` is where a container's
    bundle (its ``config.json``, and the instances' logs) lives."""

    def __init__(self, containers: Containers, exec_hook: Any, bundles: Bundles, bundle_dir: Callable[[str], str],
                 emit: Callable[[str, str, str, dict], None]) -> None:
        self.containers, self.exec, self.bundles = containers, exec_hook, bundles
        self.bundle_dir, self.emit = bundle_dir, emit
        self._all: dict[str, dict] = {}
        self._lock = threading.Lock()

    def get(self, eid: str) -> dict:
        with self._lock:
            self._expire()
            inst = self._all.get(eid)
        if inst is None:
            raise ExecNotFound(f"No such exec instance: {eid}")
        return inst

    def _expire(self) -> None:
        now = time.monotonic()
        for eid in [e for e, i in self._all.items() if i.get("ended") and now - i["ended"] > KEEP_ENDED]:
            del self._all[eid]

    def forget(self, eid: str) -> None:
        """Drop an exec instance now (a health probe's: Docker keeps none of them)."""
        with self._lock:
            self._all.pop(eid, None)

    def of_container(self, cid: str) -> list[str]:
        with self._lock:
            return [e for e, i in self._all.items() if i["ContainerID"] == cid]

    def create(self, ref: str, body: dict) -> str:
        cid = self.containers.resolve(ref)
        rec = self.containers.get(cid)
        if not rec.state.running:
            raise Conflict(f"Container {cid} is not running")
        if rec.state.paused:
            raise Conflict(f"Container {cid} is paused, unpause the container before exec")
        cmd = body.get("Cmd")
        if isinstance(cmd, str):
            cmd = [cmd]
        if not cmd or not all(isinstance(a, str) for a in cmd):
            raise InvalidParameter("No exec command specified")
        for item in body.get("Env") or []:
            if "=" not in item:
                raise InvalidParameter(f"invalid environment variable: {item}")
        eid = secrets.token_hex(32)
        inst = {
            "ID": eid, "ContainerID": cid, "Running": False, "ExitCode": None, "Pid": 0,
            "OpenStdin": bool(body.get("AttachStdin")), "OpenStdout": bool(body.get("AttachStdout")),
            "OpenStderr": bool(body.get("AttachStderr")), "CanRemove": False,
            "DetachKeys": body.get("DetachKeys") or "",
            "ProcessConfig": {"tty": bool(body.get("Tty")), "entrypoint": cmd[0], "arguments": cmd[1:],
                              "privileged": bool(body.get("Privileged")), "user": body.get("User") or ""},
            "_body": body, "_log": os.path.join(self.bundle_dir(cid), f"exec-{eid}.log"),
            "_started": False, "_done": threading.Event(),
        }
        with self._lock:
            self._all[eid] = inst
        self.emit("container", f"exec_create: {' '.join(cmd)}", cid, {"execID": eid})
        return eid

    def process(self, inst: dict, tty: bool, console_size: list | None = None) -> dict:
        """The OCI process of ``inst``: the container's, with the exec's changes."""
        body = inst["_body"]
        cid = inst["ContainerID"]
        with open(os.path.join(self.bundle_dir(cid), "config.json")) as fh:
            cfg = json.load(fh)
        base = cfg["process"]
        rec = self.containers.get(cid)
        user = base["user"]
        if body.get("User"):
            try:
                user = self.bundles.resolve_user(cfg["root"]["path"], body["User"])
            except ValueError as exc:
                raise InvalidParameter(str(exc)) from None
        env = self.bundles.exec_env(list(base.get("env") or []), list(rec.config.get("Env") or []),
                                    list(body.get("Env") or []), bool(tty), cfg["root"]["path"], user["uid"])
        caps = base.get("capabilities")
        if body.get("Privileged"):
            caps = {k: self.bundles.all_capabilities() for k in ("bounding", "effective", "permitted")}
        proc = {"terminal": bool(tty), "user": user, "args": list(body["Cmd"]) if isinstance(body["Cmd"], list)
                else [body["Cmd"]], "env": env, "cwd": body.get("WorkingDir") or base.get("cwd") or "/",
                "capabilities": caps, "noNewPrivileges": bool(base.get("noNewPrivileges")),
                "rlimits": base.get("rlimits") or []}
        size = console_size or body.get("ConsoleSize") or rec.host_config.get("ConsoleSize")
        if tty and size and size[0] and size[1]:
            proc["consoleSize"] = {"height": int(size[0]), "width": int(size[1])}
        return proc

    def check(self, eid: str) -> dict:
        """The instance, if it can start now (else Conflict, as Docker answers)."""
        inst = self.get(eid)
        if inst["_started"]:
            raise Conflict(f"Error: Exec command {eid} has already run")
        cid = inst["ContainerID"]
        try:
            rec = self.containers.get(cid)
        except ContainerNotFound:
            raise Conflict(f"Container {cid} is not running") from None
        if not rec.state.running:
            raise Conflict(f"Container {cid} is not running")
        if rec.state.paused:
            raise Conflict(f"Container {cid} is paused, unpause the container before exec")
        return inst

    def start(self, eid: str, tty: bool | None = None, console_size: list | None = None) -> dict:
        """Start the process; returns the instance.  The log at ``inst["_log"]``
        carries its output; :meth:`wait` gives its end."""
        inst = self.check(eid)
        with self._lock:
            if inst["_started"]:
                raise Conflict(f"Error: Exec command {eid} has already run")
            inst["_started"] = True
        cid = inst["ContainerID"]
        tty = inst["ProcessConfig"]["tty"] if tty is None else bool(tty)
        proc = self.process(inst, tty, console_size)
        stdin = "once" if inst["OpenStdin"] else None
        open(inst["_log"], "ab").close()
        try:
            pid = self.exec.exec_exec(id=cid, exec_id=eid, process=proc, log_path=inst["_log"], stdin=stdin)
        except BaseException:
            inst.update(ExitCode=126, ended=time.monotonic())
            inst["_done"].set()
            _unlink(inst["_log"])
            raise
        inst.update(Running=True, Pid=pid)
        self.emit("container", f"exec_start: {' '.join(proc['args'])}", cid, {"execID": eid})
        threading.Thread(target=self._waiter, args=(inst,), name=f"exec-{eid[:12]}", daemon=True).start()
        return inst

    def _waiter(self, inst: dict) -> None:
        cid, eid = inst["ContainerID"], inst["ID"]
        try:
            state = self.exec.exec_exec_wait(id=cid, exec_id=eid, timeout=None)
            for _ in range(REWAITS):  # a driver's wait that returned early: never an exit code made up
                if state.get("status") == "stopped":
                    break
                log.warning("exec %s in %s: its wait returned while it was %s; waiting again",
                            eid[:12], cid[:12], state.get("status"))
                time.sleep(REWAIT_PAUSE)
                state = self.exec.exec_exec_wait(id=cid, exec_id=eid, timeout=None)
        except Exception:  # the container went away with it
            log.exception("waiting for exec %s failed", eid)
            state = {"exit_code": 137}
        if state.get("error"):
            log.warning("exec %s in %s: %s", eid[:12], cid[:12], state["error"])
        code = state.get("exit_code")
        inst.update(Running=False, ExitCode=255 if code is None else code, Pid=0, ended=time.monotonic())
        inst["_done"].set()
        self.emit("container", "exec_die", inst["ContainerID"],
                         {"execID": inst["ID"], "exitCode": str(inst["ExitCode"])})

    def wait(self, inst: dict, timeout: float | None = None) -> bool:
        """Block until ``inst`` ended; True if it did."""
        return inst["_done"].wait(timeout)

    def finished(self, inst: dict) -> None:
        """The stream of ``inst`` was read to the end: its log can go."""
        _unlink(inst["_log"])

    def resize(self, eid: str, height: int, width: int) -> None:
        inst = self.get(eid)
        if not inst["Running"]:
            raise Conflict(f"Exec {eid} is not running")
        self.exec.exec_resize(id=inst["ContainerID"], exec_id=eid, height=height, width=width)

    def inspect(self, eid: str) -> dict:
        inst = self.get(eid)
        out = {k: v for k, v in inst.items() if not k.startswith("_") and k != "ended"}
        out["ExitCode"] = inst["ExitCode"]
        return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
