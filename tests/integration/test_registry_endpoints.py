"""Where pulls and pushes go, through the docker CLI and real Debian
``docker-registry`` servers: registries on loopback are insecure without being
named (HTTPS tried first, its certificate unchecked; then plain HTTP), as dockerd's
are; ``--insecure-registry`` takes CIDRs; registry mirrors per registry host, from
``--registry-mirror`` and from ``[registry."HOST"]`` in the config file: a mirror
holding the image serves it, a mirror that misses or is down is skipped, and the
registry itself is the last resort unless ``mirror_fallback = false``.
"""

import ipaddress
import json
import os
from importlib import resources

import pytest
from dockyard.testing.daemon import Daemon
from dockyard.testing.registry import FaultProxy, free_port
from dockyard.testing.registry_content import stop_daemon
from registry_common import OFF_LOOPBACK, registry_fixture, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")
OUTWARD = OFF_LOOPBACK

origin = registry_fixture("origin-", doc="The registry that images are named after.")
holding = registry_fixture("holding-", doc="A mirror that holds the images.")
missing = registry_fixture("missing-", doc="A mirror that has nothing.")
tls_loop = registry_fixture("tlsloop-", doc="A TLS registry on loopback whose CA nobody was given.", tls=True)
away = registry_fixture("away-", doc="A plain registry off loopback.", ip=OUTWARD)


@pytest.fixture(scope="module")
def front(origin):
    """The origin's name in references: a recording proxy, to see what reached it."""
    p = FaultProxy(origin.host).start()
    yield p
    p.stop()


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def start(base, busybox_tar, args=(), config=None):
    d = Daemon(base, config=config, extra_args=list(args)).start()
    res = d.cli("import", str(busybox_tar), "busybox")
    if res.returncode != 0:
        stop_daemon(d)
        raise AssertionError(res.stderr.decode())
    return d


def image_id(d, ref):
    return d.sdk().api.inspect_image(ref)["Id"]


@pytest.fixture(scope="module")
def plain_daemon(session_root, busybox_tar):
    """A daemon given no --insecure-registry at all."""
    d = start(session_root / uniq("loop-"), busybox_tar)
    yield d
    assert stop_daemon(d) == []


def test_loopback_registries_are_insecure_by_default(plain_daemon, origin, tls_loop):
    d = plain_daemon
    for host in (origin.host, f"localhost:{origin.port}", tls_loop.host):
        ref = f"{host}/{uniq()}/bb:v1"
        ok(d.docker("tag", "busybox", ref))
        out = ok(d.docker("push", ref))
        assert "v1: digest: sha256:" in out
        ok(d.docker("rmi", ref))
        ok(d.docker("pull", ref))
    # the TLS registry speaks nothing but TLS: HTTPS came first, its certificate unchecked
    assert any(repo.endswith("/bb") for repo in tls_loop.catalog()["repositories"])
    info = json.loads(ok(d.docker("info", "--format", "{{json .RegistryConfig}}")))
    assert info["InsecureRegistryCIDRs"] == ["127.0.0.0/8", "::1/128"]


def test_insecure_registry_by_cidr(session_root, busybox_tar, away, plain_daemon):
    ref = f"{away.host}/{uniq()}/bb:cidr"
    ok(plain_daemon.docker("tag", "busybox", ref))
    res = plain_daemon.docker("push", ref)  # off loopback and not named: verified HTTPS only
    assert res.returncode != 0 and b"does not speak TLS" in res.stderr, res.stderr
    net = ipaddress.ip_network(f"{OUTWARD}/24", strict=False)
    d = start(session_root / uniq("cidr-"), busybox_tar, ["--insecure-registry", str(net)])
    try:
        ok(d.docker("tag", "busybox", ref))
        ok(d.docker("push", ref))
        ok(d.docker("rmi", ref))
        ok(d.docker("pull", ref))
        info = json.loads(ok(d.docker("info", "--format", "{{json .RegistryConfig}}")))
        assert str(net) in info["InsecureRegistryCIDRs"]
    finally:
        assert stop_daemon(d) == []


