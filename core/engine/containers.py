"""Container lifecycle: create, start, kill, stop, remove, and exit handling.

The engine is synchronous and thread-safe; the daemon calls it from worker
threads.  Every running container has a waiter thread blocked in the exec
driver's ``exec_wait``; when the process ends it records the exit, releases the
mount and network, and emits ``die`` (and ``destroy`` for ``--rm``).
"""

import json
import logging
import os
import re
import secrets
import shutil
import signal as signals
import threading
from datetime import datetime, timezone

from ..errors import (
    Conflict,
    ContainerNotFound,
    DockyardError,
    ExecError,
    InvalidParameter,
    NotFound,
)
from . import bundle, modes, mountpoints, names, shm, verify
from .endpoints import parse_ports
from .health import merged as merged_healthcheck
from .restart import restart_container
from .restart import validate as validate_restart_policy

log = logging.getLogger("dockyard.containers")
NAME_RE = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
ZERO_TIME = "0001-01-01T00:00:00Z"


INIT_PATH = shutil.which("tini-static") or "/usr/bin/tini-static"  # --init, as Docker's docker-init


def stdin_mode(cfg):
    """The exec driver's ``stdin``: Docker's OpenStdin / StdinOnce."""
    if not cfg.get("OpenStdin"):
        return None
    return "once" if cfg.get("StdinOnce") else "open"


def now_iso():
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


class NotModified(Exception):
    """Start of a running / stop of a stopped container: HTTP 304."""


def merge_config(body, image_cfg):
    """Docker's merge of the create request with the image's defaults."""
    cfg = {k: v for k, v in body.items() if k not in ("HostConfig", "NetworkingConfig")}
    env = list(image_cfg.get("Env") or [])
    for item in cfg.get("Env") or []:
        key = item.split("=", 1)[0]
        env = [e for e in env if e.split("=", 1)[0] != key] + [item]
    cfg["Env"] = env
    if cfg.get("Entrypoint") is not None:
        if isinstance(cfg["Entrypoint"], str):
            cfg["Entrypoint"] = [cfg["Entrypoint"]]
        cfg["Entrypoint"] = cfg["Entrypoint"] or None
    else:
        cfg["Entrypoint"] = image_cfg.get("Entrypoint")
        if not cfg.get("Cmd"):
            cfg["Cmd"] = image_cfg.get("Cmd")
    if isinstance(cfg.get("Cmd"), str):
        cfg["Cmd"] = [cfg["Cmd"]]
    for key in ("WorkingDir", "User", "StopSignal"):
        if not cfg.get(key) and image_cfg.get(key):
            cfg[key] = image_cfg[key]
    cfg["Labels"] = {**(image_cfg.get("Labels") or {}), **(cfg.get("Labels") or {})}
    cfg["ExposedPorts"] = {**(image_cfg.get("ExposedPorts") or {}), **(cfg.get("ExposedPorts") or {})} or None
    cfg["Volumes"] = cfg.get("Volumes") or image_cfg.get("Volumes")
    health = merged_healthcheck(cfg.get("Healthcheck"), image_cfg.get("Healthcheck"))
    if health:
        cfg["Healthcheck"] = health
    else:
        cfg.pop("Healthcheck", None)
    for key in ("Tty", "OpenStdin", "StdinOnce", "AttachStdin", "AttachStdout", "AttachStderr"):
        cfg[key] = bool(cfg.get(key))
    cfg.setdefault("Domainname", "")
    cfg.setdefault("OnBuild", image_cfg.get("OnBuild"))
    return cfg


