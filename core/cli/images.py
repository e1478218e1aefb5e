"""Image commands: images, rmi, import, pull."""

import sys

from dockyard.cli import output

IMAGES_FORMAT = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Digest": "DIGEST",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "Containers": "CONTAINERS"}


def register(sub):
    p = sub.add_parser("images", help="List images", allow_abbrev=False)
    p.add_argument("-a", "--all", action="store_true", help="Show all images (default hides intermediate images)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only show image IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("--digests", action="store_true", help="Show digests")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output (key=value)")
    p.add_argument("--format", help="Pretty-print images using a Go template")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("rmi", help="Remove one or more images", allow_abbrev=False)
    p.add_argument("-f", "--force", action="store_true", help="Force removal of the image")
    p.add_argument("--no-prune", action="store_true", help="Do not delete untagged parents")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.set_defaults(func=cmd_rmi)

    p = sub.add_parser("import", help="Import the contents from a tarball to create a filesystem image",
                       allow_abbrev=False)
    p.add_argument("-c", "--change", action="append", default=[], help="Apply Dockerfile instruction to the created image")
    p.add_argument("-m", "--message", help="Set commit message for imported image")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("file", metavar="file|URL|-")
    p.add_argument("reference", nargs="?", metavar="REPOSITORY[:TAG]")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("pull", help="Download an image from a registry", allow_abbrev=False)
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=cmd_pull)


def split_reference(ref):
    """``name[:tag]`` → (name, tag or None); a ``:`` in a registry host is not a tag."""
    if "@" in ref:
        return ref, None
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, None
    return name, tag


def _short_id(image_id, trunc):
    if not trunc:
        return image_id
    return image_id.split(":", 1)[-1][:12]


def image_records(images, trunc=True, now=None):
    """One record per repository:tag of each ``GET /images/json`` entry (``<none>`` if untagged)."""
    records = []
    for img in images:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"] or [None]
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
                "Size": output.human_size(img.get("Size") or 0),
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
    try:
        lines = output.render_rows(fmt, image_records(images, trunc=not args.no_trunc), IMAGES_HEADERS)
    except output.TemplateError as exc:
        output.error(f"Error: template: {exc}")
        return 1
    for line in lines:
        print(line)
    return 0


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


def cmd_pull(ctx, args):
    from dockyard.client import APIError
    name, tag = split_reference(args.image)
    if tag is None and "@" not in name:
        tag = "latest"
    try:
        show_progress(ctx.client.pull(name, tag), quiet=args.quiet)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    if args.quiet:
        print(f"{name}:{tag}" if tag else name)
    return 0
