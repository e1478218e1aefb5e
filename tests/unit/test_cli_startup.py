"""The CLI's start-up stays lean: what a command imports, and what parsers it builds.

Every ``dockyard`` command pays its imports and its parser at each start (issue 17:
``dockyard ps`` took 5x ``docker ps``).  These tests pin what ``ps``, ``run`` and
``--version`` load in a fresh interpreter, so the cost cannot creep back unseen:
of dockyard, exactly the modules the command uses; of the standard library, none
of those that cost the most and that the CLI once loaded for nothing (``socket``'s
enums, ``shutil`` and its compression modules, gettext's ``locale`` ...).  No
timing is asserted: bench/cli_startup.py measures it.
"""

import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dockyard.cli import main, parser

ROOT = Path(__file__).resolve().parents[2]

#: standard modules the CLI must not load for ps, run or --version: each cost a
#: measurable part of a start (socket: selectors and enum conversions; shutil: bz2,
#: lzma, fnmatch; locale: gettext's catalogue lookups; signal: enums of every signal)
COSTLY = {"socket", "selectors", "shutil", "bz2", "lzma", "fnmatch", "locale", "signal", "contextlib",
          "subprocess", "threading", "typing", "pathlib", "tempfile", "http", "http.client", "email",
          "urllib", "urllib.parse", "importlib.metadata", "importlib.util", "inspect", "dataclasses",
          "asyncio", "ssl", "tarfile", "zipfile", "uuid", "datetime", "logging"}

CLIENT = {"dockyard.wire", "dockyard.client", "dockyard.client.api", "dockyard.client.errors",
          "dockyard.client.session", "dockyard.client.streams"}
BASE = {"dockyard", "dockyard.cli", "dockyard.cli.main"}
PARSING = BASE | {"dockyard.cli.parser", "dockyard.cli.containers", "dockyard.cli.output",
                  "dockyard.cli.gotemplate", "dockyard.cli.hosts"}

PROBE = """
import sys
before = set(sys.modules)
from dockyard.cli.main import main
try:
    rc = main(sys.argv[1:])
except SystemExit as exc:
    rc = exc.code
new = sorted(set(sys.modules) - before)
sys.stderr.write("MODULES " + " ".join(new) + "\\n")
sys.exit(rc)
"""


def loaded_by(*argv):
    """The modules ``dockyard ARGV`` imports beyond what the interpreter (and site:
    the editable install's import hook) had loaded: ``(exit code, stdout, names)``."""
    res = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "DOCKYARD_HOST")})
    line = next((x for x in res.stderr.splitlines() if x.startswith("MODULES ")), None)
    assert line is not None, res.stderr
    return res.returncode, res.stdout, set(line.split()[1:])


@pytest.fixture
def answering(tmp_path):
    """A socket that answers every request with ``200 []`` (an empty container list):
    enough for ``ps`` to run to its end."""
    path = str(tmp_path / "d.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(8)

    def serve():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data and (chunk := conn.recv(4096)):
                    data += chunk
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 2\r\nConnection: close\r\n\r\n[]")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"unix://{path}"
    srv.shutdown(socket.SHUT_RDWR)
    srv.close()
    thread.join(5)


def test_ps_imports_the_client_and_its_own_command_only(answering):
    rc, out, names = loaded_by("-H", answering, "ps")
    assert rc == 0 and out.split("\n")[0].startswith("CONTAINER ID")
    ours = {n for n in names if n.startswith("dockyard")}
    assert ours == PARSING - {"dockyard.cli.parser"} | CLIENT  # ps is read without argparse
    assert sorted(names & COSTLY) == []


@pytest.mark.parametrize("argv", [["ps"], ["ps", "-a", "--format", "table {{.ID}}\t{{.Names}}"], ["--version"]])
def test_the_installed_script_lists_without_re_argparse_or_json(answering, tmp_path, argv):
    """bin/dockyard, the script pip installs, as a user runs it (the package on the
    path, no editable install's hook, which imports ``re`` itself): ``ps`` imports
    neither ``re`` (7 ms here), argparse, ``json`` nor ``enum``, so it starts in
    about the interpreter's own time plus a few ms."""
    view = tmp_path / "view"
    view.mkdir()
    (view / "dockyard").symlink_to(ROOT / "core")
    res = subprocess.run([sys.executable, "-S", "-X", "importtime", str(ROOT / "bin" / "dockyard"),
                          "-H", answering, *argv], capture_output=True, text=True, timeout=30,
                         env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(view)})
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("Dockyard version " if argv == ["--version"] else "CONTAINER ID")
    names = {line.rsplit("|", 1)[1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}
    assert "dockyard.cli.main" in names
    assert sorted(names & (COSTLY | {"re", "argparse", "json", "enum", "gettext"})) == []


def test_run_parses_without_the_client_nor_costly_modules():
    """``run --help`` builds run's parser (its hundred flags' modules) and nothing of
    the commands beside it; the terminal and the client are imported when it runs."""
    rc, out, names = loaded_by("run", "--help")
    assert rc == 0 and "Usage:" in out or "usage:" in out
    ours = {n for n in names if n.startswith("dockyard")}
    assert ours == PARSING - {"dockyard.cli.hosts"} | {
        "dockyard.cli.pullimage", "dockyard.cli.runflags", "dockyard.cli.netflags"}
    assert sorted(names & COSTLY) == []


def test_version_imports_nothing_but_main():
    rc, out, names = loaded_by("--version")
    assert rc == 0 and out.startswith("Dockyard version ")
    assert {n for n in names if n.startswith("dockyard")} == BASE
    assert "argparse" not in names and "json" not in names
    assert sorted(names & COSTLY) == []


def test_a_command_builds_its_own_parser_and_no_other():
    """A known command gets a parser with that one command (the others of its
    registrar are Discarded); the full parser, for --help, has them all."""
    full = main.build_parser()._subparsers._group_actions[0].choices
    for cmd in {c for cmds in main.REGISTRARS.values() for c in cmds}:
        built = main.build_parser(cmd)._subparsers._group_actions[0].choices
        assert set(built) == {cmd}, cmd
        assert built[cmd].format_help() == full[cmd].format_help(), cmd
    group = main.build_parser("container", "ls")._subparsers._group_actions[0].choices["container"]
    commands = group._subparsers._group_actions[0].choices
    flags = sorted(o for a in full["ps"]._actions for o in a.option_strings)
    assert sorted(o for a in commands["ls"]._actions for o in a.option_strings) == flags
    assert not any(a.option_strings for a in commands["run"]._actions if a.dest != "help")  # listed, not built


def test_discard_takes_any_registration():
    d = parser.Discard()
    grp = d.add_argument_group("x")
    assert grp.add_argument("--y", help="z") is d
    d.set_defaults(func=print)
    assert d.add_subparsers(dest="c").add_parser("c").add_argument("a") is d


@pytest.mark.parametrize("columns", [None, "57", "0", "junk"])
def test_help_width_is_argparses_default(monkeypatch, columns):
    """Parser gives argparse's formatter the width it would have asked shutil for."""
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    monkeypatch.delenv("LINES", raising=False)
    assert parser.help_width() == shutil.get_terminal_size().columns - 2


def test_argparse_messages_stay_english():
    """Parser.error reads argparse's messages to give docker's words: they are not
    translated (nor looked up in gettext's catalogues)."""
    import argparse

    assert argparse._("unrecognized arguments: %s") == "unrecognized arguments: %s"
    assert argparse.ngettext("expected %s argument", "expected %s arguments", 2) == "expected %s arguments"
    assert argparse.ngettext("expected %s argument", "expected %s arguments", 1) == "expected %s argument"
