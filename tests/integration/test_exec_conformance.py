"""The exec conformance kit against every exec driver we ship, through the daemon."""

from dockyard.drivers.exec.lxc.driver import UNSUPPORTED as LXC_UNSUPPORTED
from dockyard.testing.exec import ExecConformance


class TestNative(ExecConformance):
    driver = "native"


class TestNativeHub(ExecConformance):
    """One supervisor, the hub, for every container (``supervisor = "hub"``)."""

    driver = "native"
    extra_args = ("--exec-opt", "supervisor=hub")


class TestLxc(ExecConformance):
    driver = "lxc"
    unsupported = LXC_UNSUPPORTED
