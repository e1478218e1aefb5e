"""Health checks: Docker's ``HEALTHCHECK`` (the image's, or ``--health-*`` in the
container's Config), run through the exec machinery like ``docker exec``.

Every running container with a check has a monitor thread: every ``Interval`` it
runs ``Test`` (``CMD`` args, ``CMD-SHELL`` through the container's shell, ``NONE``
for none) as an exec instance (so ``exec_create``/``exec_start``/``exec_die``
events appear, as with Docker), waits up to ``Timeout``, and records the result in
``State.Health``: ``Status`` (starting, healthy, unhealthy), ``FailingStreak`` and
the last five results in ``Log``.  A success makes it healthy; ``Retries`` failures
in a row make it unhealthy, except that failures during ``StartPeriod`` while it is
still starting do not count.  A change of status emits ``health_status: STATUS``.

Monitors follow the container events: armed at ``start`` (status back to
starting), stopped at ``die``/``destroy``, and re-armed for the running containers
when the daemon starts (:meth:`HealthMonitor.start`), keeping the recorded status.
The check is read from the record before every probe, so a change applies at once.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from datetime import UTC, datetime
from typing import Any, Callable, Protocol

from ...errors import Conflict, NotFound
from .restart import iso_seconds

log = logging.getLogger("dockyard.health")
DEFAULT_INTERVAL = 30.0  # seconds, as Docker's defaults
DEFAULT_TIMEOUT = 30.0
DEFAULT_RETRIES = 3
MAX_LOG = 5
MAX_OUTPUT = 4096


def merged(user: dict | None, image: dict | None) -> dict | None:
    """Docker's merge of the create request's Healthcheck with the image's."""
    if not user:
        return dict(image) if image else None
    if not image:
        return dict(user)
    out = dict(user)
    if not out.get("Test"):
        out["Test"] = image.get("Test")
    for key in ("Interval", "Timeout", "StartPeriod", "Retries"):
        if not out.get(key):
            out[key] = image.get(key) or 0
    return out


def probe_command(hc: dict | None, shell: list | None = None) -> list[str] | None:
    """The argv of a check, or None (no check, ``NONE``, or a type Docker ignores)."""
    test = list((hc or {}).get("Test") or [])
    if not test or test[0] == "NONE":
        return None
    if test[0] == "CMD":
        return test[1:] or None
    if test[0] == "CMD-SHELL":
        return (list(shell or []) or ["/bin/sh", "-c"]) + test[1:] if test[1:] else None
    return None


def seconds(ns: int | None, default: float) -> float:
    return ns / 1e9 if ns and ns > 0 else default


