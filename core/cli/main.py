"""``dockyard``: the command line, a pure client of the daemon's Docker Engine API.

Start-up is kept lean: ``--version`` imports nothing beyond this module, ``ps``
neither argparse nor ``re`` nor ``json`` (:func:`_plain_ps`), and ``--help`` only
argparse and the command modules (which import the API client inside the
commands).  ``daemon``, ``driver`` and ``storage`` are handed their remaining
arguments without building our parser at all.
"""

import os
import sys

# Same value as dockyard.client.DEFAULT_HOST, written out so --help imports nothing.
DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
HOST_ENV = "DOCKYARD_HOST"
FORWARDED = ("daemon", "driver", "storage")


def _version_line():
    from dockyard import __version__
    return f"Dockyard version {__version__}"


#: registrar -> the commands it makes.  A known command builds only its own
#: registrar's parser for it: building them all cost ~16 ms on every run, and a
#: registrar's other commands several more (``_Only``; "groups", docker's
#: management commands, builds only the one the next word names).
#: tests/unit/test_cli_parse.py checks this table against the full parser.
REGISTRARS = {
    "containers": ("run", "create", "start", "ps", "logs", "stop", "kill", "rm", "restart", "wait"),
    "execs": ("exec", "pause", "unpause", "stats"),
    "networks": ("network", "port"),
    "volumes": ("volume",),
    "images": ("images", "rmi", "tag", "history", "import", "save", "load", "export", "commit"),
    "build": ("build",),
    "registry": ("pull", "push", "login", "logout"),
    "system": ("version", "info", "inspect"),
    "containers_more": ("cp", "top", "rename", "update", "diff"),
    "attach": ("attach",),
    "groups": ("container", "image", "system"),
    "events": ("events",),
    "search": ("search",),
}


def _register(name, sub, command=None, word=None):
    import importlib

    mod = importlib.import_module(f"dockyard.cli.{name}")
    if name == "groups":
        mod.register(sub, command, word)
    elif command in REGISTRARS[name]:
        mod.register(_Only(sub, command))
    else:
        mod.register(sub)


class _Only:
    """The subparsers action as a registrar sees it when the command line names one
    of its commands: that command's parser is built, and the registrar's others
    (``ps`` beside ``run``'s hundred flags) get a :class:`~.parser.Discard`."""

    def __init__(self, sub, command):
        self.sub, self.command = sub, command

    def add_parser(self, name, **kwargs):
        from dockyard.cli.parser import Discard

        if name == self.command or self.command in kwargs.get("aliases", ()):
            return self.sub.add_parser(name, **kwargs)
        return Discard()


