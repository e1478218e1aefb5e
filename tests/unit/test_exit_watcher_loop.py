"""The exit watcher: one thread, every watched fd, each end reported once."""

import os
import threading
import time

import pytest

from dockyard.engine.containers.watcher import ExitWatcher


def test_every_end_is_reported_once_by_a_bounded_number_of_threads():
    seen, done = [], threading.Event()
    lock = threading.Lock()

    def on_exit(cid, pid):
        with lock:
            seen.append((cid, pid))
            if len(seen) == 200:
                done.set()

    before_threads = threading.active_count()
    watcher = ExitWatcher(on_exit, workers=3)
    pipes = [os.pipe() for _ in range(200)]
    for i, (r, _) in enumerate(pipes):
        watcher.add(r, f"c{i}", 1000 + i)
    assert threading.active_count() - before_threads <= 1 + 3
    assert seen == [] and watcher.watching() == 200
    for _, w in pipes:  # all end at once
        os.close(w)
    assert done.wait(10), f"only {len(seen)} of 200 reported"
    time.sleep(0.2)  # a second report of one would come now
    assert sorted(seen) == sorted((f"c{i}", 1000 + i) for i in range(200))
    assert watcher.watching() == 0
    assert threading.active_count() - before_threads <= 1 + 3
    for r, _ in pipes:  # the watcher closed the read ends it was given (nothing opened fds since)
        with pytest.raises(OSError):
            os.fstat(r)
    watcher.close()


def test_close_stops_the_thread_and_closes_what_it_still_watched():
    calls = []
    watcher = ExitWatcher(lambda cid, pid: calls.append(cid))
    r, w = os.pipe()
    watcher.add(r, "c", 1)
    thread = watcher._thread
    watcher.close()
    thread.join(5)
    assert not thread.is_alive()
    os.close(w)
    time.sleep(0.1)
    assert calls == [] and watcher.watching() == 0
    r2, w2 = os.pipe()
    watcher.add(r2, "late", 2)  # after close: closed, never reported
    try:
        os.write(w2, b"x")
        raised = False
    except BrokenPipeError:
        raised = True
    os.close(w2)
    assert raised and calls == []