def go_duration(secs: float) -> str:
    """``0.2`` -> ``200ms``, ``30`` -> ``30s``, ``90`` -> ``1m30s`` (Go's Duration.String)."""
    if secs < 1:
        return f"{secs * 1000:g}ms"
    minutes, rest = divmod(secs, 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{rest:g}s"
    if minutes or hours:
        text = f"{minutes}m" + text
    return (f"{hours}h" if hours else "") + text


def now_iso() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def read_output(path: str) -> str:
    """stdout and stderr of an exec's json-file log, capped as Docker caps it."""
    out = []
    try:
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    out.append(json.loads(line).get("log", ""))
                except ValueError:
                    continue
    except OSError:
        return ""
    return "".join(out)[:MAX_OUTPUT]


class Containers(Protocol):
    """What health checks need of the container records."""

    def get(self, cid: str) -> dict: ...

    def save(self, rec: dict) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[dict]: ...


class Events(Protocol):
    def subscribe(self, callback: Callable[[str, str, str, dict], None]) -> None: ...

    def emit(self, type_: str, action: str, id_: str, attributes: dict) -> None: ...


class HealthMonitor:
    """Runs the health checks of ``containers`` through ``execs`` (the exec
    instances), armed and disarmed by the container events of ``events``."""

    def __init__(self, containers: Containers, execs: Any, events: Events) -> None:
        self.containers, self.execs, self.events = containers, execs, events
        self._stops: dict[str, threading.Event] = {}  # container id -> Event that ends its monitor
        self._lock = threading.Lock()
        events.subscribe(self._on_event)

    def _on_event(self, type_: str, action: str, cid: str, attributes: dict) -> None:
        if type_ != "container":
            return
        if action == "start":
            self.arm(cid, fresh=True)
        elif action in ("die", "destroy"):
            self.disarm(cid)

    def start(self) -> None:
        """Daemon start: monitor every running container that has a check."""
        for rec in self.containers.all():
            if rec["State"]["Running"]:
                self.arm(rec["Id"], fresh=False)

    def close(self) -> None:
        with self._lock:
            stops, self._stops = list(self._stops.values()), {}
        for stop in stops:
            stop.set()

    def arm(self, cid: str, fresh: bool) -> None:
        containers = self.containers
        try:
            rec = containers.get(cid)
        except NotFound:
            return
        if probe_command(rec["Config"].get("Healthcheck"), rec["Config"].get("Shell")) is None:
            return
        with self._lock:
            old = self._stops.pop(cid, None)
            if old is not None and not fresh:
                self._stops[cid] = old  # already watched
                return
            stop = self._stops[cid] = threading.Event()
        if old is not None:
            old.set()
        with containers.lock(cid):
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            health = rec["State"].get("Health")
            if fresh or not health:
                rec["State"]["Health"] = {"Status": "starting", "FailingStreak": 0,
                                          "Log": list((health or {}).get("Log") or [])}
                containers.save(rec)
        threading.Thread(target=self._loop, args=(cid, stop), name=f"health-{cid[:12]}", daemon=True).start()

    def disarm(self, cid: str) -> None:
        with self._lock:
            stop = self._stops.pop(cid, None)
        if stop is not None:
            stop.set()

    def watched(self, cid):
        with self._lock:
            return cid in self._stops

    # one monitor -----------------------------------------------------------------------
    def _loop(self, cid, stop):
        containers = self.containers
        while True:
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            hc = rec["Config"].get("Healthcheck") or {}
            if stop.wait(seconds(hc.get("Interval"), DEFAULT_INTERVAL)):
                return
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            if not rec["State"]["Running"]:
                return
            if rec["State"].get("Paused"):
                continue
            hc = rec["Config"].get("Healthcheck") or {}
            cmd = probe_command(hc, rec["Config"].get("Shell"))
            if cmd is None:
                return
            try:
                result = self._probe(cid, cmd, seconds(hc.get("Timeout"), DEFAULT_TIMEOUT))
            except Exception as exc:  # keep monitoring; say what broke
                log.exception("health check of %s failed", cid[:12])
                result = {"Start": now_iso(), "End": now_iso(), "ExitCode": -1, "Output": str(exc)}
            if result is not None:
                self._record(cid, result, stop)

    def _probe(self, cid, cmd, timeout):
        """Run the check once: its Log entry, or None if the container stopped or paused."""
        execs = self.execs
        start = now_iso()
        try:
            eid = execs.create(cid, {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        except (Conflict, NotFound):
            return None
        inst = None
        try:
            try:
                inst = execs.start(eid)
            except (Conflict, NotFound):
                return None
            except Exception as exc:  # could not run: Docker records -1 and the error
                return {"Start": start, "End": now_iso(), "ExitCode": -1, "Output": str(exc)}
            if not execs.wait(inst, timeout):
                if inst.get("Pid"):
                    try:
                        os.kill(inst["Pid"], signal.SIGKILL)
                    except OSError:
                        pass
                return {"Start": start, "End": now_iso(), "ExitCode": -1,
                        "Output": f"Health check exceeded timeout ({go_duration(timeout)})"}
            return {"Start": start, "End": now_iso(), "ExitCode": inst["ExitCode"],
                    "Output": read_output(inst["_log"])}
        finally:
            if inst is not None:
                execs.finished(inst)
            execs.forget(eid)  # like Docker, a probe's exec instance is not kept around

    def _record(self, cid, result, stop):
        containers = self.containers
        with containers.lock(cid):
            if stop.is_set():
                return
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            state = rec["State"]
            if not state["Running"]:
                return
            hc = rec["Config"].get("Healthcheck") or {}
            health = dict(state.get("Health") or {"Status": "starting", "FailingStreak": 0})
            old = health.get("Status", "starting")
            health["Log"] = (list(health.get("Log") or []) + [result])[-MAX_LOG:]
            if result["ExitCode"] == 0:
                health.update(Status="healthy", FailingStreak=0)
            else:
                counts = True
                if old == "starting":  # never healthy yet: failures in the start period are free
                    since_start = iso_seconds(result["Start"]) - iso_seconds(state.get("StartedAt"))
                    counts = since_start >= seconds(hc.get("StartPeriod"), 0.0)
                if counts:
                    health["FailingStreak"] = health.get("FailingStreak", 0) + 1
                    retries = hc.get("Retries") or DEFAULT_RETRIES
                    if health["FailingStreak"] >= retries:
                        health["Status"] = "unhealthy"
            state["Health"] = health
            containers.save(rec)
        if health["Status"] != old:
            self.events.emit("container", f"health_status: {health['Status']}", cid, {})
