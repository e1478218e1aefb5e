"""The ``syslog`` log driver's writer (stdlib only: it runs in the container's
shim, imported by bare name; see ``dockyard.hookspecs.logging``).

One message per line, as dockerd sends them (``PRI`` = facility * 8 +
severity, 6 for stdout, 3 for stderr; ``MSG`` the line without its newline,
each message ending in ``\\n``)::

    ""            <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG
    rfc3164       <PRI>Mmm dd hh:mm:ss HOSTNAME TAG[PID]: MSG
    rfc5424       <PRI>1 TIMESTAMP HOSTNAME TAG PID TAG - MSG
    rfc5424micro  the same with microseconds in TIMESTAMP

``PID`` is the shim's (dockerd puts its own).  Transports: ``udp`` (a
datagram each), ``tcp`` and ``tcp+tls`` (a stream, reconnected once when it
broke), ``unix`` (a datagram socket, else a stream one) and ``unixgram``.
A message that cannot be sent is dropped.
"""

import os
import socket
import time

TYPE_CHECKING = False  # annotations only
if TYPE_CHECKING:
    from typing import Any

SEVERITY = {"stdout": 6, "stderr": 3}


def _rfc3339(ns: int, micro: bool) -> str:
    t = time.localtime(ns // 10**9)
    off = t.tm_gmtoff or 0
    zone = "Z" if off == 0 else "%s%02d:%02d" % ("+" if off > 0 else "-", abs(off) // 3600, abs(off) % 3600 // 60)
    frac = ".%06d" % (ns % 10**9 // 1000) if micro else ""
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + frac + zone


def _stamp(ns: int) -> str:
    t = time.localtime(ns // 10**9)
    return time.strftime("%b ", t) + "%2d" % t.tm_mday + time.strftime(" %H:%M:%S", t)


def format_message(fmt: str, pri: int, ns: int, hostname: str, tag: str, pid: int, msg: str) -> str:
    if fmt == "rfc3164":
        return f"<{pri}>{_stamp(ns)} {hostname} {tag}[{pid}]: {msg}\n"
    if fmt in ("rfc5424", "rfc5424micro"):
        return f"<{pri}>1 {_rfc3339(ns, fmt == 'rfc5424micro')} {hostname} {tag} {pid} {tag} - {msg}\n"
    return f"<{pri}>{_stamp(ns)} {tag}[{pid}]: {msg}\n"


class SyslogLog:
    def __init__(self, options: "dict[str, Any]") -> None:
        self.proto, self.address = options["proto"], options["address"]
        self.facility, self.format, self.tag = int(options["facility"]), options.get("format", ""), options["tag"]
        self.tls = options.get("tls") or {}
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.sock: "Any" = None
        self.stream = False
        self.connect()

    def connect(self) -> None:
        p, a = self.proto, self.address
        try:
            if p == "udp":
                family = socket.AF_INET6 if ":" in a[0] else socket.AF_INET
                self.sock = socket.socket(family, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self.sock.connect(tuple(a))
                self.stream = False
            elif p in ("tcp", "tcp+tls"):
                self.sock = socket.create_connection(tuple(a), timeout=5)
                if p == "tcp+tls":
                    self.sock = self._wrap(self.sock, a[0])
                self.sock.settimeout(2)
                self.stream = True
            else:
                kinds = [socket.SOCK_DGRAM] if p == "unixgram" else [socket.SOCK_DGRAM, socket.SOCK_STREAM]
                for n, kind in enumerate(kinds):
                    s = socket.socket(socket.AF_UNIX, kind | socket.SOCK_CLOEXEC)
                    try:
                        s.connect(a)
                        self.sock, self.stream = s, kind == socket.SOCK_STREAM
                        break
                    except OSError:
                        s.close()
                        if n == len(kinds) - 1:
                            raise
        except OSError as exc:
            self.sock = None
            if p in ("unix", "unixgram"):
                raise OSError("Unix syslog delivery error") from None
            raise OSError(f"dial {p} {a[0]}:{a[1]}: {exc.strerror or exc}") from None

    def _wrap(self, sock: "Any", host: str) -> "Any":
        import ssl

        ctx = ssl.create_default_context(cafile=self.tls.get("ca") or None)
        if self.tls.get("cert"):
            ctx.load_cert_chain(self.tls["cert"], self.tls.get("key") or None)
        if self.tls.get("skip_verify"):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx.wrap_socket(sock, server_hostname=host)

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        for stream, data, ns, _partial in entries:
            text = data.decode("utf-8", "replace")
            msg = format_message(self.format, self.facility * 8 + SEVERITY.get(stream, 6), ns, self.hostname,
                                 self.tag, self.pid, text[:-1] if text.endswith("\n") else text)
            self._send(msg.encode())

    def _send(self, data: bytes) -> None:
        for attempt in (0, 1):
            try:
                if self.sock is None:
                    self.connect()
                if self.stream:
                    self.sock.sendall(data)
                else:
                    self.sock.send(data)
                return
            except OSError:
                if self.sock is not None:
                    self.sock.close()
                self.sock = None
                if self.proto in ("udp", "unixgram"):
                    return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


def open_log(options: "dict[str, Any]", container: "dict[str, Any]") -> SyslogLog:
    return SyslogLog(options)
