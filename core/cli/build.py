"""``dockyard build``: the classic ``docker build`` client (``DOCKER_BUILDKIT=0``).

The context is packed here (:mod:`dockyard.client.buildcontext`: ``.dockerignore`` applied, a
Dockerfile from outside the context or stdin added, stdin and URL contexts) and
streamed, chunked, to ``POST /build`` as ``application/x-tar``; the daemon's JSON
stream is printed as it comes, like docker's: ``stream`` text verbatim, pull
``status`` lines (progress bars left out), ``aux.ID`` kept for ``-q`` and
``--iidfile``, and an ``error`` message printed to stderr with exit status
``errorDetail.code`` (1 if it has none).  Problems found before anything is sent
are printed as docker words them (``unable to prepare context: ...``), exit 1.

Imports only ``os`` and ``sys`` at load time (``dockyard --help`` stays fast).
"""

import os
import sys

GO_TRUE = ("1", "t", "T", "TRUE", "true", "True")
GO_FALSE = ("0", "f", "F", "FALSE", "false", "False")
SENDING = "Sending build context to Docker daemon"
_PROGRESS_EVERY = 512 * 1024  # bytes, and at most every 0.1 s: docker's progress reader


def _bool_flag(p, names, default, help_text):
    """A pflag-style boolean: ``--rm``, ``--rm=false`` (the ``=`` forms are hidden
    option strings, so ``--rm .`` never takes ``.`` as a value)."""
    import argparse

    dest = names[-1].lstrip("-").replace("-", "_")
    p.add_argument(*names, dest=dest, action="store_const", const=True, default=default, help=help_text)
    for value, words in ((True, GO_TRUE), (False, GO_FALSE)):
        strings = [f"{n}={w}" for n in names if n.startswith("--") for w in words]
        p.add_argument(*strings, dest=dest, action="store_const", const=value, help=argparse.SUPPRESS)


def register(sub):
    p = sub.add_parser("build", help="Build an image from a Dockerfile", allow_abbrev=False,
                       description="Build an image from a Dockerfile (the classic builder)")
    p.add_argument("-t", "--tag", action="append", default=[], metavar="NAME[:TAG]",
                   help="Name and optionally a tag in the 'name:tag' format")
    p.add_argument("-f", "--file", metavar="FILE", help="Name of the Dockerfile (default 'PATH/Dockerfile')")
    p.add_argument("--build-arg", action="append", default=[], metavar="KEY[=VALUE]",
                   help="Set build-time variables (a KEY alone takes its value from the environment)")
    p.add_argument("--target", metavar="STAGE", help="Set the target build stage to build")
    _bool_flag(p, ("--no-cache",), False, "Do not use cache when building the image")
    _bool_flag(p, ("--pull",), False, "Always attempt to pull a newer version of the image")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="Set metadata for an image")
    p.add_argument("--network", metavar="MODE",
                   help="Set the networking mode for the RUN instructions during build (default \"default\")")
    p.add_argument("--cache-from", action="append", default=[], metavar="IMAGE",
                   help="Images to consider as cache sources")
    p.add_argument("--platform", help="Set platform if server is multi-platform capable")
    _bool_flag(p, ("-q", "--quiet"), False, "Suppress the build output and print image ID on success")
    _bool_flag(p, ("--rm",), True, "Remove intermediate containers after a successful build (default true)")
    _bool_flag(p, ("--force-rm",), False, "Always remove intermediate containers")
    p.add_argument("--iidfile", metavar="FILE", help="Write the image ID to the file")
    p.add_argument("context", metavar="PATH | URL | -")
    p.set_defaults(func=cmd_build)


def _err(text):
    print(text, file=sys.stderr, flush=True)


def build_args(items, environ=None):
    """``--build-arg`` values → the API's ``buildargs``; ``K`` alone takes ``$K``,
    or null (declared, no value) if it is not set, as docker's ValidateEnv."""
    environ = os.environ if environ is None else environ
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not key:
            raise ValueError(f'invalid argument "{item}" for "--build-arg" flag: invalid environment variable: {item}')
        out[key] = value if sep else environ.get(key)
    return out


def labels(items):
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def query(args, dockerfile):
    """The ``POST /build`` query parameters for parsed ``args``."""
    import json

    params = {"t": list(args.tag) or None, "dockerfile": dockerfile, "target": args.target or None,
              "q": args.quiet or None, "nocache": args.no_cache or None, "pull": args.pull or None,
              "rm": args.rm, "forcerm": args.force_rm or None, "networkmode": args.network or None,
              "platform": args.platform or None, "version": "1"}
    bargs, labs = build_args(args.build_arg), labels(args.label)
    if bargs:
        params["buildargs"] = json.dumps(bargs)
    if labs:
        params["labels"] = json.dumps(labs)
    if args.cache_from:
        params["cachefrom"] = json.dumps(list(args.cache_from))
    return params


