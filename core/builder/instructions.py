"""Per-instruction argument and flag parsing for :mod:`dockyard.builder.dockerfile`.

Each logical line (continuations already joined) becomes an :class:`Instruction`
following BuildKit's ``parser/line_parsers.go`` and ``instructions/parse.go``:
JSON (exec) form when the text is a JSON array of strings, shell form otherwise
(invalid JSON falls back to shell form; a JSON array holding a non-string is an
error); ``ENV``/``LABEL`` ``k=v`` pairs or the legacy ``ENV k v``; ``ARG`` with
or without default; flags checked per instruction.
"""

import json
import re

import attrs

__all__ = ["Instruction", "InstructionError", "parse_duration", "parse_instruction"]

_WS = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"\d*<<-?\s*([^<]+)\Z")
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9}

_STR, _BOOL, _DUR, _INT, _NO = "string", "bool", "duration", "int", "unsupported"
_FLAGS = {
    "FROM": {"platform": _STR},
    "COPY": {"from": _STR, "chown": _STR, "chmod": _STR, "link": _BOOL, "parents": _NO, "exclude": _NO},
    "ADD": {"chown": _STR, "chmod": _STR, "link": _BOOL, "checksum": _STR, "keep-git-dir": _BOOL,
            "exclude": _NO},
    "RUN": {"mount": _NO, "network": _NO, "security": _NO},
    "HEALTHCHECK": {"interval": _DUR, "timeout": _DUR, "start-period": _DUR, "start-interval": _DUR,
                    "retries": _INT},
}
_KNOWN = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
          "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"}
_NOT_TRIGGERS = {"ONBUILD": "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                 "FROM": "FROM isn't allowed as an ONBUILD trigger",
                 "MAINTAINER": "MAINTAINER isn't allowed as an ONBUILD trigger"}


class InstructionError(ValueError):
    """An instruction is invalid (the caller adds file and line)."""


@attrs.define
class Instruction:
    """One instruction.  ``cmd`` is upper-case; ``line``/``end_line`` 1-based;
    ``original`` the logical line (continuations joined, comments dropped).

    ``args`` by instruction -- RUN/CMD/ENTRYPOINT/SHELL and HEALTHCHECK CMD: the
    exec-form list when ``json`` else ``[shell_text]`` (``[]`` if empty);
    ADD/COPY: sources then destination; EXPOSE/VOLUME: the words (raw);
    FROM: ``[image]`` (``AS`` name on the stage); USER/WORKDIR/STOPSIGNAL/
    MAINTAINER: ``[text]``; HEALTHCHECK NONE: ``[]`` with ``healthcheck="NONE"``.
    ``pairs``: ENV/LABEL ``(key, raw_value)``, ARG ``(name, raw_default|None)``.
    ``flags``: name → str / bool; HEALTHCHECK durations as int nanoseconds and
    ``retries`` as int.  ``trigger``: ONBUILD's wrapped instruction.
    """

    cmd: str
    line: int
    end_line: int
    original: str
    args: list = attrs.Factory(list)
    flags: dict = attrs.Factory(dict)
    json: bool = False
    pairs: list = attrs.Factory(list)
    healthcheck: str | None = None
    trigger: "Instruction | None" = None


def parse_duration(text):
    """A Go ``time.ParseDuration`` string (``"1m30s"``, ``"1.5h"``, ``"0"``) → int nanoseconds."""
    s, sign = text, 1
    if s[:1] in ("+", "-"):
        sign, s = (-1 if s[0] == "-" else 1), s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"time: invalid duration {text!r}")
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION.match(s, pos)
        if not m:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


