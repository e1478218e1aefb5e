#!/usr/bin/env python3
"""What networking costs, side by side with real peers, in one run:

    sudo .venv/bin/python bench/net_latency.py --runs 30 [--json FILE]

1. **attach: netns ready -> first packet**.  Dockyard's ``bridge`` network driver
   loaded through pluggy on a private bridge and nft table, one network created
   once; per run a namespace is made with ``dockyard.engine.networks.netns.create`` (untimed),
   then ``network_attach`` + the first ICMP echo reply from the gateway, probed
   from inside the namespace, are timed; detach and namespace deletion are not.
   The same on the same bridge with plain ``ip`` commands (a floor) and with
   pyroute2 done naively (veth in the host, peer moved, ``IPRoute(netns=...)``).
   The notes add the attach call alone and how often the first ARP request was
   lost (see :mod:`netprobe`: a probe sent too soon after link-up waits ~1 s).
2. **``run --rm busybox true`` on the default bridge**: ``dockyard run --rm``
   (default network ``bridge``) against ``podman run --rm`` (podman's default
   network: netavark or CNI, whichever it picks; said in the notes) and
   ``docker run --rm`` on Docker's default bridge (docker0 on a private ``--bip``
   with its iptables rules), then the same three with ``--network none``, so that
   the difference is the network's share.

Every way gets one unmeasured warm-up, then they take turns (round robin) for
``--runs`` rounds.  Tables: median and p90 in ms, and the median over the
section's first row (Dockyard).  What cannot run is ``n/a: <reason>``.

Everything lives in one workspace and is removed at the end, failure or not:
namespaces, veths, the driver's and the daemon's bridges and nft tables, docker0
and dockerd's iptables chains, podman's bridge and chains.  Then the host's links,
namespaces, nft ruleset, iptables rules and forwarding sysctls are compared with
what they were before the run; each difference is printed (ours, or — other
sessions share this host — someone else's).  Needs root.
"""

import argparse
import ipaddress
import random
import statistics
import sys

import common
import engines
import hostnet
import netprobe
from common import NotAvailable, need, run_cmd

ATTACH = "attach: netns ready -> network_attach + first ICMP echo reply from the gateway"
RUN = "CLI: run --rm busybox true, default bridge network"
NONE = "CLI: run --rm --network none busybox true (for the network's share)"
DOCKER_BIP = "10.253.0.1/24"


def free_subnet(prefix=24, avoid=()):
    """A 10.B.0.0/<prefix> that overlaps no host route (nor ``avoid``)."""
    taken = [ipaddress.ip_network(line.split()[0], strict=False)
             for line in run_cmd(["ip", "-4", "route", "show", "table", "main"]).stdout.splitlines()
             if line.split() and line.split()[0] != "default"]
    taken += [ipaddress.ip_network(a, strict=False) for a in avoid]
    free = [b for b in range(64, 250)
            if not any(t.overlaps(ipaddress.ip_network(f"10.{b}.0.0/{prefix}")) for t in taken)]
    if not free:
        raise NotAvailable("no free 10.B.0.0 subnet on this host")
    return f"10.{random.choice(free)}.0.0/{prefix}"


