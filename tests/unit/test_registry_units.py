"""The registry client's pure parts: challenges, error messages, certs.d
directories, daemon flags, credentials files, progress.  (Manifests, indexes and
platforms: tests/unit/test_imagespec.py; the transport: test_registry_transport.py.)"""

import base64
import json

import pytest
from dockyard.errors import ConfigError, InvalidParameter
from dockyard.client import authconfig
from dockyard.registry.auth import parse_challenge
from dockyard.registry.errors import RegistryNotFound, TLSFailure
from dockyard.registry.progress import bar, human_size
from dockyard.registry.service import (
    decode_auth,
    parse_insecure,
    parse_transfer_options,
)
from dockyard.registry.transport import raise_for, tls_context


def test_parse_challenge():
    assert parse_challenge('Bearer realm="http://t/token",service="reg",scope="repository:a/b:pull,push"') == (
        "bearer", {"realm": "http://t/token", "service": "reg", "scope": "repository:a/b:pull,push"})
    assert parse_challenge('Basic realm="x"') == ("basic", {"realm": "x"})
    assert parse_challenge("") == (None, {})


class _Resp:
    def __init__(self, status, body):
        self.status, self.reason, self._body = status, "X", body

    def read_all(self, limit=None):
        return self._body

    def close(self):
        pass


def test_error_messages_read_like_dockers():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]}).encode()
    with pytest.raises(RegistryNotFound) as info:
        raise_for(_Resp(404, body), "manifest for r/x:nope")
    assert str(info.value) == "manifest for r/x:nope not found: manifest unknown: manifest unknown"


def test_certs_dirs_are_all_read(tmp_path):
    good = tmp_path / "one" / "reg:5000"
    good.mkdir(parents=True)
    bad = tmp_path / "two" / "reg:5000"
    bad.mkdir(parents=True)
    (bad / "ca.crt").write_text("not a certificate")
    tls_context("reg:5000", [str(tmp_path / "one")])  # an empty folder is fine
    with pytest.raises(TLSFailure, match="two/reg:5000/ca.crt: cannot load"):
        tls_context("reg:5000", [str(tmp_path / "one"), str(tmp_path / "two")])


def test_daemon_flags():
    assert parse_insecure(["127.0.0.1:5000", "myreg"]) == ["127.0.0.1:5000", "myreg"]
    assert parse_insecure(["http://127.0.0.1:5000", "10.1.2.3/8"]) == ["127.0.0.1:5000", "10.0.0.0/8"]  # as dockerd
    with pytest.raises(ConfigError, match="should not contain '://'"):
        parse_insecure(["ftp://127.0.0.1:5000"])
    with pytest.raises(ConfigError, match="without a path"):
        parse_insecure(["127.0.0.1:5000/v2"])
    assert parse_transfer_options(3, 5, 1 << 20)["upload_chunk"] == 1 << 20
    with pytest.raises(ConfigError, match="--max-concurrent-downloads 0"):
        parse_transfer_options(0, 5, 1 << 20)
    with pytest.raises(ConfigError, match="--registry-upload-chunk"):
        parse_transfer_options(1, 1, 10)


def test_decode_auth():
    raw = base64.urlsafe_b64encode(json.dumps({"username": "u", "password": "p"}).encode()).decode().rstrip("=")
    assert decode_auth(raw) == {"username": "u", "password": "p"}
    assert decode_auth("") is None
    with pytest.raises(InvalidParameter):
        decode_auth("!!!")


def test_config_json_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"psFormat": "x"}))
    assert authconfig.store("reg:5000", "u", "p:w") == str(tmp_path / "config.json")
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["psFormat"] == "x" and base64.b64decode(cfg["auths"]["reg:5000"]["auth"]) == b"u:p:w"
    assert authconfig.get("reg:5000") == {"serveraddress": "reg:5000", "username": "u", "password": "p:w"}
    assert authconfig.get("docker.io") is None
    assert authconfig.erase("reg:5000") and not authconfig.erase("reg:5000")
    assert authconfig.server_key("docker.io") == authconfig.HUB_KEY


def test_missing_credential_helper_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "nosuchhelper"}))
    with pytest.raises(authconfig.CredentialError, match="docker-credential-nosuchhelper is not installed"):
        authconfig.get("reg:5000")


def test_progress_bar():
    assert human_size(1_048_576) == "1.049MB"
    assert bar(50, 100).startswith("[" + "=" * 25 + ">")


def test_insecure_names_cidrs_and_loopback():
    """dockerd's isSecureIndex: a name matches exactly (or without its port), else
    the host's addresses (a name resolved) must lie in a CIDR; loopback always is."""
    from dockyard.registry.endpoints import Policy

    p = Policy(["10.0.0.0/8", "myreg:5000", "bare"])
    assert p.is_insecure("127.0.0.1:5000") and p.is_insecure("127.8.9.10") and p.is_insecure("[::1]:5000")
    assert p.is_insecure("localhost:5000")  # resolved to loopback
    assert p.is_insecure("10.200.0.1:443") and p.is_insecure("myreg:5000") and p.is_insecure("bare:6000")
    assert not p.is_insecure("192.0.2.7:5000") and not p.is_insecure("myreg:6000")
    assert not p.is_insecure("nowhere.invalid:5000")  # unresolvable: no CIDR matches
    info = p.info()
    assert info["InsecureRegistryCIDRs"] == ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]
    assert info["IndexConfigs"]["myreg:5000"]["Secure"] is False


def test_mirrors_from_flags_and_config():
    from dockyard.registry.endpoints import mirrors_from

    mirrors, no_fallback = mirrors_from(
        ["https://hub-mirror.example/", "127.0.0.1:5000=http://127.0.0.1:6000"],
        {"127.0.0.1:5000": {"mirrors": ["http://127.0.0.1:6000", "https://m2.example/prefix"],
                            "mirror_fallback": False},
         "index.docker.io": {"mirrors": ["http://127.0.0.1:7000"]}}, "f.toml")
    assert mirrors == {"docker.io": ["https://hub-mirror.example", "http://127.0.0.1:7000"],
                       "127.0.0.1:5000": ["http://127.0.0.1:6000", "https://m2.example/prefix"]}
    assert no_fallback == ["127.0.0.1:5000"]
    for bad, why in (("hub-mirror.example", "must use either"), ("https://u:p@m.example", "username/password"),
                     ("https://m.example/?x=1", "query or fragment")):
        with pytest.raises(ConfigError, match=why):
            mirrors_from([bad], {})
    with pytest.raises(ConfigError, match="f.toml: registry.\"r:1\".mirrors"):
        mirrors_from([], {"r:1": {"mirrors": ["r:2"]}}, "f.toml")


def test_registry_tables_in_the_config_file():
    from dockyard.config import parse

    cfg = parse({"registry": {"docker.io": {"mirrors": ["http://127.0.0.1:7000"], "mirror_fallback": False}}})
    assert cfg.registries == {"docker.io": {"mirrors": ["http://127.0.0.1:7000"], "mirror_fallback": False}}
    assert parse(cfg.to_toml()).registries == cfg.registries
    with pytest.raises(ConfigError, match="unknown key 'registry.\"docker.io\".mirror'"):
        parse({"registry": {"docker.io": {"mirror": []}}})
    with pytest.raises(ConfigError, match="'registry.\"docker.io\".mirror_fallback' must be a bool"):
        parse({"registry": {"docker.io": {"mirror_fallback": "no"}}})
    with pytest.raises(ConfigError, match="must be a table"):
        parse({"registry": {"docker.io": "http://m"}})
