"""Helpers of the registry test modules: unique names, and
:func:`registry_fixture`, which makes the module-scoped fixture of a registry
of a module's own.  The fixtures they share (``reg``, ``proxy``, ``dy``,
``base_tar``) are in this directory's ``conftest.py``."""

import uuid

import pytest
from dockyard.testing.registry import RegistryServer


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
