"""What outlives one request/answer: a hijacked connection (attach, exec start),
a ``wait`` sent now and answered later, and an upload made of an iterable.

Each lives on its own connection, so other requests can be made while it is open.
"""

import _socket  # not socket: the CLI's start-up (see dockyard.wire)

from dockyard.wire import demux

TYPE_CHECKING = False  # annotations only: typing is not imported at run time (the CLI's start-up)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from dockyard.wire import Connection, _Reader


class Attachment:
    """A hijacked attach connection: ``frames()`` to read, ``send()`` for stdin.

    It lives on its own socket, so other requests can be made while it is open.
    """

    def __init__(self, sock: _socket.socket, reader: "_Reader", tty: bool) -> None:
        self.sock = sock
        self.tty = tty
        self._reader = reader

    def frames(self) -> "Iterator[tuple[int, bytes]]":
        """Yield ``(stream, bytes)`` until the container closes its output."""
        return demux(self._reader.read_exact, self._reader.read_some, self.tty)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_stdin(self) -> None:
        """Half-close: the container sees end of file on its stdin."""
        try:
            self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "Attachment":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PendingWait:
    """A ``POST /containers/{id}/wait`` already sent; ``result()`` blocks for the answer.

    ``read_body`` is the session's reader of a whole answer (it raises the
    APIError of an error answer and closes the connection)."""

    def __init__(self, conn: "Connection", read_body: "Callable[[Connection], Any]") -> None:
        self._conn = conn
        self._read_body = read_body

    def result(self) -> "Any":
        return self._read_body(self._conn)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "PendingWait":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class IterReader:
    """A binary file object over an iterable of bytes (``read(n)`` gives at most
    ``n`` bytes, gathering small pieces, so an upload goes in big chunks)."""

    def __init__(self, chunks: "Iterable[bytes]") -> None:
        self._it = iter(chunks)
        self._buf = bytearray()
        self._done = False

    def read(self, n: int = -1) -> bytes:
        while not self._done and (n < 0 or len(self._buf) < n):
            try:
                self._buf += next(self._it)
            except StopIteration:
                self._done = True
        if n < 0 or n >= len(self._buf):
            data, self._buf = bytes(self._buf), bytearray()
        else:
            data = bytes(self._buf[:n])
            del self._buf[:n]
        return data


__all__ = ["Attachment", "PendingWait", "IterReader"]
