"""One backoff policy for every registry request, pull and push alike.

After a failure (a connection refused, reset or timed out; an answer of 429, 500,
502, 503 or 504) we wait ``factor * 2**(n - 1)`` seconds, ``n`` being the failures
in a row (0.5, 1, 2, 4 s by default, at most ``cap``, with ±10 % jitter so that
parallel transfers do not retry in step), or as long as the registry's
``Retry-After`` says (at most ``retry_after_cap``), then try again, at most
``retries`` times.  The same :class:`Backoff` paces three things:

* a request, inside urllib3: :meth:`Backoff.retry` is the ``urllib3.Retry`` the
  transport passes (:class:`RegistryRetry` counts failures, not redirects, and
  waits through a :class:`Listener`);
* a layer download resumed after its connection broke mid-body, and a blob upload
  started over after a lost connection or a 5xx: :meth:`Backoff.pause`.

A :class:`Listener` hears each retry (pulls and pushes show Docker's "Retrying in
N seconds") and does the waiting, so a cancelled transfer stops waiting at once.
"""

from __future__ import annotations

import random
import time
from itertools import takewhile
from typing import Any, Protocol

from urllib3.exceptions import InvalidHeader
from urllib3.util.retry import Retry

#: answers worth another try
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
#: redirects followed per request (registries send blob GETs to storage)
REDIRECTS = 5
#: what a redirect to another host (scheme, name or port differ) does not carry
NOT_TO_OTHER_HOSTS = ("Authorization", "Proxy-Authorization", "Cookie")


class Listener(Protocol):
    """Who hears of retries: ``retrying`` before each wait, then ``wait`` (which may
    raise to stop, e.g. :class:`~dockyard.registry.errors.PullCancelled`)."""

    def retrying(self, attempt: int, delay: float, reason: str) -> None: ...

    def wait(self, delay: float) -> None: ...


class Quiet:
    """A listener that tells nobody and sleeps."""

    def retrying(self, attempt: int, delay: float, reason: str) -> None:
        pass

    def wait(self, delay: float) -> None:
        time.sleep(delay)


QUIET = Quiet()


class Backoff:
    """The policy; one per :class:`~dockyard.registry.service.Registry`, shared by
    all its sessions."""

    def __init__(self, retries: int = 4, factor: float = 0.5, cap: float = 10.0,
                 retry_after_cap: float = 60.0) -> None:
        self.retries, self.factor, self.cap, self.retry_after_cap = retries, factor, cap, retry_after_cap

    def delay(self, failures: int) -> float:
        """The wait after ``failures`` (>= 1) failures in a row."""
        return min(self.factor * 2 ** (failures - 1), self.cap) * (0.9 + 0.2 * random.random())

    def retry(self, listener: Listener | None = None, retries: int | None = None) -> RegistryRetry:
        """The ``urllib3.Retry`` for one request: ``retries`` (default the policy's)
        more tries after failures, any method (the caller says which requests may
        be repeated: ``retries=0`` for the others), :data:`REDIRECTS` redirects; an
        answer still failing afterwards is returned, not raised, for the caller's
        error message."""
        r = RegistryRetry(total=None, connect=None, read=None, status=None, other=0, redirect=REDIRECTS,
                          allowed_methods=None, status_forcelist=RETRY_STATUS, raise_on_status=False,
                          raise_on_redirect=False, respect_retry_after_header=True,
                          remove_headers_on_redirect=NOT_TO_OTHER_HOSTS)
        r.policy, r.attempts, r.listener = self, self.retries if retries is None else retries, listener or QUIET
        return r

    def pause(self, failures: int, reason: str, listener: Listener | None = None) -> bool:
        """Before trying again, outside a request, after ``failures`` in a row:
        False once they are more than the policy allows; else tell the listener,
        wait, and return True."""
        if failures > self.retries:
            return False
        listener = listener or QUIET
        delay = self.delay(failures)
        listener.retrying(failures, delay, reason)
        listener.wait(delay)
        return True


class RegistryRetry(Retry):
    """``urllib3.Retry`` paced by a :class:`Backoff`: at most ``attempts`` failures
    in a row (redirects do not count), waits of :meth:`Backoff.delay` or the
    answer's ``Retry-After``, each told to and waited by the listener."""

    policy: Backoff
    attempts: int
    listener: Listener

    def new(self, **kw: Any) -> RegistryRetry:
        fresh = super().new(**kw)
        fresh.policy, fresh.attempts, fresh.listener = self.policy, self.attempts, self.listener
        return fresh

    def failures(self) -> int:
        """Failures in a row so far (a redirect ends a run)."""
        return len(list(takewhile(lambda h: h.redirect_location is None, reversed(self.history))))

    def is_exhausted(self) -> bool:
        return super().is_exhausted() or self.failures() > self.attempts

    def get_backoff_time(self) -> float:
        return self.policy.delay(max(self.failures(), 1))

    def sleep(self, response: Any = None) -> None:
        delay = self.get_backoff_time()
        if response is not None:
            try:
                after = self.get_retry_after(response)
            except InvalidHeader:  # not seconds nor an HTTP date: our own backoff
                after = None
            if after is not None:
                delay = min(max(after, 0.0), self.policy.retry_after_cap)
        self.listener.retrying(self.failures(), delay, self._reason())
        self.listener.wait(delay)

    def _reason(self) -> str:
        if not self.history:
            return "retrying"
        last = self.history[-1]
        if last.status:
            return f"the registry answered {last.status}"
        return describe(last.error) if last.error is not None else "retrying"


def describe(exc: BaseException) -> str:
    """A short account of a network error (urllib3's, or the OSError under it)."""
    import http.client
    import socket

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:  # the root cause tells most
        seen.add(id(cur))
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cur, (socket.timeout, TimeoutError)) or type(cur).__name__.endswith("TimeoutError"):
            return "timed out"
        if isinstance(cur, http.client.IncompleteRead):  # urllib3's counts bytes, http.client's keeps them
            got = cur.partial if isinstance(cur.partial, int) else len(cur.partial)
            return f"answer cut short ({got} bytes read, {cur.expected} more expected)"
        nxt = cur.__cause__ or cur.__context__
        if nxt is None and cur.args and isinstance(cur.args[-1], BaseException):
            nxt = cur.args[-1]
        cur = nxt
    return str(exc) or type(exc).__name__