def build_parser(command=None, word=None):
    """The argument parser: global options and every client command, or, for a
    known ``command``, only what that command needs (of a group, only the
    command ``word`` names)."""
    from dockyard.cli.parser import Parser

    wanted = [r for r, cmds in REGISTRARS.items() if command in cmds] or list(REGISTRARS)
    parser = Parser(
        prog="dockyard", allow_abbrev=False,
        description="A self-sufficient runtime for containers, with plug-in drivers.")
    parser.add_argument("-H", "--host", help=f"Daemon socket to connect to (default ${HOST_ENV}, else "
                                             f"$DOCKER_HOST, else {DEFAULT_HOST})")
    parser.add_argument("-D", "--debug", action="store_true", help="Enable debug mode")
    parser.add_argument("-v", "--version", action="version", version=_version_line(),
                        help="Print version information and quit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name in wanted:
        _register(name, sub, command, word)
    if len(wanted) == len(REGISTRARS):
        sub.add_parser("daemon", help="Start the daemon (run 'dockyard daemon --help')", add_help=False)
        sub.add_parser("driver", help="Manage drivers: ls, info, use (run 'dockyard driver --help')",
                       add_help=False)
        sub.add_parser("storage", help="Manage storage: migrate (run 'dockyard storage --help')", add_help=False)
    return parser


def _prescan(argv):
    """Find the global options and the command without argparse.

    Returns ``(host, debug, index of the command or None, wants_version)``; a
    global option we do not know leaves the rest to argparse (which reports it).
    """
    host, debug, i = None, False, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-H", "--host"):
            if i + 1 >= len(argv):
                return host, debug, None, False
            host = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--host="):
            host = arg[len("--host="):]
        elif arg.startswith("-H") and len(arg) > 2:
            host = arg[2:].lstrip("=")
        elif arg in ("-D", "--debug"):
            debug = True
        elif arg in ("-v", "--version"):
            return host, debug, None, True
        elif arg.startswith("-"):
            return host, debug, None, False
        else:
            return host, debug, i, False
        i += 1
    return host, debug, None, False


class Context:
    """What every command gets: the chosen host and a lazily made API client."""

    def __init__(self, host, debug=False):
        self.host = host
        self.debug = debug
        self._client = None

    @property
    def client(self):
        if self._client is None:
            from dockyard.client import Client
            client = Client(self.host, debug=self.debug)
            if self.host == DEFAULT_HOST:
                from dockyard.cli.system import ensure_daemon
                ensure_daemon(client)
            self._client = client
        return self._client


def _daemon_host(flag):
    """The host a client command talks to (``-H``, ``$DOCKYARD_HOST``, ``$DOCKER_HOST``,
    the default: :mod:`dockyard.cli.hosts`); None after saying why it cannot be used."""
    from dockyard.cli import hosts

    host, source = hosts.resolve(flag, os.environ)
    problem = hosts.problem(host, source, os.environ)
    if problem:
        print(f"Failed to initialize: {problem}", file=sys.stderr)
        return None
    return host


def _forward(command, argv, host, debug):
    if command == "daemon":
        from dockyard.daemon.main import main as daemon_main
        return daemon_main((["-H", host] if host else []) + (["-D"] if debug else []) + argv)
    host = _daemon_host(host)
    if host is None:
        return 1
    if command == "storage":
        from dockyard.cli.storage import main as storage_main
        return storage_main(argv, host, debug)
    from dockyard.cli.driver import main as driver_main
    return driver_main(argv, host)


class _Args:
    """What argparse would have made of a command line :func:`_plain_ps` read."""

    def __init__(self, **values):
        self.__dict__.update(values)


#: ``ps``'s options, read without argparse: its import (with ``re``'s) was a third
#: of ``dockyard ps``.  flag -> (dest, takes a value); tests/unit/test_cli_parse.py
#: checks both against ps's argparse parser.
PS_FLAGS = {"-a": ("all", False), "--all": ("all", False), "-q": ("quiet", False), "--quiet": ("quiet", False),
            "--no-trunc": ("no_trunc", False), "-l": ("latest", False), "--latest": ("latest", False),
            "-s": ("size", False), "--size": ("size", False), "-n": ("last", True), "--last": ("last", True),
            "-f": ("filter", True), "--filter": ("filter", True), "--format": ("format", True)}


def _plain_ps(words, host, debug):
    """``ps WORDS`` as argparse parses it, for the plain forms (``-aq``, ``-n 3``,
    ``--last=3``, ``-f k=v``, ``--format X``); None for anything else (``--help``, an
    unknown flag, a bad number, a value that starts with "-"), left to argparse."""
    from dockyard.cli.containers import cmd_ps

    filters: list[str] = []
    values = {"all": False, "quiet": False, "no_trunc": False, "latest": False, "size": False,
              "last": -1, "filter": filters, "format": None}
    words = list(words)
    while words:
        word = words.pop(0)
        if word.startswith("--"):
            flag, eq, inline = word.partition("=")
            inline = inline if eq else None
        elif word.startswith("-") and len(word) > 2 and word[2] != "=":
            flag, inline = word[:2], word[2:]  # -aq is -a -q; -n3 is -n 3
        else:
            flag, inline = word, None
        if flag not in PS_FLAGS:
            return None
        dest, takes = PS_FLAGS[flag]
        if not takes:
            if inline is not None and flag.startswith("--"):
                return None
            values[dest] = True
            if inline is not None:
                words.insert(0, "-" + inline)  # the rest of the cluster
            continue
        value = inline if inline is not None else (words.pop(0) if words else None)
        if value is None or value.startswith("-"):
            return None
        if dest == "last":
            try:
                values[dest] = int(value)
            except ValueError:
                return None
        elif dest == "filter":
            filters.append(value)
        else:
            values[dest] = value
    return _Args(command="ps", host=host, debug=debug, func=cmd_ps, **values)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    host, debug, index, wants_version = _prescan(argv)
    if wants_version:
        print(_version_line())
        return 0
    if index is not None and argv[index] in FORWARDED:
        return _exit_code(_forward(argv[index], argv[index + 1:], host, debug))

    args = _plain_ps(argv[index + 1:], host, debug) if index is not None and argv[index] == "ps" else None
    if args is None:
        parser = build_parser(*(argv[index:index + 2] if index is not None else ()))
        args = parser.parse_args(argv)  # a command line docker would refuse exits here, with docker's words
        if not getattr(args, "func", None):
            parser.print_help()
            return 0
    host = _daemon_host(args.host)
    if host is None:
        return 1
    ctx = Context(host, debug=args.debug)
    try:
        return _exit_code(args.func(ctx, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except Exception as exc:  # one boundary: our own errors become one line, like docker
        from dockyard.client import APIError, ClientError
        if isinstance(exc, APIError):
            print(f"Error response from daemon: {exc.message}", file=sys.stderr)
        elif isinstance(exc, (ClientError, ValueError, OSError)):
            print(f"Error: {exc}" if not isinstance(exc, ClientError) else str(exc), file=sys.stderr)
        else:
            raise
        if ctx.debug:
            import traceback
            traceback.print_exc()
        return 1


def _exit_code(value):
    if value is None:
        return 0
    return value if isinstance(value, int) else 1


def _silence_stdout():
    # Python would complain again at exit while flushing the closed pipe.
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
