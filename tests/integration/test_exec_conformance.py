"""The exec conformance kit against every exec driver we ship, through the daemon."""

from dockyard.testing.exec import ExecConformance


class TestNative(ExecConformance):
    driver = "native"
