"""Registry authentication and transport security against real registries:
anonymous, HTTP basic (htpasswd), the bearer-token challenge flow (a JWT token
server); ``dockyard login``/``logout`` keeping credentials as the docker CLI does
(config.json, credsStore, credHelpers with a fake ``docker-credential-*`` on
PATH); ``docker login`` against our daemon; TLS with a private CA in a certs.d
directory; plain HTTP only for insecure registries (named, or on loopback:
test_registry_endpoints.py); credentials that stay
on the registry's host when it redirects blob downloads to storage elsewhere.
"""

import base64
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from dockyard.testing.registry import Fault, FaultProxy
from dockyard.testing.registry_content import registry_daemon, snapshot, stop_daemon
from registry_common import OFF_LOOPBACK, registry_fixture, uniq

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the daemon needs root")
USER, PASSWORD = "alice", "wonder-land-7"

FAKE_HELPER = """#!/usr/bin/env python3
# A docker-credential-helper keeping secrets in a JSON file (docker-credential-helpers' protocol).
import json, os, sys
store = os.environ["FAKE_CRED_STORE"]
data = json.load(open(store)) if os.path.exists(store) else {}
action, payload = sys.argv[1], sys.stdin.read().strip()
if action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = {"Username": doc["Username"], "Secret": doc["Secret"]}
elif action == "get":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({"ServerURL": payload, **data[payload]})); sys.exit(0)
elif action == "erase":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    del data[payload]
json.dump(data, open(store, "w"))
"""



basic = registry_fixture("basic-", auth="htpasswd", users={USER: PASSWORD})
token = registry_fixture("token-", auth="token", users={USER: PASSWORD}, anonymous_pull=True)
#: registries away from loopback (which is insecure by default): where TLS is verified
OUTWARD = OFF_LOOPBACK
tls = registry_fixture("tls-", tls=True, ip=OUTWARD)
other_tls = registry_fixture("tls2-", doc="A TLS registry whose CA the daemon is not given.", tls=True,
                             ip=OUTWARD)
plain = registry_fixture("plain-", ip=OUTWARD)


@pytest.fixture(scope="module")
def certs_dir(session_root, tls):
    d = session_root / uniq("certs.d-") / tls.host
    d.mkdir(parents=True)
    (d / "ca.crt").write_bytes(tls.ca.read_bytes())
    return d.parent


@pytest.fixture(scope="module")
def front(basic):
    """A recording proxy in front of the basic-auth registry, to make it redirect."""
    p = FaultProxy(basic.host).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def dy(session_root, busybox_tar, basic, token, plain, certs_dir, front):
    d = registry_daemon(session_root / uniq("ad-"), [basic.host, token.host, front.host], busybox_tar,
                        ["--registry-certs-dir", str(certs_dir)])
    yield d
    assert stop_daemon(d) == []


@pytest.fixture
def config_dir(tmp_path):
    d = tmp_path / "docker-config"
    d.mkdir()
    return d


def cli(d, config_dir, *args, input=None, path=None):
    env = {"DOCKER_CONFIG": str(config_dir)}
    if path:
        env.update(PATH=f"{path}:{os.environ['PATH']}", FAKE_CRED_STORE=str(path / "store.json"))
    return d.cli(*args, input=input, env=env, timeout=120)


def login(d, config_dir, host, password=PASSWORD, **kw):
    return cli(d, config_dir, "login", "-u", USER, "--password-stdin", host, input=password.encode(), **kw)


def ok(res):
    assert res.returncode == 0, (res.stdout.decode(), res.stderr.decode())
    return res.stdout.decode()