class Bench:
    def __init__(self, args, ws, extra=None):
        self.args, self.ws = args, ws
        self.notes, self.results = [], {}
        extra = {} if extra is None else extra  # written to --json with the results
        self.probes = extra.setdefault("attach_probes_sent", {})  # attach way -> probes sent per run
        self.attach_only = extra.setdefault("attach_call_ms", {})  # attach way -> ms of the attach call per run
        self.sections = []  # (title, [(label, prepare)]); prepare() warms up and returns fn
        self.peers = []  # engines whose clean-up removals are reported
        self.before = hostnet.snapshot()
        ws.on_cleanup("comparing the host's network with before the run", self.compare)  # runs last

    def note(self, text):
        if text not in self.notes:
            self.notes.append(text)

    # --- the host afterwards ------------------------------------------------------------
    def ours(self, text):
        """Whether a changed name or rule is this run's (or its peers')."""
        marks = (self.ws.token, "docker0", "DOCKER", "podman", "NETAVARK", "CNI-", "cni-")
        subnets = [s for s in getattr(self, "subnets", ()) if s]
        return any(m in text for m in marks + tuple(subnets))

    def compare(self):
        for engine in self.peers:
            if engine.removed:
                self.note(f"cleanup after {type(engine).__name__.lower()}: removed " + "; ".join(engine.removed))
        mine, others = hostnet.differences(self.before, hostnet.snapshot(), self.ours)
        for line in mine:
            print(f"host network differs from before the run: {line}", file=sys.stderr)
            self.note(f"LEFT BEHIND: {line}")
        if not mine:
            self.note("host network after the run: links, /run/netns, nft ruleset, iptables/ip6tables rules and "
                      "forwarding sysctls as before the run, but for other sessions' changes"
                      + (f" ({len(others)}: " + "; ".join(others[:6]) + (" ..." if len(others) > 6 else "") + ")"
                         if others else " (none)"))
        elif others:
            self.note(f"also changed meanwhile, not by this run: {'; '.join(others[:6])}")

    # --- part 1 -------------------------------------------------------------------------
    def attach_ways(self):
        labels = ("dockyard bridge driver", "ip commands (floor)", "pyroute2, naive")
        try:
            subnet = free_subnet(24, avoid=[DOCKER_BIP, "10.88.0.0/16"])
            lab = netprobe.Lab(self.ws, subnet, "a")
            bridge, table = f"dyb{self.ws.token}a", f"dockyard_bench_{self.ws.token}_a"
            driver = netprobe.DriverWay(self.ws, lab, bridge, table)
        except NotAvailable as exc:
            return [(label, f"n/a: {exc}") for label in labels]
        self.subnets = [subnet]
        self.note(f"attach: private bridge {bridge} on {subnet} (gateway {lab.gateway}), no other port on it, "
                  f"nft table ip {table}; probe: ICMP echo every 2 ms from a raw socket made inside the namespace")

        def way(make):
            def prepare():
                w = make()
                lab.measure(w)
                return lambda: lab.measure(w)
            return prepare

        ip = netprobe.IpWay(lab, bridge)
        self.note("ip commands: " + "; ".join(" ".join(c) for c in ip.commands("NS", "ADDR", "MAC", "VETH")))
        return [(labels[0], way(lambda: driver)), (labels[1], way(lambda: ip)),
                (labels[2], way(lambda: self.pyroute2(lab, bridge)))]

    def pyroute2(self, lab, bridge):
        w = netprobe.Pyroute2Way(lab, bridge)
        self.note(f"pyroute2 {w.version}: IPRoute() and IPRoute(netns=NAME) opened per run")
        return w

    # --- part 2 -------------------------------------------------------------------------
    def dockyard(self):
        daemon = engines.DockyardDaemon(self.ws)
        try:
            daemon.start(self.tar)
            route = run_cmd(daemon.cli("run", "--rm", "busybox", "ip", "-4", "route")).stdout
        except NotAvailable as exc:
            return f"n/a: {exc}"
        self.note(f"dockyard: daemon with {daemon.drivers()}, --bridge {daemon.bridge}, nft table "
                  f"{daemon.nft_table}; inside: {' | '.join(route.strip().splitlines())}")
        return daemon

    def from_dockyard(self, daemon, *flags):
        def prepare():
            if isinstance(daemon, str):
                raise NotAvailable(daemon[len("n/a: "):])
            cmd = daemon.cli("run", "--rm", *flags, "busybox", "true")
            run_cmd(cmd)
            return lambda: run_cmd(cmd)
        return prepare

    def podman(self):
        try:
            engine = engines.Podman(self.ws, network=True).start(self.tar)
            self.peers.append(engine)
            backend, subnet = engine.prepare_network()
            self.subnets.append(subnet)
            route = engine.run("run", "--rm", *engine.run_args(network=None), engine.image, "ip", "-4", "route")
        except NotAvailable as exc:
            return f"n/a: {exc}"
        self.note(f"podman: {common.version([need('podman'), '--version'])}, network backend {backend} "
                  f"({common.version([f'/usr/lib/podman/{backend}', '--version'])}), default network 'podman' "
                  f"on {subnet}; runc, cgroupfs, private roots and --network-config-dir; inside: "
                  f"{' | '.join(route.splitlines())}")
        return engine

    def from_podman(self, engine, network):
        def prepare():
            if isinstance(engine, str):
                raise NotAvailable(engine[len("n/a: "):])
            cmd = engine.cli("run", "--rm", *engine.run_args(network=network), engine.image, "true")
            run_cmd(cmd)
            return lambda: run_cmd(cmd)
        return prepare

    def docker(self):
        try:
            engine = engines.Dockerd(self.ws, bip=DOCKER_BIP)
            self.peers.append(engine)
            self.subnets.append(str(ipaddress.ip_interface(DOCKER_BIP).network))
            engine.start(self.tar)
            route = engine.run("run", "--rm", engine.image, "ip", "-4", "route")
        except NotAvailable as exc:
            return f"n/a: {exc}"
        self.note(f"docker: CLI {common.version([need('docker'), '--version'])}, dockerd "
                  f"{engine.run('version', '--format', '{{.Server.Version}}')} (private roots, docker0 on --bip "
                  f"{DOCKER_BIP}, iptables on, ip6tables off); inside: {' | '.join(route.splitlines())}")
        return engine

    def from_docker(self, engine, *flags):
        def prepare():
            if isinstance(engine, str):
                raise NotAvailable(engine[len("n/a: "):])
            cmd = engine.cli("run", "--rm", *flags, engine.image, "true")
            run_cmd(cmd, env=engine.env)
            return lambda: run_cmd(cmd, env=engine.env)
        return prepare

    # --- the run --------------------------------------------------------------------------
    def plan(self):
        self.subnets = []
        self.sections.append((ATTACH, self.attach_ways()))
        self.tar, _ = self.ws.busybox()
        dockyard, podman, docker = self.dockyard(), self.podman(), self.docker()
        self.sections.append((RUN, [("dockyard run --rm", self.from_dockyard(dockyard)),
                                    ("podman run --rm", self.from_podman(podman, None)),
                                    ("docker run --rm", self.from_docker(docker))]))
        self.sections.append((NONE, [("dockyard run --rm", self.from_dockyard(dockyard, "--network", "none")),
                                     ("podman run --rm", self.from_podman(podman, "none")),
                                     ("docker run --rm", self.from_docker(docker, "--network", "none"))]))

    def run(self):
        self.notes.append(f"before: {common.load_line()}")
        self.plan()

        def value_of(label, value, ms):
            if isinstance(value, tuple):  # an attach: (ms, probes sent, ms of the attach call)
                self.probes.setdefault(label, []).append(value[1])
                self.attach_only.setdefault(label, []).append(value[2])
                return value[0]
            return ms

        self.results = common.measure(self.sections, self.args.runs, value_of)
        for label, sent in self.probes.items():
            alone = self.attach_only[label]
            self.note(f"{label}: the attach call alone: median {statistics.median(alone):.2f} ms, p90 "
                      f"{common.percentile(alone, 90):.2f}; probes sent before the first reply (one per 2 ms): "
                      f"median {statistics.median(sent):g}, max {max(sent)}; runs whose first ARP request was "
                      f"lost (reply after the 1 s ARP retry): {sum(n > 100 for n in sent)} of {len(sent)}")
        self.notes.append(f"after: {common.load_line()}")

    def table(self):
        sections = common.ratio_sections(self.results, 2)  # x: over Dockyard in the section
        title = (f"network latency: {self.args.runs} runs each after one warm-up, round robin; "
                 "x dockyard = median / Dockyard's median in the same section")
        return common.format_table(title, ("way", "median ms", "p90 ms", "x dockyard"), sections)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=30, help="measured runs per way (default 30)")
    p.add_argument("--json", metavar="FILE", help="also write the raw numbers (ms) as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    extra = {"runs": args.runs}
    return common.run_bench("net_latency.py", args, lambda a, ws: Bench(a, ws, extra), f"{args.runs} runs each", extra)


if __name__ == "__main__":
    sys.exit(main())
