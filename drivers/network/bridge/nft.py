"""A daemon's own nftables table (family ``ip``), driven through the ``nft`` CLI;
its twin of the same name in family ``ip6`` holds the IPv6 rules of the
``EnableIPv6`` networks (the same chains and rules with ``ip6`` matches, no
127.0.0.0/8 ones; it exists while such a network does).

The table is made on the first network and deleted with the last one; every
change is one ``nft -f -`` transaction (all or nothing), and what exists is read
back with ``nft -j list table``.  The table holds only base chains, so there is
no static rule to keep in step::

    set bridges      the bridges of Dockyard's networks (ifname)
    isolation        filter/forward, priority filter - 1: drops between two of
                     our bridges (Docker's DOCKER-ISOLATION) and, for an
                     internal network, between its bridge and anything else
    forward          filter/forward, priority filter: into a bridge only replies
                     and published (DNAT-ed) traffic, out of it anything
    input            filter/input, priority filter: what a container may not
                     open on the host itself: 127.0.0.0/8 (every bridge has
                     route_localnet, for ports published on 127.0.0.1, so a
                     container that crafts frames with CAP_NET_RAW would
                     otherwise reach the host's loopback-only services: the
                     CVE-2020-8558 class) and, from an internal network, every
                     host address but its own gateway (the network has no
                     default route, but crafted frames need none); replies to
                     connections the host opened pass
    prerouting       nat, dstnat: published ports, traffic from outside
    output           nat, -100: published ports, traffic from the host itself
    postrouting      nat, srcnat: masquerade of each subnet going out, of
                     127.0.0.0/8 towards a bridge (publishing on 127.0.0.1) and
                     of hairpin traffic (a container reaching a port published
                     on its own bridge)

Every rule carries a comment saying whose it is: ``net <bridge>`` for a
network's rules, ``port <bridge> <endpoint tag>`` for an endpoint's published
ports; deleting is by handle, found by that comment.  Chain policies are
``accept``: the host's own forwarding outside our bridges is left alone.
"""

import json
import subprocess
import threading

from dockyard.errors import NetworkError

FAMILY = "ip"
SKELETON = """\
add table {f} {t}
add set {f} {t} bridges {{ type ifname; }}
add chain {f} {t} isolation {{ type filter hook forward priority filter - 1; policy accept; }}
add chain {f} {t} forward {{ type filter hook forward priority filter; policy accept; }}
add chain {f} {t} input {{ type filter hook input priority filter; policy accept; }}
add chain {f} {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}
add chain {f} {t} output {{ type nat hook output priority -100; policy accept; }}
add chain {f} {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}
"""

#: a packet that is no reply (nor ICMP error) of a connection the host opened:
#: one a container started
NOT_A_REPLY = "ct state != { established, related }"


def network_rules(bridge, subnet, gateway, internal, masquerade):
    """``(chain, rule)`` pairs of one network (without the comment); ``subnet``
    and ``gateway`` are IPv6 ones for the ``ip6`` table (no 127.0.0.0/8 there: the
    kernel routes no packet to ``::1`` from outside, route_localnet or not)."""
    b = f'"{bridge}"'
    ip = "ip6" if ":" in str(subnet) else "ip"
    if internal:  # every address of the host's (127.0.0.0/8 too) but the gateway
        return [("isolation", f"iifname {b} oifname != {b} drop"),
                ("isolation", f"oifname {b} iifname != {b} drop"),
                ("input", f"iifname {b} fib daddr type local {ip} daddr != {gateway} {NOT_A_REPLY} drop")]
    rules = [
        ("isolation", f"iifname {b} oifname @bridges oifname != {b} drop"),
        ("forward", f"oifname {b} ct state established,related accept"),
        ("forward", f"oifname {b} ct status dnat accept"),
        ("forward", f"iifname {b} accept"),
        ("forward", f"oifname {b} drop"),
    ]
    if ip == "ip":
        rules.append(("input", f"iifname {b} ip daddr 127.0.0.0/8 {NOT_A_REPLY} drop"))
    if masquerade:
        rules.append(("postrouting", f"{ip} saddr {subnet} oifname != {b} masquerade"))
    if ip == "ip":
        rules.append(("postrouting", f"oifname {b} ip saddr 127.0.0.0/8 masquerade"))
    rules.append(("postrouting", f"oifname {b} {ip} saddr {subnet} ct status dnat masquerade"))
    return rules


def port_rules(ports, container_ip):
    """``(chain, rule)`` pairs publishing ``ports`` (normalised dicts) of the
    container at ``container_ip`` (an IPv6 one: the host's IPv6 addresses but
    ``::1``, which cannot be DNAT-ed out of the host)."""
    rules = []
    v6 = ":" in str(container_ip)
    for p in ports:
        if v6:
            match = "fib daddr type local ip6 daddr != ::1"
            target = f"[{container_ip}]:{p['container_port']}"
        else:
            match = "fib daddr type local" if p["host_ip"] == "0.0.0.0" else f"ip daddr {p['host_ip']}"
            target = f"{container_ip}:{p['container_port']}"
        rule = f"{match} {p['proto']} dport {p['host_port']} dnat to {target}"
        rules += [("prerouting", rule), ("output", rule)]
    return rules


