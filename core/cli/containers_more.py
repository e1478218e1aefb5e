"""Container commands beside the lifecycle: cp, top, rename, update, diff, and
``container prune`` and ``container inspect`` (the ``container`` group is
:mod:`.groups`'), docker's way.

``cp`` does what the docker CLI does on the client side: ``CONTAINER:PATH`` to a
local path (or ``-``: the tar on stdout) and a local path (or ``-``: a tar on
stdin) to ``CONTAINER:PATH``, with cp's rename rule (a destination that does not
exist is the new name of the source).
"""

import io
import os
import sys

from dockyard.cli import output, runflags

KINDS = {0: "C", 1: "A", 2: "D"}


def _cp_args(p):
    p.add_argument("-a", "--archive", action="store_true", help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="Always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress progress output")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.set_defaults(func=cmd_cp)


def _top_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_args", nargs="...", metavar="[ps OPTIONS]")
    p.set_defaults(func=cmd_top)


def _rename_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("new_name", metavar="NEW_NAME")
    p.set_defaults(func=cmd_rename)


UPDATE_FLAGS = [  # flag, body key, parser
    (("-m", "--memory"), "Memory", runflags.ram_in_bytes),
    (("--memory-swap",), "MemorySwap", lambda v: -1 if v == "-1" else runflags.ram_in_bytes(v)),
    (("--memory-reservation",), "MemoryReservation", runflags.ram_in_bytes),
    (("--cpus",), "NanoCpus", runflags.parse_cpus),
    (("-c", "--cpu-shares"), "CpuShares", int),
    (("--cpu-period",), "CpuPeriod", int),
    (("--cpu-quota",), "CpuQuota", int),
    (("--cpuset-cpus",), "CpusetCpus", str),
    (("--cpuset-mems",), "CpusetMems", str),
    (("--pids-limit",), "PidsLimit", int),
    (("--blkio-weight",), "BlkioWeight", int),
]


def _update_args(p):
    for flags, key, _ in UPDATE_FLAGS:
        p.add_argument(*flags, dest=key, help=f"HostConfig.{key}")
    p.add_argument("--restart", help="Restart policy to apply when a container exits")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_update)


def _diff_args(p):
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_diff)


def prune_args(p):
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'until=<timestamp>')")
    p.set_defaults(func=cmd_prune)


