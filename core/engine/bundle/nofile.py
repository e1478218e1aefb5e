"""The daemon's open-file limit, and the one its containers get.

A daemon holds an fd or more for each running container (pidfds, the hub's
sockets and pipes), so the soft ``RLIMIT_NOFILE`` it is started with (1024
under the shipped unit's ``LimitNOFILE=1024:524288``, as under most service
managers) would stop it near a thousand containers.  At start-up the daemon
raises its soft limit to its hard one (:func:`raise_for_daemon`), as the Go
runtime does for dockerd and containerd.  Containers must not inherit the raise:
a program that still uses ``select()`` breaks past fd 1023, which is why the
limit is soft in the first place.  Unless ``Ulimits`` names ``nofile``, a
container's processes get the limit the daemon was started with
(:func:`with_default_nofile`), as Go restores it for the processes it starts.
"""

import resource

_started_with: "tuple[int, int] | None" = None


def raise_for_daemon() -> "tuple[int, int]":
    """Raise this process's soft limit to its hard one; the limits it had before."""
    global _started_with
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    _started_with = (soft, hard)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # a hard limit above fs.nr_open: keep what we have
            pass
    return soft, hard


def with_default_nofile(rlimits: "list[dict[str, object]]") -> "list[dict[str, object]]":
    """``process.rlimits`` (from ``Ulimits``) with, unless it names ``nofile``,
    the limit the daemon was started with; unchanged in a process that did not raise."""
    if _started_with is None or any(r["type"] == "RLIMIT_NOFILE" for r in rlimits):
        return rlimits
    infinity = 2 ** 64 - 1  # the OCI spec's unlimited
    soft, hard = (infinity if v == resource.RLIM_INFINITY else v for v in _started_with)
    return [*rlimits, {"type": "RLIMIT_NOFILE", "soft": soft, "hard": hard}]
