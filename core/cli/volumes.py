"""``volume create|ls|inspect|rm|prune``, with docker's flags and output."""

import sys

from dockyard.cli import output
from dockyard.cli.common import call, pairs

VOLUME_FORMAT = "table {{.Driver}}\t{{.Name}}"
VOLUME_HEADERS = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE",
                  "Labels": "LABELS", "CreatedAt": "CREATED AT", "Links": "LINKS", "Size": "SIZE",
                  "Group": "GROUP", "Availability": "AVAILABILITY", "Status": "STATUS"}
VOLUME_CONTEXT = "*formatter.volumeContext"


def volume_record(v):
    """The fields of docker's volume formatter for one ``GET /volumes`` entry
    (``Links`` and ``Size`` are "N/A" unless the daemon measured them)."""
    usage = v.get("UsageData")
    return {"Name": v["Name"], "Driver": v["Driver"], "Mountpoint": v["Mountpoint"], "Scope": v["Scope"],
            "CreatedAt": v.get("CreatedAt", ""), **output.label_fields(v.get("Labels")),
            "Links": "N/A" if usage is None else str(usage.get("RefCount", 0)),
            "Size": "N/A" if usage is None else output.human_size(usage.get("Size", 0), 4),
            "Group": "", "Availability": "", "Status": ""}


def register(sub):
    p = sub.add_parser("volume", help="Manage volumes", allow_abbrev=False)
    vsub = p.add_subparsers(dest="volume_command", metavar="COMMAND", title="commands")
    c = vsub.add_parser("create", help="Create a volume", allow_abbrev=False)
    c.add_argument("-d", "--driver", default="local", help='Specify volume driver name (default "local")')
    c.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options (default map[])")
    c.add_argument("--label", action="append", default=[], help="Set metadata for a volume")
    c.add_argument("--name", dest="name_flag", help="Specify volume name")
    c.add_argument("name", nargs="?", metavar="VOLUME")
    c.set_defaults(func=cmd_create)
    ls = vsub.add_parser("ls", aliases=["list"], help="List volumes", allow_abbrev=False)
    ls.add_argument("-q", "--quiet", action="store_true", help="Only display volume names")
    ls.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values (e.g. 'dangling=true')")
    ls.add_argument("--format", help="Pretty-print volumes using a Go template")
    ls.set_defaults(func=cmd_ls)
    i = vsub.add_parser("inspect", help="Display detailed information on one or more volumes")
    i.add_argument("-f", "--format", help="Format the output using the given Go template")
    i.add_argument("volumes", nargs="+", metavar="VOLUME")
    i.set_defaults(func=cmd_inspect)
    r = vsub.add_parser("rm", aliases=["remove"], help="Remove one or more volumes")
    r.add_argument("-f", "--force", action="store_true", help="Force the removal of one or more volumes")
    r.add_argument("volumes", nargs="+", metavar="VOLUME")
    r.set_defaults(func=cmd_rm)
    pr = vsub.add_parser("prune", help="Remove all unused local volumes")
    pr.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    pr.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<label>')")
    pr.set_defaults(func=cmd_prune)
    p.set_defaults(func=lambda ctx, args: p.print_help() or 0)


def _filters_param(items):
    import json
    filters = output.parse_filters(items)
    return {"filters": json.dumps(filters) if filters else None}


def cmd_create(ctx, args):
    if args.name and args.name_flag and args.name != args.name_flag:
        output.error("Conflicting options: either specify --name or provide positional arg, not both")
        return 1
    try:
        body = {"Name": args.name or args.name_flag or "", "Driver": args.driver,
                "DriverOpts": pairs(args.opt, "option"), "Labels": pairs(args.label, "label")}
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    vol, rc = call(lambda: ctx.client.request("POST", "/volumes/create", body=body))
    if vol:
        print(vol["Name"])
    return rc


def cmd_ls(ctx, args):
    try:
        params = _filters_param(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    got, rc = call(lambda: ctx.client.request("GET", "/volumes", params))
    if rc:
        return rc
    records = [volume_record(v) for v in sorted(got.get("Volumes") or [], key=lambda v: v["Name"])]
    return output.print_rows("{{.Name}}" if args.quiet else args.format or VOLUME_FORMAT, records, VOLUME_HEADERS,
                             VOLUME_CONTEXT)


def cmd_inspect(ctx, args):
    from urllib.parse import quote

    from .common import inspect_each
    return inspect_each(args.volumes, lambda name: ctx.client.request("GET", f"/volumes/{quote(name, safe='')}"),
                        args.format, context="volume.Volume")


def cmd_rm(ctx, args):
    from urllib.parse import quote
    rc = 0
    for name in args.volumes:
        _, bad = call(lambda: ctx.client.request("DELETE", f"/volumes/{quote(name, safe='')}",
                                                  {"force": "1" if args.force else None}))
        if not bad:
            print(name)
        rc = rc or bad
    return rc


def cmd_prune(ctx, args):
    try:
        params = _filters_param(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    if not args.force:
        print("WARNING! This will remove all local volumes not used by at least one container.\n"
              "Are you sure you want to continue? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    report, rc = call(lambda: ctx.client.request("POST", "/volumes/prune", params))
    if rc:
        return rc
    deleted = report.get("VolumesDeleted") or []
    if deleted:
        print("Deleted Volumes:\n" + "\n".join(deleted) + "\n")
    print(f"Total reclaimed space: {output.human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0