class Table:
    """One nft table of Dockyard's; methods are serialised by a lock, so a read
    of the table and the transaction built from it do not interleave."""

    def __init__(self, name, family=FAMILY):
        self.name = name
        self.family = family  #: ``ip``, or ``ip6`` for the IPv6 rules of EnableIPv6 networks
        self._lock = threading.Lock()

    # -- the nft boundary --------------------------------------------------------

    @staticmethod
    def _call(context, args, script=None):
        try:
            return subprocess.run(["nft", *args], input=script, capture_output=True, text=True)
        except FileNotFoundError as e:
            raise NetworkError(f"{context}: nft is not installed (apt-get install nftables)") from e

    def _nft(self, context, args, script=None):
        done = self._call(context, args, script)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise NetworkError(f"{context}: nft: {' / '.join(lines[:3]) or 'exit status %d' % done.returncode}")
        return done.stdout

    def _state(self, context):
        """``(bridges, rules)`` of the table (``rules``: ``(chain, handle,
        comment)``), or None when it does not exist."""
        done = self._call(context, ["-j", "list", "table", self.family, self.name])
        if done.returncode != 0:
            if "No such file or directory" in done.stderr:
                return None
            raise NetworkError(f"{context}: nft: {done.stderr.strip()}")
        bridges, rules = set(), []
        for item in json.loads(done.stdout)["nftables"]:
            if "set" in item and item["set"]["name"] == "bridges":
                bridges = set(item["set"].get("elem", []))
            elif "rule" in item:
                r = item["rule"]
                rules.append((r["chain"], r["handle"], r.get("comment", "")))
        return bridges, rules

    def _deletes(self, rules, match):
        return "".join(f"delete rule {self.family} {self.name} {chain} handle {handle}\n"
                       for chain, handle, comment in rules if match(comment))

    def _adds(self, pairs, comment):
        return "".join(f'add rule {self.family} {self.name} {chain} {rule} comment "{comment}"\n'
                       for chain, rule in pairs)

    # -- networks ----------------------------------------------------------------

    def add_network(self, context, bridge, subnet, gateway, internal, masquerade):
        """Install (or re-install, replacing) the rules of one network
        (``gateway``: its address on the bridge)."""
        tag = f"net {bridge}"
        with self._lock:
            state = self._state(context)
            script = SKELETON.format(f=self.family, t=self.name)
            if state is not None:
                script += self._deletes(state[1], lambda c: c == tag)
            script += f'add element {self.family} {self.name} bridges {{ "{bridge}" }}\n'
            script += self._adds(network_rules(bridge, subnet, gateway, internal, masquerade), tag)
            self._nft(context, ["-f", "-"], script)

    def remove_network(self, context, bridge):
        """Remove a network's rules and its endpoints' ports; the whole table
        when no other network is left.  Idempotent."""
        with self._lock:
            state = self._state(context)
            if state is None:
                return
            bridges, rules = state
            if not bridges - {bridge}:
                script = f"delete table {self.family} {self.name}\n"
            else:
                script = self._deletes(rules, lambda c: c == f"net {bridge}" or c.startswith(f"port {bridge} "))
                if bridge in bridges:
                    script += f'delete element {self.family} {self.name} bridges {{ "{bridge}" }}\n'
            if script:
                self._nft(context, ["-f", "-"], script)

    # -- published ports ---------------------------------------------------------

    def set_ports(self, context, bridge, tag, ports, container_ip):
        """Make ``ports`` the published ports of endpoint ``tag`` (replacing any)."""
        comment = f"port {bridge} {tag}"
        with self._lock:
            state = self._state(context)
            if state is None or bridge not in state[0]:
                raise NetworkError(f"{context}: the network's rules are missing (is it created?)")
            script = self._deletes(state[1], lambda c: c == comment)
            script += self._adds(port_rules(ports, container_ip), comment)
            if script:
                self._nft(context, ["-f", "-"], script)

    def remove_ports(self, context, bridge, tag):
        """Remove the published ports of endpoint ``tag``.  Idempotent."""
        comment = f"port {bridge} {tag}"
        with self._lock:
            state = self._state(context)
            script = self._deletes(state[1], lambda c: c == comment) if state else ""
            if script:
                self._nft(context, ["-f", "-"], script)

    # -- reading -----------------------------------------------------------------

    def listing(self):
        """``nft list table`` text, or "" when there is no table."""
        done = self._call(f"nft table {self.name}", ["list", "table", self.family, self.name])
        return done.stdout if done.returncode == 0 else ""
