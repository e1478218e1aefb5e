"""Container lifecycle: start, kill, stop, pause, restart, remove, and exit handling.

The engine is synchronous and thread-safe; the daemon calls it from worker
threads.  One :class:`~.watcher.ExitWatcher` thread notices every container's exit
(an old driver's: a thread per container in ``exec_wait``); it is recorded, the mount and
network released, ``die`` emitted (``destroy`` for ``--rm``).  Creating is :mod:`.create`.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import shutil
import signal as signals
import threading
from typing import Any, Callable

from ...errors import Conflict, ContainerNotFound, ExecError, InvalidParameter, NotFound, StorageError
from ...model.container import ZERO_TIME, ContainerRecord
from .. import modes
from . import recovery, shm
from .collaborators import Bundles, Layers, Logs, Networks
from .create import now_iso
from .mountpoints import MountPoints
from .records import ContainerRecords
from .restart import RestartManager
from .verify import parse_signal
from .watcher import ExitWatcher

log = logging.getLogger("dockyard.containers")
#: a Kubernetes pod's container (the CRI's label, naming its sandbox's infra container):
#: with NetworkMode ``container:<that id>`` it joins the sandbox's UTS namespace too, as
#: a pod's containers share the pod's hostname namespace (Docker's UTSMode cannot say it)
POD_SANDBOX_LABEL = "io.dockyard.cri.sandbox-id"
#: the CRI's label of a Kubernetes pod's containers (``sandbox`` or ``container``): ``rm`` needs force
CRI_KIND_LABEL = "io.dockyard.cri.kind"


class NotModified(Exception):
    """Start of a running / stop of a stopped container: HTTP 304."""


def stdin_mode(cfg: dict) -> str | None:
    """The exec driver's ``stdin``: Docker's OpenStdin / StdinOnce."""
    if not cfg.get("OpenStdin"):
        return None
    return "once" if cfg.get("StdinOnce") else "open"


def _with_env(rec: ContainerRecord, env: list[str]) -> ContainerRecord:
    """``rec`` to run with ``env`` (its links' variables) before its own, which win."""
    if not env:
        return rec
    own = list(rec.config.get("Env") or [])
    keys = {item.partition("=")[0] for item in own}
    run = copy.copy(rec)
    run.config = {**rec.config, "Env": [x for x in env if x.partition("=")[0] not in keys] + own}
    return run


class Lifecycle:
    """Runs the containers of ``records`` through the exec driver (``exec_hook``:
    its slot's hook relay); ``data_root``/``exec_root`` hold their directories and
    bundles."""

    def __init__(self, records: ContainerRecords, layers: Layers, exec_hook: Any, networks: Networks,
                 mounts: MountPoints, bundles: Bundles, restarts: RestartManager,
                 emit: Callable[[str, str, str, dict], None], data_root: str, exec_root: str, logs: Logs) -> None:
        self.records, self.layers, self.exec, self.networks = records, layers, exec_hook, networks
        self.logs = logs
        self.mounts, self.bundles, self.restarts, self.emit = mounts, bundles, restarts, emit
        self.data_root, self.exec_root = data_root, exec_root
        self._keep: set[str] = set()  # ids in `docker restart`: an --rm container is not removed in between
        self._closing = False  # the daemon shuts down: exits are the next daemon's to record
        self._recording = threading.Condition()  # guards _closing and _busy
        self._busy = 0  # waiters recording an exit now
        self._watcher = ExitWatcher(self._exit_seen)
        self.resolve, self.get, self.save, self.lock = records.resolve, records.get, records.save, records.lock
        self.all = records.all

    def container_dir(self, cid: str) -> str:
        return os.path.join(self.data_root, "containers", cid)

    def bundle_dir(self, cid: str) -> str:
        return os.path.join(self.exec_root, "containers", cid)

    # start -----------------------------------------------------------------
    def start(self, ref: str, policy_restart: bool = False) -> None:
        """``policy_restart``: the restart manager's start, which keeps RestartCount."""
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if rec.state.running or (rec.state.restarting and not policy_restart):
                raise NotModified()
            if not policy_restart:  # started by the user: the restart policy applies afresh
                rec.manually_stopped = False
                rec.restart_count = 0
                self.restarts.reset(cid)
            rootfs = self.layers.mount(cid)
            failed: BaseException | None = None
            try:
                owner = None
                if rec.network_mode.startswith("container:"):
                    net: dict[str, Any] = {"ns": None, "ip": None, "nameservers": None, "env": [], "hosts": []}
                    # dockerd: the namespace owner's hostname and /etc files
                    owner = self.get(self.resolve(rec.network_mode.split(":", 1)[1]))
                    rec.config["Hostname"] = owner.config["Hostname"]
                    rec.hostname_path, rec.hosts_path = owner.hostname_path, owner.hosts_path
                    rec.resolv_conf_path = owner.resolv_conf_path
                else:
                    net = self.networks.up(rec)
                    if net["ns"] not in (None, "host"):  # its names resolve (embedded DNS) from its start
                        self.save(rec)
                host = rec.host_config
                try:
                    extra_hosts = self.bundles.extra_hosts(host, self.networks.host_gateway())
                except ValueError as exc:
                    raise InvalidParameter(str(exc)) from None
                if owner is None:
                    paths = self.bundles.write_etc_files(
                        self.container_dir(cid), rec.config["Hostname"], "host" if net["ns"] == "host" else "private",
                        ip=net["ip"], nameservers=net["nameservers"], extra_hosts=[*extra_hosts, *net["hosts"]],
                        dns={k: host.get(k) for k in ("Dns", "DnsSearch", "DnsOptions")})
                else:
                    paths = {"hostname": owner.hostname_path, "hosts": owner.hosts_path,
                             "resolv.conf": owner.resolv_conf_path}
                try:
                    ns_paths = self._ns_paths(rec, net["ns"])
                    volume_mounts = self.mounts.mount(rec, rootfs)
                    config = self.bundles.make(_with_env(rec, net["env"]), rootfs, paths, ns_paths,
                                               shm_path=self._shm(rec), volume_mounts=volume_mounts)
                except ValueError as exc:
                    raise InvalidParameter(str(exc)) from None
                bdir = self.bundles.write(self.bundle_dir(cid), config)
                self.exec.exec_delete(id=cid)
                modes.private_file(rec.log_path)  # the shim appends to it: nobody else's from its first line
                self.exec.exec_create(id=cid, bundle=bdir, log_path=rec.log_path, stdin=stdin_mode(rec.config),
                                      log=self.logs.writer(rec))
                pid = self.exec.exec_start(id=cid)
            except BaseException as exc:
                self._release(rec)
                if isinstance(exc, ExecError):
                    rec.state.error, rec.state.exit_code = str(exc), exc.exit_code or 128
                    rec.state.status = "exited" if rec.state.ever_started else "created"
                self.save(rec)
                failed = exc
            if failed is not None:
                if rec.host_config.get("AutoRemove"):  # Docker removes --rm containers that fail to start
                    self.remove(cid, force=True, volumes=True)
                raise failed
            state = self.exec.exec_state(id=cid) or {}
            s = rec.state
            s.status, s.running, s.paused, s.restarting, s.pid = "running", True, False, False, pid
            s.exit_code, s.error, s.oom_killed = 0, "", False
            s.started_at, s.finished_at = state.get("started_at") or now_iso(), ZERO_TIME
            self.save(rec)
        self.emit("container", "start", cid, rec.event_attributes())
        self._watch(cid, pid)

    def _ns_paths(self, rec: ContainerRecord, netns_path: str | None) -> dict:
        """OCI namespace type -> None (new), "host" or the path of a namespace to
        join (``--pid container:web``; the network namespace the endpoints made)."""
        out: dict[str, str | None] = {}
        for kind, mode in self.bundles.namespace_modes(rec.host_config).items():
            if mode == "private":
                out[kind] = None
            elif mode == "host":
                out[kind] = "host"
            else:
                out[kind] = self.namespace_path(mode[1], kind)
        if rec.network_mode.startswith("container:"):
            owner = rec.network_mode.split(":", 1)[1]
            out["network"] = self.namespace_path(owner, "network")
            if out.get("uts") is None and (rec.config.get("Labels") or {}).get(POD_SANDBOX_LABEL) == owner:
                out["uts"] = self.namespace_path(owner, "uts")  # a pod's container: its sandbox's UTS namespace
        else:
            out["network"] = netns_path
        return out

    def _shm(self, rec: ContainerRecord) -> str | None:
        """The host-side /dev/shm to bind: the container's own (IpcMode shareable)
        or its IPC owner's (``container:NAME``, which must be shareable)."""
        mode = rec.host_config.get("IpcMode") or ""
        if mode == "shareable":
            size = rec.host_config.get("ShmSize") or self.bundles.default_shm_size
            return shm.mount(self.container_dir(rec.id), size)
        if mode.startswith("container:"):
            owner = self.get(self.resolve(mode.split(":", 1)[1]))
            if (owner.host_config.get("IpcMode") or "") != "shareable":
                raise InvalidParameter("non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
            return shm.path(self.container_dir(owner.id))
        return None

    def namespace_path(self, ref: str, kind: str) -> str:
        other = self.get(self.resolve(ref))
        label = {"network": "network", "pid": "PID", "ipc": "IPC", "uts": "UTS"}.get(kind, kind)
        if not other.state.running:
            raise Conflict(f"cannot join {label} of a non running container: {other.id}")
        return f"/proc/{other.state.pid}/ns/{ {'network': 'net', 'mount': 'mnt'}.get(kind, kind)}"

    def _release(self, rec: ContainerRecord, later: list | None = None) -> None:
        """What a container holds while it runs: its exec state, network, /dev/shm, mount."""
        cid = rec.id
        try:
            self.exec.exec_delete(id=cid)
        except Exception:  # nothing ran; the driver's state is best-effort here
            log.exception("exec_delete of %s failed", cid)
        try:
            self.networks.down(rec, later)  # ``later``: its events, to follow "die" as dockerd's
        except Exception:
            log.exception("taking the network of %s down failed", cid)
        shm.unmount(self.container_dir(cid))
        self.mounts.unmount(rec)
        self.layers.unmount(cid)

    def _watch(self, cid: str, pid: int) -> None:
        """Record the end of run ``pid`` when it comes (no exit fd: a thread in ``exec_wait``)."""
        try:
            fd = self.exec.exec_exit_fd(id=cid)
        except Exception:
            fd = None
        if fd is not None:
            return self._watcher.add(fd, cid, pid)
        threading.Thread(target=self._waiter, args=(cid, pid), name=f"wait-{cid[:12]}", daemon=True).start()

    def _exit_seen(self, cid: str, pid: int) -> None:
        """The exit fd woke: record the end, or watch again if it still runs (its hub restarted)."""
        with contextlib.suppress(Exception):
            if self.exec.exec_state(id=cid).get("status") in ("running", "paused"):
                return self._watch(cid, pid)
        self._waiter(cid, pid)

    def _waiter(self, cid: str, pid: int) -> None:
        try:
            state = self.exec.exec_wait(id=cid, timeout=None)
        except NotFound as exc:  # a wait_exit (a build's RUN) recorded the exit and deleted the state first
            log.debug("waiting for %s: %s", cid, exc)
            state = {"exit_code": 255, "error": str(exc)}
        except Exception as exc:
            log.exception("waiting for %s failed", cid)
            state = {"exit_code": 255, "error": str(exc)}
        with self._recording:
            if self._closing:  # the next daemon's restore records it, with the code the shim kept
                return
            self._busy += 1
        try:
            self._exited(cid, state or {}, pid)
        finally:
            with self._recording:
                self._busy -= 1
                self._recording.notify_all()

    def close(self, timeout: float = 10.0) -> None:
        """The daemon shuts down: exits from now on are left to the next daemon's
        :meth:`restore` (the shim keeps their codes), and those being recorded are
        finished first, so that no exit is half recorded (its code lost)."""
        with self._recording:
            self._closing = True
            self._recording.wait_for(lambda: self._busy == 0, timeout)
        self._watcher.close()

    def _exited(self, cid: str, state: dict, pid: int | None = None) -> None:
        """Record the end of the run whose process was ``pid`` (None: the current run).
        Both a stop's wait and the run's waiter thread report one exit; whichever is
        second must not end the *next* run (docker restart starts it in between)."""
        with self.lock(cid):
            try:
                rec = self.get(cid)
            except ContainerNotFound:  # removed meanwhile: the lock that self.lock() made goes too
                return self.records.forget_lock(cid)
            if not rec.state.running or (pid is not None and rec.state.pid != pid):
                return
            code = state.get("exit_code")
            s = rec.state
            s.status, s.running, s.paused, s.pid = "exited", False, False, 0
            s.exit_code = 255 if code is None else code
            s.oom_killed, s.error = bool(state.get("oom_killed")), state.get("error") or ""
            s.finished_at = state.get("finished_at") or now_iso()
            self.save(rec)  # the exit first: releasing forgets the driver's state of it
            later: list = []
            self._release(rec, later)
            delay = self.restarts.on_exit(rec)  # the restart policy, decided before "die" as Docker does
            auto_remove = rec.host_config.get("AutoRemove") and cid not in self._keep
            self.save(rec)
        if rec.state.oom_killed:
            self.emit("container", "oom", cid, {})
        self.emit("container", "die", cid, {**rec.event_attributes(), "exitCode": str(rec.state.exit_code)})
        for event in later:  # network disconnect
            self.emit(*event)
        if delay is not None:
            self.restarts.schedule(cid, delay)
        if auto_remove:
            try:
                self.remove(cid, force=True, volumes=True)
            except NotFound:
                pass

    def restore(self) -> None:
        """After a daemon (re)start: re-attach to running containers, record the
        exits that happened while the daemon was away (:mod:`.recovery`)."""
        recovery.restore(self)

    # signals -----------------------------------------------------------------
    def kill(self, ref: str, sig: str | int = "SIGKILL") -> None:
        cid = self.resolve(ref)
        signum = parse_signal(sig)
        rec = self.get(cid)
        if rec.state.restarting:  # Docker: it just stays down, no signal, no event
            self._stopped_by_user(cid)
            return
        if not rec.state.running:
            raise Conflict(f"Container {cid} is not running")
        self._refuse_paused(rec, signum)
        self._stopped_by_user(cid)
        self.emit("container", "kill", cid, {"name": rec.name, "signal": str(signum)})  # before its "die"
        self.exec.exec_kill(id=cid, signal=signum)
        if signum == signals.SIGKILL:  # dockerd's Kill: it returns once the container has stopped
            self.wait_exit(cid, None)

    def pause(self, ref: str) -> None:
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if not rec.state.running:
                raise Conflict(f"Container {cid} is not running")
            if rec.state.paused:
                raise Conflict(f"Container {cid} is already paused")
            self.exec.exec_pause(id=cid)
            rec.state.paused, rec.state.status = True, "paused"
            self.save(rec)
        self.emit("container", "pause", cid, rec.event_attributes())

    def unpause(self, ref: str) -> None:
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if not rec.state.paused:
                raise Conflict(f"Container {cid} is not paused")
            self.exec.exec_resume(id=cid)
            rec.state.paused, rec.state.status = False, "running"
            self.save(rec)
        self.emit("container", "unpause", cid, rec.event_attributes())

    def _refuse_paused(self, rec: ContainerRecord, signum: int) -> None:
        if rec.state.paused and signum != signals.SIGKILL:
            raise Conflict(f"Container {rec.id} is paused. Unpause the container before stopping or killing")

    def wait_exit(self, cid: str, timeout: float | None) -> bool:
        """Wait up to ``timeout`` s for the process to end; record it; True if it did."""
        pid = self.get(cid).state.pid
        try:
            state = self.exec.exec_wait(id=cid, timeout=timeout)
        except NotFound:
            state = None
        if state is not None and state.get("status") in ("running", "paused"):
            return False
        if state is not None and state.get("status") == "stopped":
            self._exited(cid, state, pid)
        # Otherwise the waiter thread is recording the exit: it deletes the
        # driver's state under the container lock, so wait for it to finish.
        with self.lock(cid):
            return True

    def stop(self, ref: str, timeout: int | None = None) -> None:
        cid = self.resolve(ref)
        rec = self.get(cid)
        if rec.state.restarting:
            self._stopped_by_user(cid)
            self.emit("container", "stop", cid, {"name": rec.name})
            return
        if not rec.state.running:
            raise NotModified()
        if timeout is None:
            timeout = rec.config.get("StopTimeout") or 10
        sig = parse_signal(rec.config.get("StopSignal") or "SIGTERM")
        self._refuse_paused(rec, sig)
        self._stopped_by_user(cid)
        try:
            self.emit("container", "kill", cid, {"name": rec.name, "signal": str(sig)})  # as Docker's stop
            self.exec.exec_kill(id=cid, signal=sig)
            if not self.wait_exit(cid, timeout if timeout >= 0 else None):
                self.emit("container", "kill", cid, {"name": rec.name, "signal": str(int(signals.SIGKILL))})
                self.exec.exec_kill(id=cid, signal=signals.SIGKILL)
                self.wait_exit(cid, None)
        except (ExecError, NotFound):
            self.wait_exit(cid, None)  # it ended between our look and the signal
        self.emit("container", "stop", cid, {"name": rec.name})

    def _stopped_by_user(self, cid: str) -> bool:
        """stop, kill, rm -f: no restart policy brings it back until it is started again."""
        with self.lock(cid):
            rec = self.get(cid)
            rec.manually_stopped = True
            self.save(rec)
            return self.restarts.cancel(cid)

    def restart(self, ref: str, timeout: int | None = None) -> None:
        """``docker restart``: stop it if it runs (an ``--rm`` container is not removed
        in between) or cancel its pending restart, start it, emit ``restart``."""
        cid = self.resolve(ref)
        self._keep.add(cid)
        try:
            try:
                self.stop(cid, timeout)
            except NotModified:
                pass
        finally:
            self._keep.discard(cid)
        try:
            self.start(cid)
        except NotModified:
            pass
        rec = self.get(cid)
        self.emit("container", "restart", cid, rec.event_attributes())

    # remove ------------------------------------------------------------------
    def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        """``volumes``: ``rm -v``, the anonymous volumes go too (named ones stay)."""
        cid = self.resolve(ref)
        rec = self.get(cid)
        kind = (rec.config.get("Labels") or {}).get(CRI_KIND_LABEL)
        if kind and not force:  # a pod's: the kubelet would only make it again
            raise Conflict(f"container {rec.name} ({cid[:12]}) is managed by Kubernetes (a pod's {kind}): remove "
                           "it through Kubernetes (kubectl, crictl), or force the removal (docker rm -f)")
        if rec.state.restarting:
            if not force:
                raise Conflict(f"You cannot remove a restarting container {cid}. Stop the container "
                               "before attempting removal or force remove")
            self._stopped_by_user(cid)  # its pending restart is cancelled (or it has just run)
            rec = self.get(cid)
        if rec.state.running:
            if not force:
                raise Conflict(f"You cannot remove a running container {cid}. Stop the container "
                               "before attempting removal or force remove")
            self._stopped_by_user(cid)
            try:  # dockerd's rm -f kills it: "kill", "die", then "destroy"
                self.emit("container", "kill", cid, {"name": rec.name, "signal": str(int(signals.SIGKILL))})
                self.exec.exec_kill(id=cid, signal=signals.SIGKILL)
            except (ExecError, NotFound):
                pass  # it ended meanwhile
            self.wait_exit(cid, None)
        with self.lock(cid):
            try:
                rec = self.get(cid)
            except ContainerNotFound:
                return  # an AutoRemove beat us to it
            self.exec.exec_delete(id=cid)
            self.layers.remove_rw(cid)
            shm.unmount(self.container_dir(cid))
            shutil.rmtree(self.container_dir(cid), ignore_errors=True)
            shutil.rmtree(self.bundle_dir(cid), ignore_errors=True)
            top = self.records.top_layer(cid)
            self.records.delete(cid)
        self.records.forget_lock(cid)
        try:  # the layers it held go with it if no image (one deleted by rmi -f) has them
            self.layers.release(top)
        except StorageError as exc:
            log.warning("the layers of removed container %s stay: %s", cid[:12], exc)
        if volumes:
            self.mounts.remove_anonymous(rec)
        self.emit("container", "destroy", cid, rec.event_attributes())
