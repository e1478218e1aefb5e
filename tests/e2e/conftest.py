"""The e2e tests' daemon behind a recording relay: every JSON response it sends them
is checked against the Docker Engine API v1.41 spec (:mod:`dockyard.testing.apicheck`).

The ``daemon`` the tests here receive is the session's daemon (tests/conftest.py)
seen through :class:`~dockyard.testing.apiproxy.RecordingProxy`: its ``sock`` and
``host`` are the relay's, so the docker CLI, the SDK, our CLI and raw ``http()``
calls all pass through it.  After each phase of a test (setup, call, teardown) the
responses of that phase are checked, and the phase fails naming each violation: the
operation, the status, the path in the body and what is wrong.  A shape that drifts
from Docker's fails the test that caused it.

Daemons that a test starts itself (``Daemon(...)``, to restart them) are reached
directly: their responses are not checked.
"""

import copy

import pytest

from dockyard.testing.apicheck import ApiChecker, report
from dockyard.testing.apiproxy import RecordingProxy

_PROXIES: list[RecordingProxy] = []


@pytest.fixture(scope="session")
def api_checker():
    return ApiChecker.load()


@pytest.fixture(scope="session")
def daemon(daemon, api_checker):
    """The session's daemon, reached through the checking relay."""
    proxy = RecordingProxy(str(daemon.base / "api-check.sock"), daemon.sock, api_checker.wants).start()
    _PROXIES.append(proxy)
    seen = copy.copy(daemon)
    seen.sock, seen.host = proxy.path, f"unix://{proxy.path}"
    try:
        yield seen
    finally:
        _PROXIES.remove(proxy)
        proxy.stop()


def _checked(item, when):
    """A test phase, then the check of the responses it received."""
    failed = True
    try:
        result = yield
        failed = False
    finally:
        violations = _violations()
        if violations and failed:  # the phase failed already: say it beside its error
            item.add_report_section(when, "api conformance", report(violations))
    if violations:
        raise AssertionError(report(violations))
    return result


def _violations():
    exchanges = [ex for proxy in _PROXIES for ex in proxy.take()]
    if not exchanges:
        return []
    checker = ApiChecker.load()
    return [v for ex in exchanges for v in checker.check(ex)]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _checked(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _checked(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _checked(item, "teardown"))
