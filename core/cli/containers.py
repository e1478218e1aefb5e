"""Container commands: run, create, start, ps, logs, stop, kill, rm, wait.

Each ``cmd_*`` takes the CLI context (``ctx.client`` connects lazily) and the parsed
arguments, and returns the exit code.  The client module is imported only inside
the commands, so building the parser for ``--help`` stays cheap; so are the modules
of run's and create's flags and of the terminal, which ``ps`` or ``stop`` never use.
"""

import os

from dockyard.cli import output

PS_FORMAT = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "CreatedAt": "CREATED AT",
              "RunningFor": "CREATED", "Ports": "PORTS", "State": "STATE", "Status": "STATUS",
              "Names": "NAMES", "Labels": "LABELS", "Networks": "NETWORKS", "Mounts": "MOUNTS", "Size": "SIZE",
              "LocalVolumes": "LOCAL VOLUMES"}


def register(sub):
    from dockyard.cli.parser import Discard

    for name, help_text in (("run", "Create and run a new container from an image"),
                            ("create", "Create a new container")):
        p = sub.add_parser(name, help=help_text, add_help=False, allow_abbrev=False,
                           usage=f"dockyard {name} [OPTIONS] IMAGE [COMMAND] [ARG...]")
        if isinstance(p, Discard):  # another command runs: not even the modules of these flags
            continue
        p.add_argument("--help", action="help", help="Print usage")
        from dockyard.cli import pullimage
        pullimage.add_flags(p)
        _container_flags(p, run=name == "run")
        p.add_argument("image")
        p.add_argument("command", nargs="...", help="command and arguments")
        p.set_defaults(func=cmd_run if name == "run" else cmd_create)

    p = sub.add_parser("start", help="Start one or more stopped containers", allow_abbrev=False)
    p.add_argument("-a", "--attach", action="store_true", help="Attach STDOUT/STDERR and forward signals")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach container's STDIN")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("ps", help="List containers", allow_abbrev=False)
    p.add_argument("-a", "--all", action="store_true", help="Show all containers (default shows just running)")
    p.add_argument("-q", "--quiet", action="store_true", help="Only display container IDs")
    p.add_argument("--no-trunc", action="store_true", help="Don't truncate output")
    p.add_argument("-n", "--last", type=int, default=-1, help="Show n last created containers")
    p.add_argument("-l", "--latest", action="store_true", help="Show the latest created container")
    p.add_argument("-f", "--filter", action="append", default=[], help="Filter output (key=value)")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes")
    p.add_argument("--format", help="Pretty-print containers using a Go template")
    p.set_defaults(func=cmd_ps)

    p = sub.add_parser("logs", help="Fetch the logs of a container", allow_abbrev=False)
    p.add_argument("-f", "--follow", action="store_true", help="Follow log output")
    p.add_argument("-n", "--tail", default="all", help='Number of lines to show from the end (default "all")')
    p.add_argument("-t", "--timestamps", action="store_true", help="Show timestamps")
    p.add_argument("--since", help="Show logs since timestamp or relative (e.g. 42m)")
    p.add_argument("--until", help="Show logs before timestamp or relative (e.g. 42m)")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_logs)

    p = sub.add_parser("stop", help="Stop one or more running containers", allow_abbrev=False)
    p.add_argument("-t", "--time", type=int, help="Seconds to wait for stop before killing it")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("kill", help="Kill one or more running containers", allow_abbrev=False)
    p.add_argument("-s", "--signal", help="Signal to send to the container (default KILL)")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_kill)

    p = sub.add_parser("rm", help="Remove one or more containers", allow_abbrev=False)
    p.add_argument("-f", "--force", action="store_true", help="Force the removal of a running container")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove anonymous volumes")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_rm)

    p = sub.add_parser("restart", help="Restart one or more containers", allow_abbrev=False)
    p.add_argument("-t", "--time", type=int, help="Seconds to wait for stop before killing the container")
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_restart)

    p = sub.add_parser("wait", help="Block until containers stop, then print their exit codes",
                       allow_abbrev=False)
    p.add_argument("containers", nargs="+", metavar="CONTAINER")
    p.set_defaults(func=cmd_wait)


