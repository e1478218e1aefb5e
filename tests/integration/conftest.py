"""Fixtures of the integration tests.

* The registry tests' (``test_registry*.py``): ``reg``, one plain registry per
  module; ``proxy``, a fault-injecting proxy in front of it; ``dy``, a daemon
  that treats both as insecure (plain HTTP) registries, with busybox imported;
  ``base_tar``, the busybox tarball's bytes.  A module that needs other
  registries declares its own with ``registry_common.registry_fixture`` (and
  its own ``dy``, which then replaces this one).
* The image-store tests' (``test_images*.py``): ``imgs``, the images and
  containers a test makes, removed at its end (``images_common.Images``).
* The network tests' (``test_networks.py``, ``test_network_parity.py``):
  ``netd``, a daemon of the module's own with busybox imported (skipped where the
  bridge driver is not enabled), emptied, stopped and checked for leaks after the
  module; ``client``, a docker SDK client of it.
"""

import shutil
import tempfile
from pathlib import Path

import pytest
from dockyard.testing.busybox import make_busybox_tar
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry import FaultProxy
from dockyard.testing.registry_content import registry_daemon, stop_daemon
from images_common import Images
from registry_common import registry_fixture, uniq

reg = registry_fixture("reg-", doc="The module's plain registry.")


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


@pytest.fixture
def imgs(daemon, busybox_tar):
    made = Images(daemon, busybox_tar)
    yield made
    made.close()


@pytest.fixture(scope="module")
def netd():
    base = Path(tempfile.mkdtemp(prefix="dockyard-net-"))
    d = Daemon(base)
    d.start()
    try:
        res = d.cli("import", str(make_busybox_tar(base / "busybox.tar")), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        if "bridge" not in [n.name for n in d.sdk().networks.list()]:
            pytest.skip("the bridge network driver is not enabled")
        yield d
    finally:
        try:
            client = d.sdk()
            for c in client.containers.list(all=True):
                c.remove(force=True)
            for n in client.networks.list():
                if n.name not in ("bridge", "host", "none"):
                    n.remove()
            client.close()
        finally:
            d.stop()
            d.remove_network_objects()
            leaks = d.leaks()
            shutil.rmtree(base, ignore_errors=True)
            assert leaks == [], leaks


@pytest.fixture
def client(netd):
    c = netd.sdk()
    yield c
    c.close()