def inspect_args(p):
    """``container inspect``: the top-level ``inspect`` for containers alone."""
    p.add_argument("-f", "--format", help="Format the output using the given Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_inspect)


def register(sub):
    _cp_args(sub.add_parser("cp", help="Copy files/folders between a container and the local filesystem",
                            allow_abbrev=False))
    _top_args(sub.add_parser("top", help="Display the running processes of a container", allow_abbrev=False))
    _rename_args(sub.add_parser("rename", help="Rename a container", allow_abbrev=False))
    _update_args(sub.add_parser("update", help="Update configuration of one or more containers", allow_abbrev=False))
    _diff_args(sub.add_parser("diff", help="Inspect changes to files or directories on a container's filesystem",
                              allow_abbrev=False))


def cmd_inspect(ctx, args):
    from .common import inspect_each
    return inspect_each(args.containers, lambda name: ctx.client.inspect_container(name, size=args.size), args.format)


# cp ------------------------------------------------------------------------------
def _split(arg):
    """``CONTAINER:PATH`` → (container, path); a local path → (None, path)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    container, _, path = arg.partition(":")
    return container, path


def _stat(ctx, container, path):
    import base64
    import json

    from dockyard.client import NotFound
    try:
        resp, conn = ctx.client.stream("HEAD", f"/containers/{container}/archive", {"path": path})
    except NotFound:
        return None
    conn.close()
    raw = resp.headers.get("x-docker-container-path-stat")
    return json.loads(base64.b64decode(raw)) if raw else {}


def _is_dir(stat):
    return bool(stat and stat.get("mode", 0) & (1 << 31))


def cmd_cp(ctx, args):
    from dockyard.client import APIError
    src_c, src = _split(args.src)
    dst_c, dst = _split(args.dest)
    if bool(src_c) == bool(dst_c):
        output.error("Error: copying between containers is not supported" if src_c else
                     "Error: must specify at least one container source")
        return 1
    try:
        if src_c:
            return _from_container(ctx, src_c, src, dst, args.follow_link)
        return _to_container(ctx, src, dst_c, dst, args.archive)
    except APIError as exc:
        output.daemon_error(exc)
        return 1


def _from_container(ctx, container, path, dest, follow):
    import tarfile
    if follow:
        stat = _stat(ctx, container, path)
        if stat and stat.get("linkTarget"):
            path = stat["linkTarget"]
    resp, conn = ctx.client.stream("GET", f"/containers/{container}/archive", {"path": path})
    try:
        if dest == "-":
            out = sys.stdout.buffer
            while chunk := resp.read_some():
                out.write(chunk)
            out.flush()
            return 0
        data = io.BytesIO(resp.read_all())
    finally:
        conn.close()
    with tarfile.open(fileobj=data) as tar:
        members = tar.getmembers()
        if not members:
            return 0
        top = members[0].name.rstrip("/").split("/")[0]
        if os.path.isdir(dest) and not dest.endswith("/."):
            target, new = dest, top
        else:
            if dest.endswith("/") and not os.path.isdir(dest):
                output.error(f"Error: destination directory {dest} does not exist")
                return 1
            target, new = os.path.dirname(os.path.abspath(dest)), os.path.basename(os.path.abspath(dest))
        for m in members:
            if m.name == top or m.name.startswith(top + "/"):
                m.name = new + m.name[len(top):]
        tar.extractall(target, members=members, filter="tar")  # links may be absolute; nothing lands outside
    return 0


def _to_container(ctx, src, container, path, archive):
    import tarfile
    params = {"path": path, "noOverwriteDirNonDir": True, "copyUIDGID": archive or None}
    if src == "-":
        body = sys.stdin.buffer.read()
        ctx.client.request("PUT", f"/containers/{container}/archive", params, body=body,
                           headers={"Content-Type": "application/x-tar"})
        return 0
    if not os.path.lexists(src):
        output.error(f"Error: lstat {os.path.abspath(src)}: no such file or directory")
        return 1
    stat = _stat(ctx, container, path)
    if _is_dir(stat):
        name = os.path.basename(os.path.normpath(src))
    else:
        if path.endswith("/"):
            output.error(f"Error: no such directory {path} in the container")
            return 1
        name = os.path.basename(path.rstrip("/"))
        params["path"] = os.path.dirname(path.rstrip("/")) or "/"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(src, arcname="." if src.endswith("/.") and _is_dir(stat) else name)
    ctx.client.request("PUT", f"/containers/{container}/archive", params, body=buf.getvalue(),
                       headers={"Content-Type": "application/x-tar"})
    return 0


# top, rename, update, diff, prune -------------------------------------------------
def cmd_top(ctx, args):
    ps_args = " ".join(args.ps_args) or None
    top = ctx.client.request("GET", f"/containers/{args.container}/top", {"ps_args": ps_args})
    for line in output.table([top["Titles"]] + top["Processes"], minwidth=20, padding=1):
        print(line.rstrip())
    return 0


def cmd_rename(ctx, args):
    ctx.client.request("POST", f"/containers/{args.container}/rename", {"name": args.new_name})
    return 0


def cmd_update(ctx, args):
    from dockyard.client import APIError
    body = {}
    for _, key, parse in UPDATE_FLAGS:
        value = getattr(args, key)
        if value is not None:
            body[key] = parse(value)
    if args.restart is not None:
        body.update(runflags.restart_config(args))
    if not body:
        output.error("Error: you must provide one or more flags when using this command")
        return 1
    rc = 0
    for name in args.containers:
        try:
            ctx.client.request("POST", f"/containers/{name}/update", body=body)
            print(name)
        except APIError as exc:
            output.daemon_error(exc)
            rc = 1
    return rc


def cmd_diff(ctx, args):
    for change in ctx.client.request("GET", f"/containers/{args.container}/changes") or []:
        print(f"{KINDS.get(change['Kind'], '?')} {change['Path']}")
    return 0


def confirm(message, force):
    if force:
        return True
    sys.stdout.write(f"{message}\nAre you sure you want to continue? [y/N] ")
    sys.stdout.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def cmd_prune(ctx, args):
    import json
    if not confirm("WARNING! This will remove all stopped containers.", args.force):
        return 0
    filters = output.parse_filters(args.filter)
    report = ctx.client.request("POST", "/containers/prune", {"filters": json.dumps(filters) if filters else None})
    deleted = report.get("ContainersDeleted") or []
    if deleted:
        print("Deleted Containers:")
        for cid in deleted:
            print(cid)
        print()
    print(f"Total reclaimed space: {output.human_size(report.get('SpaceReclaimed') or 0, 4)}")
    return 0
