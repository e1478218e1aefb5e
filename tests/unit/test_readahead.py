"""The pull's read-ahead (dockyard.registry.readahead): the download runs on its
own thread beside the extraction, and hands over exactly the source's bytes, its
error after them, at most ``depth`` chunks ahead, and the source back on close."""

import random
import threading
import time

import pytest

from dockyard.registry.readahead import ReadAhead


class Source:
    """Chunks of random sizes from ``data``, then an error (if any) or the end;
    records the thread and the time of each call."""

    def __init__(self, data, error=None, seed=0):
        self.data, self.error, self.pos = data, error, 0
        self.rng = random.Random(seed)
        self.calls, self.threads = 0, set()

    def __call__(self, n):
        self.calls += 1
        self.threads.add(threading.get_ident())
        if self.pos >= len(self.data):
            if self.error is not None:
                raise self.error
            return b""
        k = min(n, self.rng.randint(1, 5000))
        out = self.data[self.pos:self.pos + k]
        self.pos += len(out)
        return out


def drain(reader, rng):
    out = bytearray()
    while chunk := reader.read(rng.randint(1, 9000)):
        out += chunk
    return bytes(out)


def test_the_bytes_are_the_sources_read_on_another_thread():
    rng = random.Random(1)
    data = rng.randbytes(300_000)
    src = Source(data)
    ahead = ReadAhead(src, chunk=4096)
    assert drain(ahead, rng) == data
    assert ahead.read(10) == b"" and ahead.read() == b""
    assert src.threads and threading.get_ident() not in src.threads
    assert not ahead._thread.is_alive()  # the end was reached: the source is ours again
    ahead.close()


def test_the_sources_error_comes_after_its_bytes_and_stays():
    err = ConnectionError("the registry went away")
    src = Source(b"x" * 10_000, error=err)
    ahead = ReadAhead(src, chunk=1000)
    got = bytearray()
    with pytest.raises(ConnectionError) as caught:
        while True:
            got += ahead.read(700)
    assert caught.value is err and bytes(got) == b"x" * 10_000
    with pytest.raises(ConnectionError):
        ahead.read()
    assert not ahead._thread.is_alive()
    ahead.close()


def test_it_reads_at_most_depth_chunks_ahead_and_close_stops_it():
    src = Source(b"y" * 10_000_000)
    ahead = ReadAhead(src, chunk=1000, depth=3)
    time.sleep(0.5)  # nobody reads: the queue fills, the thread waits for room
    assert src.calls == 4  # three queued, one in hand waiting for room
    assert ahead.read(1) == b"y"
    started = time.monotonic()
    ahead.close()
    assert time.monotonic() - started < 2
    assert not ahead._thread.is_alive()
    calls = src.calls
    time.sleep(0.2)
    assert src.calls == calls  # nothing reads the source once close returned


def test_close_waits_for_a_read_of_the_source_in_progress():
    """The caller aborts or commits what the source wrote right after close: a
    read still under way must be over by then."""
    inside, release, finished = threading.Event(), threading.Event(), threading.Event()

    def slow(n):
        inside.set()
        release.wait(5)
        finished.set()
        return b"z" * n

    ahead = ReadAhead(slow, chunk=10)
    assert inside.wait(5)
    threading.Timer(0.3, release.set).start()
    ahead.close()
    assert finished.is_set() and not ahead._thread.is_alive()


def test_close_asks_a_source_that_keeps_trying_to_give_up():
    """A pull's source retries the registry, with pauses, inside one read: close
    calls ``stopping`` first, so it need not wait for the retries to run out."""
    gave_up = threading.Event()

    def retrying(n):
        for _ in range(500):  # 50 s of "retries", unless told to stop
            if gave_up.wait(0.1):
                raise RuntimeError("stopped")
        return b"late"

    ahead = ReadAhead(retrying, chunk=10, stopping=gave_up.set)
    time.sleep(0.2)
    started = time.monotonic()
    ahead.close()
    assert time.monotonic() - started < 2 and not ahead._thread.is_alive()
