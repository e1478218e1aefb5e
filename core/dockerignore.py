"""``.dockerignore``: Docker's pattern semantics (moby/patternmatcher and the
CLI's ``ignorefile``) and a pruning walk of a build context.

Reading (:func:`read_patterns`): a line starting with ``#`` is a comment; each
other line is stripped of surrounding whitespace (blank lines are skipped); a
leading ``!`` makes it an exception; the pattern is path-cleaned (``./a/../b/``
→ ``b``) and a leading ``/`` removed.

Matching (:class:`Matcher`), on slash-separated paths relative to the context:

* ``*`` matches any run of characters except ``/``, ``?`` one character except
  ``/``, ``[...]`` a character class (``[^...]`` negated, ranges), ``\\``
  escapes the next character;
* ``**`` matches any number of directories, including none (``**/*.go``
  matches ``a.go`` and ``x/y/a.go``; a trailing ``**`` matches everything below);
* a pattern matching a directory also matches everything below it (``dir``,
  ``dir/`` and ``/dir`` are the same pattern);
* patterns apply in order and the last one that matches decides: ``*.md``
  then ``!keep.md`` keeps ``keep.md``.

:func:`walk` yields the included paths of a context, pruning an excluded
directory unless some exception could match something below it (Docker's
classic walk only looks for a literal prefix, so it drops ``a/keep`` for
``a`` + ``!*/keep``; BuildKit's walk keeps it, and so does this one).
"""

import os
import re

from .errors import InvalidParameter

__all__ = ["IgnoreError", "Matcher", "clean", "read_patterns", "segment_regex", "walk"]


class IgnoreError(InvalidParameter):
    """A ``.dockerignore`` pattern is malformed (the message names it)."""


def clean(path):
    """Lexically clean a slash path, like Go's ``path.Clean`` ('' → '.')."""
    rooted = path.startswith("/")
    out = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append(part)
            continue
        out.append(part)
    text = "/".join(out)
    return ("/" + text) if rooted else (text or ".")


def read_patterns(text):
    """Parse ``.dockerignore`` content (str or bytes) into a list of patterns,
    exceptions keeping their ``!``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    text = text.removeprefix("\ufeff")
    out = []
    for line in text.split("\n"):
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        out.append("!" + line if invert else line)
    return out


def _class(pat, i):
    """Translate the ``[...]`` starting at ``pat[i]``: (regex, next index)."""
    j, out = i + 1, ["["]
    if j < len(pat) and pat[j] == "^":
        out.append("^")
        j += 1
    first = True
    while True:
        if j >= len(pat):
            raise IgnoreError("syntax error in pattern: unterminated '['")
        ch = pat[j]
        if ch == "]" and not first:
            out.append("]")
            return "".join(out), j + 1
        if ch == "\\":
            j += 1
            if j >= len(pat):
                raise IgnoreError("syntax error in pattern: trailing '\\' in character class")
            ch = pat[j]
        out.append(re.escape(ch) if ch != "-" else "-")
        first = False
        j += 1


def _translate(pat, allow_doublestar):
    out, i, n = [], 0, len(pat)
    while i < n:
        ch = pat[i]
        if ch == "*":
            if allow_doublestar and pat.startswith("**", i):
                i += 2
                if i < n and pat[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            text, i = _class(pat, i)
            out.append(text)
            continue
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pat[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error as exc:
        raise IgnoreError(f"syntax error in pattern {pat!r}: {exc}") from None


def segment_regex(pattern):
    """Compiled regex for a Go ``filepath.Match`` pattern (``*`` and ``?`` never
    match ``/``, no ``**``): what COPY/ADD use per path segment."""
    return _translate(pattern, allow_doublestar=False)


class _Pattern:
    __slots__ = ("exclusion", "regex", "seg_regex", "segments", "text")

    def __init__(self, text, exclusion):
        self.text, self.exclusion = text, exclusion
        self.regex = _translate(text, allow_doublestar=True)
        self.segments = text.split("/")
        self.seg_regex = [None if s == "**" else _translate(s, False) for s in self.segments]

    def could_match_below(self, parts):
        """Could this pattern match ``parts`` itself, an ancestor of it, or
        something below it?  (Used to decide whether pruning is safe.)"""
        for seg, rx in zip(self.segments, self.seg_regex, strict=True):
            if rx is None or "**" in seg:
                return True
            if not parts:
                return True
            if not rx.match(parts[0]):
                return False
            parts = parts[1:]
        return True


class Matcher:
    """Ordered ``.dockerignore`` patterns (as :func:`read_patterns` returns them).

    ``dockerfile``: the Dockerfile's context-relative path; if the patterns
    would exclude it or ``.dockerignore``, exceptions are appended so both are
    still sent, as the Docker CLI does; ``keep_required=False`` matches the
    patterns as written (what the daemon uses to drop them from a context).
    """

    def __init__(self, patterns, *, dockerfile=None, keep_required=True):
        patterns = [p.strip() for p in patterns if p.strip()]
        self.patterns = []
        for p in patterns:
            exclusion = p.startswith("!")
            if exclusion:
                p = p[1:]
                if not p:
                    raise IgnoreError('illegal exclusion pattern: "!"')
            self.patterns.append(_Pattern(clean(p), exclusion))
        keep = ([".dockerignore"] if keep_required else []) + ([clean(dockerfile).lstrip("/")] if dockerfile else [])
        for name in keep:
            if self.matches(name):
                self.patterns.append(_Pattern(name, True))
        self.exceptions = [p for p in self.patterns if p.exclusion]

    def matches(self, path):
        """``True`` if ``path`` (relative, slash-separated) is excluded."""
        path = clean(path)
        if path == ".":
            return False  # the context root is never excluded
        parents = path.split("/")[:-1]
        matched = False
        for pat in self.patterns:
            if pat.exclusion != matched:
                continue  # cannot change the outcome
            hit = bool(pat.regex.match(path))
            if not hit:
                for i in range(1, len(parents) + 1):
                    if pat.regex.match("/".join(parents[:i])):
                        hit = True
                        break
            if hit:
                matched = not pat.exclusion
        return matched

    def can_prune(self, path):
        """``True`` if excluded directory ``path`` may be skipped whole: no
        exception could re-include anything below it."""
        parts = clean(path).split("/")
        return not any(p.could_match_below(parts) for p in self.exceptions)


def walk(root, matcher=None):
    """Yield the context-relative paths (``a/b``, parents first, names in
    byte order) of everything in ``root`` that ``matcher`` does not exclude.

    A directory that is excluded but holds an included path is yielded before
    it (a tar of the context must contain the parents).  Symlinks are not
    followed.  ``matcher=None`` includes everything.
    """
    yield from _walk(os.fspath(root), "", matcher, [])


def _walk(top, rel, matcher, pending):
    try:
        entries = sorted(os.scandir(os.path.join(top, rel) if rel else top), key=lambda e: os.fsencode(e.name))
    except NotADirectoryError:
        return
    for entry in entries:
        path = f"{rel}/{entry.name}" if rel else entry.name
        is_dir = entry.is_dir(follow_symlinks=False)
        if matcher is not None and matcher.matches(path):
            if is_dir and not matcher.can_prune(path):
                pending.append(path)
                yield from _walk(top, path, matcher, pending)
                if pending and pending[-1] == path:
                    pending.pop()
            continue
        if pending:
            yield from pending
            pending.clear()
        yield path
        if is_dir:
            yield from _walk(top, path, matcher, pending)
