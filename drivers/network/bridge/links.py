"""The bridge driver's kernel links, through pyroute2 (netlink).

pyroute2 0.9 keeps a netlink socket (and an event loop) *per thread*, so the
host's socket lives in one worker thread of its own (:class:`Host`): every host
operation is handed to that thread, which also serialises them.  Work inside a
container's network namespace runs in a short-lived thread that ``setns()``\\ s
into it and opens a plain ``IPRoute()`` there (:func:`in_netns`): about 1 ms,
where ``IPRoute(netns=path)`` forks a helper process for its socket (~5 ms).

This module is the netlink boundary: :class:`Host` and :func:`in_netns` turn
``NetlinkError``/``OSError`` into :class:`~dockyard.errors.NetworkError` carrying
the caller's context; the functions below raise the raw errors.
"""

import concurrent.futures
import ctypes
import errno
import fcntl
import os
import socket
import threading

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from dockyard.errors import NetworkError

CLONE_NEWNET = 0x40000000
IFA_F_NODAD = 0x02  # an address usable at once: no duplicate address detection (dockerd's too)
NS_GET_NSTYPE = 0xB703  # ioctl(2) on a namespace file: its CLONE_NEW* type
_libc = ctypes.CDLL(None, use_errno=True)


def _reason(exc):
    if isinstance(exc, NetlinkError):
        return os.strerror(exc.code) if exc.code else str(exc)
    return exc.strerror or str(exc)


class Host:
    """The host's netlink socket, used from its own single thread."""

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="dy-bridge-netlink")
        self._ipr = None

    def call(self, context, fn, *args):
        """Run ``fn(ipr, *args)`` in the netlink thread; errors name ``context``."""
        return self._pool.submit(self._run, context, fn, args).result()

    def _run(self, context, fn, args):
        try:
            if self._ipr is None:
                self._ipr = IPRoute(groups=0)  # no broadcasts: nobody would read them
            return fn(self._ipr, *args)
        except NetlinkError as e:
            raise NetworkError(f"{context}: {_reason(e)}") from e
        except OSError as e:  # the socket itself may be broken: the next call opens a new one
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
            raise NetworkError(f"{context}: {_reason(e)}") from e

    def close(self):
        def shut():
            if self._ipr is not None:
                self._ipr.close()
                self._ipr = None
        self._pool.submit(shut).result()
        self._pool.shutdown()


def in_netns(context, fd, fn, *args):
    """Run ``fn(ipr, *args)`` with an ``IPRoute`` inside the network namespace open
    as ``fd``, in a thread of its own (``setns`` changes only the calling thread)."""
    box = {}

    def run():
        try:
            if _libc.setns(fd, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, "not a network namespace" if err == errno.EINVAL else os.strerror(err))
            with IPRoute(groups=0) as ipr:
                box["result"] = fn(ipr, *args)
        except BaseException as e:  # handed to the caller's thread
            box["error"] = e

    thread = threading.Thread(target=run, name="dy-bridge-netns", daemon=True)
    thread.start()
    thread.join()
    err = box.get("error")
    if isinstance(err, (NetlinkError, OSError)):
        raise NetworkError(f"{context}: {_reason(err)}") from err
    if err is not None:
        raise err
    return box["result"]


def is_netns(fd):
    """Whether ``fd`` is open on a network namespace."""
    try:
        return fcntl.ioctl(fd, NS_GET_NSTYPE) == CLONE_NEWNET
    except OSError:
        return False


def sysctl(path, value):
    """Write ``/proc/sys/<path>``."""
    with open(f"/proc/sys/{path}", "w") as f:
        f.write(str(value))


# -- host side (run through Host.call) ---------------------------------------------

