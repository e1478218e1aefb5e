"""``run``/``create``'s image step, as ``docker run`` takes it: ``--pull missing``
(the default) pulls an image the daemon does not have, after "Unable to find
image 'busybox:latest' locally" on stderr, then creates again; ``--pull always``
pulls first; ``--pull never`` leaves the daemon's "No such image" as it is.  The
pull's progress goes to stderr (stdout carries only the container's id or
output), drawn as ``dockyard pull`` draws it; ``-q`` hides it.
"""

from dockyard.cli import output

POLICIES = ("missing", "always", "never")


def add_flags(p):
    p.add_argument("--pull", choices=POLICIES, default="missing",
                   help='Pull image before running ("always", "missing", "never") (default "missing")')
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    p.add_argument("-q", "--quiet", action="store_true", help="Suppress the pull output")


def tagged(image):
    """The reference docker pulls and names: ``busybox`` → ``busybox:latest``."""
    from dockyard.cli.references import split_image

    name, tag = split_image(image)
    return name, tag or "latest"


def _pull(ctx, args):
    import sys

    from dockyard.cli.references import registry_of
    from dockyard.cli.registry import credentials, render
    from dockyard.client import registry as client_registry

    name, tag = tagged(args.image)
    messages = client_registry.pull(ctx.client, name, tag, credentials(registry_of(name)),
                                    getattr(args, "platform", None))
    render(messages, quiet=args.quiet, file=sys.stderr)


def _missing_image(exc):
    return exc.status == 404 and exc.message.lower().startswith("no such image")


def create(ctx, args, create_container):
    """``create_container()`` (the API call), pulling the image as ``args.pull``
    says; raises the client's APIError as the call or the pull does."""
    from dockyard.client import APIError

    if args.pull == "always":
        _pull(ctx, args)
    try:
        return create_container()
    except APIError as exc:
        if args.pull != "missing" or not _missing_image(exc):
            raise
    if not args.quiet:
        name, tag = tagged(args.image)
        output.error(f"Unable to find image '{name}@{tag}' locally" if tag.startswith("sha256:")
                     else f"Unable to find image '{name}:{tag}' locally")
    _pull(ctx, args)
    return create_container()
