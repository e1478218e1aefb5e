"""A command line the CLI cannot take is answered in the docker CLI's words and
with its exit status (125 for a flag, 1 for arguments and commands), usage included."""

import itertools

import pytest

from dockyard.cli import main


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main.main(["-H", "unix:///nonexistent/dockyard.sock", *argv])
    return exc.value.code, capsys.readouterr().err


@pytest.mark.parametrize("argv, code, first, usage", [
    (["run", "--x", "busybox"], 125, "unknown flag: --x", "dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]"),
    (["volume", "ls", "-q", "--bogus=1"], 125, "unknown flag: --bogus", "dockyard volume ls [OPTIONS]"),
    (["ps", "-x"], 125, "unknown shorthand flag: 'x' in -x", "dockyard ps [OPTIONS]"),
    (["run", "-dz", "busybox"], 125, "unknown shorthand flag: 'z' in -z",
     "dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]"),
    (["run", "-m"], 125, "flag needs an argument: 'm' in -m", "dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]"),
    (["logs", "--tail"], 125, "flag needs an argument: --tail", "dockyard logs [OPTIONS] CONTAINER"),
    (["ps", "-n", "x"], 125, 'invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": '
                             'invalid syntax', "dockyard ps [OPTIONS]"),
    (["run", "-d=x", "busybox"], 125, 'invalid argument "x" for "-d, --detach" flag: strconv.ParseBool: '
                                      'parsing "x": invalid syntax', "dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]"),
    (["--bogus", "ps"], 125, "unknown flag: --bogus", "dockyard [OPTIONS] COMMAND [ARG...]"),
    (["ps", "foo"], 1, "dockyard: 'dockyard ps' accepts no arguments", "dockyard ps [OPTIONS]"),
    (["stop"], 1, "dockyard: 'dockyard stop' requires at least 1 argument",
     "dockyard stop [OPTIONS] CONTAINER [CONTAINER...]"),
    (["exec", "-it", "box"], 1, "dockyard: 'dockyard exec' requires at least 2 arguments",
     "dockyard exec [OPTIONS] CONTAINER COMMAND [ARG...]"),
    (["network", "create"], 1, "dockyard: 'dockyard network create' requires 1 argument",
     "dockyard network create [OPTIONS] NETWORK"),
    (["tag", "a", "b", "c"], 1, "dockyard: 'dockyard tag' requires 2 arguments",
     "dockyard tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]"),
    (["images", "a", "b"], 1, "dockyard: 'dockyard images' requires at most 1 argument",
     "dockyard images [OPTIONS] [REPOSITORY[:TAG]]"),
    (["network", "bogus"], 1, "dockyard: unknown command: dockyard network bogus", "dockyard network"),
    (["container", "bogus"], 1, "dockyard: unknown command: dockyard container bogus", "dockyard container"),
    (["image", "ls", "--x"], 125, "unknown flag: --x", "dockyard image ls [OPTIONS] [REPOSITORY[:TAG]]"),
    (["container", "run", "--x", "busybox"], 125, "unknown flag: --x",
     "dockyard container run [OPTIONS] IMAGE [COMMAND] [ARG...]"),
    (["container", "exec", "box"], 1, "dockyard: 'dockyard container exec' requires at least 2 arguments",
     "dockyard container exec [OPTIONS] CONTAINER COMMAND [ARG...]"),
    (["image", "rmi"], 1, "dockyard: 'dockyard image rm' requires at least 1 argument",
     "dockyard image rm [OPTIONS] IMAGE [IMAGE...]"),
    (["attach"], 1, "dockyard: 'dockyard attach' requires 1 argument", "dockyard attach [OPTIONS] CONTAINER"),
    (["system", "info", "x"], 1, "dockyard: 'dockyard system info' accepts no arguments",
     "dockyard system info [OPTIONS]"),
])
def test_usage_errors_read_like_dockers(capsys, argv, code, first, usage):
    got, err = run(capsys, *argv)
    prog = " ".join(itertools.takewhile(str.islower, usage.split()))  # "dockyard network ls [OPTIONS]"
    assert got == code, err
    assert err.startswith(first + "\n\nUsage:  " + usage + "\n\n"), err
    assert err.rstrip().endswith("--help' for more information"), err
    assert err.rstrip().splitlines()[-1] in (f"Run '{prog} --help' for more information",
                                             f"See '{prog} --help' for more information"), err


def test_unknown_command_points_at_help(capsys):
    code, err = run(capsys, "bogus")
    assert (code, err) == (1, "dockyard: unknown command: dockyard bogus\n\n"
                              "Run 'dockyard --help' for more information\n")


def test_at_least_says_see_and_the_others_run(capsys):
    assert run(capsys, "rm")[1].rstrip().endswith("See 'dockyard rm --help' for more information")
    assert run(capsys, "ps", "--x")[1].rstrip().endswith("Run 'dockyard ps --help' for more information")


def test_good_command_lines_still_parse():
    args = main.build_parser("run").parse_args(["run", "--rm", "-it", "--detach-keys", "ctrl-a,q", "busybox",
                                                "sh", "-c", "--not-a-flag-of-ours"])
    assert args.command == ["sh", "-c", "--not-a-flag-of-ours"] and args.detach_keys == "ctrl-a,q"
    args = main.build_parser("exec").parse_args(["exec", "-it", "box", "ls", "-l"])
    assert args.container == "box" and args.command == ["ls", "-l"]