def config(config_dir):
    return json.loads((config_dir / "config.json").read_text())


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_login_push_pull_logout(dy, config_dir, kind, request):
    reg = request.getfixturevalue(kind)
    ref = f"{reg.host}/{uniq()}/bb:v1"
    ok(dy.cli("tag", "busybox", ref))
    res = cli(dy, config_dir, "push", ref)
    assert res.returncode != 0
    assert ("requires authentication" in res.stderr.decode() or "denied" in res.stderr.decode()), res.stderr
    assert "dockyard login" in res.stderr.decode() or "denied" in res.stderr.decode()

    assert "Login Succeeded" in ok(login(dy, config_dir, reg.host))
    entry = config(config_dir)["auths"][reg.host]
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert oct((config_dir / "config.json").stat().st_mode & 0o777) == "0o600"
    before = reg.token_requests
    ok(cli(dy, config_dir, "push", ref))
    ok(dy.cli("rmi", ref))
    ok(cli(dy, config_dir, "pull", ref))
    if kind == "token":
        assert reg.token_requests > before
    else:
        assert reg.catalog(ref.split("/", 1)[1].rsplit(":", 1)[0])["tags"] == ["v1"]

    assert "Removing login credentials" in ok(cli(dy, config_dir, "logout", reg.host))
    assert reg.host not in config(config_dir).get("auths", {})
    ok(dy.cli("rmi", ref))
    res = cli(dy, config_dir, "pull", ref)
    if kind == "token":  # anonymous pulls are allowed there
        assert res.returncode == 0, res.stderr.decode()
    else:
        assert res.returncode != 0 and "requires authentication" in res.stderr.decode()


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_wrong_password_is_refused_and_nothing_is_stored(dy, config_dir, kind, request):
    reg = request.getfixturevalue(kind)
    res = login(dy, config_dir, reg.host, password="not-the-password")
    assert res.returncode != 0
    assert "incorrect username or password" in res.stderr.decode(), res.stderr.decode()
    assert not (config_dir / "config.json").exists()
    before = snapshot(dy)
    client = dy.sdk()
    try:
        import docker

        with pytest.raises(docker.errors.APIError) as info:
            client.images.pull(f"{reg.host}/{uniq()}/x", tag="v1", auth_config={"username": USER, "password": "nope"})
        assert "incorrect username or password" in str(info.value)
        assert info.value.status_code == 401
    finally:
        client.close()
    assert snapshot(dy) == before


def test_credential_helpers(dy, config_dir, basic, tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("fakestore", "fakehelper"):
        helper = bindir / f"docker-credential-{name}"
        helper.write_text(FAKE_HELPER)
        helper.chmod(0o755)
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "fakestore", "detachKeys": "ctrl-x"}))
    ok(login(dy, config_dir, basic.host, path=bindir))
    cfg = config(config_dir)
    assert cfg["auths"][basic.host] == {} and cfg["detachKeys"] == "ctrl-x"
    stored = json.loads((bindir / "store.json").read_text())
    assert stored[basic.host] == {"Username": USER, "Secret": PASSWORD}
    ref = f"{basic.host}/{uniq()}/bb:h"
    ok(dy.cli("tag", "busybox", ref))
    ok(cli(dy, config_dir, "push", ref, path=bindir))  # the secret came from the helper
    ok(cli(dy, config_dir, "logout", basic.host, path=bindir))
    assert json.loads((bindir / "store.json").read_text()) == {}

    # credHelpers wins over credsStore for its registry
    (config_dir / "config.json").write_text(json.dumps({"credsStore": "missing",
                                                        "credHelpers": {basic.host: "fakehelper"}}))
    ok(login(dy, config_dir, basic.host, path=bindir))
    assert basic.host in json.loads((bindir / "store.json").read_text())
    ok(cli(dy, config_dir, "push", ref, path=bindir))


def test_docker_cli_login_and_push_against_our_daemon(dy, basic):
    res = dy.docker("login", "-u", USER, "--password-stdin", basic.host, input=PASSWORD.encode())
    assert res.returncode == 0 and b"Login Succeeded" in res.stdout, res.stderr
    saved = json.loads((dy.base / "docker-config" / "config.json").read_text())
    assert basic.host in saved["auths"]
    ref = f"{basic.host}/{uniq()}/bb:d"
    assert dy.docker("tag", "busybox", ref).returncode == 0
    res = dy.docker("push", ref)
    assert res.returncode == 0, res.stderr
    assert b"digest: sha256:" in res.stdout
    res = dy.docker("login", "-u", USER, "--password-stdin", basic.host, input=b"wrong")
    assert res.returncode != 0 and b"incorrect username or password" in res.stderr
    assert dy.docker("logout", basic.host).returncode == 0


