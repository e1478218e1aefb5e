"""``dockyard storage migrate``: move every image and container layer to another
storage driver, verifying each one (see :mod:`dockyard.engine.layers.migrate`).

Two ways:

* **through the daemon** (the default): ``POST /dockyard/storage/migrate``; the
  daemon holds off storage requests meanwhile and uses the new driver at once,
  without a restart;
* **offline**, with ``--data-root DIR``, when no daemon uses that data root: this
  command then loads the storage drivers itself (imported here, lazily, only for
  this subcommand).

Either way it is refused while a container is running, and an interrupted run is
finished by running the same command again (or undone with ``--abort``).
"""

import argparse
import sys


def _parser():
    p = argparse.ArgumentParser(prog="dockyard storage", description="Manage the layers' storage.")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("migrate", help="move every layer to another storage driver",
                       description="Move every image layer and every stopped container's layer to another "
                                   "storage driver, verified layer by layer, then switch to it.")
    m.add_argument("--to", metavar="NAME", help="the storage driver to move to")
    m.add_argument("--keep-old", action="store_true", help="keep the old driver's layers (default: remove them)")
    m.add_argument("--abort", action="store_true", help="undo an unfinished migration")
    m.add_argument("--data-root", metavar="DIR", help="migrate offline, with no daemon running on DIR")
    m.add_argument("--config", metavar="FILE", help="plugins.toml for the drivers' options (offline only)")
    m.add_argument("-q", "--quiet", action="store_true", help="print only the result")
    return p


def _printer(quiet):
    def show(msg):
        if quiet and not msg.get("driver"):
            return
        print(msg.get("status", ""), flush=True)
    return show


def _offline(args):
    from ..engine.layers.service import migrate_offline
    from ..errors import DockyardError

    try:
        migrate_offline(args.data_root, args.to, config_path=args.config, keep_old=args.keep_old,
                        abort=args.abort, progress=_printer(args.quiet))
    except DockyardError as exc:
        print(f"dockyard storage migrate: {exc}", file=sys.stderr)
        return 1
    return 0


def _through_daemon(args, host, debug):
    from ..client import APIError, Client, ClientError, DaemonUnreachable

    if args.config:
        print("dockyard storage migrate: --config applies offline only (with --data-root); the daemon uses "
              "its own", file=sys.stderr)
        return 1
    client = Client(host, debug=debug)
    show = _printer(args.quiet)
    params = {"to": args.to, "keep_old": args.keep_old or None, "abort": args.abort or None}
    try:
        for msg in client.json_stream("POST", "/dockyard/storage/migrate", params=params):
            show(msg)
    except APIError as exc:
        print(f"Error response from daemon: {exc.message}", file=sys.stderr)
        return 1
    except ClientError as exc:
        print(str(exc), file=sys.stderr)
        if isinstance(exc, DaemonUnreachable):
            print("No daemon answers there: migrate offline with --data-root DIR", file=sys.stderr)
        return 1
    return 0


def main(argv=None, host=None, debug=False):
    import os

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if not args.to and not args.abort:
        print("dockyard storage migrate: name the driver to move to (--to NAME), or --abort", file=sys.stderr)
        return 2
    if args.to and args.abort:
        print("dockyard storage migrate: --to and --abort exclude each other", file=sys.stderr)
        return 2
    if args.data_root:
        return _offline(args)
    from .hosts import resolve  # cli.main's choice (-H, DOCKYARD_HOST, DOCKER_HOST, the default)

    return _through_daemon(args, host or resolve(None, os.environ)[0], debug)


if __name__ == "__main__":
    sys.exit(main())
