"""Build-time variable substitution, as Docker's Dockerfile shell lexer does it.

Docker (classic builder and BuildKit's ``frontend/dockerfile/shell/lex.go``)
expands variables in the arguments of a fixed set of instructions
(:data:`SUBSTITUTED`) with the build's ARG/ENV values.  RUN, CMD, ENTRYPOINT,
SHELL and HEALTHCHECK are *not* expanded here: their shell sees the
environment at run time.

Supported, exactly as Docker does:

* ``$NAME`` and ``${NAME}``; a name is letters, digits and ``_``, or a run of
  digits (``$12`` is the variable ``12``), or one special character of
  ``@*#?-$!0``; a ``$`` not followed by a name stays a literal ``$``; unset
  variables expand to the empty string;
* ``${NAME:-word}`` / ``${NAME-word}`` (default when unset-or-empty / unset),
  ``${NAME:+word}`` / ``${NAME+word}`` (alternative when set-and-non-empty /
  set), ``${NAME:?msg}`` / ``${NAME?msg}`` (error); ``word`` is itself
  expanded and may hold quotes;
* the escape character (``\\`` or the Dockerfile's ``# escape=`` token) makes
  the next character literal (an escaped space does not split words, a trailing
  escape is dropped); single quotes are literal; inside double quotes ``$`` is
  expanded and the escape character only escapes ``"``, ``$`` and itself;
  quotes are removed from the result.

Word splitting (:func:`expand_words`, used for EXPOSE-like lists): the text is
split on whitespace *after* substitution; whitespace coming from quoted or
escaped text does not split, whitespace coming from a variable's value does.

Not supported (an error, not a silent difference): BuildKit's newer
``${NAME#pat}``, ``${NAME%pat}`` and ``${NAME/pat/repl}`` forms.
"""

from collections.abc import Mapping

from ..errors import InvalidParameter

__all__ = ["SUBSTITUTED", "ShellExpandError", "env_from_list", "expand_word", "expand_words"]

#: instructions whose arguments Docker expands at build time (ONBUILD's trigger is
#: expanded only when it runs in the child build, like any other instruction)
SUBSTITUTED = frozenset({"ADD", "ARG", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "ONBUILD", "STOPSIGNAL",
                         "USER", "VOLUME", "WORKDIR"})
_SPECIAL = frozenset("@*#?-$!0")


class ShellExpandError(InvalidParameter):
    """A word could not be expanded (bad syntax, or a ``${NAME?msg}`` fired)."""


def env_from_list(env):
    """``["K=V", "K2"]`` (Docker's list form) → ``{"K": "V", "K2": ""}``; later keys win."""
    out = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