def _container_flags(p, run):
    if run:
        p.add_argument("-d", "--detach", action="store_true", help="Run in background and print the ID")
        p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
        p.add_argument("--rm", action="store_true", help="Remove the container when it exits")
    else:
        p.set_defaults(detach=False)
        p.add_argument("--rm", action="store_true", help="Remove the container when it exits")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables (K=V or K)")
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("--name", help="Assign a name to the container")
    p.add_argument("-h", "--hostname", help="Container host name")
    p.add_argument("--network", "--net", dest="network", help='Network mode: none, host or a network name')
    p.add_argument("--entrypoint", help="Overwrite the default ENTRYPOINT of the image")
    p.add_argument("-u", "--user", help="Username or UID (format: <name|uid>[:<group|gid>])")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-l", "--label", action="append", default=[], help="Set meta data (K=V)")
    from dockyard.cli import netflags, runflags
    runflags.add_flags(p)
    netflags.add_flags(p)


def _env_item(item, environ):
    """``K=V`` as is; ``K`` alone takes K from our environment (dropped if unset), like docker."""
    if "=" in item:
        if not item.split("=", 1)[0]:
            raise ValueError(f"invalid environment variable: {item}")
        return item
    if not item.strip() or any(c.isspace() for c in item):
        raise ValueError(f"variable '{item}' contains whitespaces" if item.strip() else "invalid environment variable: empty")
    return f"{item}={environ[item]}" if item in environ else None


def _env_file(path, environ):
    found = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            line = line.lstrip().rstrip("\r\n")
            if line and not line.startswith("#"):
                value = _env_item(line, environ)
                if value is not None:
                    found.append(value)
    return found


def create_body(args, environ=None):
    """The ``POST /containers/create`` body for run/create flags (docker's shape)."""
    from dockyard.cli import netflags, policyflags, runflags
    environ = os.environ if environ is None else environ
    env = []
    for path in args.env_file:
        env += _env_file(path, environ)
    for item in args.env:
        value = _env_item(item, environ)
        if value is not None:
            env.append(value)
    labels = {}
    for item in args.label:
        key, _, value = item.partition("=")
        labels[key] = value
    attached = not args.detach
    return netflags.apply(args, {
        "Hostname": args.hostname or "",
        "User": args.user or "",
        "AttachStdin": args.interactive and attached,
        "AttachStdout": attached,
        "AttachStderr": attached,
        "Tty": args.tty,
        "OpenStdin": args.interactive,
        "StdinOnce": args.interactive and attached,
        "Env": env,
        "Cmd": list(args.command) or None,
        "Image": args.image,
        "WorkingDir": args.workdir or "",
        "Entrypoint": [args.entrypoint] if args.entrypoint is not None else None,
        "Labels": labels,
        **runflags.container_config(args),
        **policyflags.health_config(args),
        "HostConfig": {"AutoRemove": args.rm, "NetworkMode": args.network or "default", **runflags.host_config(args),
                       **policyflags.restart_config(args)},
    })


def _create(ctx, args):
    """Create the container; returns its id (warnings go to stderr)."""
    from dockyard.cli import pullimage
    body = create_body(args)
    created = pullimage.create(ctx, args, lambda: ctx.client.create_container(body, name=args.name))
    for warning in created.get("Warnings") or []:
        output.error(f"WARNING: {warning}")
    return created["Id"]


def cmd_create(ctx, args):
    from dockyard.client import APIError
    try:
        cid = _create(ctx, args)
    except (APIError, ValueError, OSError) as exc:
        output.daemon_error(exc)
        return 125
    print(cid)
    return 0


def start_error_code(message):
    """docker run's exit code for a failed start: 127 command not found, 126 not executable, else 125."""
    low = message.lower()
    if "not found" in low or "no such file" in low:
        return 127
    if "permission denied" in low or "not executable" in low:
        return 126
    return 125


def cmd_run(ctx, args):
    from dockyard.cli import terminal
    from dockyard.client import APIError
    if not args.detach:
        problem = terminal.check_tty(args.interactive, args.tty)
        if problem:
            output.error(problem)
            return 1
    try:
        keys = None if args.detach else terminal.detach_keys(args.detach_keys)
        cid = _create(ctx, args)
    except (APIError, ValueError, OSError) as exc:
        output.daemon_error(exc)
        return 125
    if args.detach:
        try:
            ctx.client.start(cid)
        except APIError as exc:
            output.daemon_error(exc)
            return start_error_code(exc.message)
        print(cid)
        return 0
    rc = attached_run(ctx, cid, tty=args.tty, stdin=args.interactive, auto_remove=args.rm,
                      failed_start=start_error_code, error_code=125, detach_keys=keys)
    return 0 if rc is DETACHED else rc


