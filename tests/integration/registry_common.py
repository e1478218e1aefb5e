"""Fixtures the registry test modules share: one plain registry per module, a
fault-injecting proxy in front of it, and a daemon that treats both as
insecure (plain HTTP) registries, with busybox imported."""

import uuid

import pytest
from dockyard.testing.registry import FaultProxy, RegistryServer
from dockyard.testing.registry_content import registry_daemon, stop_daemon


def uniq(prefix="t"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def registry_fixture(prefix, doc=None, **options):
    """A module-scoped fixture: a RegistryServer of its own (``options`` passed
    on), started under the session root and stopped after the module."""

    @pytest.fixture(scope="module")
    def fixture(session_root):
        r = RegistryServer(session_root / uniq(prefix), **options).start()
        yield r
        r.stop()

    fixture.__doc__ = doc
    return fixture


reg = registry_fixture("reg-")


@pytest.fixture(scope="module")
def proxy(reg):
    p = FaultProxy(reg.host).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def dy(session_root, busybox_tar, reg, proxy):
    d = registry_daemon(session_root / uniq("regd-"), [reg.host, proxy.host], busybox_tar)
    yield d
    assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def base_tar(busybox_tar):
    with open(busybox_tar, "rb") as fh:
        return fh.read()
