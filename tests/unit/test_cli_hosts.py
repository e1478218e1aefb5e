"""Which daemon the CLI talks to: ``-H``, else ``$DOCKYARD_HOST``, else
``$DOCKER_HOST`` (a Docker user's environment), else the default socket; and the
endpoint forms it cannot use refused in one clear line before any command runs."""

import pytest

from dockyard.cli import containers, hosts, main


@pytest.fixture
def ran(monkeypatch):
    """Run ``dockyard ARGV`` with ``ps`` replaced by a command that records the host
    it got (nothing connects); returns (exit status, the host or None)."""
    for name in ("DOCKYARD_HOST", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_TLS"):
        monkeypatch.delenv(name, raising=False)
    seen = {}

    def fake_ps(ctx, args):
        seen["host"] = ctx.host
        return 0
    monkeypatch.setattr(containers, "cmd_ps", fake_ps)  # ps is read without argparse, which sees it too

    def run(*argv, **env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        seen.clear()
        return main.main(list(argv)), seen.get("host")
    return run


def test_docker_host_comes_after_dockyard_host_and_the_flag(ran):
    assert ran("ps") == (0, main.DEFAULT_HOST)
    assert ran("ps", DOCKER_HOST="unix:///from/docker.sock") == (0, "unix:///from/docker.sock")
    assert ran("ps", DOCKYARD_HOST="unix:///from/dockyard.sock") == (0, "unix:///from/dockyard.sock")
    assert ran("-H", "unix:///from/flag.sock", "ps") == (0, "unix:///from/flag.sock")
    assert ran("--host=tcp://127.0.0.1:2375", "ps") == (0, "tcp://127.0.0.1:2375")


def test_an_empty_variable_is_unset(ran):
    assert ran("ps", DOCKYARD_HOST="", DOCKER_HOST="unix:///from/docker.sock") == (0, "unix:///from/docker.sock")


@pytest.mark.parametrize("host, words", [
    ("fd://", "fd:// is how a daemon takes the sockets systemd opened for it"),
    ("fd://3", "a client connects to unix://PATH or tcp://HOST:PORT"),
    ("ssh://me@far", "dockyard's CLI does not tunnel over ssh"),
    ("npipe:////./pipe/docker_engine", "named pipes are Windows'"),
    ("https://far:2376", "does not speak TLS"),
    ("foo://x", "invalid host 'foo://x'"),
    ("unix://", "no socket path"),
])
def test_endpoints_we_cannot_use_are_refused_before_the_command(ran, capsys, host, words):
    assert ran("ps", DOCKER_HOST=host) == (1, None)
    err = capsys.readouterr().err
    assert err.startswith("Failed to initialize: ") and words in err and "(from $DOCKER_HOST)" in err, err
    assert err.count("\n") == 1


def test_tls_asked_for_a_tcp_host_is_refused(ran, capsys):
    assert ran("ps", DOCKER_HOST="tcp://far:2376", DOCKER_TLS_VERIFY="1") == (1, None)
    assert capsys.readouterr().err == (
        "Failed to initialize: cannot connect to tcp://far:2376 (from $DOCKER_HOST) with $DOCKER_TLS_VERIFY set: "
        "dockyard's CLI does not speak TLS, only plain HTTP to tcp:// hosts; unset DOCKER_TLS_VERIFY, or use a "
        "unix:// socket\n")
    assert ran("ps", DOCKER_HOST="unix:///local.sock") == (0, "unix:///local.sock")  # TLS is for tcp:// only


def test_forwarded_admin_verbs_use_the_same_host(monkeypatch):
    import sys
    import types
    for name in ("DOCKYARD_HOST", "DOCKER_TLS_VERIFY", "DOCKER_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_HOST", "unix:///from/docker.sock")
    seen = {}
    fake = types.ModuleType("dockyard.cli.driver")
    fake.main = lambda argv, host: seen.setdefault("host", host) and 0
    monkeypatch.setitem(sys.modules, "dockyard.cli.driver", fake)
    assert main.main(["driver", "ls"]) == 0 and seen["host"] == "unix:///from/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "ssh://far")
    seen.clear()
    assert main.main(["driver", "ls"]) == 1 and seen == {}


def test_resolve_says_where_the_host_came_from():
    env = {"DOCKYARD_HOST": "unix:///a", "DOCKER_HOST": "unix:///b"}
    assert hosts.resolve("unix:///f", env) == ("unix:///f", "-H")
    assert hosts.resolve(None, env) == ("unix:///a", "$DOCKYARD_HOST")
    assert hosts.resolve(None, {"DOCKER_HOST": "unix:///b"}) == ("unix:///b", "$DOCKER_HOST")
    assert hosts.resolve(None, {}) == (hosts.DEFAULT_HOST, None)
    assert hosts.problem("tcp://127.0.0.1:2375", "-H", {}) is None
    assert hosts.problem("/run/x.sock", None, {}) is None
