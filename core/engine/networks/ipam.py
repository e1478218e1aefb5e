"""IP address management: subnets for networks, addresses for endpoints.

Allocations live in the store's ``ip_allocations`` table and change only inside
a write transaction, so two containers never get one address, also across
daemon restarts and crashes (a crash rolls an unfinished allocation back).  The
gateway is allocated to the owner ``"gateway"``; the network and broadcast
addresses are never handed out.

Subnets, as dockerd's IPAM: one a user names is refused only when it overlaps
another network of this daemon's (:func:`check_overlap`), not for a host route
(another daemon's bridge, a stale route); a pool picked here (:func:`pick_subnet`)
avoids the host's routes too, and two daemons do not pick at once
(:func:`pool_lock`).
"""

import contextlib
import fcntl
import ipaddress
import logging
import os
import socket
import struct

from ...errors import Conflict, InvalidParameter

SIOCGIFADDR, SIOCGIFNETMASK = 0x8915, 0x891B
#: held while a free pool is picked and given to its bridge (root's alone, as iptables' /run/xtables.lock)
POOL_LOCK = "/run/dockyard-ipam.lock"
log = logging.getLogger("dockyard.ipam")

# Docker's default address pools: 172.17-31.0.0/16, then 192.168.0-240.0/20
DEFAULT_POOLS = [ipaddress.ip_network(f"172.{n}.0.0/16") for n in range(17, 32)] + [
    ipaddress.ip_network(f"192.168.{n}.0/20") for n in range(0, 256, 16)]


def parse_subnet(text, what="subnet", ipv6=False):
    """An IPv4 subnet, or (``ipv6``: an ``EnableIPv6`` network's) an IPv4 or IPv6 one."""
    try:
        net = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise InvalidParameter(f"invalid {what} {text!r}: {exc}") from None
    if net.version != 4 and not ipv6:
        raise InvalidParameter(f"invalid {what} {text!r}: an IPv6 subnet needs an IPv6 network (EnableIPv6)")
    if net.prefixlen > net.max_prefixlen - 2:
        raise InvalidParameter(f"invalid {what} {text!r}: a /{net.prefixlen} has no room for containers")
    return net


def host_routes():
    """IPv4 networks of the host's routing table (``/proc/net/route``) with their
    interfaces, the default route excepted."""
    out = []
    try:
        with open("/proc/net/route") as fh:
            lines = fh.readlines()[1:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        dest, mask = int(f[1], 16), int(f[7], 16)
        if mask == 0:
            continue
        net = ipaddress.ip_network((ipaddress.IPv4Address(dest.to_bytes(4, "little")),
                                    bin(mask).count("1")), strict=False)
        out.append((net, f[0]))
    return out


def interface_address(name):
    """The IPv4 address of interface ``name`` as an ``IPv4Interface`` (its
    primary one, the first added, as dockerd reads docker0's), or None when there
    is no such interface or it has no IPv4 address."""
    request = struct.pack("16s16x", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            addr = fcntl.ioctl(s, SIOCGIFADDR, request)
            mask = fcntl.ioctl(s, SIOCGIFNETMASK, request)
        except OSError:  # ENODEV: no such interface; EADDRNOTAVAIL: no IPv4 address
            return None
    return ipaddress.IPv4Interface(f"{socket.inet_ntoa(addr[20:24])}/{socket.inet_ntoa(mask[20:24])}")


def pick_subnet(in_use):
    """The first default pool that overlaps no network in ``in_use`` and no host
    route (our own networks' routes are their subnets, in ``in_use`` anyway)."""
    taken = list(in_use) + [net for net, _dev in host_routes()]
    for pool in DEFAULT_POOLS:
        if not any(pool.overlaps(t) for t in taken):
            return pool
    raise Conflict("could not find an available, non-overlapping IPv4 address pool among the defaults "
                   "to assign to the network")


@contextlib.contextmanager
def pool_lock(path=POOL_LOCK):
    """Held from :func:`pick_subnet` until the network's bridge routes the pool:
    two daemons of one host picking at once would otherwise take the same pool,
    the host's routes showing neither yet.  Without the lock (``/run`` not
    writable: not root) the pick goes on unguarded."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        log.debug("no pool lock (%s): picking unguarded", exc)
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def check_overlap(subnet, in_use, name):
    for other_name, other in in_use:
        if subnet.version == other.version and subnet.overlaps(other):
            raise Conflict(f"invalid pool request: Pool overlaps with other one on this address space "
                           f"({subnet} and network {other_name!r} {other})")


def allocate(db, network_id, subnet, owner, wanted=None):
    """Allocate an address of ``subnet`` to ``owner`` in transaction ``db``:
    ``wanted`` (an address) or the lowest free one.  Returns the address.
    The same owner asking again gets its address back.  An owner has one
    address per network: its IPv6 one is :func:`v6` of it."""
    row = db.execute("SELECT address FROM ip_allocations WHERE network_id=? AND owner=?",
                     (network_id, owner)).fetchone()
    if row is not None:
        if wanted is None or row["address"] == wanted:
            return row["address"]
        db.execute("DELETE FROM ip_allocations WHERE network_id=? AND owner=?", (network_id, owner))  # another one now
    used = {r["address"] for r in db.execute("SELECT address FROM ip_allocations WHERE network_id=?",
                                              (network_id,))}
    net = ipaddress.ip_network(subnet)
    if wanted is not None:
        try:
            addr = ipaddress.ip_address(wanted)
        except ValueError:
            raise InvalidParameter(f"invalid IPv{net.version} address: {wanted}") from None
        if addr.version != net.version or addr not in net or addr in (net.network_address, net.broadcast_address):
            raise InvalidParameter(f"invalid address {wanted}: it is not in the network's subnet {net} "
                                   "or is its network or broadcast address")
        if wanted in used:
            raise Conflict(f"Address already in use: {wanted} (network {network_id[:12]})")
        choice = wanted
    else:
        choice = next((str(a) for a in net.hosts() if str(a) not in used), None)
        if choice is None:
            raise Conflict(f"no available IPv{net.version} addresses on this network's address pools: {net}")
    db.execute("INSERT INTO ip_allocations(network_id, address, owner) VALUES (?,?,?)",
               (network_id, choice, owner))
    return choice


def v6(owner):
    """The owner of ``owner``'s IPv6 address (the table holds one address per owner)."""
    return owner + "/v6"


def release(db, network_id, owner):
    """Release ``owner``'s addresses on the network (IPv4 and IPv6)."""
    db.execute("DELETE FROM ip_allocations WHERE network_id=? AND owner IN (?, ?)", (network_id, owner, v6(owner)))


def owners(db, network_id):
    return {r["owner"]: r["address"] for r in db.execute(
        "SELECT owner, address FROM ip_allocations WHERE network_id=?", (network_id,))}
