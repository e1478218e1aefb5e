"""Image commands: images, rmi, tag, history, image inspect|prune, import
(save, load, export, commit and ``system check`` are :mod:`.imagexfer`)."""

import sys

from dockyard.cli import output
from dockyard.cli.references import split_reference

IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "Containers": "CONTAINERS", "VirtualSize": "VIRTUAL SIZE", "SharedSize": "SHARED SIZE",
                  "UniqueSize": "UNIQUE SIZE"}
#: docker's Go types for a row of ``images`` and of ``history`` (an unknown field names them)
IMAGES_CONTEXT, HISTORY_CONTEXT = "*formatter.imageContext", "*image.historyContext"


HISTORY_FORMAT = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}


def _images_args(p):
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output (key=value)")
    p.add_argument("--format", help="Pretty-print images using a Go template")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_images)


def _rmi_args(p):
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)


def _tag_args(p):
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(func=cmd_tag)


def _history_args(p):
    from dockyard.cli.parser import output_bool

    p.add_argument("-H", "--human", nargs="?", const=True, default=True, type=output_bool, metavar="BOOL",
                   help="Print sizes and dates in human readable format (default true)")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--format", help="Pretty-print images using a Go template")
    p.add_argument("image", metavar="IMAGE")
    p.set_defaults(func=cmd_history)


def prune_args(p):
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<timestamp>')")
    p.set_defaults(func=cmd_prune)


def _import_args(p):
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("file", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)


def inspect_args(p):
    p.add_argument("-f", "--format", help="Format the output using the given Go template")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_image_inspect)


