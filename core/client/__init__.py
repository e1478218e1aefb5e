"""The client side of Dockyard: a small Docker Engine API (v1.41) client on the
standard library alone, and what a client keeps besides (credentials, build
contexts).  The ``dockyard`` CLI reaches the daemon only through this package.

    session       requests and their answers: one connection each, versioned paths
    api           :class:`Client`: the endpoints the CLI calls, by resource
    streams       a hijacked attach or exec, a pending wait, an upload from an iterable
    errors        what the client raises (the tree is in its docstring)
    registry      pull, push and login through the daemon, with X-Registry-Auth
    authconfig    the credentials, kept as the docker CLI keeps them (config.json, helpers)
    buildcontext  the build context, tarred here as ``docker build`` does

It imports nothing from the rest of Dockyard but its wire level
(:mod:`dockyard.wire`), and, for a build context only, the ``.dockerignore``
matcher and the driver kit's tar entries it shares with the daemon.  Importing
the package loads the client (every ``dockyard`` command that talks to a daemon
needs it) and none of ``registry``, ``authconfig`` or ``buildcontext``.
"""

from dockyard.wire import STDERR, STDIN, STDOUT, SYSTEMERR, demux, parse_host, quote

from .api import Client
from .errors import APIError, ClientError, DaemonUnreachable, NotFound, ProgressError, ProtocolError, api_error
from .session import API_VERSION, DEFAULT_HOST, Session
from .streams import Attachment, IterReader, PendingWait

__all__ = ["Client", "Session", "API_VERSION", "DEFAULT_HOST", "Attachment", "PendingWait", "IterReader",
           "ClientError", "ProtocolError", "DaemonUnreachable", "APIError", "NotFound", "ProgressError", "api_error",
           "STDIN", "STDOUT", "STDERR", "SYSTEMERR", "demux", "parse_host", "quote"]