def _split_flags(rest):
    """Leading ``--flag[=value]`` words → (flags list, remaining text)."""
    flags: list[str] = []
    i, n = 0, len(rest)
    while True:
        while i < n and rest[i].isspace():
            i += 1
        if not rest.startswith("--", i):
            return flags, rest[i:]
        chars: list[str] = []
        quote = None
        while i < n and (quote or not rest[i].isspace()):
            ch = rest[i]
            if quote:
                if ch == quote:
                    quote = None
                elif ch == "\\" and i + 1 < n:
                    i += 1
                    chars.append(rest[i])
                else:
                    chars.append(ch)
            elif ch in "'\"":
                quote = ch
            elif ch == "\\" and i + 1 < n:
                i += 1
                chars.append(rest[i])
            else:
                chars.append(ch)
            i += 1
        word = "".join(chars)
        if word == "--":
            return flags, rest[i:]
        flags.append(word)


def _parse_flags(cmd, words):
    known, out = _FLAGS.get(cmd, {}), {}
    for word in words:
        name, eq, value = word[2:].partition("=")
        kind = known.get(name)
        if kind is None:
            raise InstructionError(f"unknown flag: {name}")
        if kind == _NO:
            raise InstructionError(f"{cmd} --{name} is not supported by dockyard build")
        if name in out:
            raise InstructionError(f"duplicate flag specified: {name}")
        if kind == _BOOL:
            if eq and value.lower() not in ("true", "false"):
                raise InstructionError(f"expecting boolean value for flag {name}, not: {value}")
            out[name] = not eq or value.lower() == "true"
            continue
        if not eq:
            raise InstructionError(f"missing a value on flag: {name}")
        if kind == _DUR:
            try:
                value = parse_duration(value)
            except ValueError as exc:
                raise InstructionError(str(exc)) from None
            if value < 0:
                raise InstructionError(f"Interval {name!r} cannot be negative")
            if 0 < value < 1_000_000:
                raise InstructionError(f"Interval {name!r} cannot be less than 1ms")
        elif kind == _INT:
            try:
                value = int(value)
            except ValueError:
                raise InstructionError(f"--{name} must be an integer, not {value!r}") from None
            if value < 0:
                raise InstructionError(f"--{name} cannot be negative ({value})")
        out[name] = value
    return out


def _words(rest, escape):
    """Docker's ``parseWords``: split on blanks outside quotes, quotes kept."""
    words: list[str] = []
    word: list[str] = []
    quote, blank_ok, i, n = None, False, 0, len(rest)
    while i < n:
        ch = rest[i]
        if quote is None:
            if ch.isspace():
                if blank_ok or word:
                    words.append("".join(word))
                word, blank_ok = [], False
                i += 1
                continue
            if ch in "'\"":
                quote, blank_ok = ch, True
            elif ch == escape:
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
        else:
            if ch == quote:
                quote = None
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    break
                word.append(ch)
                i += 1
                ch = rest[i]
        word.append(ch)
        i += 1
    if blank_ok or word:
        words.append("".join(word))
    return words


def _json(rest: str) -> tuple[list[str] | None, bool]:
    """``(list, True)`` for a JSON string array, ``(None, False)`` for not-JSON."""
    if not rest.lstrip().startswith("["):
        return None, False
    try:
        value = json.loads(rest, parse_constant=_no_constant)
    except ValueError:
        return None, False
    if not isinstance(value, list):
        return None, False
    if not all(isinstance(v, str) for v in value):
        raise InstructionError("when using JSON array syntax, arrays must be comprised of strings only")
    return value, True


def _no_constant(name):
    raise ValueError(name)


def _heredoc_check(cmd, rest, escape):
    if cmd in ("RUN", "COPY", "ADD"):
        for word in _words(rest, escape):
            if _HEREDOC.match(word):
                raise InstructionError(f"heredocs ({word}) are not supported by dockyard build")


def _pairs(cmd, rest, escape):
    words = _words(rest, escape)
    if not words:
        raise InstructionError(f"{cmd} requires at least one argument")
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2 or not parts[1]:
            raise InstructionError(f"{cmd} must have two arguments")
        return [(parts[0], parts[1])]
    out = []
    for word in words:
        if "=" not in word:
            raise InstructionError(f"Syntax error - can't find = in {word!r}. Must be of the form: name=value")
        key, _, value = word.partition("=")
        out.append((key, value))
    return out


