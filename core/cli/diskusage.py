"""``system df`` and ``system prune``: what the data root holds and giving it back,
laid out and rounded as docker's (totals in go-units ``HumanSize``, rows as the
listings print them)."""

from dockyard.cli import output

DF_FORMAT = "table {{.Type}}\t{{.TotalCount}}\t{{.Active}}\t{{.Size}}\t{{.Reclaimable}}"
DF_RAW = ("type: {{.Type}}\ntotal: {{.TotalCount}}\nactive: {{.Active}}\nsize: {{.Size}}\n"
          "reclaimable: {{.Reclaimable}}\n")
DF_HEADERS = {"Type": "TYPE", "TotalCount": "TOTAL", "Active": "ACTIVE", "Size": "SIZE", "Reclaimable": "RECLAIMABLE"}
VERBOSE = (
    ("Images space usage:\n",
     "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}"
     "\t{{.Containers}}"),
    ("\nContainers space usage:\n",
     "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}"),
    ("\nLocal Volumes space usage:\n", "table {{.Name}}\t{{.Links}}\t{{.Size}}"),
    (None, "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}"
           "\t{{.Shared}}"),
)
CACHE_HEADERS = {"ID": "CACHE ID", "CacheType": "CACHE TYPE", "Size": "SIZE", "CreatedSince": "CREATED",
                 "LastUsedSince": "LAST USED", "UsageCount": "USAGE", "Shared": "SHARED"}
ACTIVE_STATES = ("running", "paused", "restarting")


def df_args(p):
    """``system df``'s flags (the ``system`` group is :mod:`.groups`')."""
    p.add_argument("--format", help="Format output using a custom template: 'table', 'table TEMPLATE', 'json', "
                                    "or a Go template")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.set_defaults(func=cmd_df)


def prune_args(p):
    """``system prune``'s flags."""
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<key>=<value>')")
    p.set_defaults(func=cmd_system_prune)


def _share(part, whole):
    """docker's RECLAIMABLE: ``1.2MB (40%)``, or the size alone when nothing is used."""
    return f"{output.human_size(part, 4)} ({part * 100 // whole}%)" if whole > 0 else output.human_size(part, 4)


def builder_size(df):
    """What the build cache holds, as the docker CLI adds it up (shared records aside)."""
    return sum(b.get("Size", 0) for b in df.get("BuildCache") or [] if not b.get("Shared"))


def summary_rows(df):
    """The four rows of ``system df``, with the fields docker's template sees."""
    images, containers = df.get("Images") or [], df.get("Containers") or []
    volumes, cache = df.get("Volumes") or [], df.get("BuildCache") or []
    layers = df.get("LayersSize") or 0
    used = sum(i["Size"] - i.get("SharedSize", 0) for i in images
               if i.get("Containers") and i.get("Size", -1) != -1 and i.get("SharedSize", -1) != -1)
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_free = sum(c.get("SizeRw") or 0 for c in containers if c.get("State") not in ACTIVE_STATES)
    usage = [v.get("UsageData") or {} for v in volumes]
    v_size = sum(u.get("Size", 0) for u in usage if u.get("Size", -1) != -1)
    v_free = sum(u.get("Size", 0) for u in usage if u.get("Size", -1) != -1 and not u.get("RefCount"))
    builder = builder_size(df)
    busy = sum(b.get("Size", 0) for b in cache if b.get("InUse") and not b.get("Shared"))
    return [
        {"Type": "Images", "TotalCount": str(len(images)), "Active": str(sum(1 for i in images if i.get("Containers"))),
         "Size": output.human_size(layers, 4), "Reclaimable": _share(layers - used, layers)},
        {"Type": "Containers", "TotalCount": str(len(containers)),
         "Active": str(sum(1 for c in containers if c.get("State") in ACTIVE_STATES)),
         "Size": output.human_size(c_size, 4), "Reclaimable": _share(c_free, c_size)},
        {"Type": "Local Volumes", "TotalCount": str(len(volumes)),
         "Active": str(sum(1 for u in usage if u.get("RefCount"))),
         "Size": output.human_size(v_size, 4), "Reclaimable": _share(v_free, v_size)},
        {"Type": "Build Cache", "TotalCount": str(len(cache)), "Active": str(sum(1 for b in cache if b.get("InUse"))),
         "Size": output.human_size(builder, 4), "Reclaimable": output.human_size(builder - busy, 4)},
    ]