@pytest.fixture(scope="module")
def mirrored(session_root, busybox_tar, front, holding, missing):
    """A daemon whose pulls of ``front`` try a down mirror, the empty one, then the
    holding one (flags), whose pulls of ``localhost:<front's port>`` try only the
    empty one and never the registry (config file), and whose Docker Hub mirror is
    the holding one (a bare URL)."""
    down = f"127.0.0.1:{free_port()}"
    base = session_root / uniq("mirr-")
    base.mkdir()
    shipped = resources.files("dockyard").joinpath("plugins.toml").read_text()
    config = base / "plugins.toml"
    config.write_text(shipped + f'\n[registry."localhost:{port_of(front)}"]\nmirrors = ["http://{missing.host}"]\n'
                      "mirror_fallback = false\n")
    args = [a for m in (f"http://{down}", f"http://{missing.host}", f"http://{holding.host}/")
            for a in ("--registry-mirror", f"{front.host}={m}")]
    args += ["--registry-mirror", f"http://{holding.host}"]
    d = start(base / "d", busybox_tar, args, config=config)
    yield d
    assert stop_daemon(d) == []


def origin_url(server):
    return f"http://{server.host}"


def port_of(server):
    return server.host.rsplit(":", 1)[1]


def manifest_gets(proxy, repo):
    return proxy.seen("GET", f"/v2/{repo}/manifests/")


def test_a_mirror_holding_the_image_serves_the_pull(mirrored, front, holding, busybox_tar):
    d = mirrored
    repo = f"{uniq()}/app"
    # the origin and the mirror hold different images under the same name
    ok(d.docker("import", "--change", "LABEL from=origin", str(busybox_tar), f"{front.host}/{repo}:v1"))
    ok(d.docker("push", f"{front.host}/{repo}:v1"))
    ok(d.docker("tag", "busybox", f"{holding.host}/{repo}:v1"))
    ok(d.docker("push", f"{holding.host}/{repo}:v1"))
    ok(d.docker("rmi", f"{front.host}/{repo}:v1", f"{holding.host}/{repo}:v1"))
    front.reset()
    out = ok(d.docker("pull", f"{front.host}/{repo}:v1"))
    assert f"Downloaded newer image for {front.host}/{repo}:v1" in out or "Image is up to date" in out
    assert image_id(d, f"{front.host}/{repo}:v1") == image_id(d, "busybox")  # the mirror's, not the origin's
    assert manifest_gets(front, repo) == []  # the registry itself was not asked
    info = json.loads(ok(d.docker("info", "--format", "{{json .RegistryConfig}}")))
    assert info["Mirrors"] == [f"http://{holding.host}/"]


def test_every_mirror_missing_falls_back_to_the_registry(mirrored, front, busybox_tar):
    d = mirrored
    repo = f"{uniq()}/only-origin"
    ok(d.docker("import", "--change", "LABEL from=origin", str(busybox_tar), f"{front.host}/{repo}:v1"))
    ok(d.docker("push", f"{front.host}/{repo}:v1"))
    wanted = image_id(d, f"{front.host}/{repo}:v1")
    ok(d.docker("rmi", f"{front.host}/{repo}:v1"))
    front.reset()
    ok(d.docker("pull", f"{front.host}/{repo}:v1"))  # down mirror, empty mirror, mirror without it, origin
    assert image_id(d, f"{front.host}/{repo}:v1") == wanted
    assert manifest_gets(front, repo)


def test_no_fallback_when_the_config_says_so(mirrored, front, busybox_tar):
    d = mirrored
    repo = f"{uniq()}/nofallback"
    ok(d.docker("tag", "busybox", f"{front.host}/{repo}:v1"))
    ok(d.docker("push", f"{front.host}/{repo}:v1"))
    front.reset()
    res = d.docker("pull", f"localhost:{port_of(front)}/{repo}:v1")  # the same registry, by the name configured
    err = res.stderr.decode()
    assert res.returncode != 0 and "mirror_fallback is off" in err and "not found" in err, err
    assert manifest_gets(front, repo) == []


def test_a_bare_mirror_url_mirrors_docker_hub(mirrored, holding):
    d = mirrored
    name = uniq("hubonly")
    ok(d.docker("tag", "busybox", f"{holding.host}/library/{name}:v1"))
    ok(d.docker("push", f"{holding.host}/library/{name}:v1"))
    ok(d.docker("pull", f"{name}:v1"))  # Docker Hub's name; served by the mirror, nothing leaves the host
    assert image_id(d, f"{name}:v1") == image_id(d, "busybox")
    digests = d.sdk().api.inspect_image(f"{name}:v1")["RepoDigests"]
    assert any(r.startswith(f"{name}@sha256:") for r in digests), digests