class Containers:
    def __init__(self, engine):
        self.engine = engine
        self.store = engine.store
        self.layers = engine.layers
        self.images = engine.images
        self.exec = engine.exec_slot.hook
        self._locks = {}
        self._locks_guard = threading.Lock()
        self._keep = set()  # ids in `docker restart`: an --rm container is not removed in between

    # records ---------------------------------------------------------------
    def lock(self, cid):
        with self._locks_guard:
            return self._locks.setdefault(cid, threading.RLock())

    def resolve(self, ref):
        """Full id from a name, an id or a unique id prefix (Docker's rules)."""
        if not ref:
            raise ContainerNotFound("No such container: ")
        row = self.store.one("SELECT id FROM containers WHERE id=? OR name=?", ref, ref.lstrip("/"))
        if row:
            return row["id"]
        rows = self.store.query("SELECT id FROM containers WHERE id LIKE ?", ref + "%") if re.fullmatch(r"[0-9a-f]+", ref) else []
        if len(rows) == 1:
            return rows[0]["id"]
        if len(rows) > 1:
            raise InvalidParameter(f"multiple IDs found with provided prefix: {ref}")
        raise ContainerNotFound(f"No such container: {ref}")

    def get(self, cid):
        row = self.store.one("SELECT data FROM containers WHERE id=?", cid)
        if row is None:
            raise ContainerNotFound(f"No such container: {cid}")
        return json.loads(row["data"])

    def save(self, rec):
        with self.store.tx() as db:
            db.execute("UPDATE containers SET data=? WHERE id=?", (json.dumps(rec), rec["Id"]))

    def all(self):
        return [json.loads(r["data"]) for r in self.store.query("SELECT data FROM containers")]

    def users_of_image(self, image_id):
        return [(r["Id"], r["State"]["Running"]) for r in self.all() if r["Image"] == image_id]

    def container_dir(self, cid):
        return os.path.join(self.engine.data_root, "containers", cid)

    def bundle_dir(self, cid):
        return os.path.join(self.engine.exec_root, "containers", cid)

    # create ----------------------------------------------------------------
    def create(self, body, name=None):
        if not isinstance(body, dict) or not body.get("Image"):
            raise InvalidParameter("config: an image is required (the Image field is empty)")
        if name is not None and name != "" and not NAME_RE.match(name):
            raise InvalidParameter(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed")
        verify.container_settings(body)  # moby's create-time checks: nothing is made for a bad config
        host = dict(body.get("HostConfig") or {})
        validate_restart_policy(host)
        try:
            bundle.extra_host_lines(host.get("ExtraHosts"), "0.0.0.0")  # refused at create, as Docker does
        except ValueError as exc:
            raise InvalidParameter(str(exc)) from None
        mode = self.engine.network_mode(host.get("NetworkMode"))
        networks = self.engine.endpoint_configs(mode, body.get("NetworkingConfig"))
        parse_ports(host, body.get("ExposedPorts"))  # refuse a bad -p now, not at start
        image_id = self.images.resolve(body["Image"])
        image_cfg = self.images.config(image_id).get("config") or {}
        cfg = merge_config(body, image_cfg)
        cmd = (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])
        if not cmd:
            raise InvalidParameter("No command specified")
        cid = secrets.token_hex(32)
        cfg["Hostname"] = cfg.get("Hostname") or cid[:12]
        cfg["Image"] = body["Image"]
        host["NetworkMode"] = host.get("NetworkMode") or "default"
        host.setdefault("AutoRemove", False)
        host.setdefault("LogConfig", {"Type": "json-file", "Config": {}})
        name = (name or "").lstrip("/") or names.generate(lambda n: self.store.one(
            "SELECT 1 FROM containers WHERE name=?", n) is None)
        cdir = self.container_dir(cid)
        rec = {
            "Id": cid, "Created": now_iso(), "Path": cmd[0], "Args": cmd[1:], "Path_Args": cmd,
            "Name": "/" + name, "Image": image_id, "Config": cfg, "HostConfig": host,
            "NetworkMode": mode, "Networks": networks, "Driver": self.layers.driver_name, "RestartCount": 0,
            "NetworkSettings": {"Networks": {}, "Ports": {}, "SandboxKey": ""},
            "LogPath": os.path.join(cdir, f"{cid}-json.log"),
            "HostnamePath": os.path.join(cdir, "hostname"), "HostsPath": os.path.join(cdir, "hosts"),
            "ResolvConfPath": os.path.join(cdir, "resolv.conf"),
            "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False,
                      "OOMKilled": False, "Dead": False, "Pid": 0, "ExitCode": 0, "Error": "",
                      "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME},
        }
        top = self.images.get(image_id)["top_layer"]
        with self.store.tx() as db:
            clash = db.execute("SELECT id FROM containers WHERE name=?", (name,)).fetchone()
            if clash:
                raise Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                               f'"{clash["id"]}". You have to remove (or rename) that container to be able to reuse that name.')
            db.execute("INSERT INTO containers(id, name, image_id, data) VALUES (?,?,?,?)",
                       (cid, name, image_id, json.dumps(rec)))
        try:
            rec["MountPoints"] = mountpoints.prepare(self.engine, rec)  # creates the volumes it names
            self.save(rec)
            modes.private_dir(cdir, modes.SHARED_DIR)  # 0710, as Docker's: its log is 0600 inside
            self.layers.create_rw(cid, top)
        except BaseException:
            mountpoints.discard(self.engine, rec)
            shutil.rmtree(cdir, ignore_errors=True)
            with self.store.tx() as db:
                db.execute("DELETE FROM containers WHERE id=?", (cid,))
            raise
        self.engine.emit("container", "create", cid, {"name": name, "image": cfg["Image"]})
        return cid

    # start -----------------------------------------------------------------
    def start(self, ref, policy_restart=False):
        """``policy_restart``: the restart manager's start, which keeps RestartCount."""
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if rec["State"]["Running"] or (rec["State"].get("Restarting") and not policy_restart):
                raise NotModified()
            if not policy_restart:  # started by the user: the restart policy applies afresh
                rec["HasBeenManuallyStopped"] = False
                rec["RestartCount"] = 0
                self.engine.restarts.reset(cid)
            rootfs = self.layers.mount(cid)
            try:
                if rec["NetworkMode"].startswith("container:"):
                    net = {"ns": None, "ip": None, "nameservers": None}
                else:
                    net = self.engine.endpoints.up(rec)
                    self.save(rec)  # its names resolve (embedded DNS) from its first instruction on
                host = rec["HostConfig"]
                try:
                    extra_hosts = bundle.extra_host_lines(host.get("ExtraHosts"), self._host_gateway())
                except ValueError as exc:
                    raise InvalidParameter(str(exc)) from None
                paths = bundle.write_etc_files(
                    self.container_dir(cid), rec["Config"]["Hostname"], "host" if net["ns"] == "host" else "private",
                    ip=net["ip"], nameservers=net["nameservers"], extra_hosts=extra_hosts,
                    dns={k: host.get(k) for k in ("Dns", "DnsSearch", "DnsOptions")})
                try:
                    ns_paths = self._ns_paths(rec, net["ns"])
                    volume_mounts = mountpoints.mount(self.engine, rec, rootfs)
                    config = bundle.make_config(rec, rootfs, paths, ns_paths, init_path=INIT_PATH,
                                                shm_path=self._shm(rec), volume_mounts=volume_mounts)
                except ValueError as exc:
                    raise InvalidParameter(str(exc)) from None
                bdir = bundle.write_bundle(self.bundle_dir(cid), config)
                self.exec.exec_delete(id=cid)
                modes.private_file(rec["LogPath"])  # the shim appends to it: nobody else's from its first line
                self.exec.exec_create(id=cid, bundle=bdir, log_path=rec["LogPath"], stdin=stdin_mode(rec["Config"]))
                pid = self.exec.exec_start(id=cid)
            except BaseException as exc:
                self._release(rec)
                if isinstance(exc, ExecError):
                    rec["State"].update(Error=str(exc), ExitCode=exc.exit_code or 128,
                                        Status="exited" if rec["State"]["StartedAt"] != ZERO_TIME else "created")
                self.save(rec)
                failed = exc
            else:
                failed = None
            if failed is not None:
                if rec["HostConfig"].get("AutoRemove"):  # Docker removes --rm containers that fail to start
                    self.remove(cid, force=True, volumes=True)
                raise failed
            state = self.exec.exec_state(id=cid) or {}
            rec["State"].update(Status="running", Running=True, Paused=False, Restarting=False, Pid=pid, ExitCode=0,
                                Error="", OOMKilled=False,
                                StartedAt=state.get("started_at") or now_iso(), FinishedAt=ZERO_TIME)
            self.save(rec)
        self.engine.emit("container", "start", cid, {"name": rec["Name"][1:], "image": rec["Config"]["Image"]})
        self._watch(cid, pid)

    def _ns_paths(self, rec, netns_path):
        """OCI namespace type -> None (new), "host" or the path of a namespace to
        join (``--pid container:web``; the network namespace the endpoints made)."""
        out = {}
        for kind, mode in bundle.namespace_modes(rec["HostConfig"]).items():
            if mode == "private":
                out[kind] = None
            elif mode == "host":
                out[kind] = "host"
            else:
                out[kind] = self.namespace_path(mode[1], kind)
        if rec["NetworkMode"].startswith("container:"):
            out["network"] = self.namespace_path(rec["NetworkMode"].split(":", 1)[1], "network")
        else:
            out["network"] = netns_path
        return out

    def _shm(self, rec):
        """The host-side /dev/shm to bind: the container's own (IpcMode shareable)
        or its IPC owner's (``container:NAME``, which must be shareable)."""
        mode = rec["HostConfig"].get("IpcMode") or ""
        if mode == "shareable":
            return shm.mount(self.container_dir(rec["Id"]), rec["HostConfig"].get("ShmSize") or bundle.DEFAULT_SHM_SIZE)
        if mode.startswith("container:"):
            owner = self.get(self.resolve(mode.split(":", 1)[1]))
            if (owner["HostConfig"].get("IpcMode") or "") != "shareable":
                raise InvalidParameter("non-shareable IPC (hint: use IpcMode:shareable for the donor container)")
            return shm.path(self.container_dir(owner["Id"]))
        return None

    def namespace_path(self, ref, kind):
        other = self.get(self.resolve(ref))
        label = {"network": "network", "pid": "PID", "ipc": "IPC", "uts": "UTS"}.get(kind, kind)
        if not other["State"]["Running"]:
            raise Conflict(f"cannot join {label} of a non running container: {other['Id']}")
        return f"/proc/{other['State']['Pid']}/ns/{ {'network': 'net', 'mount': 'mnt'}.get(kind, kind)}"

    def _release(self, rec):
        """What a container holds while it runs: its exec state, network, /dev/shm, mount."""
        cid = rec["Id"]
        try:
            self.exec.exec_delete(id=cid)
        except Exception:  # nothing ran; the driver's state is best-effort here
            log.exception("exec_delete of %s failed", cid)
        try:
            self.engine.endpoints.down(rec)
        except Exception:
            log.exception("taking the network of %s down failed", cid)
        shm.unmount(self.container_dir(cid))
        mountpoints.unmount(self.engine, rec)
        self.layers.unmount(cid)

    def _watch(self, cid, pid):
        threading.Thread(target=self._waiter, args=(cid, pid), name=f"wait-{cid[:12]}", daemon=True).start()

    def _waiter(self, cid, pid):
        try:
            state = self.exec.exec_wait(id=cid, timeout=None)
        except Exception as exc:
            log.exception("waiting for %s failed", cid)
            state = {"exit_code": 255, "error": str(exc)}
        self._exited(cid, state or {}, pid)

    def _exited(self, cid, state, pid=None):
        """Record the end of the run whose process was ``pid`` (None: the current run).
        Both a stop's wait and the run's waiter thread report one exit; whichever is
        second must not end the *next* run (docker restart starts it in between)."""
        with self.lock(cid):
            try:
                rec = self.get(cid)
            except ContainerNotFound:
                return
            if not rec["State"]["Running"] or (pid is not None and rec["State"]["Pid"] != pid):
                return
            code = state.get("exit_code")
            rec["State"].update(Status="exited", Running=False, Paused=False, Pid=0,
                                ExitCode=255 if code is None else code,
                                OOMKilled=bool(state.get("oom_killed")), Error=state.get("error") or "",
                                FinishedAt=state.get("finished_at") or now_iso())
            self._release(rec)
            delay = self.engine.restarts.on_exit(rec)  # the restart policy, decided before "die" as Docker does
            auto_remove = rec["HostConfig"].get("AutoRemove") and cid not in self._keep
            self.save(rec)
        if rec["State"]["OOMKilled"]:
            self.engine.emit("container", "oom", cid, {})
        self.engine.emit("container", "die", cid, {"name": rec["Name"][1:], "image": rec["Config"]["Image"],
                                                   "exitCode": str(rec["State"]["ExitCode"])})
        if delay is not None:
            self.engine.restarts.schedule(cid, delay)
        if auto_remove:
            try:
                self.remove(cid, force=True, volumes=True)
            except NotFound:
                pass

    def restore(self):
        """After a daemon (re)start: re-attach to running containers, record the
        exits that happened while the daemon was away."""
        for rec in self.all():
            cid = rec["Id"]
            if not rec["State"]["Running"]:
                self._release_leftovers(rec)
                if rec["HostConfig"].get("AutoRemove") and rec["State"]["Status"] == "exited":
                    self.remove(cid, force=True, volumes=True)
                continue
            state = self.exec.exec_restore(id=cid)
            if state and state.get("status") in ("running", "paused"):
                try:
                    self.engine.endpoints.restore(rec)
                except Exception:
                    log.exception("restoring the network of %s failed", cid)
                mountpoints.restore(self.engine, rec)
                paused = state["status"] == "paused"
                if rec["State"]["Paused"] != paused:
                    rec["State"].update(Paused=paused, Status=state["status"])
                    self.save(rec)
                self._watch(cid, rec["State"]["Pid"])
            else:
                self._exited(cid, state or {"exit_code": 255, "error": "container state lost"})

    def _release_leftovers(self, rec):
        """A stopped container at daemon start.  A daemon killed while starting it
        left what a start takes (the rootfs mount, the network namespace with
        its veths, addresses, /dev/shm, volume uses, maybe a process the record
        never heard of) and a record that says it is not running: let all of it
        go now, not at the user's next ``rm``.  Idempotent: for a container that
        stopped cleanly there is nothing to release."""
        cid = rec["Id"]
        settings = json.dumps(rec.get("NetworkSettings"), sort_keys=True)
        state = self.exec.exec_restore(id=cid)
        if state and state.get("status") == "running":
            log.warning("container %s runs, but its start was never recorded: stopping it", cid[:12])
            try:
                self.exec.exec_kill(id=cid, signal=signals.SIGKILL)
                self.exec.exec_wait(id=cid, timeout=10)
            except Exception:
                log.exception("stopping the unrecorded process of %s failed", cid[:12])
        self._release(rec)
        if self.store.one("SELECT 1 FROM ip_allocations WHERE owner=? LIMIT 1", cid):
            with self.store.tx() as db:  # addresses allocated before the record named them
                db.execute("DELETE FROM ip_allocations WHERE owner=?", (cid,))
        if json.dumps(rec.get("NetworkSettings"), sort_keys=True) != settings:
            self.save(rec)

    # signals -----------------------------------------------------------------
    def kill(self, ref, sig="SIGKILL"):
        cid = self.resolve(ref)
        signum = parse_signal(sig)
        rec = self.get(cid)
        if rec["State"].get("Restarting"):  # Docker: it just stays down, no signal, no event
            self._stopped_by_user(cid)
            return
        if not rec["State"]["Running"]:
            raise Conflict(f"Container {cid} is not running")
        self._refuse_paused(rec, signum)
        self._stopped_by_user(cid)
        self.exec.exec_kill(id=cid, signal=signum)
        self.engine.emit("container", "kill", cid, {"name": rec["Name"][1:], "signal": str(signum)})

    def pause(self, ref):
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if not rec["State"]["Running"]:
                raise Conflict(f"Container {cid} is not running")
            if rec["State"]["Paused"]:
                raise Conflict(f"Container {cid} is already paused")
            self.exec.exec_pause(id=cid)
            rec["State"].update(Paused=True, Status="paused")
            self.save(rec)
        self.engine.emit("container", "pause", cid, {"name": rec["Name"][1:], "image": rec["Config"]["Image"]})

    def unpause(self, ref):
        cid = self.resolve(ref)
        with self.lock(cid):
            rec = self.get(cid)
            if not rec["State"]["Paused"]:
                raise Conflict(f"Container {cid} is not paused")
            self.exec.exec_resume(id=cid)
            rec["State"].update(Paused=False, Status="running")
            self.save(rec)
        self.engine.emit("container", "unpause", cid, {"name": rec["Name"][1:], "image": rec["Config"]["Image"]})

    def _refuse_paused(self, rec, signum):
        if rec["State"].get("Paused") and signum != signals.SIGKILL:
            raise Conflict(f"Container {rec['Id']} is paused. Unpause the container before stopping or killing")

    def wait_exit(self, cid, timeout):
        """Wait up to ``timeout`` s for the process to end; record it; True if it did."""
        pid = self.get(cid)["State"]["Pid"]
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

    def stop(self, ref, timeout=None):
        cid = self.resolve(ref)
        rec = self.get(cid)
        if rec["State"].get("Restarting"):
            self._stopped_by_user(cid)
            self.engine.emit("container", "stop", cid, {"name": rec["Name"][1:]})
            return
        if not rec["State"]["Running"]:
            raise NotModified()
        if timeout is None:
            timeout = rec["Config"].get("StopTimeout") or 10
        sig = parse_signal(rec["Config"].get("StopSignal") or "SIGTERM")
        self._refuse_paused(rec, sig)
        self._stopped_by_user(cid)
        try:
            self.engine.emit("container", "kill", cid, {"name": rec["Name"][1:], "signal": str(sig)})  # as Docker's stop
            self.exec.exec_kill(id=cid, signal=sig)
            if not self.wait_exit(cid, timeout if timeout >= 0 else None):
                self.engine.emit("container", "kill", cid, {"name": rec["Name"][1:], "signal": str(int(signals.SIGKILL))})
                self.exec.exec_kill(id=cid, signal=signals.SIGKILL)
                self.wait_exit(cid, None)
        except (ExecError, NotFound):
            self.wait_exit(cid, None)  # it ended between our look and the signal
        self.engine.emit("container", "stop", cid, {"name": rec["Name"][1:]})

    def _host_gateway(self):
        """``host-gateway`` of ``--add-host``: the default bridge's gateway, as Docker's default."""
        try:
            return (self.engine.networks.get("bridge").get("ipam") or {}).get("gateway")
        except DockyardError:
            return None

    def _stopped_by_user(self, cid):
        """stop, kill, rm -f: no restart policy brings it back until it is started again."""
        with self.lock(cid):
            rec = self.get(cid)
            rec["HasBeenManuallyStopped"] = True
            self.save(rec)
            return self.engine.restarts.cancel(cid)

    def restart(self, ref, timeout=None):
        """``docker restart``: stop it if it runs (or cancel its pending restart), start it."""
        restart_container(self, ref, timeout)

    # remove ------------------------------------------------------------------
    def remove(self, ref, force=False, volumes=False):
        """``volumes``: ``rm -v``, the anonymous volumes go too (named ones stay)."""
        cid = self.resolve(ref)
        rec = self.get(cid)
        if rec["State"].get("Restarting"):
            if not force:
                raise Conflict(f"You cannot remove a restarting container {cid}. Stop the container "
                               "before attempting removal or force remove")
            self._stopped_by_user(cid)  # its pending restart is cancelled (or it has just run)
            rec = self.get(cid)
        if rec["State"]["Running"]:
            if not force:
                raise Conflict(f"You cannot remove a running container {cid}. Stop the container "
                               "before attempting removal or force remove")
            self._stopped_by_user(cid)
            try:
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
            with self.store.tx() as db:
                db.execute("DELETE FROM containers WHERE id=?", (cid,))
        with self._locks_guard:
            self._locks.pop(cid, None)
        if volumes:
            mountpoints.remove_anonymous(self.engine, rec)
        self.engine.emit("container", "destroy", cid, {"name": rec["Name"][1:], "image": rec["Config"]["Image"]})


def parse_signal(sig):
    """``9``, ``KILL`` or ``SIGKILL`` → 9; anything else is a 400."""
    if isinstance(sig, int) or (isinstance(sig, str) and sig.isdigit()):
        num = int(sig)
        if 0 < num < 65:
            return num
    elif isinstance(sig, str):
        name = sig.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if hasattr(signals.Signals, name):
            return int(signals.Signals[name])
    raise InvalidParameter(f"invalid signal: {sig}")
