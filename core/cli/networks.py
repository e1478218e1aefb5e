"""``network create|ls|inspect|rm|connect|disconnect|prune`` and ``port``."""

from dockyard.cli import output
from dockyard.cli.common import call, pairs

NETWORK_FORMAT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
NETWORK_HEADERS = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE",
                   "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED AT"}


def register(sub):
    p = sub.add_parser("network", help="Manage networks", allow_abbrev=False)
    nsub = p.add_subparsers(dest="network_command", metavar="COMMAND", title="commands")
    c = nsub.add_parser("create", help="Create a network", allow_abbrev=False)
    c.add_argument("-d", "--driver", default="bridge", help='Driver to manage the Network (default "bridge")')
    c.add_argument("--subnet", help="Subnet in CIDR format that represents a network segment")
    c.add_argument("--gateway", help="IPv4 Gateway for the master subnet")
    c.add_argument("--internal", action="store_true", help="Restrict external access to the network")
    c.add_argument("--label", action="append", default=[], help="Set metadata on a network")
    c.add_argument("-o", "--opt", action="append", default=[], help="Set driver specific options")
    c.add_argument("name", metavar="NETWORK")
    c.set_defaults(func=cmd_create)
    ls = nsub.add_parser("ls", aliases=["list"], help="List networks", allow_abbrev=False)
    ls.add_argument("-q", "--quiet", action="store_true", help="Only display network IDs")
    ls.add_argument("--no-trunc", action="store_true", help="Do not truncate the output")
    ls.add_argument("-f", "--filter", action="append", default=[], help="Provide filter values")
    ls.add_argument("--format", help="Pretty-print networks using a Go template")
    ls.set_defaults(func=cmd_ls)
    i = nsub.add_parser("inspect", help="Display detailed information on one or more networks")
    i.add_argument("-f", "--format", help="Format the output using the given Go template")
    i.add_argument("-v", "--verbose", action="store_true", help="Verbose output for diagnostics")
    i.add_argument("networks", nargs="+", metavar="NETWORK")
    i.set_defaults(func=cmd_inspect)
    r = nsub.add_parser("rm", aliases=["remove"], help="Remove one or more networks")
    r.add_argument("networks", nargs="+", metavar="NETWORK")
    r.set_defaults(func=cmd_rm)
    for verb, fn in (("connect", cmd_connect), ("disconnect", cmd_disconnect)):
        x = nsub.add_parser(verb, help=f"{verb.capitalize()} a container {'to' if verb == 'connect' else 'from'} a network")
        if verb == "connect":
            x.add_argument("--alias", action="append", default=[], help="Add network-scoped alias for the container")
            x.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
        else:
            x.add_argument("-f", "--force", action="store_true", help="Force the container to disconnect")
        x.add_argument("network", metavar="NETWORK")
        x.add_argument("container", metavar="CONTAINER")
        x.set_defaults(func=fn)
    pr = nsub.add_parser("prune", help="Remove all unused networks")
    pr.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    pr.set_defaults(func=cmd_prune)
    p.set_defaults(func=lambda ctx, args: p.print_help() or 0)

    pp = sub.add_parser("port", help="List port mappings or a specific mapping for the container")
    pp.add_argument("container", metavar="CONTAINER")
    pp.add_argument("private", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    pp.set_defaults(func=cmd_port)


def cmd_create(ctx, args):
    try:
        body = {"Name": args.name, "Driver": args.driver, "Internal": args.internal, "CheckDuplicate": True,
                "Labels": pairs(args.label, "label"), "Options": pairs(args.opt, "option")}
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    if args.gateway and not args.subnet:
        output.error("Error: every ip-range or gateway must have a corresponding subnet")
        return 1
    if args.subnet:
        body["IPAM"] = {"Driver": "default", "Config": [{"Subnet": args.subnet, **(
            {"Gateway": args.gateway} if args.gateway else {})}]}
    created, rc = call(lambda: ctx.client.create_network(body))
    if created:
        print(created["Id"])
    return rc


def cmd_ls(ctx, args):
    try:
        filters = output.parse_filters(args.filter)
    except ValueError as exc:
        output.error(f"Error: {exc}")
        return 1
    nets, rc = call(lambda: ctx.client.networks(filters))
    if rc:
        return rc
    records = [{"ID": n["Id"] if args.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"],
                "Scope": n["Scope"], "Internal": str(n["Internal"]).lower(), "CreatedAt": n["Created"],
                **output.label_fields(n.get("Labels"))} for n in nets]
    return output.print_rows("{{.ID}}" if args.quiet else args.format or NETWORK_FORMAT, records, NETWORK_HEADERS,
                             "*network.networkContext")


def cmd_inspect(ctx, args):
    from dockyard.cli.common import inspect_each
    return inspect_each(args.networks, lambda name: ctx.client.inspect_network(name, verbose=args.verbose),
                        args.format)


def cmd_rm(ctx, args):
    rc = 0
    for name in args.networks:
        _, bad = call(lambda: ctx.client.remove_network(name))
        if not bad:
            print(name)
        rc = rc or bad
    return rc


def cmd_connect(ctx, args):
    return call(lambda: ctx.client.connect_network(args.network, args.container, args.alias, args.ip))[1]


def cmd_disconnect(ctx, args):
    return call(lambda: ctx.client.disconnect_network(args.network, args.container, args.force))[1]


def cmd_prune(ctx, args):
    got, rc = call(ctx.client.prune_networks)
    if got and got.get("NetworksDeleted"):
        print("Deleted Networks:\n" + "\n".join(got["NetworksDeleted"]))
    return rc


def cmd_port(ctx, args):
    info, rc = call(lambda: ctx.client.inspect_container(args.container))
    if rc:
        return rc
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    want = args.private
    if want and "/" not in want:
        want += "/tcp"
    lines = []
    for key, binds in sorted(ports.items()):
        if want and key != want:
            continue
        for b in binds or ():
            addr = f"{b['HostIp']}:{b['HostPort']}"
            lines.append(addr if want else f"{key} -> {addr}")
    if want and not lines:
        output.error(f"Error: No public port '{want}' published for {args.container}")
        return 1
    if lines:
        print("\n".join(lines))
    return 0
