"""Helpers of the registry test modules: unique names, and
:func:`registry_fixture`, which makes the module-scoped fixture of a registry
of a module's own.  The fixtures they share (``reg``, ``proxy``, ``dy``,
``base_tar``) are in this directory's ``conftest.py``."""

import uuid

import pytest
from dockyard.testing.registry import (RegistryServer, hold_loopback_alias, off_loopback_ip,
                                       release_loopback_alias)

#: where a registry listens that is not on 127/8 (so not insecure by default) yet
#: reached over ``lo`` only: the fixtures put it there and take it off
OFF_LOOPBACK = off_loopback_ip()


def uniq(prefix="t"):
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def registry_fixture(prefix, doc=None, **options):
    """A module-scoped fixture: a RegistryServer of its own (``options`` passed
    on), started under the session root and stopped after the module."""

    @pytest.fixture(scope="module")
    def fixture(session_root):
        ip = options.get("ip")
        if ip == OFF_LOOPBACK:
            hold_loopback_alias(ip)
        try:
            r = RegistryServer(session_root / uniq(prefix), **options).start()
            yield r
            r.stop()
        finally:
            if ip == OFF_LOOPBACK:
                release_loopback_alias(ip)

    fixture.__doc__ = doc
    return fixture