def prepare(args, stdin, closers):
    """The :class:`~dockyard.client.buildcontext.Context` for the command line's context argument."""
    from dockyard.client import buildcontext as bc

    source = args.context
    if source == "-":
        if args.file == "-":
            raise bc.ContextError("invalid argument: can't use stdin for both build context and dockerfile")
        return bc.from_reader(stdin, args.file)
    if os.path.exists(source):
        return bc.from_directory(source, args.file, stdin)
    if bc.is_git_url(source):
        import shutil
        import tempfile

        tmp = tempfile.mkdtemp(prefix="dockyard-build-git-")
        closers.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
        root, dockerfile = bc.from_git(source, args.file, tmp)
        return bc.from_directory(root, dockerfile, stdin)
    if bc.is_url(source):
        import urllib.error
        import urllib.request

        try:
            resp = urllib.request.urlopen(source, timeout=60)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise bc.ContextError(f"unable to prepare context: unable to download remote context {source}: "
                                  f"{getattr(exc, 'reason', exc)}") from None
        closers.append(resp.close)
        return bc.from_reader(resp, args.file)
    raise bc.ContextError(f'unable to prepare context: path "{source}" not found')


def sending(chunks, out, quiet):
    """Pass ``chunks`` through, printing docker's "Sending build context" progress
    (a last ``...\\r\\r\\n`` line once it is all sent)."""
    import time

    from dockyard.cli.output import human_size

    sent, shown, last = 0, 0, time.monotonic()
    for chunk in chunks:
        sent += len(chunk)
        yield chunk
        if not quiet and sent - shown > _PROGRESS_EVERY and time.monotonic() - last >= 0.1:
            out.write(f"{SENDING} {human_size(sent, 4):>8}\r")
            out.flush()
            shown, last = sent, time.monotonic()
    if not quiet:
        out.write(f"{SENDING} {human_size(sent, 4):>8}\r\r\n")
        out.flush()


class Outcome:
    """What a build stream said: the image ID, the error (message, code), and the
    text kept back with ``-q``."""

    def __init__(self):
        self.image_id = None
        self.error = None
        self.kept = []


def show(messages, out, quiet=False):
    """Print a build's JSON ``messages`` as docker does; returns an :class:`Outcome`."""
    result = Outcome()
    for msg in messages:
        if not isinstance(msg, dict):
            continue
        if msg.get("error") or msg.get("errorDetail"):
            detail = msg.get("errorDetail") or {}
            code = detail.get("code") if isinstance(detail.get("code"), int) else 0
            result.error = (str(detail.get("message") or msg.get("error")), code or 1)
            break
        aux = msg.get("aux")
        if isinstance(aux, dict) and aux.get("ID"):
            result.image_id = aux["ID"]
        text = msg.get("stream")
        if text is None and msg.get("status") is not None:
            if msg.get("progressDetail") or msg.get("progress"):
                continue  # progress bars are for terminals
            text = f"{msg['id']}: {msg['status']}\n" if msg.get("id") else f"{msg['status']}\n"
        if not text:
            continue
        if quiet:
            result.kept.append(text)
        else:
            out.write(text)
            out.flush()
    return result


def cmd_build(ctx, args):
    from dockyard.client.buildcontext import ContextError

    out = sys.stdout
    if args.iidfile:
        try:
            os.remove(args.iidfile)
        except FileNotFoundError:
            pass
        except OSError as exc:
            _err(f"Removing image ID file: {exc}")
            return 1
    closers = []
    try:
        try:
            context = prepare(args, sys.stdin.buffer, closers)
            closers.append(context.close)
            params = query(args, context.dockerfile)
            messages = ctx.client.build(sending(context.chunks, out, args.quiet), params)
            result = show(messages, out, quiet=args.quiet)
        except (ContextError, ValueError) as exc:
            _err(str(exc))
            return 1
    finally:
        for close in reversed(closers):
            close()
    if result.error:
        message, code = result.error
        if args.quiet and result.kept:
            sys.stderr.write("".join(result.kept))
        _err(message)
        return code
    if args.quiet:  # with q=1 the daemon streams just the ID (dockerd sends no aux then)
        kept = "".join(result.kept)
        out.write(kept or (f"{result.image_id}\n" if result.image_id else ""))
        out.flush()
        result.image_id = result.image_id or kept.strip() or None
    if args.iidfile:
        if not result.image_id:
            _err(f"Server did not provide an image ID. Cannot write {args.iidfile}")
            return 1
        with open(args.iidfile, "w") as fh:
            fh.write(result.image_id)
    return 0
