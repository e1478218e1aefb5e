"""Host port reservations for published ports, as docker-proxy holds them.

Each published port is reserved by binding a socket to it and holding that
socket until the endpoint is detached: the bind is what finds a conflict with
another program, another container or another Dockyard, and what picks a free
port for ``host_port`` 0.  The socket is bound, never listening (a TCP client
that somehow misses the DNAT gets a reset, not a hang), has no SO_REUSEADDR
(nobody else can bind the port while we hold it) and is not inherited by the
processes the daemon starts.
"""

import errno
import ipaddress
import socket
import threading

from dockyard.errors import NetworkError

PROTOS = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}


def normalise(context, ports):
    """Check and normalise a publish list: ``host_ip`` "" becomes "0.0.0.0"."""
    out = []
    for p in ports or []:
        proto = str(p.get("proto") or "tcp").lower()
        if proto not in PROTOS:
            raise NetworkError(f"{context}: protocol {proto!r} cannot be published (tcp or udp)")
        host_ip = p.get("host_ip") or "0.0.0.0"
        try:
            if ipaddress.ip_address(host_ip).version != 4:
                raise ValueError
        except ValueError:
            raise NetworkError(f"{context}: host address {host_ip!r} is not an IPv4 address") from None
        ports_ok = []
        for key, low in (("host_port", 0), ("container_port", 1)):
            value = p.get(key, 0 if key == "host_port" else None)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= 65535:
                raise NetworkError(f"{context}: {key} {value!r} is not a port number")
            ports_ok.append(value)
        out.append({"proto": proto, "host_ip": str(ipaddress.ip_address(host_ip)),
                    "host_port": ports_ok[0], "container_port": ports_ok[1]})
    return out


class Reservations:
    """Sockets held per owner (an endpoint's tag)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._held = {}  # owner -> {(proto, host_ip, host_port): socket}

    def reserve(self, context, owner, ports):
        """Bind every port of ``ports`` not yet held by ``owner``; return the
        ports with their real ``host_port`` and the keys bound by this call (to
        :meth:`commit` or :meth:`abort`).  On a conflict nothing new stays bound."""
        with self._lock:
            held = self._held.setdefault(owner, {})
            new, result = {}, []
            try:
                for p in ports:
                    key = (p["proto"], p["host_ip"], p["host_port"])
                    if p["host_port"] and (key in held or key in new):
                        result.append(dict(p))
                        continue
                    sock = self._bind(context, p)
                    port = sock.getsockname()[1]
                    new[(p["proto"], p["host_ip"], port)] = sock
                    result.append(dict(p, host_port=port))
            except BaseException:
                for sock in new.values():
                    sock.close()
                raise
            held.update(new)
            return result, set(new)

    @staticmethod
    def _bind(context, p):
        sock = socket.socket(socket.AF_INET, PROTOS[p["proto"]])
        try:
            sock.bind((p["host_ip"], p["host_port"]))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                raise NetworkError(f"{context}: port {p['host_port']}/{p['proto']} is already in use "
                                   f"on {p['host_ip']}") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise NetworkError(f"{context}: {p['host_ip']} is not an address of this host") from None
            raise NetworkError(f"{context}: cannot reserve port {p['host_port']}/{p['proto']} "
                               f"on {p['host_ip']}: {e.strerror}") from None
        return sock

    def keep_only(self, owner, ports):
        """Release what ``owner`` holds beyond ``ports`` (after a successful publish)."""
        keep = {(p["proto"], p["host_ip"], p["host_port"]) for p in ports}
        with self._lock:
            held = self._held.get(owner, {})
            for key in [k for k in held if k not in keep]:
                held.pop(key).close()
            if not held:
                self._held.pop(owner, None)

    def abort(self, owner, keys):
        """Release the sockets a failed publish bound."""
        with self._lock:
            held = self._held.get(owner, {})
            for key in keys:
                sock = held.pop(key, None)
                if sock is not None:
                    sock.close()
            if not held:
                self._held.pop(owner, None)

    def release(self, owner):
        """Release everything ``owner`` holds.  Idempotent."""
        with self._lock:
            for sock in self._held.pop(owner, {}).values():
                sock.close()

    def owners(self):
        with self._lock:
            return set(self._held)