def test_tls_registry_with_a_private_ca(dy, tls, other_tls, certs_dir):
    ref = f"{tls.host}/{uniq()}/bb:tls"
    ok(dy.cli("tag", "busybox", ref))
    ok(dy.cli("push", ref))
    ok(dy.cli("rmi", ref))
    ok(dy.cli("pull", ref))
    assert tls.catalog(ref.split("/", 1)[1].rsplit(":", 1)[0])["tags"] == ["tls"]
    # a registry whose CA is not configured
    other = f"{other_tls.host}/{uniq()}/bb:tls"
    ok(dy.cli("tag", "busybox", other))
    res = dy.cli("push", other)
    err = res.stderr.decode()
    assert res.returncode != 0 and "certificate refused" in err and f"{other_tls.host}/ca.crt" in err, err
    assert other_tls.catalog()["repositories"] == []


def test_plain_http_registry_not_named_insecure_is_refused(dy, plain):
    host = plain.host  # not on loopback, not named insecure
    ref = f"{host}/{uniq()}/bb:plain"
    ok(dy.cli("tag", "busybox", ref))
    res = dy.cli("push", ref)
    err = res.stderr.decode()
    assert res.returncode != 0
    assert "does not speak TLS" in err and f"--insecure-registry {host}" in err, err
    res = dy.cli("pull", ref)
    assert res.returncode != 0 and "does not speak TLS" in res.stderr.decode()
    assert plain.catalog()["repositories"] == []  # nothing went over plain HTTP


class _Storage(BaseHTTPRequestHandler):
    """Blob storage on another host (as S3 behind a registry): serves a blob from the
    registry's own files by the digest ending the path, and records the headers."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.seen.append(dict(self.headers))
        hexdigest = self.path.rsplit("sha256:", 1)[1]
        blob = self.server.root / "sha256" / hexdigest[:2] / hexdigest / "data"
        data = blob.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def storage(basic):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Storage)
    httpd.daemon_threads, httpd.seen = True, []
    httpd.root = basic.base / "storage" / "docker" / "registry" / "v2" / "blobs"
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_blob_redirects_keep_the_credentials_on_the_registry(dy, session_root, config_dir, front, storage):
    """A registry that sends blob downloads elsewhere: the storage host gets no
    Authorization (it is another host, by name), a redirect on the registry's own
    host keeps it, and the pull into a daemon without the image works."""
    ok(login(dy, config_dir, front.host))
    ref = f"{front.host}/{uniq()}/bb:redirected"
    ok(dy.cli("tag", "busybox", ref))
    ok(cli(dy, config_dir, "push", ref))
    image_id = dy.sdk().api.inspect_image(ref)["Id"]
    front.reset()
    front.add(Fault(image_id + "$", "redirect", method="GET", times=1,
                    location=f"http://{front.host}{{path}}?on=the-same-host"))
    front.add(Fault(r"/blobs/sha256:[0-9a-f]{64}$", "redirect", method="GET",
                    location=f"http://localhost:{storage.server_address[1]}/store{{path}}"))
    fresh = registry_daemon(session_root / uniq("redir-"), [front.host])
    try:
        ok(login(fresh, config_dir, front.host))
        ok(cli(fresh, config_dir, "pull", ref))
        assert fresh.sdk().api.inspect_image(ref)["Id"] == image_id
    finally:
        assert stop_daemon(fresh) == []
    assert storage.seen and all("Authorization" not in h for h in storage.seen)  # the layers, via storage
    blob_gets = front.seen("GET", "/blobs/sha256:")
    assert blob_gets and all(r["headers"]["Authorization"].startswith("Basic ") for r in blob_gets)
    assert [r["status"] for r in blob_gets if r["path"].endswith("?on=the-same-host")] == [200]  # the config
