"""``dockyard driver ls|info|use``: the admin's view of installed drivers.

It loads each driver the way the daemon would (stevedore by name, pluggy
validation) and asks it whether it can run here, under the data root a daemon
uses: when a daemon answers on the host (``-H``, ``$DOCKYARD_HOST``, ``$DOCKER_HOST``), its
``/info`` names its data root, exec root and the drivers it runs; otherwise
``--data-root`` (default ``/var/lib/dockyard``) and the daemon's selection rules
say which one would be active.  ``use`` rewrites ``plugins.toml`` in place,
comments and layout kept (tomlkit), after checking the result loads.
"""

import argparse
import inspect
import json
import os
import sys

KINDS = ("storage", "exec", "network")
#: what ``ls`` lists: every kind (``info``/``use`` take the kinds above)
LS_KINDS = (*KINDS, "volume", "logging")
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"


def _parser():
    p = argparse.ArgumentParser(prog="dockyard driver", description="List, inspect and choose drivers.")
    p.add_argument("--config", help="plugins.toml to read/write (default: /etc/dockyard/plugins.toml, "
                                    "else the shipped default)")
    p.add_argument("--data-root", help="data root to look at (default: the running daemon's, "
                                       f"else {DEFAULT_DATA_ROOT})")
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("ls", help="list every installed driver by kind")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    info = sub.add_parser("info", help="show one driver")
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.add_argument("kind", choices=KINDS)
    info.add_argument("name")
    use = sub.add_parser("use", help="make a driver the one the daemon uses")
    use.add_argument("kind", choices=KINDS)
    use.add_argument("name")
    use.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE")
    return p


class Where:
    """The roots drivers live under, and what a running daemon says it uses."""

    def __init__(self, data_root, exec_root, active=None, daemon=None):
        self.data_root, self.exec_root = data_root, exec_root
        self.active = active  # kind -> [names] from a daemon, else None
        self.daemon = daemon  # the host that answered

    def home(self, kind, name):
        from ..plugins import driver_home

        return str(driver_home(kind, name, self.data_root, self.exec_root))


def locate(host, data_root=None):
    """:class:`Where` from the daemon answering on ``host`` (its ``/info``), or from
    ``data_root`` / the defaults when none does.  An explicit ``data_root`` wins."""
    from ..client import Client, ClientError

    info = None
    if host:
        try:
            info = Client(host, timeout=3).info()
        except ClientError:
            info = None
    if info and (data_root is None or os.path.realpath(data_root) == os.path.realpath(info.get("DockerRootDir", ""))):
        drivers = info.get("Drivers") or {}
        active = {kind: [n] if isinstance(n, str) else list(n) for kind, n in drivers.items()}
        active.setdefault("storage", [info.get("Driver")] if info.get("Driver") else [])
        return Where(info.get("DockerRootDir") or DEFAULT_DATA_ROOT, info.get("ExecRoot") or DEFAULT_EXEC_ROOT,
                     active, host)
    return Where(data_root or DEFAULT_DATA_ROOT, DEFAULT_EXEC_ROOT)


def _describe(kind, name, config, where):
    from ..errors import DockyardError
    from ..plugins import load_driver

    options = config.options.get(kind, {}).get(name, {})
    try:
        slot = load_driver(kind, name, where.home(kind, name), options, config.source)
    except DockyardError as exc:
        return None, {"kind": kind, "name": name, "supported": False, "reason": f"invalid: {exc}"}
    reason = slot.supported()
    return slot, {"kind": kind, "name": name, "supported": reason is None, "reason": reason or ""}


def _active(kind, config, where):
    """Which driver is active: the daemon's answer, else the daemon's own policy
    (:func:`dockyard.plugins.active`)."""
    from ..plugins import active

    if where.active is not None:
        return where.active.get(kind, [])
    return active(kind, config, where.data_root, where.exec_root)


def cmd_ls(args, config, where):
    from ..plugins import installed

    rows = []
    for kind in LS_KINDS:
        kind_rows = [_describe(kind, name, config, where)[1] for name in installed(kind)]
        active = _active(kind, config, where)
        for row in kind_rows:
            row["active"] = row["name"] in active
        rows.extend(kind_rows)
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    source = f"the daemon on {where.daemon}" if where.daemon else "no daemon answers; the selection rules"
    print(f"# data root {where.data_root} (active: {source})")
    print(f"{'KIND':<9}{'NAME':<15}{'ACTIVE':<8}SUPPORTED")
    for r in rows:
        sup = "yes" if r["supported"] else f"no: {r['reason']}"
        print(f"{r['kind']:<9}{r['name']:<15}{'*' if r['active'] else '':<8}{sup}")
    return 0


