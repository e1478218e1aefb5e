"""Output helpers for the CLI: docker-style tables, human times and sizes, and a
small Go-template renderer for ``--format``.

Imports only cheap modules at load time (``json`` is imported where it is used).
"""

import re
import time

# --- human units (docker's go-units) ------------------------------------------------


def human_duration(seconds):
    """go-units HumanDuration: "Less than a second", "About a minute", "3 hours"..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(round(seconds / 3600))
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds // 3600) // 24 // 365} years"


def since(timestamp, now=None):
    """"2 minutes ago" for a unix timestamp (docker's CREATED column)."""
    now = time.time() if now is None else now
    return human_duration(max(now - timestamp, 0)) + " ago"


def human_size(size, precision=3):
    """go-units HumanSizeWithPrecision: decimal units, ``1.24MB``, ``4.1kB``, ``0B``."""
    units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"]
    size = float(size)
    i = 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.{precision}g}{units[i]}"


_RFC3339 = (r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?")  # compiled on first use


def parse_timestamp(text):
    """Unix time of an RFC 3339 timestamp (nanoseconds allowed); None if unparsable or zero."""
    if not text:
        return None
    m = re.match(_RFC3339, text)
    if not m:
        return None
    import calendar
    y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
    if y <= 1:
        return None  # Go's zero time: "never"
    value = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) + float("0." + (m.group(7) or "0"))
    tz = m.group(8)
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        digits = tz[1:].replace(":", "")
        value -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
    return value


def local_time(timestamp):
    """docker's CreatedAt form: ``2024-05-01 12:00:00 +0200 CEST``."""
    return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(timestamp))


def ellipsis(text, width):
    """Cut ``text`` to ``width`` characters, ending in "…" when cut (docker's Ellipsis)."""
    if len(text) <= width:
        return text
    return text[:width - 1] + "…" if width > 1 else text[:width]


def parse_filters(items):
    """``-f key=value`` options → the API's ``filters`` ({"key": ["value", ...]})."""
    filters = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"bad format of filter (expected name=value): {item}")
        filters.setdefault(key.strip().lower(), []).append(value)
    return filters


# --- tables --------------------------------------------------------------------------


def table(rows, minwidth=10, padding=3):
    """Lay out rows of cells like docker's tabwriter(minwidth 10, padding 3); returns lines."""
    rows = [[str(c) for c in row] for row in rows]
    ncols = max((len(r) for r in rows), default=0)
    widths = [0] * ncols
    for row in rows:
        for i, cell in enumerate(row[:-1]):
            widths[i] = max(widths[i], len(cell) + padding, minwidth)
    lines = []
    for row in rows:
        parts = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("".join(parts) + (row[-1] if row else ""))
    return lines


def render_rows(fmt, records, headers):
    """Render ``records`` (dicts) with a docker ``--format``: ``table ...`` gets a header and columns."""
    is_table = fmt.startswith("table")
    if is_table:
        fmt = fmt[len("table"):]
    fmt = fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    template = Template(fmt)
    out = [template.render(r) for r in records]
    if not is_table:
        return out
    header = template.render(headers, missing="")
    return table([line.split("\t") for line in [header] + out])


def print_rows(fmt, records, headers):
    """Print ``records`` as :func:`render_rows` renders them; return the exit
    status: 1 (and the error on stderr) for a template that does not work."""
    try:
        lines = render_rows(fmt, records, headers)
    except TemplateError as exc:
        error(f"Error: template: {exc}")
        return 1
    for line in lines:
        print(line)
    return 0


# --- Go templates (the subset docker users reach for) --------------------------------


class TemplateError(ValueError):
    """The ``--format`` template could not be parsed or executed."""


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


def go_json(value):
    import json
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_MISSING = object()

_TOKEN = r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s|()]+'


def _split_actions(text):
    """Yield ("text", s) and ("action", s) pieces, honouring ``{{-`` / ``-}}`` trimming."""
    pos, pieces = 0, []
    while True:
        start = text.find("{{", pos)
        if start < 0:
            pieces.append(["text", text[pos:]])
            return pieces
        end = text.find("}}", start)
        if end < 0:
            raise TemplateError(f"unclosed action in template: {text[start:]!r}")
        pieces.append(["text", text[pos:start]])
        inner = text[start + 2:end]
        if inner.startswith("- ") or inner == "-":
            pieces[-1][1] = pieces[-1][1].rstrip()
            inner = inner[1:]
        trim_after = inner.endswith(" -")
        if trim_after:
            inner = inner[:-1]
        pieces.append(["action", inner.strip()])
        pos = end + 2
        if trim_after:
            while pos < len(text) and text[pos].isspace():
                pos += 1


