"""Which daemon the CLI talks to, chosen as the docker CLI chooses it, so that a
Docker user's environment reaches us: ``-H``, else ``$DOCKYARD_HOST``, else
``$DOCKER_HOST``, else the default socket (an empty variable counts as unset).

The client speaks HTTP over ``unix://PATH`` and plain ``tcp://HOST:PORT``.  The
docker CLI's other endpoint forms (``ssh://``, ``npipe://``, TLS from
``$DOCKER_TLS_VERIFY``) and the daemon-only ``fd://`` are refused here in one
sentence that says why and what to use instead, before any command runs: with
them a request would fail later and obscurely (a TLS port answers plain HTTP
with garbage).  Docker's contexts (``$DOCKER_CONTEXT``) are not read.

Imports nothing at module level: ``main`` loads it on every run.
"""

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"  # = dockyard.client.DEFAULT_HOST (tests check)
VARIABLES = ("DOCKYARD_HOST", "DOCKER_HOST")
TLS_VARIABLES = ("DOCKER_TLS_VERIFY", "DOCKER_TLS")  # docker turns TLS on when either is non-empty
CLIENT_FORMS = "unix://PATH or tcp://HOST:PORT"


def resolve(flag, environ):
    """``(host, source)``: the host to use and where it came from (``"-H"``, a
    variable's ``$NAME``, or None for the default)."""
    if flag:
        return flag, "-H"
    for name in VARIABLES:
        if environ.get(name):
            return environ[name], f"${name}"
    return DEFAULT_HOST, None


def problem(host, source, environ):
    """None when the client can connect to ``host``; else the sentence that says
    why not (``source`` as :func:`resolve` gives it names where the host came from)."""
    where = f"{host} (from {source})" if source and source != "-H" else host
    scheme = host.split("://", 1)[0].lower() if "://" in host else ""
    if scheme == "fd":
        return (f"cannot connect to {where}: fd:// is how a daemon takes the sockets systemd opened for it "
                f"(dockyard daemon -H fd://); a client connects to {CLIENT_FORMS}")
    if scheme == "ssh":
        return (f"cannot connect to {where}: dockyard's CLI does not tunnel over ssh; forward the daemon's "
                f"socket (ssh -nNT -L /tmp/dockyard.sock:/run/dockyard/dockyard.sock HOST) and use "
                f"unix:///tmp/dockyard.sock")
    if scheme == "npipe":
        return f"cannot connect to {where}: named pipes are Windows'; use {CLIENT_FORMS}"
    if scheme == "https":
        return f"cannot connect to {where}: dockyard's CLI does not speak TLS; use {CLIENT_FORMS}"
    from dockyard.client import parse_host  # the client is loaded for the command anyway

    try:
        kind, _ = parse_host(host)
    except ValueError as exc:
        return f"{exc}{f' (from {source})' if source and source != '-H' else ''}"
    tls = [name for name in TLS_VARIABLES if environ.get(name)]
    if kind == "tcp" and tls:
        return (f"cannot connect to {where} with ${tls[0]} set: dockyard's CLI does not speak TLS, only plain "
                f"HTTP to tcp:// hosts; unset {' and '.join(tls)}, or use a unix:// socket")
    return None