#: what :func:`attached_run` returns when the user typed the detach keys
DETACHED = object()


def attached_run(ctx, cid, tty, stdin, auto_remove, failed_start, error_code, detach_keys=None):
    """attach → start → copy the streams → wait; returns the container's exit code,
    or :data:`DETACHED` when the user detached (the container runs on).

    ``failed_start(message)`` gives the exit code when the start is refused,
    ``error_code`` the one for any other refusal (125 for run, 1 for start).
    ``detach_keys`` (None: ctrl-p,ctrl-q) end a session with a terminal.

    With ``auto_remove`` the wait (condition "removed") is sent before the start, as
    docker does, so the exit code is not lost when the daemon removes the container.
    """
    from dockyard.cli import terminal
    from dockyard.client import APIError

    client = ctx.client
    pending = client.wait_begin(cid, "removed", confirm_timeout=5) if auto_remove else None
    try:
        attachment = client.attach(cid, stdin=stdin, stdout=True, stderr=True, tty=tty, detach_keys=detach_keys)
    except APIError as exc:
        output.daemon_error(exc)
        if pending:
            pending.close()
        return error_code
    pump = None
    with attachment, terminal.Terminal(client, cid, tty and stdin) as term, \
            terminal.SignalProxy(client, cid, enabled=not tty):
        try:
            client.start(cid)
        except APIError as exc:
            output.daemon_error(exc)
            if pending:
                pending.close()
            if auto_remove:
                try:
                    client.remove_container(cid, force=True)
                except APIError:
                    pass
            return failed_start(exc.message)
        term.resize()
        if stdin:
            pump = terminal.StdinPump(attachment, tty, detach_keys).start()
        try:
            output.write_frames(attachment.frames())
        except OSError as exc:
            if not (pump and pump.detached):
                output.error(f"dockyard: attach stream broke: {exc}")
    if pump and pump.detached:
        if pending:
            pending.close()
        return DETACHED
    try:
        result = pending.result() if pending else client.wait(cid)
    except APIError as exc:
        output.daemon_error(exc)
        return error_code
    problem = (result.get("Error") or {}).get("Message")
    if problem:
        output.error(f"Error: {problem}")
    return int(result.get("StatusCode", 0))


def _each(ctx, names, action, show=True):
    """Run ``action(name)`` for every name; report failures like docker and go on."""
    from dockyard.client import APIError
    rc = 0
    for name in names:
        try:
            result = action(name)
        except APIError as exc:
            output.daemon_error(exc)
            rc = 1
            continue
        if show:
            print(name if result is None else result, flush=True)
    return rc


def cmd_start(ctx, args):
    if not args.attach and not args.interactive:
        return _each(ctx, args.containers, ctx.client.start)
    if len(args.containers) > 1:
        output.error("Error: you cannot start and attach multiple containers at once")
        return 1
    from dockyard.cli import terminal
    from dockyard.client import APIError
    try:
        info = ctx.client.inspect_container(args.containers[0])
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    config = info.get("Config") or {}
    try:
        keys = terminal.detach_keys(args.detach_keys)
    except ValueError as exc:
        output.error(str(exc))
        return 1
    rc = attached_run(ctx, info["Id"], tty=bool(config.get("Tty")),
                      stdin=args.interactive and bool(config.get("OpenStdin")),
                      auto_remove=bool((info.get("HostConfig") or {}).get("AutoRemove")),
                      failed_start=lambda _msg: 1, error_code=1, detach_keys=keys)
    return 0 if rc is DETACHED else rc


def cmd_stop(ctx, args):
    return _each(ctx, args.containers, lambda c: ctx.client.stop(c, timeout=args.time) and None)


def cmd_restart(ctx, args):
    from urllib.parse import quote
    return _each(ctx, args.containers, lambda c: ctx.client.request(
        "POST", f"/containers/{quote(c, safe='')}/restart", {"t": args.time}) and None)


def cmd_kill(ctx, args):
    return _each(ctx, args.containers, lambda c: ctx.client.kill(c, signal=args.signal) and None)


