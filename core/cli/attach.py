"""``attach``: our terminal on a running container's main process, as ``docker
attach`` does it.

The wait for the container is sent first (its exit code is ours when the
stream ends), then the container is checked (running, not paused, not
restarting) and attached: stdin when it keeps one open (``-i``) and we were not
told ``--no-stdin``, stdout and stderr always.  With a terminal (``-t``) ours is
put in raw mode and follows resizes, and the detach keys (``--detach-keys``,
else the ``detachKeys`` of Docker's config file, else ctrl-p ctrl-q) leave the
container running: "read escape sequence" and status 1, as docker says it.
Without one, the signals we get go to the container (``--sig-proxy``).
"""

from dockyard.cli import output, terminal
from dockyard.cli.parser import output_bool


def register(sub):
    p = sub.add_parser("attach", help="Attach local standard input, output, and error streams to a running container",
                       allow_abbrev=False)
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("--no-stdin", action="store_true", help="Do not attach STDIN")
    p.add_argument("--sig-proxy", nargs="?", const=True, default=True, type=output_bool, metavar="BOOL",
                   help="Proxy all received signals to the process (default true)")
    p.add_argument("container", metavar="CONTAINER")
    p.set_defaults(func=cmd_attach)


def refusal(state):
    """docker's words for a container it will not attach to, else None."""
    if not state.get("Running"):
        return "You cannot attach to a stopped container, start it first"
    if state.get("Paused"):
        return "You cannot attach to a paused container, unpause it first"
    if state.get("Restarting"):
        return "You cannot attach to a restarting container, wait until it is running"
    return None


def _redraw(client, cid):
    """docker attach's nudge: our terminal's size plus one, then its size, so a
    full-screen program repaints for the newcomer (SIGWINCH follows it from there)."""
    import os

    from dockyard.client import ClientError
    try:
        size = os.get_terminal_size(1)
        client.resize(cid, size.lines + 1, size.columns + 1)
        client.resize(cid, size.lines, size.columns)
    except (OSError, ClientError):
        pass  # not a terminal, or the process has gone: nothing to redraw


def cmd_attach(ctx, args):
    from dockyard.client import APIError

    client = ctx.client
    try:
        pending = client.wait_begin(args.container)  # before the look, as docker: no exit goes unseen
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    with pending:
        try:
            info = client.inspect_container(args.container)
        except APIError as exc:
            output.daemon_error(exc)
            return 1
        return _attach(client, info, args, pending)


def _attach(client, info, args, pending):
    from dockyard.client import APIError

    config, cid = info.get("Config") or {}, info["Id"]
    tty = bool(config.get("Tty"))
    problem = refusal(info.get("State") or {}) or terminal.check_tty(not args.no_stdin, tty)
    if problem:
        output.error(problem)
        return 1
    try:
        keys = terminal.detach_keys(args.detach_keys)
    except ValueError as exc:
        output.error(str(exc))
        return 1
    stdin = not args.no_stdin and bool(config.get("OpenStdin"))
    try:
        attachment = client.attach(cid, stdin=stdin, stdout=True, stderr=True, tty=tty, detach_keys=keys)
        # it may have stopped between the look and the attach: the stream would never end
        problem = refusal(client.inspect_container(cid).get("State") or {})
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    pump = None
    with attachment, terminal.Terminal(client, cid, tty and stdin), \
            terminal.SignalProxy(client, cid, enabled=args.sig_proxy and not tty):
        if problem:
            output.error(problem)
            return 1
        if tty:
            _redraw(client, cid)
        if stdin:
            pump = terminal.StdinPump(attachment, tty, keys).start()
        try:
            output.write_frames(attachment.frames())
        except OSError as exc:
            if not (pump and pump.detached):
                output.error(f"dockyard: attach stream broke: {exc}")
    if pump and pump.detached:
        output.error("read escape sequence")  # docker attach's words (and status) on a detach
        return 1
    try:
        result = pending.result()
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    problem = (result.get("Error") or {}).get("Message")
    if problem:
        output.error(f"Error: {problem}")
        return 1
    return int(result.get("StatusCode", 0))