class _Words:
    """Accumulates the split words beside the joined result."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word, self.in_word = "", False

    def char(self, ch) -> None:  # a character that may split
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word, self.in_word = "", False
        else:
            self.raw(ch)

    def raw(self, text) -> None:  # characters that never split ("" from '' makes no word)
        self.word += text
        self.in_word = True

    def done(self):
        if self.word:
            self.words.append(self.word)
            self.word, self.in_word = "", False
        return self.words


class _Lexer:
    def __init__(self, text, env, escape) -> None:
        if escape not in ("\\", "`"):
            raise ValueError(f"escape must be '\\\\' or '`', not {escape!r}")
        self.s, self.i, self.env, self.esc = text, 0, env, escape

    def peek(self):
        return self.s[self.i] if self.i < len(self.s) else None

    def next(self):
        ch = self.peek()
        if ch is not None:
            self.i += 1
        return ch

    def run(self, stop=None):
        """Process up to ``stop`` (consumed) or the end: (result, words)."""
        out: list[str] = []
        words = _Words()
        while (ch := self.peek()) is not None:
            if stop is not None and ch == stop:
                self.next()
                return "".join(out), words.done()
            if ch == "$":
                text = self.dollar()
                out.append(text)
                for c in text:
                    words.char(c)
            elif ch == "'":
                text = self.single_quote()
                out.append(text)
                words.raw(text)
            elif ch == '"':
                text = self.double_quote()
                out.append(text)
                words.raw(text)
            else:
                self.next()
                if ch == self.esc:
                    ch = self.next()
                    if ch is None:
                        break  # a trailing escape is dropped
                    words.raw(ch)
                else:
                    words.char(ch)
                out.append(ch)
        if stop is not None:
            raise ShellExpandError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.done()

    def single_quote(self):
        self.next()
        end = self.s.find("'", self.i)
        if end < 0:
            raise ShellExpandError("unexpected end of statement while looking for matching single-quote")
        text, self.i = self.s[self.i:end], end + 1
        return text

    def double_quote(self):
        self.next()
        out: list[str] = []
        while True:
            ch = self.peek()
            if ch is None:
                raise ShellExpandError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            self.next()
            if ch == self.esc:
                nxt = self.peek()
                if nxt is None:
                    continue  # dropped; the missing quote is reported next round
                if nxt in ('"', "$", self.esc):
                    ch = self.next()
            out.append(ch)

    def name(self):
        start = self.i
        ch = self.peek()
        if ch is None:
            return ""
        if ch.isdigit():
            while (c := self.peek()) is not None and c.isdigit():
                self.next()
            return self.s[start:self.i]
        if ch in _SPECIAL:
            self.next()
            return ch
        while (c := self.peek()) is not None and (c.isalnum() or c == "_"):
            self.next()
        return self.s[start:self.i]

    def lookup(self, name):
        return (self.env[name], True) if name in self.env else ("", False)

    def dollar(self):
        self.next()
        if self.peek() != "{":
            name = self.name()
            return self.lookup(name)[0] if name else "$"
        self.next()
        if self.peek() is None:
            raise ShellExpandError("syntax error: missing '}'")
        if self.peek() in "{}:":
            raise ShellExpandError("syntax error: bad substitution")
        name = self.name()
        op = self.next()
        if op == "}":
            return self.lookup(name)[0]
        if op is None:
            raise ShellExpandError("syntax error: missing '}'")
        null_is_unset = op == ":"
        if null_is_unset:
            op = self.next()
            if op is None:
                raise ShellExpandError("syntax error: missing '}'")
        if op not in "+-?":
            raise ShellExpandError(f"unsupported modifier ({':' if null_is_unset else ''}{op}) in substitution")
        try:
            word, _ = self.run("}")
        except ShellExpandError:
            if self.peek() is None:
                raise ShellExpandError("syntax error: missing '}'") from None
            raise
        value, is_set = self.lookup(name)
        empty = not is_set or (null_is_unset and value == "")
        if op == "-":
            return word if empty else value
        if op == "+":
            return "" if empty else word
        if not is_set:
            raise ShellExpandError(f"{name}: {word or 'is not allowed to be unset'}")
        if empty:
            raise ShellExpandError(f"{name}: {word or 'is not allowed to be empty'}")
        return value


def _process(word, env, escape):
    if not isinstance(env, Mapping):
        env = env_from_list(env)
    try:
        return _Lexer(word, env, escape).run()
    except ShellExpandError as exc:
        raise ShellExpandError(f"failed to process {word!r}: {exc}") from None


def expand_word(word, env, *, escape: str = "\\"):
    """Expand ``word`` as one string (quotes removed, spacing kept), as Docker's
    ``ProcessWord``.  ``env``: a mapping or a ``["K=V"]`` list.

    :raises ShellExpandError: bad syntax or a ``${NAME?msg}`` that fired.
    """
    return _process(word, env, escape)[0]


def expand_words(word, env, *, escape: str = "\\"):
    """Expand ``word`` and split it into words (quotes removed), as Docker's
    ``ProcessWords``: ``'a "b c" $V'`` with ``V="d e"`` → ``["a", "b c", "d", "e"]``."""
    return _process(word, env, escape)[1]
