"""A Go text/template subset for ``--format``: the part docker users reach for.

``.A.B``, ``$``, pipes, ``json``, ``index``, ``join``, ``upper``, ``lower``,
``len``, ``printf``, ``println``, ``range``/``if``/``with``/``else``/``end``, and
methods with arguments (``{{.Label "com.example"}}``: a callable in the data).

Errors read as Go's, because docker prints Go's text after its own prefix::

    template: :1: unclosed action
    template: :1:9: executing "" at <.Config.Foo>: map has no entry for key "Foo"

What a missing field gives depends on what docker formats: a map (``inspect``)
prints ``<no value>``, or refuses with ``missing=ERROR`` (docker's inspect runs
``missingkey=error``); a struct (the rows of ``ps``, ``images``...) has only its
fields, so ``render(..., context="*formatter.imageContext")`` refuses any other
top-level field with Go's "can't evaluate field".
"""

#: ``render(missing=ERROR)``: a missing map key is an error (Go's ``missingkey=error``)
ERROR = object()
_MISSING = object()
#: an action's tokens: "..." and `...` strings, ( ) |, and runs of anything else but
#: space; compiled by the first action that has a string, a parenthesis or a pipe
_TOKEN = r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s|()]+'
_SPECIAL = frozenset('"`()|')


class TemplateError(ValueError):
    """The template could not be parsed or executed; the text is Go's."""


