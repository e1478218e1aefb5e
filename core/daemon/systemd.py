"""The daemon as a systemd service: socket activation, readiness, journal priorities.

Three small protocols of systemd's, spoken with the standard library (each is a
few lines: an environment variable and a file descriptor or a datagram; the
PyPI wrappers are either unmaintained (``sdnotify``, last release 2017) or a C
extension needing libsystemd's headers (``systemd-python``)):

* **Socket activation** (``sd_listen_fds(3)``): systemd binds the sockets of
  ``dockyard.socket`` and starts the daemon with them as fds 3, 4, ... and
  ``LISTEN_PID``/``LISTEN_FDS``/``LISTEN_FDNAMES`` in its environment.
  ``-H fd://`` serves on all of them, ``-H fd://N`` on fd N and ``-H fd://NAME``
  on those named NAME (``FileDescriptorName=``; the socket unit's name by
  default): dockerd takes ``fd://`` and ``fd://N``; the name is sd_listen_fds'
  other way of choosing.  The sockets keep the owner, group and mode systemd
  gave them (``SocketUser``/``SocketGroup``/``SocketMode``): ``-G`` does not
  apply, and the daemon neither rebinds nor removes them, so a client that
  connects while the daemon is (re)starting waits in the queue instead of
  failing.
* **Readiness** (``sd_notify(3)``): ``READY=1`` once the API answers (after
  the containers' state is restored), ``STOPPING=1`` when shutdown begins, as
  a ``Type=notify`` unit expects, to ``$NOTIFY_SOCKET`` (a path, or an
  abstract address written with a leading ``@``).
* **Journal priorities**: when stderr is the journal (``$JOURNAL_STREAM``
  names its device and inode), each line starts with its syslog priority
  (``<6>`` for info, ``<3>`` for error...), which journald reads, so
  ``journalctl -p err -u dockyard`` works; the journal adds its own time.

The variables are taken out of the environment when read (as
``sd_listen_fds(unset_environment=1)`` does), and the sockets are made
close-on-exec: the shims, containers and credential helpers the daemon starts
inherit neither.
"""

import logging
import os
import socket
import stat
from typing import IO, MutableMapping, Optional

from ..errors import ConfigError

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START
#: ``--log-level`` values, dockerd's, and the logging levels they mean
LOG_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
              "error": logging.ERROR, "fatal": logging.CRITICAL}
#: syslog priorities (sd-daemon.h's SD_DEBUG ... SD_CRIT) of the logging levels
_PRIORITY = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))

log = logging.getLogger("dockyard.daemon.systemd")


