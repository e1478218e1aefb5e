"""argparse, with the docker CLI's answers to a command line it cannot take.

docker (cobra and pflag) words these differently from argparse, and scripts and
people read them: a flag it does not know, a flag without its value or with a bad
one exit 125 with the command's usage::

    unknown flag: --x

    Usage:  dockyard run [OPTIONS] IMAGE [COMMAND] [ARG...]

    Run 'dockyard run --help' for more information

too few or too many arguments and an unknown command exit 1
(``dockyard: 'dockyard stop' requires at least 1 argument`` ...).

Start-up: argparse makes a help formatter at every ``add_argument`` (to check the
metavar), and a formatter without a width imports :mod:`shutil` (with ``bz2``,
``lzma``, ``fnmatch``) to ask for the terminal's: :meth:`Parser._get_formatter`
gives it the same width itself.  A registrar's commands that this command line
does not run get a :class:`Discard` instead of a parser.  argparse's messages are
not looked up in gettext's catalogues (see below).
"""

import argparse
import os
import re
import sys

FLAG_ERROR = 125
ARGS_ERROR = 1

# argparse's messages stay in English, untranslated: Parser.error reads them to say
# them in docker's words, and the catalogue lookup gettext made for every message of
# every parser (locale's tables imported, a stat per language) cost more than parsing.
setattr(argparse, "_", lambda message: message)
setattr(argparse, "ngettext", lambda singular, plural, n: singular if n == 1 else plural)


def output_bool(value):
    """A Go-style boolean flag value (``--pause=false``, ``-H=0``): pflag's words."""
    text = value.lower()
    if text in ("1", "t", "true", "yes"):
        return True
    if text in ("0", "f", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value {value!r} (write --flag=false)")


class UsageError(SystemExit):
    """A command line we refuse, once ``text`` (docker's words, usage included)
    is on stderr: a SystemExit with the status, as argparse's own errors are."""

    def __init__(self, text, status):
        super().__init__(status)
        self.text = text


def help_width():
    """The width argparse's help formatter takes by default: ``shutil.get_terminal_size()``'s
    columns (``$COLUMNS``, else the terminal of ``sys.__stdout__``, else 80), less 2."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout is not None else 0
        except (ValueError, OSError):  # closed, detached, or not a terminal
            columns = 0
    return (columns if columns > 0 else 80) - 2


class Discard:
    """What a registrar gets instead of a parser for a command the command line does
    not run: every addition to it (arguments, groups, defaults, subcommands) is
    dropped.  Building a command's flags costs at each start (``run`` has over a
    hundred); the registrars stay as they are, handed this by whoever filters."""

    def __getattr__(self, name):
        return self._drop

    def _drop(self, *args, **kwargs):
        return self


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors read as docker's (see the module).

    ``min_args`` (set on a command's parser) is the least number of arguments
    it takes when argparse cannot count them (``exec CONTAINER COMMAND``)."""

    min_args = None

    def _get_formatter(self):
        # (typeshed's formatter class takes only prog; every HelpFormatter takes width)
        return self.formatter_class(prog=self.prog, width=help_width())  # type: ignore[call-arg]

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        self._given = args
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            flags = [e for e in extras if e.startswith("-") and e != "-"]
            if flags:
                self.fail(_unknown_flag(flags[0], self), FLAG_ERROR)
            self._count_error(too_many=True)
        if self.min_args is not None and _given_count(self, namespace) < self.min_args:
            self._count_error()
        return namespace, extras

    def error(self, message):
        m = re.match(r"argument (\S+): (.*)", message)
        if message.startswith("the following arguments are required"):
            self._count_error()
        if message.startswith("unrecognized arguments: "):
            self.fail(_unknown_flag(message.split(": ", 1)[1].split()[0], self), FLAG_ERROR)
        word = re.search(r"invalid choice: '([^']*)'", message)
        if m and word and m.group(1) == "COMMAND":  # the subcommand of this parser (docker: usage is the group)
            self.fail(f"dockyard: unknown command: {self.prog} {word.group(1)}", ARGS_ERROR,
                      usage=self.prog != "dockyard" and self.prog)
        if m:
            self.fail(self._flag_message(m.group(1), m.group(2)), FLAG_ERROR)
        self.fail(message, FLAG_ERROR)

    def fail(self, message, status, usage=True, see=False):
        text = message
        if usage:
            text += f"\n\nUsage:  {usage if isinstance(usage, str) else use_line(self)}"
        text += f"\n\n{'See' if see else 'Run'} '{self.prog} --help' for more information"
        print(text, file=sys.stderr, flush=True)
        raise UsageError(text, status)

    def _count_error(self, too_many=False):
        """cobra's ``NoArgs``, ``ExactArgs``, ``RequiresMaxArgs`` and ``RequiresMinArgs``."""
        required = self.min_args if self.min_args is not None else _required_count(self)
        positionals = [a for a in self._actions if not a.option_strings]
        what = f"dockyard: '{self.prog}'"
        if not positionals:
            self.fail(f"{what} accepts no arguments", ARGS_ERROR)
        if all(a.nargs is None for a in positionals):
            self.fail(f"{what} requires {required} {_plural(required)}", ARGS_ERROR)
        if too_many:
            most = sum(1 for a in positionals if a.nargs in (None, "?"))
            self.fail(f"{what} requires at most {most} {_plural(most)}", ARGS_ERROR)
        self.fail(f"{what} requires at least {required} {_plural(required)}", ARGS_ERROR, see=True)

    def _flag_message(self, names, problem):
        """pflag's words for a flag argparse refused (``names`` is ``-m/--memory``)."""
        option, arg = self._option_given(names.split("/"))
        if problem == "expected one argument":
            return (f"flag needs an argument: {option}" if option.startswith("--")
                    else f"flag needs an argument: '{option[1:]}' in {option}")
        value = re.search(r"(?:invalid \w+ value: |invalid choice: |ignored explicit argument )'(.*?)'", problem)
        if value and problem.startswith("ignored explicit argument") and not arg.startswith(option + "="):
            letter = value.group(1)[0]  # -dz: a boolean -d and a -z we do not know
            return f"unknown shorthand flag: '{letter}' in -{letter}"
        if value:
            why = problem
            if problem.startswith("invalid int value"):
                why = f'strconv.ParseInt: parsing "{value.group(1)}": invalid syntax'
            elif problem.startswith("invalid float value"):
                why = f'strconv.ParseFloat: parsing "{value.group(1)}": invalid syntax'
            elif problem.startswith("ignored explicit argument"):
                why = f'strconv.ParseBool: parsing "{value.group(1)}": invalid syntax'
            return f'invalid argument "{value.group(1)}" for "{", ".join(names.split("/"))}" flag: {why}'
        return f'invalid argument for "{", ".join(names.split("/"))}" flag: {problem}'

    def _option_given(self, names):
        """Which of a flag's ``names`` the command line used, and the word it is in."""
        for arg in reversed(getattr(self, "_given", [])):
            for name in names:
                if arg == name or arg.startswith(name + "=") or (len(name) == 2 and arg.startswith(name)):
                    return name, arg
        return names[-1], names[-1]