def go_str(value):
    """How Go's text/template prints a JSON-decoded value."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, list):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_str(value[k])}" for k in sorted(value)) + "]"
    return str(value)


class JsonView(dict):
    """Fields for the template whose ``{{json .}}`` is another object (``json``):
    docker's formatters template Go names but marshal the API's JSON."""

    def __init__(self, json):
        super().__init__()
        self.json = json


def go_json(value):
    import json
    if isinstance(value, JsonView):
        value = value.json
    elif isinstance(value, dict):
        value = {k: v for k, v in value.items() if not callable(v)}  # a row's methods ({{.Label "x"}})
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


class _Fail(Exception):
    """An execution error at ``offset`` of the template, on ``node``."""

    def __init__(self, offset, node, message):
        super().__init__(message)
        self.offset, self.node, self.message = offset, node, message


class Template:
    """A parsed template; ``name`` is the one Go's messages carry (docker's
    ``version`` names its template "version", every other command "")."""

    def __init__(self, text, name=""):
        self.text, self.name = text, name
        pieces = self._split(text)
        self.nodes, _ = self._parse(pieces, 0, top=True)

    # --- parsing --------------------------------------------------------------------

    def _where(self, offset):
        line = self.text.count("\n", 0, offset) + 1
        return line, offset - (self.text.rfind("\n", 0, offset) + 1)

    def _parse_error(self, offset, message):
        return TemplateError(f"template: {self.name}:{self._where(offset)[0]}: {message}")

    def _split(self, text):
        """[kind, value, offset] pieces: "text", or "action" with its tokens (and
        their offsets), honouring ``{{-`` / ``-}}`` trimming."""
        pos, pieces = 0, []
        while True:
            start = text.find("{{", pos)
            if start < 0:
                pieces.append(["text", text[pos:], pos])
                return pieces
            end = text.find("}}", start)
            if end < 0:
                raise self._parse_error(start, "unclosed action")
            pieces.append(["text", text[pos:start], pos])
            inner, base = text[start + 2:end], start + 2
            if inner.startswith("- ") or inner == "-":
                pieces[-1][1] = pieces[-1][1].rstrip()
                inner, base = inner[1:], base + 1
            trim_after = inner.endswith(" -")
            if trim_after:
                inner = inner[:-1]
            if inner.strip().startswith("/*"):
                pieces.append(["comment", "", start])
            else:
                tokens = _tokens(inner, base)
                for tok, off in tokens:
                    if tok[0] == '"' and not tok.endswith('"') or tok[0] == "'":
                        raise self._parse_error(off, f"bad character U+{ord(tok[0]):04X} '{tok[0]}'")
                pieces.append(["action", tokens, start])
            pos = end + 2
            if trim_after:
                while pos < len(text) and text[pos].isspace():
                    pos += 1

    def _parse(self, pieces, i, top=False):
        nodes = []
        while i < len(pieces):
            kind, value, offset = pieces[i]
            if kind != "action":
                if kind == "text" and value:
                    nodes.append(("text", value))
                i += 1
                continue
            word = value[0][0] if value else ""
            if word in ("end", "else"):
                if top:
                    raise self._parse_error(offset, f"unexpected {{{{{word}}}}}")
                return nodes, i
            if word in ("range", "if", "with"):
                if len(value) < 2:
                    raise self._parse_error(offset, f"missing value for {word}")
                body, i = self._parse(pieces, i + 1)
                alt = []
                if i < len(pieces) and pieces[i][1] and pieces[i][1][0][0] == "else":
                    alt, i = self._parse(pieces, i + 1)
                if i >= len(pieces) or [t for t, _ in pieces[i][1]] != ["end"]:
                    raise self._parse_error(len(self.text), "unexpected EOF")
                nodes.append((word, value[1:], body, alt))
                i += 1
                continue
            if not value:
                raise self._parse_error(offset, "missing value for command")
            for tok, off in value:
                if _is_function_name(tok) and tok not in _FUNCS and tok not in ("true", "false", "nil"):
                    raise self._parse_error(off, f'function "{tok}" not defined')
            nodes.append(("action", value))
            i += 1
        if not top:
            raise self._parse_error(len(self.text), "unexpected EOF")
        return nodes, i

    # --- execution ------------------------------------------------------------------

    def render(self, data, missing="<no value>", context=None):
        """The text for ``data``.  ``missing`` is what a missing map key prints
        (:data:`ERROR`: it is an error); ``context`` names the Go struct
        ``data`` stands for, so an unknown top-level field is an error."""
        out = []
        self._ctx = (missing, context, data)
        try:
            self._run(self.nodes, data, data, out)
        except _Fail as fail:
            line, col = self._where(fail.offset)
            raise TemplateError(f'template: {self.name}:{line}:{col}: executing "{self.name}" '
                                f'at <{fail.node}>: {fail.message}') from None
        return "".join(out)

    def _run(self, nodes, dot, root, out):
        missing = self._ctx[0]
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._pipeline(node[1], dot, root)
                out.append(("<no value>" if missing is ERROR else missing) if value is _MISSING else go_str(value))
            else:
                value = self._pipeline(node[1], dot, root)
                truthy = value is not _MISSING and bool(value)
                if kind == "range":
                    items = (list(value.values()) if isinstance(value, dict) else value) if truthy else []
                    for item in items:
                        self._run(node[2], item, root, out)
                    if not items:
                        self._run(node[3], dot, root, out)
                elif truthy:
                    self._run(node[2], value if kind == "with" else dot, root, out)
                else:
                    self._run(node[3], dot, root, out)

    def _pipeline(self, tokens, dot, root):
        value, i, have = _MISSING, 0, False
        while i <= len(tokens):
            j, depth = i, 0
            while j < len(tokens) and (tokens[j][0] != "|" or depth):
                depth += (tokens[j][0] == "(") - (tokens[j][0] == ")")
                j += 1
            value = self._command(tokens[i:j], dot, root, value if have else _MISSING)
            have = True
            i = j + 1
        return value

    def _command(self, tokens, dot, root, piped):
        if not tokens:
            raise _Fail(0, "", "missing value for command")
        args, i = [], 1
        while i < len(tokens):
            arg, i = self._operand(tokens, i, dot, root)
            args.append(arg)
        if piped is not _MISSING:
            args.append(piped)
        args = [None if a is _MISSING else a for a in args]
        name, offset = tokens[0]
        func = _FUNCS.get(name)
        if func is None:
            value, _ = self._operand(tokens, 0, dot, root)
            if callable(value):  # a method of the formatted struct: {{.Label "x"}}
                try:
                    return value(*args)
                except TypeError:
                    raise _Fail(offset, name, f"wrong number of args for {name.split('.')[-1]}: "
                                              f"want 1 got {len(args)}") from None
            if args:
                raise _Fail(offset, name, f"can't give argument to non-function {name}")
            return value
        try:
            return func(*args)
        except TypeError:
            raise _Fail(offset, name, f"wrong number of args for {name}: want at least 1 got {len(args)}") from None
        except (KeyError, IndexError, ValueError) as exc:
            raise _Fail(offset, name, f"error calling {name}: {exc}") from None

    def _operand(self, tokens, i, dot, root):
        tok, offset = tokens[i]
        if tok == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += (tokens[j][0] == "(") - (tokens[j][0] == ")")
                j += 1
            return self._pipeline(tokens[i + 1:j - 1], dot, root), j
        if tok[0] in "\"`":
            import json
            return (json.loads(tok) if tok[0] == '"' else tok[1:-1]), i + 1
        if (tok[1:] if tok[0] == "-" else tok).isdecimal():  # Go's -?\d+
            return int(tok), i + 1
        if tok in ("true", "false"):
            return tok == "true", i + 1
        if tok == "nil":
            return None, i + 1
        if tok.startswith("$"):
            return self._field(root, tok[1:], offset + 1, tok, root), i + 1
        if tok.startswith("."):
            return self._field(dot, tok, offset, tok, root), i + 1
        if tok in _FUNCS:
            return _FUNCS[tok](), i + 1
        raise _Fail(offset, tok, f'function "{tok}" not defined')

    def _field(self, value, path, offset, node, root):
        missing, context, data = self._ctx
        pos = offset
        for name in path.split("."):
            if not name:
                pos += 1
                continue
            if isinstance(value, dict) and name in value:
                value = value[name]
            elif context and value is data:
                raise _Fail(pos - 1, node, f"can't evaluate field {name} in type {context}")
            elif isinstance(value, dict):
                if missing is ERROR:
                    raise _Fail(pos - 1, node, f'map has no entry for key "{name}"')
                return _MISSING
            elif value is None or value is _MISSING:
                if missing is ERROR:
                    raise _Fail(pos - 1, node, f"nil pointer evaluating interface {{}}.{name}")
                return _MISSING
            else:
                raise _Fail(pos - 1, node, f"can't evaluate field {name} in type {_go_type(value)}")
            pos += len(name) + 1
        return value


def _tokens(inner, base):
    """``[(token, offset)]`` of an action's text (see ``_TOKEN``).  Without a string,
    a parenthesis or a pipe (``{{.ID}}``, ``{{json .}}``) the tokens are its words,
    found without ``re``: importing it is a quarter of ``dockyard ps``'s start-up."""
    if _SPECIAL.isdisjoint(inner):
        words, i, n = [], 0, len(inner)
        while i < n:
            if inner[i].isspace():
                i += 1
                continue
            j = i + 1
            while j < n and not inner[j].isspace():
                j += 1
            words.append((inner[i:j], base + i))
            i = j
        return words
    import re
    return [(m.group(), base + m.start()) for m in re.finditer(_TOKEN, inner)]


