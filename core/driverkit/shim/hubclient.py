"""The daemon's end of the :mod:`.hub` (the exec option ``supervisor = "hub"``).

A launcher like :class:`~.client.Zygote`: :meth:`Hub.launch` sends a state
directory and the report pipe, and :func:`~.client.start` reads the report.
The hub is not the daemon's child: it and its :mod:`.keeper` outlive the
daemon, like shims.  The daemon connects to ``HOME/hub.sock`` and keeps the
connection (the hub stays while a daemon is connected); when nothing answers
there it starts the keeper, which detaches and starts the hub.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Sequence

from dockyard.errors import ExecError

START_WAIT = 10.0  # seconds a new keeper has to get its hub listening


class Hub:
    """``cmd + [HOME]`` runs ``keeper.main(sys.argv, spawn, finish)``."""

    def __init__(self, cmd: Sequence[str], home: str) -> None:
        self.cmd, self.home = list(cmd), home
        self.sock: socket.socket | None = None
        self._lock = threading.Lock()

    def warm(self) -> None:
        """Connect now (starting the keeper if need be), off the first start's path."""
        with self._lock:
            self._ensure()

    def _connect(self) -> socket.socket | None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        dirfd = os.open(self.home, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dirfd}/hub.sock")  # short, whatever home's length
            return sock
        except OSError:
            sock.close()
            return None
        finally:
            os.close(dirfd)

    def _ensure(self) -> socket.socket:
        if self.sock is not None:
            return self.sock
        sock = self._connect()
        if sock is None:
            with open(os.path.join(self.home, "hub.log"), "ab") as errlog:
                keeper = subprocess.Popen([*self.cmd, self.home], start_new_session=True, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.DEVNULL, stderr=errlog, cwd="/")
            keeper.wait(START_WAIT)  # it forks and leaves at once: the keeper is init's, not ours
            deadline = time.monotonic() + START_WAIT
            while (sock := self._connect()) is None:
                if time.monotonic() > deadline:
                    raise ExecError(f"the supervisor hub did not start; see {self.home}/hub.log")
                time.sleep(0.01)
        self.sock = sock
        return sock

    def launch(self, sdir: str) -> int:
        """Have the hub start ``sdir``'s process; return the read end of its report pipe."""
        rfd, wfd = os.pipe()
        try:
            with self._lock:
                for attempt in (1, 2):
                    sock = self._ensure()
                    try:
                        socket.send_fds(sock, [os.fsencode(sdir)], [wfd])
                        break
                    except OSError:  # that hub went away (killed, restarted by its keeper): its successor
                        sock.close()
                        self.sock = None
                        if attempt == 2:
                            raise
        except BaseException:
            os.close(rfd)
            raise
        finally:
            os.close(wfd)
        return rfd

    def close(self) -> None:
        """Disconnect: a hub that supervises nothing then exits, and its keeper with it."""
        with self._lock:
            if self.sock is not None:
                self.sock.close()
                self.sock = None