def register(sub):
    from dockyard.cli import imagexfer

    _images_args(sub.add_parser("images", help="List images", allow_abbrev=False))
    _rmi_args(sub.add_parser("rmi", help="Remove one or more images", allow_abbrev=False))
    _tag_args(sub.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE", allow_abbrev=False))
    _history_args(sub.add_parser("history", help="Show the history of an image", allow_abbrev=False))
    _import_args(sub.add_parser("import", help="Import the contents from a tarball to create a filesystem image",
                                allow_abbrev=False))
    imagexfer.register(sub)


def _short_id(image_id, trunc):
    if not trunc:
        return image_id
    return image_id.split(":", 1)[-1][:12]


def image_records(images, trunc=True, now=None, first_tag=False):
    """One record per repository:tag of each ``GET /images/json`` entry (``<none>`` if
    untagged); with ``first_tag`` one per image, by its first tag (``system df -v``)."""
    records = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"] or [None]
        tags = tags[:1] if first_tag else tags
        size, shared = img.get("Size") or 0, img.get("SharedSize", -1)
        digests = img.get("RepoDigests") or []
        created = img.get("Created") or 0
        for ref in tags:
            repo, tag = split_reference(ref) if ref else (None, None)
            if repo is None and digests:
                repo = digests[0].split("@", 1)[0]
            digest = next((d.split("@", 1)[1] for d in digests
                           if repo and d.split("@", 1)[0] == repo), "<none>")
            records.append({
                "Repository": repo or "<none>", "Tag": tag or "<none>", "Digest": digest,
                "ID": _short_id(img.get("Id", ""), trunc),
                "CreatedSince": output.since(created, now), "CreatedAt": output.local_time(created),
                "Size": output.human_size(size), "VirtualSize": output.human_size(size, 4),
                "SharedSize": "N/A" if shared == -1 else output.human_size(shared, 4),
                "UniqueSize": "N/A" if shared == -1 else output.human_size(size - shared, 4),
                "Containers": "N/A" if img.get("Containers", -1) < 0 else str(img["Containers"]),
            })
    return records


def cmd_images(ctx, args):
    from dockyard.client import APIError
    try:
        filters = output.parse_filters(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    if args.reference:
        filters.setdefault("reference", []).append(args.reference)
    try:
        images = ctx.client.images(all=args.all, filters=filters)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    if args.quiet:
        fmt = "{{.ID}}"
    elif args.format:
        fmt = args.format
    elif args.digests:
        fmt = IMAGES_FORMAT.replace("{{.Tag}}", "{{.Tag}}\t{{.Digest}}")
    else:
        fmt = IMAGES_FORMAT
    return output.print_rows(fmt, image_records(images, trunc=not args.no_trunc), IMAGES_HEADERS, IMAGES_CONTEXT)


def cmd_rmi(ctx, args):
    from dockyard.client import APIError
    rc = 0
    for name in args.images:
        try:
            report = ctx.client.remove_image(name, force=args.force, noprune=args.no_prune)
        except APIError as exc:
            output.daemon_error(exc)
            rc = 1
            continue
        for item in report or []:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    print(f"{key}: {item[key]}", flush=True)
    return rc


def show_progress(messages, quiet=False):
    """Print a progress stream the way docker does on a non-terminal; returns the last status."""
    last = None
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("progressDetail") or msg.get("progress"):
            continue  # progress bars are for terminals
        status = msg.get("status") or msg.get("stream")
        if status is None:
            continue
        last = status.rstrip("\n")
        if not quiet:
            print(f"{msg['id']}: {last}" if msg.get("id") else last, flush=True)
    return last


def cmd_import(ctx, args):
    from dockyard.client import APIError, ClientError
    repo, tag = split_reference(args.reference) if args.reference else (None, None)
    if args.file == "-":
        source, fh = sys.stdin.buffer, None
    elif "://" in args.file:
        source, fh = args.file, None
    else:
        try:
            source = fh = open(args.file, "rb")
        except OSError as exc:
            output.error(f"Error: open {args.file}: {exc.strerror.lower() if exc.strerror else exc}")
            return 1
    try:
        show_progress(ctx.client.import_image(source, repo=repo, tag=tag, changes=args.change,
                                              message=args.message))
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    except ClientError as exc:
        output.error(f"Error: {exc}")
        return 1
    finally:
        if fh is not None:
            fh.close()
    return 0


def cmd_tag(ctx, args):
    from dockyard.client import APIError, quote
    repo, tag = split_reference(args.target)
    try:
        ctx.client.request("POST", f"/images/{quote(args.source, '/:@')}/tag", {"repo": repo, "tag": tag})
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    return 0


#: docker shows no age for a layer made before 2000 (a reproducible build's zero time)
EPOCH_2000 = 946684800


def _rfc3339(timestamp):
    """Go's ``time.RFC3339`` in the local zone: ``2026-12-07T08:03:01Z``, ``...+02:00``."""
    import time
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(timestamp))
    return stamp[:-5] + "Z" if stamp.endswith("+0000") else stamp[:-2] + ":" + stamp[-2:]


def history_records(items, human=True, trunc=True, now=None):
    records = []
    for h in items:
        created = h.get("Created") or 0
        created_by = (h.get("CreatedBy") or "").replace("\t", " ")
        image_id = h.get("Id") or "<missing>"
        since = "N/A" if created <= EPOCH_2000 else output.since(created, now)
        records.append({
            "ID": _short_id(image_id, trunc) if image_id != "<missing>" else image_id,
            "CreatedSince": since if human else _rfc3339(created),
            "CreatedAt": _rfc3339(created),
            "CreatedBy": output.ellipsis(created_by, 45) if trunc else created_by,
            "Size": output.human_size(h.get("Size") or 0) if human else str(h.get("Size") or 0),
            "Comment": h.get("Comment") or "", "Tags": ", ".join(h.get("Tags") or []),
        })
    return records


def cmd_history(ctx, args):
    from dockyard.client import APIError, quote
    try:
        items = ctx.client.request("GET", f"/images/{quote(args.image, '/:@')}/history")
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    fmt = "{{.ID}}" if args.quiet else (
        args.format or (HISTORY_FORMAT if args.human else HISTORY_FORMAT.replace("CreatedSince", "CreatedAt")))
    records = history_records(items or [], human=args.human, trunc=not args.no_trunc)
    return output.print_rows(fmt, records, HISTORY_HEADERS, HISTORY_CONTEXT)


def cmd_image_inspect(ctx, args):
    from .common import inspect_each
    return inspect_each(args.images, ctx.client.inspect_image, args.format)


def cmd_prune(ctx, args):
    import json

    from dockyard.client import APIError
    try:
        filters = output.parse_filters(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    if args.all:
        filters["dangling"] = ["false"]
    if not args.force:
        what = "all images without at least one container associated to them" if args.all else "all dangling images"
        print(f"WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ", end="", flush=True)
        answer = sys.stdin.readline().strip().lower()
        if answer not in ("y", "yes"):
            return 0
    try:
        report = ctx.client.request("POST", "/images/prune", {"filters": json.dumps(filters) if filters else None})
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for item in deleted:
            for key in ("Untagged", "Deleted"):
                if item.get(key):
                    print(f"{key.lower()}: {item[key]}")
        print()
    print(f"Total reclaimed space: {output.human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0