def _is_function_name(tok):
    """Go's identifier, ``[A-Za-z_]\\w*`` (``\\w`` as Python's: letters, digits, ``_``)."""
    return bool(tok) and tok[0].isascii() and (tok[0].isalpha() or tok[0] == "_") and \
        all(c.isalnum() or c == "_" for c in tok[1:])


def _go_type(value):
    return {str: "string", bool: "bool", int: "int", float: "float64", list: "[]interface {}"}.get(
        type(value), "interface {}")


def _index(value, *keys):
    if not keys:
        raise TypeError("index")
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _printf(fmt, *args):
    conv = fmt.replace("%q", "%r").replace("%v", "%s")
    return conv % tuple(go_str(a) if isinstance(a, (list, dict, bool, type(None))) else a for a in args)


_FUNCS = {
    "json": go_json,
    "index": _index,
    "join": lambda items, sep: sep.join(go_str(x) for x in items or []),
    "upper": lambda s: go_str(s).upper(),
    "lower": lambda s: go_str(s).lower(),
    "title": lambda s: go_str(s).title(),
    "len": lambda v: len(v) if v is not None else 0,
    "split": lambda s, sep: go_str(s).split(sep),
    "printf": _printf,
    "print": lambda *a: "".join(go_str(x) for x in a),
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "truncate": lambda s, n: go_str(s)[:n],
    "pad": lambda s, a, b: " " * a + go_str(s) + " " * b,
    "and": lambda *a: next((x for x in a if not x), a[-1]),
    "or": lambda *a: next((x for x in a if x), a[-1]),
    "not": lambda x: not x,
    "eq": lambda a, *b: any(a == x for x in b),
    "ne": lambda a, b: a != b,
}
