"""Health checks: Docker's ``HEALTHCHECK`` (the image's, or ``--health-*`` in the
container's Config), run through the exec machinery like ``docker exec``.

Every running container with a check has a monitor thread: every ``Interval`` it
runs ``Test`` (``CMD`` args, ``CMD-SHELL`` through the container's shell, ``NONE``
for none) as an exec instance (so ``exec_create``/``exec_start``/``exec_die``
events appear, as with Docker), waits up to ``Timeout``, and records the result in
the record's ``state.health`` (``State.Health``): the status (starting, healthy,
unhealthy), the failures in a row and the last five results.  A success makes it healthy; ``Retries`` failures
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
from ...model.container import ContainerRecord, Health, HealthResult
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

    def get(self, cid: str) -> ContainerRecord: ...

    def save(self, rec: ContainerRecord) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[ContainerRecord]: ...


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
            if rec.state.running:
                self.arm(rec.id, fresh=False)

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
        if probe_command(rec.config.get("Healthcheck"), rec.config.get("Shell")) is None:
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
            health = rec.state.health
            if fresh or health is None:
                rec.state.health = Health(log=list(health.log) if health is not None else [])
                containers.save(rec)
        threading.Thread(target=self._loop, args=(cid, stop), name=f"health-{cid[:12]}", daemon=True).start()

    def disarm(self, cid: str) -> None:
        with self._lock:
            stop = self._stops.pop(cid, None)
        if stop is not None:
            stop.set()

    def watched(self, cid: str) -> bool:
        with self._lock:
            return cid in self._stops

    # one monitor -----------------------------------------------------------------------
    def _loop(self, cid: str, stop: threading.Event) -> None:
        containers = self.containers
        while True:
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            hc = rec.config.get("Healthcheck") or {}
            if stop.wait(seconds(hc.get("Interval"), DEFAULT_INTERVAL)):
                return
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            if not rec.state.running:
                return
            if rec.state.paused:
                continue
            hc = rec.config.get("Healthcheck") or {}
            cmd = probe_command(hc, rec.config.get("Shell"))
            if cmd is None:
                return
            try:
                result = self._probe(cid, cmd, seconds(hc.get("Timeout"), DEFAULT_TIMEOUT))
            except Exception as exc:  # keep monitoring; say what broke
                log.exception("health check of %s failed", cid[:12])
                result = HealthResult(now_iso(), now_iso(), -1, str(exc))
            if result is not None:
                self._record(cid, result, stop)

    def _probe(self, cid: str, cmd: list[str], timeout: float) -> HealthResult | None:
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
                return HealthResult(start, now_iso(), -1, str(exc))
            if not execs.wait(inst, timeout):
                if inst.get("Pid"):
                    try:
                        os.kill(inst["Pid"], signal.SIGKILL)
                    except OSError:
                        pass
                return HealthResult(start, now_iso(), -1, f"Health check exceeded timeout ({go_duration(timeout)})")
            return HealthResult(start, now_iso(), inst["ExitCode"], read_output(inst["_log"]))
        finally:
            if inst is not None:
                execs.finished(inst)
            execs.forget(eid)  # like Docker, a probe's exec instance is not kept around

    def _record(self, cid: str, result: HealthResult, stop: threading.Event) -> None:
        containers = self.containers
        with containers.lock(cid):
            if stop.is_set():
                return
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            state = rec.state
            if not state.running:
                return
            hc = rec.config.get("Healthcheck") or {}
            health = state.health if state.health is not None else Health()
            old = health.status
            health.log = (health.log + [result])[-MAX_LOG:]
            if result.exit_code == 0:
                health.status, health.failing_streak = "healthy", 0
            else:
                counts = True
                if old == "starting":  # never healthy yet: failures in the start period are free
                    since_start = iso_seconds(result.start) - iso_seconds(state.started_at)
                    counts = since_start >= seconds(hc.get("StartPeriod"), 0.0)
                if counts:
                    health.failing_streak += 1
                    retries = hc.get("Retries") or DEFAULT_RETRIES
                    if health.failing_streak >= retries:
                        health.status = "unhealthy"
            state.health = health
            containers.save(rec)
        if health.status != old:
            self.events.emit("container", f"health_status: {health.status}", cid, {})