def test_bad_mirror_flags_are_refused(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "daemon", "--data-root", str(tmp_path / "root"),
                          "--exec-root", str(tmp_path / "exec"), "-H", f"unix://{tmp_path / 'd.sock'}",
                          "--registry-mirror", "mirror.example:5000"], capture_output=True, timeout=60, check=False)
    assert res.returncode == 1
    assert b"--registry-mirror 'mirror.example:5000': invalid mirror: must use either 'https://' or 'http://'" \
        in res.stderr, res.stderr


def test_dockyard_run_and_create_pull_a_missing_image(plain_daemon, origin, busybox_tar):
    """``dockyard run``/``create`` as ``docker run``: a missing image is pulled
    (``--pull missing``, the default) after docker's words on stderr; ``never``
    leaves it missing, ``always`` pulls a newer one over a present tag."""
    d = plain_daemon
    repo = f"{origin.host}/{uniq()}/bb"
    ok(d.cli("tag", "busybox", f"{repo}:v1"))
    ok(d.cli("push", f"{repo}:v1"))
    ok(d.cli("rmi", f"{repo}:v1"))
    res = d.cli("create", "--pull", "never", f"{repo}:v1", "true")
    assert res.returncode == 125 and b"No such image" in res.stderr and b"Unable to find" not in res.stderr
    res = d.cli("run", "--rm", f"{repo}:v1", "echo", "pulled and ran")
    err = res.stderr.decode()
    assert res.returncode == 0, err
    assert res.stdout.decode() == "pulled and ran\n"  # nothing of the pull on stdout
    assert err.startswith(f"Unable to find image '{repo}:v1' locally\n")
    assert "Pulling from" in err and f"Status: Downloaded newer image for {repo}:v1" in err
    ok(d.cli("rmi", f"{repo}:v1"))
    res = d.cli("create", "-q", "--name", uniq("pc-"), f"{repo}:v1", "true")  # quiet: only the id
    assert res.returncode == 0 and res.stderr == b"" and len(res.stdout.strip()) == 64, res.stderr
    ok(d.cli("rm", res.stdout.decode().strip()))
    # always: a newer image under the same tag replaces the local one
    ok(d.cli("import", "--change", "LABEL v=2", str(busybox_tar), f"{repo}:v1"))
    ok(d.cli("push", f"{repo}:v1"))
    newer = d.sdk().api.inspect_image(f"{repo}:v1")["Id"]
    ok(d.cli("tag", "busybox", f"{repo}:v1"))  # the local tag points back at busybox
    res = d.cli("run", "--rm", "--pull", "always", f"{repo}:v1", "true")
    assert res.returncode == 0 and b"Unable to find" not in res.stderr, res.stderr
    assert b"Pulling from" in res.stderr
    assert d.sdk().api.inspect_image(f"{repo}:v1")["Id"] == newer


def unique_busybox(busybox_tar, tmp_path):
    """busybox's tarball with one file more: a layer no daemon has yet."""
    import io
    import tarfile

    out = tmp_path / "unique.tar"
    with tarfile.open(busybox_tar) as src, tarfile.open(out, "w") as dst:
        for member in src.getmembers():
            dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        data = uniq().encode()
        info = tarfile.TarInfo("unique")
        info.size = len(data)
        dst.addfile(info, io.BytesIO(data))
    return out


def test_run_pulls_with_progress_and_retries_on_a_terminal(plain_daemon, mirrored, front, busybox_tar, tmp_path):
    import subprocess

    from dockyard.testing.registry import Fault
    from dockyard.testing.registry_content import get_manifest

    d = plain_daemon
    repo = f"{front.host}/{uniq()}/tty"
    ok(d.cli("import", str(unique_busybox(busybox_tar, tmp_path)), f"{repo}:v1"))
    ok(d.cli("push", f"{repo}:v1"))
    manifest, _ = get_manifest(origin_url(front), repo.split("/", 1)[1], "v1")
    layer = json.loads(manifest)["layers"][0]["digest"]
    d = mirrored  # a daemon that never held the layer (its mirrors miss: the origin serves it)
    front.add(Fault(f"/blobs/{layer}", "status", method="GET", times=1, status=503))
    try:
        cmd = " ".join([*map(str, d.cli.__self__.args[:1]), "-m", "dockyard.cli.main", "-H", d.host,
                        "run", "--rm", f"{repo}:v1", "echo", "ran"])
        res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=120, check=False,
                             env={**os.environ, "COLUMNS": "120"})
    finally:
        front.reset()
    text = res.stdout.decode(errors="replace")
    assert res.returncode == 0, text
    assert f"Unable to find image '{repo}:v1' locally" in text and "Retrying in" in text, text
    assert "━" in text and "Pull complete" in text and "ran" in text