def cache_records(cache, now=None):
    records = []
    for b in cache:
        created = output.parse_timestamp(b.get("CreatedAt")) or 0
        last = output.parse_timestamp(b.get("LastUsedAt"))
        records.append({"ID": (b.get("ID") or "")[:12] + ("*" if b.get("InUse") else ""),  # docker marks it in use
                        "CacheType": b.get("Type", ""),
                        "Size": output.human_size(b.get("Size") or 0),
                        "CreatedSince": output.since(created, now),
                        "LastUsedSince": output.since(last, now) if last else "",
                        "UsageCount": str(b.get("UsageCount", 0)), "Shared": str(bool(b.get("Shared"))).lower()})
    return records


def cmd_df(ctx, args):
    import json

    from dockyard.cli.containers import PS_HEADERS, ps_record
    from dockyard.cli.images import IMAGES_HEADERS, image_records
    from dockyard.cli.volumes import VOLUME_HEADERS, volume_record

    df = ctx.client.request("GET", "/system/df")
    fmt = args.format or "table"
    if fmt == "json":
        for row in summary_rows(df):
            print(json.dumps(row, separators=(",", ":"), sort_keys=True))
        return 0
    if not args.verbose:
        fmt = DF_FORMAT if fmt == "table" else DF_RAW if fmt == "raw" else fmt
        return output.print_rows(fmt, summary_rows(df), DF_HEADERS, "*formatter.diskUsageImagesContext")
    if fmt != "table":
        output.error("Error: a --format with --verbose is not supported here")
        return 1
    sections = [
        (image_records(df.get("Images") or [], first_tag=True), IMAGES_HEADERS),
        ([ps_record({**c, "SizeRootFs": 0}) for c in df.get("Containers") or []], PS_HEADERS),
        ([volume_record(v) for v in df.get("Volumes") or []], VOLUME_HEADERS),
        (cache_records(df.get("BuildCache") or []), CACHE_HEADERS),
    ]
    for (title, layout), (records, headers) in zip(VERBOSE, sections):
        if title is None:
            print(f"\nBuild cache usage: {output.human_size(builder_size(df), 4)}\n")
        else:
            print(title)
        for line in output.render_rows(layout, records, headers):
            print(line)
    return 0


def cmd_system_prune(ctx, args):
    import json

    from dockyard.cli.containers_more import confirm
    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if args.all
                else "all dangling images")
    what.append("unused build cache")
    if not confirm("WARNING! This will remove:\n" + "\n".join(f"  - {w}" for w in what), args.force):
        return 0
    filters = output.parse_filters(args.filter)
    q = {"filters": json.dumps(filters) if filters else None}
    total = 0
    report = ctx.client.request("POST", "/containers/prune", q) or {}
    total += report.get("SpaceReclaimed") or 0
    if report.get("ContainersDeleted"):
        print("Deleted Containers:\n" + "\n".join(report["ContainersDeleted"]) + "\n")
    nets = (ctx.client.request("POST", "/networks/prune", q) or {}).get("NetworksDeleted") or []
    if nets:
        print("Deleted Networks:\n" + "\n".join(nets) + "\n")
    if args.volumes:
        report = ctx.client.request("POST", "/volumes/prune", q) or {}
        total += report.get("SpaceReclaimed") or 0
        if report.get("VolumesDeleted"):
            print("Deleted Volumes:\n" + "\n".join(report["VolumesDeleted"]) + "\n")
    img_filters = dict(filters, dangling=["false" if args.all else "true"])
    report = ctx.client.request("POST", "/images/prune", {"filters": json.dumps(img_filters)}) or {}
    total += report.get("SpaceReclaimed") or 0
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for d in deleted:
            print(*(f"{k.lower()}: {v}" for k, v in d.items()))
        print()
    report = ctx.client.request("POST", "/build/prune", {"all": args.all or None}) or {}
    total += report.get("SpaceReclaimed") or 0
    if report.get("CachesDeleted"):
        print("Deleted build cache objects:\n" + "\n".join(report["CachesDeleted"]) + "\n")
    print(f"Total reclaimed space: {output.human_size(total, 4)}")
    return 0