def cmd_rm(ctx, args):
    return _each(ctx, args.containers,
                 lambda c: ctx.client.remove_container(c, force=args.force, volumes=args.volumes) and None)


def cmd_wait(ctx, args):
    return _each(ctx, args.containers, lambda c: ctx.client.wait(c).get("StatusCode", 0))


def time_arg(value, now=None):
    """--since/--until: unix time, RFC 3339, or a duration before now (``42m``, ``1h30m``)."""
    import re
    import time
    if value is None:
        return None
    if re.fullmatch(r"\d+(\.\d+)?", value):
        return value
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if parts and "".join(n + u for n, u in parts) == value:
        scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
        seconds = sum(float(n) * scale[u] for n, u in parts)
        return str(int((time.time() if now is None else now) - seconds))
    stamp = output.parse_timestamp(value)
    if stamp is None:
        raise ValueError(f"invalid value for time: {value!r}")
    return str(int(stamp))


def cmd_logs(ctx, args):
    from dockyard.client import APIError
    try:
        frames = ctx.client.logs(args.container, follow=args.follow, tail=args.tail,
                                 timestamps=args.timestamps, since=time_arg(args.since),
                                 until=time_arg(args.until))
        output.write_frames(frames)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    return 0


def _quote(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ps_record(c, trunc=True, now=None):
    """The fields ``ps --format`` knows, from one ``GET /containers/json`` entry."""
    cid, image, command = c.get("Id", ""), c.get("Image", ""), c.get("Command", "")
    if trunc:
        cid = cid[:12]
        command = output.ellipsis(command, 20)
        if image.startswith("sha256:"):
            image = image[len("sha256:"):][:12]
    names = [n.lstrip("/") for n in c.get("Names") or []]
    plain = [n for n in names if "/" not in n]
    names = plain[:1] if trunc and plain else plain or names
    ports = []
    for p in c.get("Ports") or []:
        private = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ports.append(f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{private}")
        else:
            ports.append(private)
    created = c.get("Created") or 0
    networks = ((c.get("NetworkSettings") or {}).get("Networks") or {})
    mounts = [m.get("Name") or m.get("Source") or "" for m in c.get("Mounts") or []]
    size = output.human_size(c.get("SizeRw") or 0)
    if c.get("SizeRootFs"):
        size += f" (virtual {output.human_size(c['SizeRootFs'])})"
    return {
        "ID": cid, "Image": image, "Command": _quote(command),
        "CreatedAt": output.local_time(created), "RunningFor": output.since(created, now),
        "Ports": ", ".join(ports), "State": c.get("State", ""),
        "Status": c.get("Status") or str(c.get("State", "")).capitalize(),
        "Names": ",".join(names), **output.label_fields(c.get("Labels")),
        "Networks": ",".join(networks),
        "Mounts": ",".join(output.ellipsis(m, 15) if trunc else m for m in mounts),
        "LocalVolumes": str(sum(1 for m in c.get("Mounts") or [] if m.get("Driver") == "local")),
        "Size": size,
    }


#: docker's Go type for a ``ps`` row, and its words for a template that fails
PS_CONTEXT = "*formatter.ContainerContext"
PS_ERRORS = ("failed to parse template: ", "failed to execute template: ")


def cmd_ps(ctx, args):
    from dockyard.client import APIError
    try:
        filters = output.parse_filters(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    limit = 1 if args.latest else (args.last if args.last > 0 else None)
    if args.quiet and args.format:
        output.error("WARNING: Ignoring custom format, because both --format and --quiet are set.")
    fmt = args.format or (PS_FORMAT + "\t{{.Size}}" if args.size else PS_FORMAT)
    # docker runs the template once on an empty row first: a bad one fails with no container listed
    if args.format and output.check_rows_template(fmt, ps_record({}), PS_CONTEXT, PS_ERRORS):
        return 1
    try:
        items = ctx.client.containers(all=args.all or limit is not None, filters=filters, limit=limit,
                                      size=args.size or ".Size" in fmt)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    records = [ps_record(c, trunc=not args.no_trunc) for c in items]
    return output.print_rows("{{.ID}}" if args.quiet else fmt, records, PS_HEADERS, PS_CONTEXT, PS_ERRORS)
