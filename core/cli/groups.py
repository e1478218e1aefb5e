"""docker's management commands: ``container``, ``image`` and ``system``, each a
group of the commands docker lists under it (``docker container --help``).

A command that also exists at the top level (``container ls`` is ``ps``,
``image rm`` is ``rmi``, ``system info`` is ``info``) is made by that command's
own registrar, so the two take the same flags and run the same code: the
registrar is handed a stand-in for the subparsers action (:class:`_Pick`) that
builds only the commands the group wants, under the group's names, and drops
the rest.  The commands only a group has (``container inspect``, ``image
prune``, ``system df``...) are filled by a function of their module.

A group lists its commands in :data:`GROUPS`' order whatever registrar makes
them (argparse's public ``parser_class`` hook adopts a parser already built).
When the command line names one command (``dockyard container ls``) only that
one is built; the others are listed for ``--help`` and never parsed.  Unknown
ones are refused in docker's words by :mod:`.parser`.
"""

import importlib

from dockyard.cli.parser import Discard, Parser

#: group -> (its help, its commands as (name, aliases, help, source)), in docker's
#: order; a source is ``module:command`` (that registrar's top-level command) or
#: ``module.function`` (fills the parser of a command only the group has)
GROUPS = {
    "container": ("Manage containers", (
        ("attach", (), "Attach local standard input, output, and error streams to a running container",
         "attach:attach"),
        ("commit", (), "Create a new image from a container's changes", "imagexfer:commit"),
        ("cp", (), "Copy files/folders between a container and the local filesystem", "containers_more:cp"),
        ("create", (), "Create a new container", "containers:create"),
        ("diff", (), "Inspect changes to files or directories on a container's filesystem", "containers_more:diff"),
        ("exec", (), "Execute a command in a running container", "execs:exec"),
        ("export", (), "Export a container's filesystem as a tar archive", "imagexfer:export"),
        ("inspect", (), "Display detailed information on one or more containers", "containers_more.inspect_args"),
        ("kill", (), "Kill one or more running containers", "containers:kill"),
        ("logs", (), "Fetch the logs of a container", "containers:logs"),
        ("ls", ("list", "ps"), "List containers", "containers:ps"),
        ("pause", (), "Pause all processes within one or more containers", "execs:pause"),
        ("port", (), "List port mappings or a specific mapping for the container", "networks:port"),
        ("prune", (), "Remove all stopped containers", "containers_more.prune_args"),
        ("rename", (), "Rename a container", "containers_more:rename"),
        ("restart", (), "Restart one or more containers", "containers:restart"),
        ("rm", ("remove",), "Remove one or more containers", "containers:rm"),
        ("run", (), "Create and run a new container from an image", "containers:run"),
        ("start", (), "Start one or more stopped containers", "containers:start"),
        ("stats", (), "Display a live stream of container(s) resource usage statistics", "execs:stats"),
        ("stop", (), "Stop one or more running containers", "containers:stop"),
        ("top", (), "Display the running processes of a container", "containers_more:top"),
        ("unpause", (), "Unpause all processes within one or more containers", "execs:unpause"),
        ("update", (), "Update configuration of one or more containers", "containers_more:update"),
        ("wait", (), "Block until one or more containers stop, then print their exit codes", "containers:wait"),
    )),
    "image": ("Manage images", (
        ("build", (), "Build an image from a Dockerfile", "build:build"),
        ("history", (), "Show the history of an image", "images:history"),
        ("import", (), "Import the contents from a tarball to create a filesystem image", "images:import"),
        ("inspect", (), "Display detailed information on one or more images", "images.inspect_args"),
        ("load", (), "Load an image from a tar archive or STDIN", "imagexfer:load"),
        ("ls", ("list",), "List images", "images:images"),
        ("prune", (), "Remove unused images", "images.prune_args"),
        ("pull", (), "Download an image from a registry", "registry:pull"),
        ("push", (), "Upload an image to a registry", "registry:push"),
        ("rm", ("remove", "rmi"), "Remove one or more images", "images:rmi"),
        ("save", (), "Save one or more images to a tar archive (streamed to STDOUT by default)", "imagexfer:save"),
        ("tag", (), "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", "images:tag"),
    )),
    "system": ("Manage Dockyard", (
        ("check", (), "Verify every stored digest: blobs, image configs, layers (exit 1 on a problem)",
         "imagexfer.check_args"),
        ("df", (), "Show docker disk usage", "diskusage.df_args"),
        ("events", (), "Get real time events from the server", "events:events"),
        ("info", (), "Display system-wide information", "system:info"),
        ("prune", (), "Remove unused data", "diskusage.prune_args"),
    )),
}


def register(sub, command=None, word=None):
    """Add the groups to ``sub``: only ``command``'s, where ``word`` (the word after
    the group on the command line) names the one command built, or every group
    when no command is known (for ``--help``: their commands listed, none built)."""
    for group, (help_text, commands) in GROUPS.items():
        if command is None or command == group:
            _group(sub, group, help_text, commands, word if command == group else "")


def _group(sub, group, help_text, commands, word):
    parser = sub.add_parser(group, help=help_text, allow_abbrev=False)
    gsub = parser.add_subparsers(dest=f"{group}_command", metavar="COMMAND", title="commands",
                                 parser_class=_adopting)
    parser.set_defaults(func=lambda ctx, args: parser.print_help() or 0)  # docker: the group's help, status 0
    wanted = [c for c in commands if word is None or word == c[0] or word in c[1]]  # None: all
    built = _build(f"{parser.prog}", wanted)
    for name, aliases, help_line, _ in commands:
        gsub.add_parser(name, aliases=list(aliases), help=help_line, adopt=built.get(name))


def _adopting(adopt=None, **kwargs):
    """The group's ``parser_class``: the parser built for a command, else a bare
    one (a command listed for ``--help`` that this command line does not run)."""
    return adopt if adopt is not None else Parser(**kwargs)


def _build(prefix, commands):
    """``{name: parser}`` for ``commands``, each registrar run once."""
    built: dict = {}
    picks: dict = {}  # module -> {its top-level command: the group's name for it}
    for name, _, _, source in commands:
        module, sep, command = source.partition(":")
        if sep:
            picks.setdefault(module, {})[command] = name
            continue
        module, _, function = source.partition(".")
        parser = built[name] = Parser(prog=f"{prefix} {name}", allow_abbrev=False)
        getattr(importlib.import_module(f"dockyard.cli.{module}"), function)(parser)
    for module, names in picks.items():
        pick = _Pick(prefix, names)
        importlib.import_module(f"dockyard.cli.{module}").register(pick)
        built.update(pick.built)
    return built


class _Pick:
    """Stands in for a subparsers action while a registrar runs: the commands in
    ``names`` (top-level name -> the group's) are built as the group's, usage
    lines renamed; the others (and any group the registrar makes) get a :class:`Discard`."""

    def __init__(self, prefix, names):
        self.prefix, self.names = prefix, names
        self.built = {}
        self.choices = {}

    def add_parser(self, name, **kwargs):
        kwargs.pop("aliases", None)
        kwargs.pop("help", None)
        if name not in self.names:
            return Discard()
        new = self.names[name]
        prog = f"{self.prefix} {new}"
        if kwargs.get("usage"):
            kwargs["usage"] = kwargs["usage"].replace(f"dockyard {name}", prog, 1)
        parser = self.built[new] = Parser(prog=prog, **kwargs)
        return parser
