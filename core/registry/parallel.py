"""What a pull and a push share: their parts (layers, the config) run on a
thread pool, the first part that fails stops the others, and a cancel (the
client went away) stops them all.  Each part calls :meth:`Transfer.check`
between chunks."""

import threading
from concurrent.futures import FIRST_EXCEPTION, wait

from .errors import PullCancelled


class Stopped(PullCancelled):
    """Another part of the same transfer failed first."""


class Transfer:
    """Base of :class:`~.pull.Puller` and :class:`~.push.Pusher`."""

    verb = "transfer"  # "pull", "push": for the messages

    def __init__(self, name, cancel=None, resume_hint=""):
        self.cancel = cancel or threading.Event()
        self.stop = threading.Event()
        self._cancelled = f"{self.verb} of {name} cancelled{resume_hint}"

    def check(self):
        """Raise if the transfer was cancelled or another part of it failed."""
        if self.cancel.is_set():
            raise PullCancelled(self._cancelled)
        if self.stop.is_set():
            raise Stopped(f"stopped: another part of the {self.verb} failed")

    def wait_all(self, futures):
        """Wait for the parts; after the first failure stop the others and raise
        the error that started it (not a part's :class:`Stopped`)."""
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        if any(f.exception() for f in done):
            self.stop.set()
            wait(futures)
            errors = [f.exception() for f in futures if f.exception() is not None]
            raise next((e for e in errors if not isinstance(e, Stopped)), errors[0])