def index(ipr, name):
    """The ifindex of link ``name``, or None."""
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def kind(ipr, idx):
    link = ipr.get_links(idx)[0]
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def ensure_bridge(ipr, name, gateway, mtu, gateway6=None):
    """Make (or complete) bridge ``name`` with address ``gateway`` (an
    ``IPv4Interface``), ``mtu``, no IPv6 and up; return True if this call
    created it.  IPv6 stays off on the bridge of a network without IPv6: it would
    give the host a link-local address there, through which a container (of an
    internal network too) reaches every host service bound on ``::``.  An
    ``EnableIPv6`` network's bridge (``gateway6``, an ``IPv6Interface``) has IPv6
    and that address, and the host forwards IPv6 (as dockerd sets it)."""
    made = False
    idx = index(ipr, name)
    if idx is None:
        ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        idx, made = index(ipr, name), True
    elif kind(ipr, idx) != "bridge":
        raise OSError(errno.EEXIST, f"interface {name} exists and is not a bridge")
    try:
        if os.path.isdir(f"/proc/sys/net/ipv6/conf/{name}"):  # before it is up: never an address
            sysctl(f"net/ipv6/conf/{name}/disable_ipv6", 0 if gateway6 is not None else 1)
        have = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"]) for a in ipr.get_addr(family=socket.AF_INET, index=idx)}
        if (str(gateway.ip), gateway.network.prefixlen) not in have:
            ipr.addr("add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
        if gateway6 is not None:
            have6 = {(a.get_attr("IFA_ADDRESS"), a["prefixlen"])
                     for a in ipr.get_addr(family=socket.AF_INET6, index=idx)}
            if (str(gateway6.ip), gateway6.network.prefixlen) not in have6:
                ipr.addr("add", index=idx, address=str(gateway6.ip), prefixlen=gateway6.network.prefixlen,
                         family=socket.AF_INET6, flags=IFA_F_NODAD)
            sysctl("net/ipv6/conf/all/forwarding", 1)
        ipr.link("set", index=idx, mtu=mtu, state="up")
        # DNAT of 127.0.0.1 towards the bridge (and its replies) needs route_localnet
        sysctl(f"net/ipv4/conf/{name}/route_localnet", 1)
        sysctl("net/ipv4/ip_forward", 1)
    except BaseException:
        if made:
            ipr.link("del", index=idx)
        raise
    return made


def delete_address(ipr, name, address):
    """Remove ``address`` (an ``IPv4Interface``) from link ``name``; True if it was there."""
    idx = index(ipr, name)
    if idx is None:
        return False
    try:
        ipr.addr("del", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    except NetlinkError as e:
        if e.code not in (errno.EADDRNOTAVAIL, errno.ENODEV):
            raise
        return False
    return True


def delete_link(ipr, name):
    """Delete link ``name``; True if it existed."""
    idx = index(ipr, name)
    if idx is None:
        return False
    try:
        ipr.link("del", index=idx)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise
    return True


def ports_of(ipr, bridge):
    """Names of the links enslaved to ``bridge``."""
    idx = index(ipr, bridge)
    if idx is None:
        return []
    return [link.get_attr("IFLA_IFNAME") for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == idx]


def create_veth(ipr, name, bridge, mtu, netns_fd, peer, mac):
    """One message: veth ``name`` on ``bridge`` and up, its peer ``peer`` (with
    ``mac``) made directly inside the namespace ``netns_fd``.  False (and
    nothing done) if ``name`` exists already."""
    br = index(ipr, bridge)
    if br is None:
        raise OSError(errno.ENODEV, f"bridge {bridge} does not exist (is the network created?)")
    try:
        ipr.link("add", ifname=name, kind="veth", master=br, state="up", mtu=mtu,
                 peer={"ifname": peer, "net_ns_fd": netns_fd, "address": mac, "mtu": mtu})
    except NetlinkError as e:
        if e.code == errno.EEXIST and index(ipr, name) is not None:
            return False
        raise
    return True


# -- inside the container's namespace (run through in_netns) -----------------------

def find_peer(ipr, host_index):
    """The interface whose veth peer is host ifindex ``host_index``, as
    ``(name, [IPv4 "addr/len"], mac, mtu)``, or None."""
    for link in ipr.get_links():
        if link.get_attr("IFLA_LINK") == host_index and link.get_attr("IFLA_LINK_NETNSID") is not None:
            addrs = [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                     for a in ipr.get_addr(family=socket.AF_INET, index=link["index"])]
            return (link.get_attr("IFLA_IFNAME"), addrs, link.get_attr("IFLA_ADDRESS"), link.get_attr("IFLA_MTU"))
    return None


def configure_peer(ipr, peer, address, gateway, extra=(), address6=None, gateway6=None):
    """Rename ``peer`` to the first free ``ethN``, give it ``address`` (an
    ``IPv4Interface``), the ``extra`` ones (link-local) and ``address6`` (an
    ``IPv6Interface``, routing by default via ``gateway6`` as below), bring it and ``lo`` up, and route by default via
    ``gateway`` unless the namespace has a default route already (the first
    network attached keeps it) or ``gateway`` is None (an internal network:
    its subnet only).  Return the interface name."""
    links = {link.get_attr("IFLA_IFNAME"): link for link in ipr.get_links()}
    n = 0
    while f"eth{n}" in links:
        n += 1
    ifname, idx = f"eth{n}", links[peer]["index"]
    ipr.link("set", index=idx, ifname=ifname, state="up")
    for a in (address, *extra):
        ipr.addr("add", index=idx, address=str(a.ip), prefixlen=a.network.prefixlen)
    if address6 is not None:
        ipr.addr("add", index=idx, address=str(address6.ip), prefixlen=address6.network.prefixlen,
                 family=socket.AF_INET6, flags=IFA_F_NODAD)
        if gateway6 is not None:
            try:
                ipr.route("add", dst="::/0", gateway=str(gateway6), oif=idx, family=socket.AF_INET6)
            except NetlinkError as e:
                if e.code != errno.EEXIST:
                    raise
    lo = links.get("lo")
    if lo is not None and not lo["flags"] & 1:
        ipr.link("set", index=lo["index"], state="up")
    if gateway is None:
        return ifname
    try:  # cheaper than reading the routes first
        ipr.route("add", dst="0.0.0.0/0", gateway=str(gateway), oif=idx)
    except NetlinkError as e:
        if e.code != errno.EEXIST:
            raise
    return ifname
