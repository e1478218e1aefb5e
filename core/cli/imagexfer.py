"""Moving images and file systems: save, load, export, commit; and ``system check``."""

import os
import sys

from dockyard.cli import output
from dockyard.cli.parser import output_bool
from dockyard.cli.references import split_reference

TERMINAL_REFUSAL = "Cowardly refusing to {what} to a terminal. Use the -o flag or redirect"


def _save_args(p):
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_save)


def _load_args(p):
    p.add_argument("-i", "--input", help="Read from tar archive file, instead of STDIN")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the load output")
    p.set_defaults(func=cmd_load)


def register(sub):
    _save_args(sub.add_parser("save", help="Save one or more images to a tar archive (streamed to STDOUT by default)",
                              allow_abbrev=False))
    _load_args(sub.add_parser("load", help="Load an image from a tar archive or STDIN", allow_abbrev=False))

    p = sub.add_parser("export", help="Export a container's filesystem as a tar archive", allow_abbrev=False)
    p.add_argument("-o", "--output", help="Write to a file, instead of STDOUT")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("commit", help="Create a new image from a container's changes", allow_abbrev=False)
    p.add_argument("-a", "--author", help='Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")')
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Commit message")
    p.add_argument("-p", "--pause", nargs="?", const=True, default=True, type=output_bool, metavar="BOOL",
                   help="Pause container during commit (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_commit)


def check_args(p):
    """``system check`` (dockyard's own, in the ``system`` group of :mod:`.groups`)."""
    p.add_argument("-q", "--quiet", action="store_true", help="Print only problems")
    p.set_defaults(func=cmd_check)


def _download(ctx, path, params, dest, what):
    """Stream a GET answer into ``dest`` (a path, or stdout); 1 on failure."""
    from dockyard.client import APIError, ClientError
    if dest is None and sys.stdout.isatty():
        output.error(TERMINAL_REFUSAL.format(what=what))
        return 1
    out = None
    try:
        resp, conn = ctx.client.stream("GET", path, params)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    try:
        out = open(dest, "wb") if dest else sys.stdout.buffer
        while chunk := resp.read_some(1 << 20):
            out.write(chunk)
        out.flush()
    except (ClientError, OSError) as exc:
        output.error(f"Error: {what} failed: {exc}")
        if dest and out is not None:
            out.close()
            os.unlink(dest)
        return 1
    finally:
        conn.close()
    if dest:
        out.close()
    return 0


def cmd_save(ctx, args):
    return _download(ctx, "/images/get", {"names": list(args.images)}, args.output, "save")


def cmd_export(ctx, args):
    from dockyard.client import quote
    return _download(ctx, f"/containers/{quote(args.container)}/export", None, args.output, "export")


def cmd_load(ctx, args):
    from dockyard.client import APIError, ClientError, ProgressError
    if args.input:
        try:
            source = open(args.input, "rb")
        except OSError as exc:
            output.error(f"Error: open {args.input}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    else:
        if sys.stdin.isatty():
            output.error("Error: requested load from stdin, but stdin is empty")
            return 1
        source = sys.stdin.buffer
    try:
        for msg in ctx.client.json_stream("POST", "/images/load", {"quiet": args.quiet or None}, body=source,
                                          headers={"Content-Type": "application/x-tar"}):
            if isinstance(msg, dict) and msg.get("stream"):
                print(msg["stream"], end="", flush=True)
    except ProgressError as exc:
        output.error(exc.message)
        return 1
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    except ClientError as exc:
        output.error(f"Error: {exc}")
        return 1
    finally:
        if args.input:
            source.close()
    return 0


def cmd_commit(ctx, args):
    from dockyard.client import APIError
    repo, tag = split_reference(args.reference) if args.reference else (None, None)
    params = {"container": args.container, "repo": repo, "tag": tag, "comment": args.message,
              "author": args.author, "changes": list(args.change) or None,
              "pause": args.pause}
    try:
        answer = ctx.client.request("POST", "/commit", params, body={})
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    print(answer["Id"])
    return 0


def cmd_check(ctx, args):
    from dockyard.client import APIError
    try:
        report = ctx.client.request("GET", "/dockyard/system/check")
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    problems = report.get("Problems") or []
    for p in problems:
        print(f"PROBLEM  {p['Object']}: {p['Problem']}")
    if not args.quiet:
        for s in report.get("Skipped") or []:
            print(f"skipped  {s}")
        checked = report.get("Checked") or {}
        print(f"checked {checked.get('Blobs', 0)} blobs, {checked.get('Images', 0)} images, "
              f"{checked.get('Layers', 0)} layers: "
              + (f"{len(problems)} problem{'s' if len(problems) != 1 else ''}" if problems else "no problems"))
    return 1 if problems else 0