def parse_instruction(line, start, end, escape):
    text = line.strip()
    parts = _WS.split(text, maxsplit=1)
    cmd = parts[0].upper()
    if cmd not in _KNOWN:
        raise InstructionError(f"unknown instruction: {parts[0]}")
    flag_words, rest = _split_flags(parts[1] if len(parts) > 1 else "")
    rest = rest.strip()
    ins = Instruction(cmd, start, end, text, flags=_parse_flags(cmd, flag_words))
    _heredoc_check(cmd, rest, escape)
    if cmd in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
        value, ins.json = _json(rest) if rest else (None, False)
        ins.args = value if value is not None else ([rest] if rest else [])
        if cmd == "SHELL" and not ins.json:
            raise InstructionError("SHELL requires the arguments to be in JSON form")
        if cmd in ("RUN", "SHELL") and not ins.args:
            raise InstructionError(f"{cmd} requires at least one argument")
    elif cmd in ("ADD", "COPY", "VOLUME"):
        value, ins.json = _json(rest)
        ins.args = value if value is not None else (_WS.split(rest) if rest else [])
        if cmd == "VOLUME":
            if not ins.args:
                raise InstructionError("VOLUME requires at least one argument")
            if any(not a.strip() for a in ins.args):
                raise InstructionError("VOLUME specified can not be an empty string")
        elif len(ins.args) < 2:
            raise InstructionError(f"{cmd} requires at least two arguments, but only one was provided. "
                        "Destination could not be determined.")
    elif cmd in ("ENV", "LABEL"):
        ins.pairs = _pairs(cmd, rest, escape)
    elif cmd == "ARG":
        words = _words(rest, escape)
        if not words:
            raise InstructionError("ARG requires at least one argument")
        ins.pairs = [(w.partition("=")[0], w.partition("=")[2] if "=" in w else None) for w in words]
    elif cmd in ("EXPOSE", "FROM"):
        ins.args = _WS.split(rest) if rest else []
        if not ins.args:
            raise InstructionError(f"{cmd} requires at least one argument")
        if cmd == "FROM" and len(ins.args) not in (1, 3):
            raise InstructionError("FROM requires either one or three arguments")
        if cmd == "FROM" and len(ins.args) == 3 and ins.args[1].lower() != "as":
            raise InstructionError("FROM requires either one or three arguments")
    elif cmd in ("USER", "WORKDIR", "STOPSIGNAL", "MAINTAINER"):
        if not rest:
            raise InstructionError(f"{cmd} requires exactly one argument")
        ins.args = [rest]
    elif cmd == "HEALTHCHECK":
        _healthcheck(ins, rest)
    elif cmd == "ONBUILD":
        if not rest:
            raise InstructionError("ONBUILD requires at least one argument")
        keyword = _WS.split(rest, maxsplit=1)[0].upper()
        if keyword in _NOT_TRIGGERS:
            raise InstructionError(_NOT_TRIGGERS[keyword])
        ins.trigger = parse_instruction(rest, start, end, escape)
    return ins


def _healthcheck(ins, rest):
    if not rest:
        raise InstructionError("HEALTHCHECK requires at least one argument")
    parts = _WS.split(rest, maxsplit=1)
    kind = parts[0].upper()
    body = parts[1].strip() if len(parts) > 1 else ""
    if kind == "NONE":
        if body:
            raise InstructionError("HEALTHCHECK NONE takes no arguments")
        ins.healthcheck = "NONE"
        return
    if kind != "CMD":
        raise InstructionError(f"Unknown type {parts[0]!r} in HEALTHCHECK (try CMD)")
    if not body:
        raise InstructionError("Missing command after HEALTHCHECK CMD")
    value, ins.json = _json(body)
    ins.args = value if ins.json else [body]
    ins.healthcheck = "CMD"


