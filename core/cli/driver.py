"""``dockyard driver ls|info|use``: the admin's view of installed drivers.

Works without a daemon: it loads each driver the way the daemon would (stevedore
by name, pluggy validation), asks it whether it can run here, and applies the
same selection rules to say which one is active.
"""

import argparse
import inspect
import json
import os
import sys

KINDS = ("storage", "exec", "network")


def _parser():
    p = argparse.ArgumentParser(prog="dockyard driver", description="List, inspect and choose drivers.")
    p.add_argument("--config", help="plugins.toml to read/write (default: /etc/dockyard/plugins.toml, "
                                    "else the shipped default)")
    p.add_argument("--data-root", default="/var/lib/dockyard", help="data root the daemon uses")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("ls", help="list every installed driver by kind")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    info = sub.add_parser("info", help="show one driver")
    info.add_argument("kind", choices=KINDS)
    info.add_argument("name")
    use = sub.add_parser("use", help="make a driver the one the daemon uses")
    use.add_argument("kind", choices=KINDS)
    use.add_argument("name")
    use.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    return p


def _home_root(kind, data_root):
    if kind == "exec":
        return "/run/dockyard/exec"
    return os.path.join(data_root, kind)


def _describe(kind, name, config, data_root):
    from ..errors import DockyardError
    from ..plugins import load_driver

    options = config.options.get(kind, {}).get(name, {})
    try:
        slot = load_driver(kind, name, os.path.join(_home_root(kind, data_root), name), options, config.source)
    except DockyardError as exc:
        return None, {"kind": kind, "name": name, "supported": False, "reason": f"invalid: {exc}"}
    reason = slot.supported()
    return slot, {"kind": kind, "name": name, "supported": reason is None, "reason": reason or ""}


def _active(kind, config, rows, data_root):
    """Which driver the daemon would pick, by the daemon's own rules."""
    from ..plugins import _prior_state

    supported = {r["name"] for r in rows if r["supported"]}
    names = config.drivers[kind]
    if kind == "network":
        return [n for n in names if n in supported]
    if kind == "storage":
        from ..store import read_meta

        pinned = read_meta(data_root, "storage_driver")  # set by `dockyard storage migrate`
        if pinned:
            return [pinned]
    if kind == "storage" and len(names) > 1:
        prior = _prior_state(_home_root(kind, data_root), [r["name"] for r in rows])
        if len(prior) == 1:
            return prior
    for name in names:
        if name in supported:
            return [name]
    return []


def cmd_ls(args, config):
    from ..plugins import installed

    rows = []
    for kind in KINDS:
        kind_rows = [_describe(kind, name, config, args.data_root)[1] for name in installed(kind)]
        active = _active(kind, config, kind_rows, args.data_root)
        for row in kind_rows:
            row["active"] = row["name"] in active
        rows.extend(kind_rows)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'KIND':<9}{'NAME':<15}{'ACTIVE':<8}SUPPORTED")
    for r in rows:
        sup = "yes" if r["supported"] else f"no: {r['reason']}"
        print(f"{r['kind']:<9}{r['name']:<15}{'*' if r['active'] else '':<8}{sup}")
    return 0


def cmd_info(args, config):
    from ..plugins import SPECS, installed

    if args.name not in installed(args.kind):
        print(f"dockyard driver: unknown {args.kind} driver {args.name!r} "
              f"(choices: {', '.join(installed(args.kind))})", file=sys.stderr)
        return 1
    slot, row = _describe(args.kind, args.name, config, args.data_root)
    specs = sorted(n for n in dir(SPECS[args.kind]) if n.startswith(args.kind + "_"))
    if slot is not None:
        impls = {h.name for h in slot.pm.get_hookcallers(slot.driver)}
        row["module"] = f"{type(slot.driver).__module__}.{type(slot.driver).__qualname__}"
        row["description"] = inspect.getdoc(sys.modules[type(slot.driver).__module__]) or ""
        row["hooks"] = {s: s in impls for s in specs}
    row["options"] = config.options.get(args.kind, {}).get(args.name, {})
    print(json.dumps(row, indent=2))
    return 0


def _parse_option(text):
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SystemExit(f"dockyard driver use: --option {text!r}: expected KEY=VALUE")
    lowered = value.lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    try:
        return key, int(value)
    except ValueError:
        return key, value


def cmd_use(args, config):
    import attrs

    from ..config import SYSTEM_CONFIG, write_atomic
    from ..plugins import installed

    if args.name not in installed(args.kind):
        print(f"dockyard driver: unknown {args.kind} driver {args.name!r} "
              f"(choices: {', '.join(installed(args.kind))})", file=sys.stderr)
        return 1
    options = dict(config.options.get(args.kind, {}).get(args.name, {}))
    options.update(_parse_option(o) for o in args.option)
    all_options = {k: dict(v) for k, v in config.options.items()}
    all_options.setdefault(args.kind, {})[args.name] = options
    config = attrs.evolve(config, options=all_options)
    slot, row = _describe(args.kind, args.name, config, args.data_root)
    if not row["supported"]:
        print(f"dockyard driver: refusing {args.kind} driver {args.name!r}: {row['reason']}", file=sys.stderr)
        return 1
    drivers = dict(config.drivers)
    if args.kind == "network":
        drivers["network"] = list(dict.fromkeys(drivers["network"] + [args.name]))
        config = attrs.evolve(config, drivers=drivers, default_network=args.name)
    else:
        drivers[args.kind] = [args.name]
        config = attrs.evolve(config, drivers=drivers)
    target = args.config or str(SYSTEM_CONFIG)
    write_atomic(target, config)
    print(f"{args.kind} driver set to {args.name} in {target}.")
    print("Restart the daemon (dockyard daemon) for it to take effect.")
    if args.kind == "storage":
        print("Images and containers kept by another storage driver are not visible to this one.")
    return 0


def main(argv=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ..config import load
    from ..errors import ConfigError

    try:
        config = load(args.config if args.config and os.path.exists(args.config) else None)
    except ConfigError as exc:
        print(f"dockyard driver: {exc}", file=sys.stderr)
        return 1
    return {"ls": cmd_ls, "info": cmd_info, "use": cmd_use}[args.cmd](args, config)


if __name__ == "__main__":
    sys.exit(main())