def passed_fds(environ: Optional[MutableMapping[str, str]] = None) -> list[tuple[int, str]]:
    """``[(fd, name), ...]``: the sockets systemd passed to this process, with
    their ``LISTEN_FDNAMES`` names (``"unknown"`` when unnamed), as
    ``sd_listen_fds_with_names``; empty when none were passed or they were meant
    for another process (``LISTEN_PID``).  The variables are removed from
    ``environ`` and the fds made close-on-exec."""
    env = os.environ if environ is None else environ
    pid, count, names = (env.pop(k, None) for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"))
    if pid is None or count is None:
        return []
    try:
        if int(pid) != os.getpid():
            return []
        n = int(count)
    except ValueError:
        raise ConfigError(f"socket activation: LISTEN_PID={pid!r} LISTEN_FDS={count!r} are not numbers") from None
    labels = names.split(":") if names else []
    fds = []
    for i in range(n):
        fd = LISTEN_FDS_START + i
        try:
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise ConfigError(f"socket activation: LISTEN_FDS={n}, but fd {fd}: {exc.strerror}") from None
        fds.append((fd, labels[i] if i < len(labels) and labels[i] else "unknown"))
    return fds


def activated_sockets(host: str, environ: Optional[MutableMapping[str, str]] = None) -> list[socket.socket]:
    """The listening sockets ``-H fd://[N|NAME]`` serves on (see the module's
    docstring).  Passed sockets that are not chosen are closed, as dockerd does.
    Raises :class:`ConfigError` (one line) when systemd passed none, the choice
    matches none, or a chosen one is not a listening unix stream socket: the API
    is served on unix sockets only, whose access the file system controls."""
    want = host[len("fd://"):]
    fds = passed_fds(environ)
    if not fds:
        raise ConfigError(f"-H {host}: no sockets were passed by systemd (LISTEN_FDS/LISTEN_PID unset): "
                          "start it through dockyard.socket, or listen with -H unix://PATH")
    if want in ("", "*"):
        chosen = fds
    elif want.isdigit():
        chosen = [(fd, name) for fd, name in fds if fd == int(want)]
        if not chosen:
            raise ConfigError(f"-H {host}: systemd passed fds {_span(fds)}, not {want}")
    else:
        chosen = [(fd, name) for fd, name in fds if name == want]
        if not chosen:
            raise ConfigError(f"-H {host}: no passed socket is named {want!r} "
                              f"(names: {', '.join(sorted({n for _, n in fds}))})")
    socks = []
    try:
        for fd, name in chosen:
            socks.append(_listening_unix(fd, name, host))
    except BaseException:
        for sock in socks:
            sock.detach()
        raise
    keep = {fd for fd, _ in chosen}
    for fd, _ in fds:
        if fd not in keep:
            os.close(fd)
    return socks


def _span(fds: list[tuple[int, str]]) -> str:
    return f"{fds[0][0]}" if len(fds) == 1 else f"{fds[0][0]}-{fds[-1][0]}"


def _listening_unix(fd: int, name: str, host: str) -> socket.socket:
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ConfigError(f"-H {host}: fd {fd} ({name}): {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"-H {host}: fd {fd} ({name}) is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM \
            or not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        sock.detach()
        raise ConfigError(f"-H {host}: fd {fd} ({name}) is not a listening unix stream socket "
                          "(ListenStream=/path in the socket unit): the API is served on unix sockets only")
    return sock


def socket_file(sock: socket.socket) -> Optional[str]:
    """The path a unix socket is bound to, or ``None`` (abstract or unnamed)."""
    name = sock.getsockname()
    return name if isinstance(name, str) and name.startswith("/") else None


class Notifier:
    """``sd_notify``: state changes sent to the service manager, if one asked for
    them (``$NOTIFY_SOCKET``, taken out of the environment when this is made)."""

    def __init__(self, environ: Optional[MutableMapping[str, str]] = None) -> None:
        env = os.environ if environ is None else environ
        addr = env.pop("NOTIFY_SOCKET", None) or None
        if addr and addr[0] == "@":
            addr = "\0" + addr[1:]  # the abstract namespace
        elif addr and addr[0] != "/":
            log.warning("NOTIFY_SOCKET=%s: not a unix socket address; not notifying", addr)
            addr = None
        self.address: Optional[str] = addr

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; ``False`` if nobody listens.
        A failure is logged, never raised: the daemon serves whether or not the
        manager hears it.  Blocks at most a second (call it off the event loop)."""
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.settimeout(1.0)
            try:
                sock.sendto("\n".join(assignments).encode(), self.address)
            except OSError as exc:
                log.warning("sd_notify %s: %s", ",".join(assignments), exc)
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=shutting down; containers keep running")


def journal_stream(stream: IO, environ: Optional[MutableMapping[str, str]] = None) -> bool:
    """Is ``stream`` the journal's (``$JOURNAL_STREAM`` is its ``DEVICE:INODE``)?"""
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError):  # unset, malformed, or a stream without an fd
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalFormatter(logging.Formatter):
    """``<PRIORITY>logger: message``: journald takes the priority from the prefix
    (``SyslogLevelPrefix=``, on by default) and stamps the time itself."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prio = next((p for level, p in _PRIORITY if record.levelno >= level), 7)
        return "\n".join(f"<{prio}>{line}" for line in super().format(record).splitlines())


def setup_logging(level_name: str, debug: bool = False) -> None:
    """Log to stderr at ``--log-level`` (``-D`` is debug, whatever the level says,
    as dockerd's), with journal priorities when stderr is the journal."""
    level = logging.DEBUG if debug else LOG_LEVELS[level_name]
    handler = logging.StreamHandler()
    if journal_stream(handler.stream):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
