"""Registry commands: pull, push, login, logout.

Credentials are the client's, kept in Docker's ``config.json`` (or its credential
helpers) by :mod:`dockyard.client.authconfig`, and sent with each pull and push.
On a terminal, pull and push draw one progress bar per layer with ``rich``
(imported here, inside the commands, so other commands never load it); elsewhere
they print one line per step, as ``docker pull`` does.
"""

import sys

from dockyard.cli import output
from dockyard.cli.references import HUB, registry_of, split_image


def register(sub):
    p = sub.add_parser("pull", help="Download an image from a registry", allow_abbrev=False)
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable (os/arch[/variant])")
    p.add_argument("image", metavar="NAME[:TAG|@DIGEST]")
    p.set_defaults(func=cmd_pull)

    p = sub.add_parser("push", help="Upload an image to a registry", allow_abbrev=False)
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress verbose output")
    p.add_argument("image", metavar="NAME[:TAG]")
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("login", help="Log in to a registry", allow_abbrev=False)
    p.add_argument("-u", "--username", help="Username")
    p.add_argument("-p", "--password", help="Password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.add_argument("server", nargs="?", default=HUB, metavar="SERVER")
    p.set_defaults(func=cmd_login)

    p = sub.add_parser("logout", help="Log out from a registry", allow_abbrev=False)
    p.add_argument("server", nargs="?", default=HUB, metavar="SERVER")
    p.set_defaults(func=cmd_logout)


def server_host(server):
    for prefix in ("https://", "http://"):
        server = server.removeprefix(prefix)
    host = server.split("/", 1)[0]
    return HUB if host in ("", "index.docker.io", "registry-1.docker.io") else host


def credentials(host):
    from dockyard.client import authconfig

    try:
        return authconfig.get(host)
    except authconfig.CredentialError as exc:
        output.error(f"WARNING: {exc}; going on without credentials")
        return None


# --- progress -------------------------------------------------------------------
def render(messages, quiet=False, file=None):
    """Show a progress stream on ``file`` (stdout): rich bars on a terminal (a
    retry's "Retrying in N seconds" in its layer's line), plain lines otherwise."""
    if quiet:
        for _ in messages:
            pass
        return
    out = file or sys.stdout
    if not out.isatty():
        for msg in messages:
            if not isinstance(msg, dict) or msg.get("progressDetail", {}).get("current") is not None:
                continue
            status = msg.get("status")
            if status:
                print(f"{msg['id']}: {status}" if msg.get("id") else status, file=out, flush=True)
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    console = Console(file=out)
    bars = Progress(TextColumn("{task.fields[layer]}: {task.description:<20}"), BarColumn(),
                    DownloadColumn(binary_units=False), console=console, transient=False)
    tasks = {}
    with bars:
        for msg in messages:
            if not isinstance(msg, dict) or not msg.get("status"):
                continue
            layer = msg.get("id")
            if not layer or not _is_layer(layer):
                bars.console.print(f"{layer}: {msg['status']}" if layer else msg["status"])
                continue
            detail = msg.get("progressDetail") or {}
            if layer not in tasks:
                tasks[layer] = bars.add_task(msg["status"], layer=layer, total=None)
            kwargs = {"description": msg["status"]}
            if detail.get("total"):
                kwargs.update(completed=detail.get("current", 0), total=detail["total"])
            elif msg["status"] in ("Pull complete", "Pushed", "Layer already exists", "Already exists",
                                   "Download complete") or msg["status"].startswith("Mounted from"):
                task = bars.tasks[tasks[layer]]
                kwargs.update(completed=task.total or 1, total=task.total or 1)
            bars.update(tasks[layer], **kwargs)


def _is_layer(text):
    return len(text) == 12 and all(c in "0123456789abcdef" for c in text)


# --- commands --------------------------------------------------------------------
def cmd_pull(ctx, args):
    from dockyard.client import registry as client_registry
    from dockyard.client import APIError

    name, tag = split_image(args.image)
    if tag is None:
        tag = "latest"
    try:
        render(client_registry.pull(ctx.client, name, tag, credentials(registry_of(name)), args.platform),
               args.quiet)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    print(f"{name}@{tag}" if tag.startswith("sha256:") else f"{name}:{tag}")
    return 0


def cmd_push(ctx, args):
    from dockyard.client import registry as client_registry
    from dockyard.client import APIError

    name, tag = split_image(args.image)
    if tag and tag.startswith("sha256:"):
        output.error(f"Error: cannot push a digest reference: {args.image}")
        return 1
    try:
        render(client_registry.push(ctx.client, name, tag, credentials(registry_of(name))), args.quiet)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    return 0


def cmd_login(ctx, args):
    from dockyard.client import registry as client_registry
    from dockyard.client import APIError
    from dockyard.client import authconfig

    host = server_host(args.server)
    password = args.password
    if args.password_stdin:
        if args.password:
            output.error("Error: --password and --password-stdin are mutually exclusive")
            return 1
        password = sys.stdin.read().rstrip("\r\n")
    username = args.username
    if not username or password is None:
        if not sys.stdin.isatty():
            output.error("Error: cannot perform an interactive login from a non TTY device")
            return 1
        import getpass

        username = username or input("Username: ").strip()
        password = password if password is not None else getpass.getpass("Password: ")
    if args.password and not args.password_stdin:
        output.error("WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
    try:
        answer = client_registry.login(ctx.client, username, password, host)
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    try:
        where = authconfig.store(host, username, password)
    except (authconfig.CredentialError, OSError) as exc:
        output.error(f"Error saving credentials: {exc}")
        return 1
    if not where.startswith("docker-credential-"):
        output.error(f"WARNING! Your password will be stored unencrypted in {where}.")
    print((answer or {}).get("Status") or "Login Succeeded")
    return 0


def cmd_logout(ctx, args):
    from dockyard.client import authconfig

    host = server_host(args.server)
    try:
        found = authconfig.erase(host)
    except (authconfig.CredentialError, OSError) as exc:
        output.error(f"Error: {exc}")
        return 1
    print(f"Removing login credentials for {host}" if found else f"Not logged in to {host}")
    return 0