class Template:
    """A Go text/template subset: ``.A.B``, ``$``, pipes, ``json``, ``index``, ``join``,
    ``upper``, ``lower``, ``len``, ``printf``, ``println``, ``range``/``if``/``with``/``else``/``end``."""

    def __init__(self, text):
        self.text = text
        pieces = _split_actions(text)
        self.nodes, rest = self._parse(pieces, 0, top=True)

    def _parse(self, pieces, i, top=False):
        nodes = []
        while i < len(pieces):
            kind, value = pieces[i]
            if kind == "text":
                if value:
                    nodes.append(("text", value))
                i += 1
                continue
            word = value.split(None, 1)[0] if value else ""
            if word in ("end", "else"):
                if top:
                    raise TemplateError(f"unexpected {{{{{word}}}}} in template")
                return nodes, i
            if word in ("range", "if", "with"):
                body, i = self._parse(pieces, i + 1)
                alt = []
                if i < len(pieces) and pieces[i][1].split(None, 1)[0] == "else":
                    alt, i = self._parse(pieces, i + 1)
                if i >= len(pieces) or pieces[i][1].strip() != "end":
                    raise TemplateError(f"missing {{{{end}}}} for {{{{{value}}}}}")
                nodes.append((word, value[len(word):].strip(), body, alt))
                i += 1
                continue
            if value.startswith("/*") or not value:
                i += 1
                continue
            nodes.append(("action", value))
            i += 1
        if not top:
            raise TemplateError(f"missing {{{{end}}}} in template {self.text!r}")
        return nodes, i

    def render(self, data, missing="<no value>"):
        out = []
        self._run(self.nodes, data, data, out, missing)
        return "".join(out)

    def _run(self, nodes, dot, root, out, missing):
        for node in nodes:
            kind = node[0]
            if kind == "text":
                out.append(node[1])
            elif kind == "action":
                value = self._pipeline(node[1], dot, root)
                out.append(missing if value is _MISSING else go_str(value))
            else:
                value = self._pipeline(node[1], dot, root)
                truthy = value is not _MISSING and bool(value)
                if kind == "range":
                    items = (list(value.values()) if isinstance(value, dict) else value) if truthy else []
                    for item in items:
                        self._run(node[2], item, root, out, missing)
                    if not items:
                        self._run(node[3], dot, root, out, missing)
                elif truthy:
                    self._run(node[2], value if kind == "with" else dot, root, out, missing)
                else:
                    self._run(node[3], dot, root, out, missing)

    def _pipeline(self, text, dot, root):
        tokens = re.findall(_TOKEN, text)
        value, i, have = _MISSING, 0, False
        while i <= len(tokens):
            j = i
            depth = 0
            while j < len(tokens) and (tokens[j] != "|" or depth):
                depth += (tokens[j] == "(") - (tokens[j] == ")")
                j += 1
            value = self._command(tokens[i:j], dot, root, value if have else _MISSING)
            have = True
            i = j + 1
        return value

    def _command(self, tokens, dot, root, piped):
        if not tokens:
            raise TemplateError(f"empty command in template {self.text!r}")
        args, i = [], 1
        while i < len(tokens):
            arg, i = self._operand(tokens, i, dot, root)
            args.append(arg)
        if piped is not _MISSING:
            args.append(piped)
        args = [None if a is _MISSING else a for a in args]
        name = tokens[0]
        func = _FUNCS.get(name)
        if func is None:
            if args:
                raise TemplateError(f"can't give argument to non-function {name}")
            value, _ = self._operand(tokens, 0, dot, root)
            return value
        try:
            return func(*args)
        except TypeError as exc:
            raise TemplateError(f"wrong arguments for {name}: {exc}") from None

    def _operand(self, tokens, i, dot, root):
        tok = tokens[i]
        if tok == "(":
            depth, j = 1, i + 1
            while j < len(tokens) and depth:
                depth += (tokens[j] == "(") - (tokens[j] == ")")
                j += 1
            return self._pipeline(" ".join(tokens[i + 1:j - 1]), dot, root), j
        if tok[0] in "\"`":
            import json
            return (json.loads(tok) if tok[0] == '"' else tok[1:-1]), i + 1
        if re.fullmatch(r"-?\d+", tok):
            return int(tok), i + 1
        if tok in ("true", "false"):
            return tok == "true", i + 1
        if tok.startswith("$"):
            return _field(root, tok[1:]), i + 1
        if tok.startswith("."):
            return _field(dot, tok), i + 1
        if tok in _FUNCS:
            return _FUNCS[tok](), i + 1
        raise TemplateError(f'function "{tok}" not defined')


def _field(value, path):
    for name in filter(None, path.split(".")):
        if isinstance(value, dict) and name in value:
            value = value[name]
        else:
            return _MISSING
    return value


def _index(value, *keys):
    for key in keys:
        try:
            value = value[key]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def _printf(fmt, *args):
    conv = re.sub(r"%v", "%s", fmt.replace("%q", "%r"))
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
}


# --- messages and streams ------------------------------------------------------------


def error(message):
    """Print an error line to stderr the way docker does."""
    import sys
    print(message, file=sys.stderr, flush=True)


def daemon_error(exc):
    """``Error response from daemon: <message>`` for an APIError, the text otherwise."""
    message = getattr(exc, "message", None)
    if message is not None:
        error(f"Error response from daemon: {message}")
    else:
        error(str(exc))


def write_frames(frames):
    """Copy ``(stream, bytes)`` frames to our stdout / stderr as they arrive."""
    import sys
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for stream, data in frames:
        target = err if stream == 2 else out
        target.write(data)
        target.flush()
