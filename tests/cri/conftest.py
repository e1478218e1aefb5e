"""Session fixtures of the CRI tests: cri-tools, a registry of critest's stand-in
images with the mirror flags that reach it, a CNI configuration of the session's
own, and a CRI daemon using all three.

    def test_x(cri_stack):                # a Daemon serving the CRI, mirrors and CNI set
        cri_stack.crictl("pull", "registry.k8s.io/e2e-test-images/busybox:1.29-2")

The stand-ins (:mod:`dockyard.testing.criimages`) are built offline from Debian's
dynamic busybox and pushed once per session; pods get a bridge named for the
session (so its leak checks know it) without masquerade or default route.  What
the session leaves on the host -- new ``cni-*`` network namespaces, the portmap
plugin's nat chains, the HostIpc specs' shm segments -- goes at its end
(:class:`dockyard.testing.crirun.HostState`).
"""

import os
import sys
import uuid
from pathlib import Path

import pytest

from dockyard.testing import criimages, crirun
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry import RegistryServer


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's loadgroup reads the marks
def pytest_collection_modifyitems(items):
    """The CRI tests run on one pytest-xdist worker, one at a time, with the cni
    driver's: CNI's portmap chains are the host's, shared by every runtime there."""
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.xdist_group("cri"))


@pytest.fixture(scope="session")
def cri_tools():
    """``(crictl, critest)``, built from ../shared/cri-tools when missing; skips if that can't be."""
    try:
        return crirun.cri_tools()
    except (FileNotFoundError, OSError) as exc:
        pytest.skip(f"cri-tools unavailable: {exc}")


@pytest.fixture(scope="session")
def cri_host_state():
    """Cleans what critest and the CNI plugins leave on the host at the session's end."""
    state = crirun.HostState()
    yield state
    state.clean()


@pytest.fixture(scope="session")
def cri_registry(session_root, cri_host_state):
    """A ``docker-registry`` on loopback holding every stand-in under its upstream path."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    reg = RegistryServer(session_root / "cri-registry").start()
    try:
        criimages.push_images(reg.url, criimages.build_images())
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def cri_mirror_args(cri_registry):
    """``--registry-mirror registry.k8s.io=URL`` and the same for gcr.io."""
    return criimages.mirror_args(cri_registry.url)


@pytest.fixture(scope="session")
def cri_cni(session_root):
    """A CNI conf dir of the session's own: bridge ``dy<tag>cri``, host-local, portmap."""
    net = crirun.CniNet(session_root / "cri-cni").write()
    yield net
    net.remove()


@pytest.fixture(scope="module")
def cri_stack(session_root, cri_mirror_args, cri_cni):
    """A daemon serving the CRI with the stand-ins' mirrors and the session's CNI conf."""
    reason = crirun.cri_server_missing()
    if reason:
        pytest.skip(reason)
    d = Daemon(session_root / f"cri-{uuid.uuid4().hex[:8]}",
               extra_args=["--cni-conf-dir", str(cri_cni.conf_dir), "--cni-bin-dir", crirun.CNI_BIN_DIR,
                           *cri_mirror_args]).start()
    try:
        crirun._wait_socket(d.cri_sock, d.proc, d.log)
        yield d
    finally:
        try:
            crirun._remove_pods(f"unix://{d.cri_sock}")
            client = d.sdk()
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        except Exception as exc:  # the leak checks have the last word
            print(f"cleanup of the CRI daemon failed: {exc}", file=sys.stderr)
        d.stop()
        d.remove_network_objects()
