"""``dockyard events``: the daemon's events, one line each, as ``docker events`` prints them::

    2024-05-01T12:00:00.123456789+02:00 container start 3f2a... (image=busybox, name=web)

``--since``/``--until`` take unix times, RFC 3339 or durations before now (``10m``),
converted here as the docker CLI converts them; ``--format`` takes a Go template
(``{{json .}}``, ``{{.Type}} {{.Action}} {{.Actor.Attributes.name}}``).
"""

from dockyard.cli import output


def register(sub):
    p = sub.add_parser("events", help="Get real time events from the server", allow_abbrev=False)
    p.add_argument("--since", help="Show all events created since timestamp")
    p.add_argument("--until", help="Stream events until this timestamp")
    p.add_argument("-f", "--filter", action="append", default=[],
                   help="Filter output based on conditions provided (e.g. type=container, event=start)")
    p.add_argument("--format", help="Format the output using the given Go template")
    p.set_defaults(func=cmd_events)


#: docker's events.Message with nothing in it: a ``--format`` is tried on it first
EMPTY_MESSAGE = {"status": "", "id": "", "from": "", "Type": "", "Action": "", "Actor": {"ID": "", "Attributes": {}},
                 "scope": "", "time": 0, "timeNano": 0}


def template_view(msg):
    """A message as docker's template sees it: Go's field names (``.Status``,
    ``.ID``, ``.TimeNano``...) over the JSON's (``status``, ``id``...), while
    ``{{json .}}`` still prints the JSON."""
    view = output.JsonView(msg)
    view.update(msg)
    for go, key in (("Status", "status"), ("ID", "id"), ("From", "from"), ("Scope", "scope"), ("Time", "time"),
                    ("TimeNano", "timeNano")):
        view.pop(key, None)
        view[go] = msg.get(key, "" if go not in ("Time", "TimeNano") else 0)
    return view


def local_nanos(time_nano):
    """Go's RFC3339NanoFixed in the local zone: ``2006-01-02T15:04:05.000000000-07:00``."""
    from datetime import datetime

    secs, nanos = divmod(int(time_nano), 10**9)
    stamp = datetime.fromtimestamp(secs).astimezone()
    offset = stamp.strftime("%z")
    zone = "Z" if offset in ("+0000", "") else f"{offset[:3]}:{offset[3:]}"
    return stamp.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}{zone}"


def event_line(msg):
    actor = msg.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    when = msg.get("timeNano") or int(msg.get("time", 0)) * 10**9
    line = f"{local_nanos(when)} {msg.get('Type', '')} {msg.get('Action', '')} {actor.get('ID', '')}"
    if attrs:
        line += " (" + ", ".join(f"{k}={v}" for k, v in sorted(attrs.items())) + ")"
    return line


def cmd_events(ctx, args):
    import json

    from dockyard.cli.containers import time_arg
    from dockyard.client import APIError

    try:
        filters = output.parse_filters(args.filter)
        params = {"since": time_arg(args.since), "until": time_arg(args.until),
                  "filters": json.dumps(filters) if filters else None}
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    template = None
    if args.format:  # docker tries it on an empty message first
        try:
            template = output.Template(args.format)
            template.render(template_view(EMPTY_MESSAGE), context="*events.Message")
        except output.TemplateError as exc:
            output.error(f"Error parsing format: {exc}")
            return 64
    try:
        for msg in ctx.client.json_stream("GET", "/events", params):
            print(template.render(template_view(msg), context="*events.Message") if template is not None
                  else event_line(msg), flush=True)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    return 0
