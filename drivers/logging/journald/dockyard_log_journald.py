"""The ``journald`` log driver's writer (stdlib only: it runs in the container's
shim, imported by bare name; see ``dockyard.hookspecs.logging``).

systemd's native journal protocol (``systemd.journal-fields(7)``, "Native
Journal Protocol" in systemd's docs): one datagram per entry on the unix
datagram socket ``/run/systemd/journal/socket``, each field ``NAME=value\\n``,
or, when the value holds a newline, ``NAME\\n`` + the value's length as a
little-endian 64-bit integer + the value + ``\\n``.  An entry too big for a
datagram is written to a sealed memfd whose descriptor is sent instead
(``SCM_RIGHTS``).  Fields as dockerd's: ``MESSAGE`` (the line without its
newline), ``PRIORITY`` (6 stdout, 3 stderr), ``CONTAINER_ID``,
``CONTAINER_ID_FULL``, ``CONTAINER_NAME``, ``CONTAINER_TAG``, ``IMAGE_NAME``,
``SYSLOG_IDENTIFIER`` (the tag), the extra attributes (``labels``, ``env``)
with their names upper-cased, and ``CONTAINER_PARTIAL_MESSAGE=true`` on a
part of a line.
"""

import errno
import os
import socket
import struct

TYPE_CHECKING = False  # annotations only
if TYPE_CHECKING:
    from typing import Any

PRIORITY = {"stdout": b"6", "stderr": b"3"}


def field(name: bytes, value: bytes) -> bytes:
    if b"\n" in value:
        return name + b"\n" + struct.pack("<Q", len(value)) + value + b"\n"
    return name + b"=" + value + b"\n"


class JournalLog:
    def __init__(self, options: "dict[str, Any]") -> None:
        self.path = options["socket"]
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self.sock.connect(self.path)
        except OSError:
            self.sock.close()
            raise OSError("journald is not enabled on this host") from None
        self.common = b"".join(field(k.encode(), str(v).encode()) for k, v in sorted(options["fields"].items()))

    def write(self, entries: "list[tuple[str, bytes, int, bool]]") -> None:
        for stream, data, _ns, partial in entries:
            msg = data[:-1] if data.endswith(b"\n") else data
            dgram = (field(b"MESSAGE", msg) + b"PRIORITY=" + PRIORITY.get(stream, b"6") + b"\n" + self.common
                     + (b"CONTAINER_PARTIAL_MESSAGE=true\n" if partial else b""))
            self._send(dgram)

    def _send(self, dgram: bytes) -> None:
        try:
            self.sock.send(dgram)
            return
        except OSError as exc:
            if exc.errno not in (errno.EMSGSIZE, errno.ENOBUFS):
                return  # the journal is gone or full: drop, never block the container
        try:  # too big for a datagram: hand over a sealed memfd
            fd = os.memfd_create("journal-entry", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except OSError:
            return
        try:
            os.write(fd, dgram)
            import fcntl

            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE
                        | fcntl.F_SEAL_SEAL)
            socket.send_fds(self.sock, [b""], [fd])
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        self.sock.close()


def open_log(options: "dict[str, Any]", container: "dict[str, Any]") -> JournalLog:
    return JournalLog(options)
