"""``run``/``create`` network flags: -p, -P, --ip, --network-alias (docker's syntax)."""

import re

PUBLISH_RE = re.compile(r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}):)?(?:(?P<host>\d*(?:-\d+)?):)?"
                        r"(?P<ctr>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp))?$")


def add_flags(p):
    p.add_argument("-p", "--publish", action="append", default=[], metavar="list",
                   help="Publish a container's port(s) to the host ([ip:]hostPort:containerPort[/proto])")
    p.add_argument("-P", "--publish-all", action="store_true", help="Publish all exposed ports to random ports")
    p.add_argument("--ip", help="IPv4 address (e.g., 172.30.100.104)")
    p.add_argument("--network-alias", action="append", default=[], metavar="list",
                   help="Add network-scoped alias for the container")


def _range(text):
    lo, _, hi = text.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if not 0 < lo <= hi < 65536:
        raise ValueError
    return list(range(lo, hi + 1))


def parse_publish(spec):
    """``8080:80/tcp`` -> ``[("80/tcp", {"HostIp", "HostPort"})]`` (ranges expand)."""
    m = PUBLISH_RE.match(spec)
    try:
        if not m:
            raise ValueError
        ctr = _range(m.group("ctr"))
        host = _range(m.group("host")) if m.group("host") else [None] * len(ctr)
        if len(host) != len(ctr):
            raise ValueError
    except ValueError:
        raise ValueError(f'invalid argument "{spec}" for "-p, --publish" flag: invalid port specification') from None
    proto = m.group("proto") or "tcp"
    return [(f"{c}/{proto}", {"HostIp": m.group("ip") or "", "HostPort": str(h) if h else ""})
            for c, h in zip(ctr, host)]


def apply(args, body):
    """Fill the create ``body`` (Config, HostConfig, NetworkingConfig) from the flags."""
    host = body["HostConfig"]
    bindings = {}
    for spec in args.publish:
        for key, bind in parse_publish(spec):
            bindings.setdefault(key, []).append(bind)
    if bindings:
        host["PortBindings"] = bindings
        body["ExposedPorts"] = {**(body.get("ExposedPorts") or {}), **{k: {} for k in bindings}}
    if args.publish_all:
        host["PublishAllPorts"] = True
    if args.ip or args.network_alias:
        net = args.network or "default"
        cfg = {}
        if args.ip:
            cfg["IPAMConfig"] = {"IPv4Address": args.ip}
        if args.network_alias:
            cfg["Aliases"] = list(args.network_alias)
        body["NetworkingConfig"] = {"EndpointsConfig": {net: cfg}}
    return body
