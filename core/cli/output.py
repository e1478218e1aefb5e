"""Output helpers for the CLI: docker-style tables, human times and sizes, and
``--format`` rows through our Go-template subset (:mod:`.gotemplate`).

Imports only cheap modules at load time (``json`` and ``re`` are imported where they
are used: ``re`` alone was a quarter of ``dockyard ps``'s start-up).
"""

import time

from .gotemplate import ERROR, JsonView, Template, TemplateError, go_json, go_str  # noqa: F401  (the commands' way in)

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
    """go-units HumanSizeWithPrecision: decimal units, ``1.24MB``, ``4.1kB``, ``0B``.

    docker prints a listing's sizes (images, ``ps -s``, history, cp) with
    precision 3, totals (``system df``, "Total reclaimed space") with go-units
    ``HumanSize``, which is precision 4, and memory with :func:`bytes_size`."""
    return _units(size, 1000.0, ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"), precision)


def bytes_size(size):
    """go-units BytesSize: binary units, ``1.5MiB``, ``23.43GiB`` (docker stats'
    memory, info's Total Memory)."""
    return _units(size, 1024.0, ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"), 4)


def _units(size, base, names, precision):
    size, i = float(size), 0
    while size >= base and i < len(names) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{names[i]}"


_RFC3339 = (r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?")  # compiled on first use


def parse_timestamp(text):
    """Unix time of an RFC 3339 timestamp (nanoseconds allowed); None if unparsable or zero."""
    if not text:
        return None
    import re
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


def label_fields(labels):
    """``Labels`` (``k=v`` sorted, comma-joined) and ``Label`` (``{{.Label "k"}}``)
    of docker's container, network and volume formatters."""
    labels = labels or {}
    return {"Labels": ",".join(sorted(f"{k}={v}" for k, v in labels.items())),
            "Label": lambda name: labels.get(name, "")}


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


def row_template(fmt):
    """``(is_table, Template)`` of a listing's ``--format`` (TemplateError if it
    does not parse)."""
    is_table = fmt.startswith("table")
    text = fmt[len("table"):] if is_table else fmt
    return is_table, Template(text.strip(" ").replace("\\t", "\t").replace("\\n", "\n"))


def render_rows(fmt, records, headers, context=None):
    """Render ``records`` (dicts) with a docker ``--format``: ``table ...`` gets a header and columns.

    ``context`` is the Go type docker formats these rows with: a field it does not
    have is an error, as in docker, not an empty column."""
    is_table, template = row_template(fmt) if isinstance(fmt, str) else fmt
    out = [template.render(r, context=context) for r in records]
    if not is_table:
        return out
    header = template.render(headers, missing="")
    return table([line.split("\t") for line in [header] + out])


#: what docker puts before Go's text when a listing's template does not parse,
#: and when it fails on a row (``ps`` words them its own way)
TEMPLATE_ERRORS = ("template parsing error: ", "template parsing error: ")


def check_rows_template(fmt, sample, context, errors=TEMPLATE_ERRORS):
    """Run ``fmt`` once on ``sample`` (an empty row) and print nothing: 0, or 1
    after docker's error, as ``docker ps`` checks its template before it lists."""
    try:
        parsed = row_template(fmt)
    except TemplateError as exc:
        error(f"{errors[0]}{exc}")
        return 1
    try:
        parsed[1].render(sample, context=context)
    except TemplateError as exc:
        error(f"{errors[1]}{exc}")
        return 1
    return 0


def print_rows(fmt, records, headers, context=None, errors=TEMPLATE_ERRORS):
    """Print ``records`` as :func:`render_rows` renders them; return the exit
    status: 1 (and docker's error on stderr) for a template that does not parse
    or does not work on these rows."""
    try:
        parsed = row_template(fmt)
    except TemplateError as exc:
        error(f"{errors[0]}{exc}")
        return 1
    try:
        lines = render_rows(parsed, records, headers, context)
    except TemplateError as exc:
        error(f"{errors[1]}{exc}")
        return 1
    for line in lines:
        print(line)
    return 0


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
