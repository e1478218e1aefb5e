"""The exec conformance kit against every exec driver we ship, through the daemon."""

from dockyard.drivers.exec.lxc.driver import UNSUPPORTED as LXC_UNSUPPORTED
from dockyard.testing.exec import ExecConformance


class TestNative(ExecConformance):
    driver = "native"


class TestNativeShim(ExecConformance):
    """A shim per container (``supervisor = "shim"``; the default is the hub)."""

    driver = "native"
    extra_args = ("--exec-opt", "supervisor=shim")


class TestLxc(ExecConformance):
    driver = "lxc"
    unsupported = LXC_UNSUPPORTED