def _unknown_flag(arg, parser):
    if arg.startswith("--"):
        return f"unknown flag: {arg.split('=', 1)[0]}"
    shorts = {o[1] for a in parser._actions for o in a.option_strings if len(o) == 2}
    letter = next((c for c in arg[1:] if c not in shorts), arg[1:2])
    return f"unknown shorthand flag: '{letter}' in -{letter}"


def _plural(n):
    return "argument" if n == 1 else "arguments"


def _required_count(parser):
    return sum(1 for a in parser._actions if not a.option_strings and a.nargs in (None, "+"))


def _given_count(parser, namespace):
    count = 0
    for action in parser._actions:
        if action.option_strings or action.nargs == argparse.PARSER:
            continue
        value = getattr(namespace, action.dest, None)
        count += len(value) if isinstance(value, list) else int(value is not None)
    return count


def use_line(parser):
    """cobra's ``UseLine``: ``dockyard ps [OPTIONS]``, ``dockyard stop [OPTIONS]
    CONTAINER [CONTAINER...]``; a usage given to the parser is used as it is."""
    if parser.usage:
        return parser.usage.removeprefix("usage: ")
    words = [parser.prog]
    if any(a.option_strings and a.dest != "help" for a in parser._actions):
        words.append("[OPTIONS]")
    for action in parser._actions:
        if action.option_strings:
            continue
        name = action.metavar or action.dest.upper()
        if action.nargs == argparse.PARSER:
            words.append("COMMAND" if parser.prog != "dockyard" else "COMMAND [ARG...]")
        elif action.nargs is None:
            words.append(name)
        elif action.nargs == "?":
            words.append(f"[{name}]")
        elif action.nargs == "+":
            words.append(f"{name} [{name}...]")
        else:
            words.append(f"[{name}...]")
    return " ".join(words)
