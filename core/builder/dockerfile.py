"""Dockerfile parser with Docker's semantics (BuildKit's ``frontend/dockerfile/parser``
and ``instructions``, which the classic builder shares).

Why not the PyPI package ``dockerfile-parse`` (2.0.1, evaluated): it only splits
lines into ``{instruction, value}`` dicts.  It has 0-based lines, no flag parsing,
no exec-vs-shell form, no ENV/LABEL/ARG splitting, no refusal of unknown
instructions or of ``ONBUILD ONBUILD``, and no stages -- all of which we need
with Docker's exact error behaviour, so this is our own (this module: directives,
lines, stages; :mod:`.instructions`: per-instruction arguments and flags).

Lexical rules (:func:`parse`):

* parser directives ``# escape=`` (`` ` `` or ``\\``) and ``# syntax=`` (recorded,
  ignored) are recognised only before the first comment, blank line or
  instruction; each at most once; an unknown directive ends the directives;
* a line whose first non-blank character is ``#`` is a comment, anywhere,
  including inside a continuation; ``#`` elsewhere is literal;
* the escape character followed only by spaces/tabs at the end of a line
  continues the instruction on the next line; blank lines inside a
  continuation are skipped (with a warning, as Docker); an escape on the last
  line of the file just ends the instruction;
* the instruction keyword is case-insensitive; leading ``--name=value`` /
  ``--name`` words are flags, checked against the instruction's known flags.

Records: :class:`Instruction` (see its field notes per instruction),
:class:`Stage`, :class:`Dockerfile`.  Values are kept *raw* (quotes included)
where Docker expands them later: run them through
:func:`dockyard.builder.shellexpand.expand_word` (which also removes quotes) for
the instructions in ``shellexpand.SUBSTITUTED``.

Not supported, refused with a clear error: heredocs (``RUN <<EOF``), and the
BuildKit-only ``RUN --mount/--network/--security`` and ``COPY --parents/--exclude``.
``COPY/ADD --link`` is accepted and recorded (it changes layer reuse only, not
the result).
"""

import re
from typing import Any

import attrs

from ..errors import InvalidParameter
from .instructions import (
    Instruction,
    InstructionError,
    parse_duration,
    parse_instruction,
)

__all__ = ["Dockerfile", "DockerfileError", "Instruction", "Stage", "parse", "parse_duration"]

_DIRECTIVE = re.compile(r"#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")


class DockerfileError(InvalidParameter):
    """The Dockerfile is invalid; ``str()`` is ``"Dockerfile:LINE: message"``."""

    def __init__(self, message, line=None, filename: str = "Dockerfile") -> None:
        super().__init__(f"{filename}:{line}: {message}" if line else f"{filename}: {message}")
        self.message, self.line, self.filename = message, line, filename


@attrs.define
class Stage:
    """A build stage: ``FROM base [AS name]`` and what follows it."""

    index: int
    base: str
    name: str | None
    platform: str | None
    from_: Instruction
    instructions: list = attrs.Factory(list)


@attrs.define
class Dockerfile:
    """A parsed Dockerfile: ``args`` are the ARG instructions before the first FROM."""

    stages: list
    args: list
    escape: str = "\\"
    syntax: str | None = None
    warnings: list = attrs.Factory(list)

    def stage(self, key):
        """The stage named ``key`` (case-insensitive) or with that index."""
        for st in self.stages:
            if st.name == str(key).lower() or str(st.index) == str(key):
                return st
        raise KeyError(key)


def _logical_lines(text, state):
    """Yield (start, end, line) of each instruction (Docker's line scanner)."""
    lines = text.split("\n")
    if text.endswith("\n"):
        lines.pop()
    lines = [ln.removesuffix("\r") for ln in lines]
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        first = raw.lstrip()
        _directive(first, state, i)
        if first.startswith("#"):
            continue
        line, more = _trim_continuation(first, state["escape"])
        if not more and not line:
            continue
        start, empty = i, False
        while more and i < len(lines):
            raw = lines[i]
            i += 1
            if raw.lstrip().startswith("#"):
                continue
            if not raw.strip():
                empty = True
                continue
            piece, more = _trim_continuation(raw, state["escape"])
            line += piece
        if empty:
            state["warnings"].append(f"[WARNING]: Empty continuation line found in:\n    {line}")
        yield start, i, line


def _directive(line, state, lineno):
    if state["done"]:
        return
    m = _DIRECTIVE.match(line)
    key = m.group(1).lower() if m else None
    if m is None or key not in ("escape", "syntax"):
        state["done"] = True
        return
    if key in state["seen"]:
        raise DockerfileError(f"only one {key} parser directive can be used", lineno, state["filename"])
    state["seen"].add(key)
    if key == "escape":
        if m.group(2) not in ("`", "\\"):
            raise DockerfileError(f"invalid escape token '{m.group(2)}' does not match ` or \\", lineno,
                                  state["filename"])
        state["escape"] = m.group(2)
    else:
        state["syntax"] = m.group(2)


def _trim_continuation(line, escape):
    stripped = line.rstrip(" \t")
    if stripped.endswith(escape):
        return stripped[:-1], True
    return line, False


def parse(source, *, filename: str = "Dockerfile"):
    """Parse Dockerfile text (str or UTF-8 bytes) into a :class:`Dockerfile`.

    :raises DockerfileError: with the 1-based line of the offending instruction.
    """
    if isinstance(source, bytes):
        source = source.decode("utf-8", "surrogateescape")
    state: dict[str, Any] = {"escape": "\\", "syntax": None, "done": False, "seen": set(), "warnings": [],
                             "filename": filename}
    stages: list[Stage] = []
    global_args: list[Instruction] = []
    names: set[str] = set()
    last = 0
    for start, end, line in _logical_lines(source, state):
        last = end
        try:
            ins = parse_instruction(line, start, end, state["escape"])
        except InstructionError as exc:
            raise DockerfileError(str(exc), start, filename) from None
        if ins.cmd == "FROM":
            name = ins.args[2].lower() if len(ins.args) == 3 else None
            if name is not None:
                if not _STAGE_NAME.match(name):
                    raise DockerfileError(f"invalid name for build stage: {ins.args[2]!r}, name can't start "
                                          "with a number or contain symbols", start, filename)
                if name in names:
                    raise DockerfileError(f"duplicate stage name {name!r}", start, filename)
                names.add(name)
            stages.append(Stage(len(stages), ins.args[0], name, ins.flags.get("platform"), ins))
        elif stages:
            stages[-1].instructions.append(ins)
        elif ins.cmd == "ARG":
            global_args.append(ins)
        else:
            raise DockerfileError("no build stage in current context", start, filename)
    if not stages:
        what = "file with no instructions" if not global_args else "no FROM instruction"
        raise DockerfileError(what, last or None, filename)
    return Dockerfile(stages, global_args, state["escape"], state["syntax"], state["warnings"])
