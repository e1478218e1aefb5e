"""docker's management commands (``container``, ``image``, ``system``): each lists
docker's commands, and one that also exists at the top level takes the same flags
and runs the same code as that command."""

import pytest

from dockyard.cli import groups, main


def _choices(parser):
    return parser._subparsers._group_actions[0].choices


def _flags(parser):
    return sorted((tuple(a.option_strings), a.dest, a.nargs, a.default) for a in parser._actions)


MIRRORED = [(group, name, source.partition(":")[2]) for group, (_, commands) in groups.GROUPS.items()
            for name, _, _, source in commands if ":" in source]


@pytest.mark.parametrize("group, name, top", MIRRORED, ids=[f"{g} {n}" for g, n, _ in MIRRORED])
def test_a_group_command_is_its_top_level_command(group, name, top):
    mine = _choices(_choices(main.build_parser(group, name))[group])[name]
    theirs = _choices(main.build_parser(top))[top]
    assert _flags(mine) == _flags(theirs)
    assert mine.get_default("func") is theirs.get_default("func") is not None
    assert mine.prog == f"dockyard {group} {name}"


def test_groups_list_dockers_commands():
    # `docker container|image|system --help` (docker 28); tests/e2e/test_cli_parity.py asks the real one
    docker = {"container": "attach commit cp create diff exec export inspect kill logs ls pause port prune rename "
                           "restart rm run start stats stop top unpause update wait",
              "image": "build history import inspect load ls prune pull push rm save tag",
              "system": "df events info prune"}
    for group, names in docker.items():
        listed = [c[0] for c in groups.GROUPS[group][1]]
        assert set(names.split()) <= set(listed) and listed == sorted(listed), group


def test_only_the_named_command_is_built():
    container = _choices(main.build_parser("container", "ps"))["container"]
    built = {name for name, p in _choices(container).items() if p.get_default("func")}
    assert built == {"ls", "list", "ps"}
    args = main.build_parser("container", "ps").parse_args(["container", "ps", "-aq"])
    assert args.all and args.quiet and args.func.__name__ == "cmd_ps"
    args = main.build_parser("image", "rmi").parse_args(["image", "rmi", "-f", "x"])
    assert args.force and args.images == ["x"] and args.func.__name__ == "cmd_rmi"
    args = main.build_parser("container", "inspect").parse_args(["container", "inspect", "-s", "-f", "{{.Id}}", "c"])
    assert (args.size, args.format, args.containers) == (True, "{{.Id}}", ["c"])


def test_a_group_alone_prints_its_help_and_succeeds(capsys):
    assert main.main(["-H", "unix:///nonexistent/dockyard.sock", "image"]) == 0
    out = capsys.readouterr().out
    assert "usage: dockyard image" in out and "pull" in out and "Download an image from a registry" in out


def test_attach_flags():
    args = main.build_parser("attach").parse_args(["attach", "--no-stdin", "--sig-proxy=false",
                                                   "--detach-keys", "ctrl-a,q", "box"])
    assert (args.no_stdin, args.sig_proxy, args.detach_keys, args.container) == (True, False, "ctrl-a,q", "box")
    args = main.build_parser("container", "attach").parse_args(["container", "attach", "box"])
    assert (args.no_stdin, args.sig_proxy, args.detach_keys) == (False, True, None)
