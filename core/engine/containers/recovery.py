"""After a daemon (re)start: the containers as the daemon finds them.

Containers keep running while the daemon is away (its shims hold them), so at
start the daemon re-attaches to the ones that still run and records the exits
that happened meanwhile, with the exit code the shim kept: a container that
ended while the daemon was shutting down or down keeps the code its process
exited with, as with dockerd.  A stopped container's leftovers of a start the
daemon never finished are let go.  These are :class:`~.lifecycle.Lifecycle`'s
(``lc``) steps; the module keeps them apart from the running of containers.
"""

from __future__ import annotations

import copy
import logging
import signal as signals
from typing import Any

from ...model.container import ContainerRecord

log = logging.getLogger("dockyard.containers")


def restore(lc: Any) -> None:
    """Re-attach to every running container of ``lc`` (a :class:`~.lifecycle.Lifecycle`)
    and record the exits of those that ended while the daemon was away."""
    for rec in lc.all():
        cid = rec.id
        if not rec.state.running:
            release_leftovers(lc, rec)
            if rec.host_config.get("AutoRemove") and rec.state.status == "exited":
                lc.remove(cid, force=True, volumes=True)
            continue
        state = lc.exec.exec_restore(id=cid)
        if state and state.get("status") in ("running", "paused"):
            try:
                lc.networks.restore(rec)
            except Exception:
                log.exception("restoring the network of %s failed", cid)
            lc.mounts.restore(rec)
            paused = state["status"] == "paused"
            if rec.state.paused != paused:
                rec.state.paused, rec.state.status = paused, state["status"]
                lc.save(rec)
            lc._watch(cid, rec.state.pid)
        else:
            lc._exited(cid, state or {"exit_code": 255, "error": "container state lost"})


def release_leftovers(lc: Any, rec: ContainerRecord) -> None:
    """A stopped container at daemon start.  A daemon killed while starting it
    left what a start takes (the rootfs mount, the network namespace with
    its veths, addresses, /dev/shm, volume uses, maybe a process the record
    never heard of) and a record that says it is not running: let all of it
    go now, not at the user's next ``rm``.  Idempotent: for a container that
    stopped cleanly there is nothing to release."""
    cid = rec.id
    settings = copy.deepcopy(rec.network_settings)
    state = lc.exec.exec_restore(id=cid)
    if state and state.get("status") == "running":
        log.warning("container %s runs, but its start was never recorded: stopping it", cid[:12])
        try:
            lc.exec.exec_kill(id=cid, signal=signals.SIGKILL)
            lc.exec.exec_wait(id=cid, timeout=10)
        except Exception:
            log.exception("stopping the unrecorded process of %s failed", cid[:12])
    lc._release(rec)
    lc.records.release_addresses(cid)  # addresses allocated before the record named them
    if rec.network_settings != settings:
        lc.save(rec)
