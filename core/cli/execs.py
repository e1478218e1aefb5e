"""Commands on running containers: exec, pause, unpause, stats.

Like the other command modules, the API client is imported inside the commands.
"""

import os

from dockyard.cli import output, terminal

STATS_FORMAT = ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}"
                "\t{{.BlockIO}}\t{{.PIDs}}")
STATS_HEADERS = {"ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
                 "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS",
                 "Container": "CONTAINER"}


def register(sub):
    p = sub.add_parser("exec", help="Execute a command in a running container", allow_abbrev=False,
                       usage="dockyard exec [OPTIONS] CONTAINER COMMAND [ARG...]")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("command", nargs="...", help="command and arguments")
    p.min_args = 2  # CONTAINER COMMAND: argparse cannot count a remainder
    p.set_defaults(func=cmd_exec)

    for name, verb in (("pause", "Pause all processes within one or more containers"),
                       ("unpause", "Unpause all processes within one or more containers")):
        p = sub.add_parser(name, help=verb, allow_abbrev=False)
        p.add_argument("containers", nargs="+", metavar="CONTAINER")
        p.set_defaults(func=cmd_pause if name == "pause" else cmd_unpause)

    p = sub.add_parser("stats", help="Display a live stream of container(s) resource usage statistics",
                       allow_abbrev=False)
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("--no-stream", action="store_true", help="Disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate output")
    p.add_argument("--format", help="Pretty-print stats using a Go template")
    p.add_argument("containers", nargs="*", metavar="CONTAINER")
    p.set_defaults(func=cmd_stats)


def cmd_exec(ctx, args):
    from dockyard.cli.containers import _env_item
    from dockyard.client import APIError

    try:
        env = [v for v in (_env_item(e, os.environ) for e in args.env) if v is not None]
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    client = ctx.client
    try:
        keys = terminal.detach_keys(args.detach_keys)
    except ValueError as exc:
        output.error(str(exc))
        return 1
    problem = None if args.detach else terminal.check_tty(args.interactive, args.tty)
    if problem:
        try:
            client.inspect_container(args.container)  # "No such container" comes first, as in docker
        except APIError as exc:
            output.daemon_error(exc)
            return 1
        output.error(problem)
        return 1
    body = {"AttachStdin": args.interactive and not args.detach, "AttachStdout": not args.detach,
            "AttachStderr": not args.detach, "Tty": args.tty, "Cmd": list(args.command), "Env": env,
            "Privileged": args.privileged, "DetachKeys": keys or ""}
    if args.user:
        body["User"] = args.user
    if args.workdir:
        body["WorkingDir"] = args.workdir
    try:
        eid = client.exec_create(args.container, body)
        if args.detach:
            client.exec_start_detached(eid, tty=args.tty)
            return 0
        size = None
        if args.tty and os.isatty(1):
            size = tuple(os.get_terminal_size(1))[::-1]
        attachment = client.exec_start(eid, tty=args.tty, console_size=size)
    except APIError as exc:
        output.daemon_error(exc)
        return 126 if "executable file not found" in exc.message or "no such file" in exc.message else 1
    pump = None
    with attachment, terminal.Terminal(client, eid, args.tty and args.interactive, resize=client.exec_resize):
        if args.interactive:
            pump = terminal.StdinPump(attachment, args.tty, keys).start()
        try:
            output.write_frames(attachment.frames())
        except OSError as exc:
            if not (pump and pump.detached):
                output.error(f"dockyard: exec stream broke: {exc}")
    if pump and pump.detached:
        output.error("read escape sequence")  # docker exec's words (and status) on a detach
        return 1
    try:
        code = client.exec_inspect(eid).get("ExitCode")
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    return 126 if code is None else int(code)


def cmd_pause(ctx, args):
    from dockyard.cli.containers import _each
    return _each(ctx, args.containers, lambda c: ctx.client.pause(c) and None)


def cmd_unpause(ctx, args):
    from dockyard.cli.containers import _each
    return _each(ctx, args.containers, lambda c: ctx.client.unpause(c) and None)


def stats_record(s, trunc=True):
    """docker stats' columns from one API sample (its CPU and memory arithmetic)."""
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    cpu_delta = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    sys_delta = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    cpus = cpu.get("online_cpus") or len((cpu.get("cpu_usage") or {}).get("percpu_usage") or []) or 1
    cpu_pct = cpu_delta / sys_delta * cpus * 100 if sys_delta > 0 and cpu_delta > 0 else 0.0
    mem = s.get("memory_stats") or {}
    stats = mem.get("stats") or {}
    cache = stats.get("total_inactive_file", stats.get("inactive_file", 0))
    used = max(0, mem.get("usage", 0) - cache)
    limit = mem.get("limit", 0)
    nets = s.get("networks") or {}
    rx = sum(n.get("rx_bytes", 0) for n in nets.values())
    tx = sum(n.get("tx_bytes", 0) for n in nets.values())
    blk = (s.get("blkio_stats") or {}).get("io_service_bytes_recursive") or []
    rd = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "read")
    wr = sum(e.get("value", 0) for e in blk if str(e.get("op", "")).lower() == "write")
    size = output.human_size  # docker: decimal units for I/O, binary (BytesSize) for memory
    cid = s.get("id", "")
    return {"ID": cid[:12] if trunc else cid, "Container": cid[:12] if trunc else cid,
            "Name": (s.get("name") or "").lstrip("/") or "--",
            "CPUPerc": f"{cpu_pct:.2f}%",
            "MemUsage": f"{output.bytes_size(used)} / {output.bytes_size(limit)}",
            "MemPerc": f"{used / limit * 100 if limit else 0:.2f}%", "NetIO": f"{size(rx)} / {size(tx)}",
            "BlockIO": f"{size(rd)} / {size(wr)}",
            "PIDs": str((s.get("pids_stats") or {}).get("current", 0))}


def cmd_stats(ctx, args):
    from dockyard.client import APIError

    client = ctx.client
    try:
        names = args.containers or [c["Id"] for c in client.containers(all=args.all)]
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    fmt = args.format or STATS_FORMAT
    try:
        template = output.row_template(fmt)
    except output.TemplateError as exc:
        output.error(f"template parsing error: {exc}")
        return 1
    rc = 0
    while True:
        records = []
        for name in names:
            try:
                records.append(stats_record(client.stats(name), trunc=not args.no_trunc))
            except APIError as exc:
                output.daemon_error(exc)
                rc = 1
        try:
            lines = output.render_rows(template, records, STATS_HEADERS, "*container.statsContext")
        except output.TemplateError as exc:
            output.error(f"template parsing error: {exc}")
            return 1
        if not args.no_stream and os.isatty(1):
            print("\033[2J\033[H", end="")  # a fresh screen per round, as docker stats does
        print("\n".join(lines), flush=True)
        if args.no_stream or not names:
            return rc
