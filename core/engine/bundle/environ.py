"""The environment of a container's process and of an exec, as dockerd gives it.

dockerd (``container.CreateDaemonEnvironment``) starts from ``PATH`` (its default
unless the config sets one), ``HOSTNAME`` and, with a terminal, ``TERM=xterm``;
the config's ``Env`` (and an exec's ``Env``) replaces or adds to that.  runc then
adds ``HOME`` when the result has none: the home of the process's uid in the
image's passwd file, ``/`` without an entry.  Our exec drivers are not runc, so
``HOME`` is spelled out here.

An exec starts from the container's process environment, but its ``HOME`` and
``TERM`` are its own (its user, its terminal) unless the container's config set
them: ``docker exec -u root`` in a ``-u nobody`` container gets ``/root``, and
``docker exec`` without ``-t`` in a ``-t`` container gets no ``TERM``.
"""

from __future__ import annotations

from .users import home_dir

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TTY_TERM = "TERM=xterm"


def _key(item: str) -> str:
    return item.split("=", 1)[0]


def _has(env: list[str], key: str) -> bool:
    return any(_key(e) == key for e in env)


def with_home(env: list[str], rootfs: str, uid: int) -> list[str]:
    """``env`` with ``HOME`` for ``uid`` (:func:`.users.home_dir`) unless it sets a
    non-empty one (runc's test)."""
    if any(e.startswith("HOME=") and e != "HOME=" for e in env):
        return env
    return [e for e in env if e != "HOME="] + [f"HOME={home_dir(rootfs, uid)}"]


def container_env(config_env: list[str], hostname: str, tty: bool, rootfs: str, uid: int) -> list[str]:
    """The container process's environment: its config's ``Env`` completed."""
    env = list(config_env)
    if not _has(env, "PATH"):
        env.insert(0, DEFAULT_PATH)
    if not _has(env, "HOSTNAME"):
        env.append(f"HOSTNAME={hostname}")
    if tty and not _has(env, "TERM"):
        env.append(TTY_TERM)
    return with_home(env, rootfs, uid)


def exec_env(process_env: list[str], config_env: list[str], exec_env: list[str], tty: bool, rootfs: str,
             uid: int) -> list[str]:
    """An exec's environment: the container process's (``process_env``) without the
    ``HOME``/``TERM`` its config (``config_env``) did not set, this exec's
    terminal's ``TERM``, the exec's ``Env`` over that, and ``HOME`` for ``uid``."""
    own = {_key(e) for e in config_env}
    env = [e for e in process_env if _key(e) not in {"HOME", "TERM"} - own]
    if tty and not _has(env, "TERM"):
        env.append(TTY_TERM)
    for item in exec_env:
        env = [e for e in env if _key(e) != _key(item)] + [item]
    return with_home(env, rootfs, uid)
