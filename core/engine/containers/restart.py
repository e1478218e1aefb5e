"""Restart policies (``--restart no|always|unless-stopped|on-failure[:N]``), as Docker's
restartmanager and daemon/monitor.go apply them.

When a container's process ends, :meth:`RestartManager.on_exit` (called by
``Lifecycle._exited`` under the container's lock, before ``die`` is emitted)
decides: the record becomes ``restarting`` with its restart count one higher, and
:meth:`schedule` starts it again after the back-off delay, which starts at 100 ms,
doubles with every restart up to one minute, and falls back to 100 ms once the
container ran for 10 s or more.  The policy is read from the record's HostConfig
at every exit, so ``docker update --restart`` takes effect at the next one.

A container stopped by the user (stop, kill, rm -f) has ``manually_stopped``
set and any pending restart cancelled: no policy brings it back until it is started
again.  When the daemon starts (:meth:`start`, after the records are restored),
Docker's rule applies to containers that ran before: ``always`` comes back even if
stopped by the user, ``unless-stopped`` only if not, ``on-failure`` if it failed
and has retries left.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any, Callable, Protocol

from ...errors import InvalidParameter, NotFound
from ...model.container import ContainerRecord

log = logging.getLogger("dockyard.restart")
POLICIES = ("", "no", "always", "unless-stopped", "on-failure")
FIRST_DELAY = 0.1  # seconds
MAX_DELAY = 60.0
RESET_AFTER = 10.0  # a run this long resets the back-off


def policy(host: dict | None) -> tuple[str, int]:
    """``(name, max_retries)`` of a HostConfig; ``""`` and ``"no"`` are both "no"."""
    rp = (host or {}).get("RestartPolicy") or {}
    name = rp.get("Name") or "no"
    return name, int(rp.get("MaximumRetryCount") or 0)


def validate(host: dict | None) -> None:
    """Refuse what Docker refuses at create (and update) time, with its messages."""
    rp = (host or {}).get("RestartPolicy") or {}
    if not isinstance(rp, dict):
        raise InvalidParameter("invalid restart policy: RestartPolicy must be an object")
    name = rp.get("Name") or ""
    if name not in POLICIES:
        raise InvalidParameter(f"invalid restart policy '{name}'")
    try:
        retries = int(rp.get("MaximumRetryCount") or 0)
    except (TypeError, ValueError):
        raise InvalidParameter("invalid restart policy: MaximumRetryCount must be an integer") from None
    if retries < 0:
        raise InvalidParameter("invalid restart policy: maximum retry count cannot be negative")
    if retries and name != "on-failure":
        raise InvalidParameter("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    if name not in ("", "no") and (host or {}).get("AutoRemove"):
        raise InvalidParameter("can't create 'AutoRemove' container with restart policy")


def should_restart(name: str, retries: int, exit_code: int, manually_stopped: bool, restart_count: int) -> bool:
    if name == "always":
        return True
    if name == "unless-stopped":
        return not manually_stopped
    if name == "on-failure":
        return exit_code != 0 and (retries == 0 or restart_count < retries)
    return False


def iso_seconds(iso: str | None) -> float:
    if not isinstance(iso, str):
        return 0.0
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()
    except (AttributeError, ValueError):
        return 0.0


class Containers(Protocol):
    """What restart policies need of the container records."""

    def get(self, cid: str) -> ContainerRecord: ...

    def save(self, rec: ContainerRecord) -> None: ...

    def lock(self, cid: str) -> Any: ...

    def all(self) -> list[ContainerRecord]: ...


class RestartManager:
    """Applies the restart policies of ``containers`` (their records); ``start`` is
    the lifecycle's start (``start(cid, policy_restart=...)``), given once it exists."""

    def __init__(self, containers: Containers, start: Callable[..., None] | None = None) -> None:
        self.containers = containers
        self.start_container = start
        self._delays: dict[str, float] = {}  # container id -> the last back-off delay
        self._pending: dict[str, threading.Event] = {}  # container id -> Event set to cancel its scheduled restart
        self._lock = threading.Lock()
        self._ready = threading.Event()  # restarts wait until the daemon restored every record

    # exits ---------------------------------------------------------------------------
    def on_exit(self, rec: ContainerRecord) -> float | None:
        """The container of ``rec`` (updated, under its lock) ended: the delay of its
        restart (and ``rec`` marked restarting), or None."""
        cid = rec.id
        name, retries = policy(rec.host_config)
        if name in ("", "no") or rec.manually_stopped:
            self.reset(cid)
            return None
        state = rec.state
        ran = iso_seconds(state.finished_at) - iso_seconds(state.started_at)
        with self._lock:
            delay = 0.0 if ran >= RESET_AFTER else self._delays.get(cid, 0.0)
            delay = FIRST_DELAY if delay <= 0 else min(delay * 2, MAX_DELAY)
            if not should_restart(name, retries, state.exit_code, False, rec.restart_count):
                self._delays.pop(cid, None)
                return None
            self._delays[cid] = delay
        rec.restart_count += 1
        state.restarting, state.status = True, "restarting"
        return delay

    def schedule(self, cid: str, delay: float) -> None:
        cancelled = threading.Event()
        with self._lock:
            old = self._pending.pop(cid, None)
            if old is not None:
                old.set()
            self._pending[cid] = cancelled
        threading.Thread(target=self._restart, args=(cid, delay, cancelled), name=f"restart-{cid[:12]}",
                         daemon=True).start()

    def _restart(self, cid: str, delay: float, cancelled: threading.Event) -> None:
        if cancelled.wait(delay):
            return
        self._ready.wait()
        containers = self.containers
        with containers.lock(cid):  # cancel() takes it too: a cancelled restart never starts
            with self._lock:
                if cancelled.is_set():
                    return
                if self._pending.get(cid) is cancelled:
                    del self._pending[cid]
            try:
                rec = containers.get(cid)
            except NotFound:
                return
            if not rec.state.restarting:
                return
            try:
                self._start(cid, policy_restart=True)
            except Exception as exc:
                log.warning("restarting %s failed: %s", cid[:12], exc)
                self._stay_down(cid, str(exc))

    def _stay_down(self, cid: str, error: str | None = None) -> None:
        containers = self.containers
        try:
            rec = containers.get(cid)
        except NotFound:
            return
        if rec.state.restarting:
            rec.state.restarting, rec.state.status = False, "exited"
            if error:
                rec.state.error = error
            containers.save(rec)

    def cancel(self, cid: str) -> bool:
        """No scheduled restart of ``cid`` happens after this; True if one was pending
        (the record is then ``exited``)."""
        containers = self.containers
        with containers.lock(cid):
            with self._lock:
                pending = self._pending.pop(cid, None)
                self._delays.pop(cid, None)
            if pending is not None:
                pending.set()
            try:
                restarting = containers.get(cid).state.restarting
            except NotFound:
                return False
            self._stay_down(cid)
            return pending is not None or restarting

    def reset(self, cid: str) -> None:
        """A start by the user: the back-off begins again."""
        with self._lock:
            self._delays.pop(cid, None)

    def pending(self, cid: str) -> bool:
        with self._lock:
            return cid in self._pending

    def _start(self, cid: str, policy_restart: bool = False) -> None:
        assert self.start_container is not None, "the restart manager has no start to call"
        self.start_container(cid, policy_restart=policy_restart)

    # daemon start --------------------------------------------------------------------
    def start(self) -> None:
        """After ``Lifecycle.restore``: let scheduled restarts run, and start the
        containers Docker starts when its daemon starts."""
        self._ready.set()
        containers = self.containers
        due = []
        for rec in containers.all():
            state = rec.state
            if state.running or self.pending(rec.id):
                continue
            name, retries = policy(rec.host_config)
            if state.restarting:  # the daemon went away during its back-off
                due.append((rec.id, True))
            elif not state.ever_started or name in ("", "no"):
                continue
            elif should_restart(name, retries, state.exit_code, rec.manually_stopped, rec.restart_count):
                due.append((rec.id, False))
        threads = [threading.Thread(target=self._start_at_boot, args=item, daemon=True) for item in due]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    def _start_at_boot(self, cid: str, restarting: bool) -> None:
        try:
            if restarting:  # its back-off was cut short: the same run of restarts goes on
                self._start(cid, policy_restart=True)
            else:  # Docker starts these afresh (RestartCount 0)
                self._start(cid)
        except Exception as exc:
            log.warning("starting %s at daemon start failed: %s", cid[:12], exc)
            self._stay_down(cid, str(exc))
