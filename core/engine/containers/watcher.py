"""One thread that notices every running container's exit.

A thread per running container blocked in the exec driver's ``exec_wait`` costs
a thread (and its stack) per container: a thousand containers, a thousand
threads.  Instead, a driver that offers ``exec_exit_fd`` hands the daemon a file
descriptor per container that becomes readable when the process has ended (the
shim kit's: a pidfd of the container's shim); this module's :class:`ExitWatcher`
polls them all with one ``epoll`` in one thread and hands each exit to a small
pool of workers, which record it (the store, the network, the mounts: slow
work that must not hold up the next exit's notice).  Threads stay at 1 + the
pool's size whatever the number of containers.  epoll has no fd-number limit, as
select(2) has.
"""

from __future__ import annotations

import logging
import os
import select
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

log = logging.getLogger("dockyard.containers")

#: workers recording exits; a burst of exits (``rm -f`` of many) queues behind them
WORKERS = 8


class ExitWatcher:
    """Calls ``on_exit(cid, pid)`` in a worker once the fd given to :meth:`add`
    for that run becomes readable."""

    def __init__(self, on_exit: Callable[[str, int], None], workers: int = WORKERS) -> None:
        self._on_exit = on_exit
        self._workers = workers
        self._lock = threading.Lock()  # guards _watched, _thread, _closed
        self._watched: dict[int, tuple[str, int]] = {}  # fd -> (container id, pid of the run)
        self._ep: select.epoll | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def add(self, fd: int, cid: str, pid: int) -> None:
        """Watch ``fd`` (this object closes it) for the end of ``cid``'s run ``pid``."""
        with self._lock:
            if self._closed:
                os.close(fd)
                return
            self._start()
            assert self._ep is not None
            self._watched[fd] = (cid, pid)  # before epoll can report it
            try:
                self._ep.register(fd, select.EPOLLIN)
            except OSError:
                del self._watched[fd]
                os.close(fd)
                raise

    def watching(self) -> int:
        with self._lock:
            return len(self._watched)

    def _start(self) -> None:
        if self._thread is not None:
            return
        self._ep = select.epoll()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._ep.register(self._wake_r, select.EPOLLIN)
        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="exit")
        self._thread = threading.Thread(target=self._run, name="exit-watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._ep is not None and self._pool is not None
        while True:
            try:
                events = self._ep.poll()
            except OSError:  # closed under us
                return
            for fd, _ in events:
                if fd == self._wake_r:
                    return
                with self._lock:
                    item = self._watched.pop(fd, None)
                    if item is None:
                        continue
                    self._ep.unregister(fd)
                os.close(fd)
                try:
                    self._pool.submit(self._record, *item)
                except RuntimeError:  # the pool shut down: the daemon is closing
                    return

    def _record(self, cid: str, pid: int) -> None:
        try:
            self._on_exit(cid, pid)
        except Exception:
            log.exception("recording the exit of %s failed", cid[:12])

    def close(self) -> None:
        """Stop watching (the daemon shuts down; the next one's restore records
        what ends from now on) and close every fd."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread, pool = self._thread, self._pool
            if thread is None:
                return
            os.write(self._wake_w, b"x")
        thread.join(5)
        if pool is not None:
            pool.shutdown(wait=False)
        with self._lock:
            for fd in self._watched:
                os.close(fd)
            self._watched.clear()
            if self._ep is not None:
                self._ep.close()
            os.close(self._wake_r)
            os.close(self._wake_w)