def _unknown(kind, name):
    from ..plugins import installed

    if name in installed(kind):
        return False
    print(f"dockyard driver: unknown {kind} driver {name!r} (choices: {', '.join(installed(kind))})",
          file=sys.stderr)
    return True


def cmd_info(args, config, where):
    from ..plugins import SPECS

    if _unknown(args.kind, args.name):
        return 1
    slot, row = _describe(args.kind, args.name, config, where)
    specs = sorted(n for n in dir(SPECS[args.kind]) if n.startswith(args.kind + "_"))
    row["active"] = args.name in _active(args.kind, config, where)
    if slot is not None:
        impls = {h.name for h in slot.pm.get_hookcallers(slot.driver)}
        row["module"] = f"{type(slot.driver).__module__}.{type(slot.driver).__qualname__}"
        row["description"] = inspect.getdoc(sys.modules[type(slot.driver).__module__]) or ""
        row["hooks"] = {s: s in impls for s in specs}
    row["options"] = config.options.get(args.kind, {}).get(args.name, {})
    row["home"] = where.home(args.kind, args.name)
    if args.format == "json":
        print(json.dumps(row, indent=2))
        return 0
    print(render_info(row))
    return 0


def render_info(row):
    """``driver info`` as text: facts first, then the hooks, then the module's docstring."""
    lines = [f"Kind:         {row['kind']}",
             f"Name:         {row['name']}",
             f"Supported:    {'yes' if row['supported'] else 'no: ' + row['reason']}",
             f"Active:       {'yes' if row.get('active') else 'no'}",
             f"Home:         {row['home']}"]
    if row.get("module"):
        lines.append(f"Class:        {row['module']}")
    options = row.get("options") or {}
    lines.append("Options:      " + (", ".join(f"{k}={v}" for k, v in options.items()) or "(none)"))
    hooks = row.get("hooks") or {}
    if hooks:
        lines.append(f"Hooks:        {sum(hooks.values())} of {len(hooks)} implemented")
        width = max(len(h) for h in hooks)
        lines += [f"  {h:<{width}}  {'yes' if done else '-'}" for h, done in hooks.items()]
    if row.get("description"):
        lines.append("Description:")
        lines += [f"  {line}".rstrip() for line in row["description"].splitlines()]
    return "\n".join(lines)


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


def cmd_use(args, config, where):
    from ..config import SYSTEM_CONFIG, parse
    from . import tomledit

    if _unknown(args.kind, args.name):
        return 1
    options = dict(config.options.get(args.kind, {}).get(args.name, {}))
    options.update(_parse_option(o) for o in args.option)
    import attrs

    all_options = {k: dict(v) for k, v in config.options.items()}
    all_options.setdefault(args.kind, {})[args.name] = options
    _, row = _describe(args.kind, args.name, attrs.evolve(config, options=all_options), where)
    if not row["supported"]:
        print(f"dockyard driver: refusing {args.kind} driver {args.name!r}: {row['reason']}", file=sys.stderr)
        return 1
    target = args.config or str(SYSTEM_CONFIG)
    base = target if os.path.exists(target) else config.source  # a new file starts as a copy, comments and all
    with open(base, encoding="utf-8") as fh:
        doc = tomledit.load(fh.read())
    tomledit.choose(doc, args.kind, args.name, options if args.option else None)
    text = tomledit.dump(doc)
    parse(tomledit.plain(text), target)  # refuse to write what the daemon would refuse to read
    tomledit.write_atomic(target, text)
    print(f"{args.kind} driver set to {args.name} in {target}.")
    print("Restart the daemon (dockyard daemon) for it to take effect.")
    if args.kind == "storage":
        print("Images and containers kept by another storage driver are not visible to this one.")
    return 0


def main(argv=None, host=None):
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from ..config import load
    from ..errors import ConfigError

    try:
        config = load(args.config if args.config and os.path.exists(args.config) else None)
    except ConfigError as exc:
        print(f"dockyard driver: {exc}", file=sys.stderr)
        return 1
    if host is None:  # run on its own (python -m dockyard.cli.driver): cli.main's choice
        from .hosts import resolve
        host = resolve(None, os.environ)[0]
    where = locate(host, args.data_root)
    return {"ls": cmd_ls, "info": cmd_info, "use": cmd_use}[args.cmd](args, config, where)


if __name__ == "__main__":
    sys.exit(main())
