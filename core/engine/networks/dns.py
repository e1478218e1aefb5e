"""Docker's embedded DNS server: 127.0.0.11:53 inside each container's netns.

As in Docker, nothing listens on the host: for each container on a user-defined
network a short-lived thread joins the container's network namespace (membership is
per thread), binds a UDP and a TCP socket to 127.0.0.11:53 there and exits; the
sockets stay in that namespace.  One background thread runs an event loop of its
own (asyncio: a selector underneath) that serves them all, never the daemon's loop.
Names that ``lookup`` knows are answered here; the rest are forwarded from the host
namespace (so a loopback upstream such as 127.0.0.53 works) over the client's
protocol, each query on a socket of its own, so no query waits for another's
upstream.  Import this module lazily (it pulls in dnslib); the CLI never does.
"""

import asyncio
import ctypes
import errno
import fcntl
import logging
import os
import random
import socket
import struct
import threading

from dnslib import AAAA, QTYPE, RCODE, RR, A, DNSRecord

log = logging.getLogger("dockyard.dns")

ADDRESS = ("127.0.0.11", 53)
TTL = 600               # Docker's TTL for container names
FORWARD_TIMEOUT = 2.0   # per forwarded query, all upstreams together; then SERVFAIL
TCP_IDLE = 10.0         # a client's TCP connection idle this long is closed
MAX_PENDING = 128       # forwarded queries in flight per container; beyond: SERVFAIL
MAX_TCP = 16            # client TCP connections per container
CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def answer(data, lookup, key, internal=False, udp=True):
    """The wire reply to query ``data`` for container ``key``, or None: forward it.

    The name goes to ``lookup(key, name)`` in lower case without its trailing dot.
    Addresses: an A query gets the IPv4 ones, an AAAA query the IPv6 ones (an
    ``EnableIPv6`` network's; TTL 600, shuffled for round robin as Docker does),
    any other type an empty NOERROR, so an AAAA for a container is never
    forwarded.  []: NXDOMAIN.  None (not ours): forward, or SERVFAIL if ``internal``
    (no way out; Docker's answer too).  A lookup that raises: SERVFAIL, logged.
    Malformed: FORMERR, or b"" (send nothing) if even the header is unreadable.
    ``udp``: an answer over 512 bytes (or the client's EDNS size) goes out
    truncated (TC), so that the client asks again over TCP.
    """
    try:
        request = DNSRecord.parse(data)
    except Exception:  # noqa: BLE001 - any garbage a container sends
        return _formerr(data)
    if request.header.qr:
        return b""                              # a response: never answer one
    if request.header.opcode != 0:
        return _rcode(request, RCODE.NOTIMP)
    if len(request.questions) != 1:
        return _rcode(request, RCODE.FORMERR)
    q = request.q
    name = str(q.qname).rstrip(".").lower()
    try:
        addrs = lookup(key, name) if name and q.qclass == 1 else None
    except Exception:                          # a broken lookup must not stop us
        log.exception("embedded DNS: lookup(%r, %r) failed", key, name)
        return _rcode(request, RCODE.SERVFAIL)
    if addrs is None:
        return _rcode(request, RCODE.SERVFAIL, ra=0) if internal else None
    reply = request.reply(ra=0 if internal else 1)
    if not addrs:
        reply.header.rcode = RCODE.NXDOMAIN
    elif q.qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.ANY):
        for ip in random.sample(list(addrs), len(addrs)):
            six = ":" in ip
            if q.qtype == QTYPE.ANY or (q.qtype == QTYPE.AAAA) == six:
                reply.add_answer(RR(q.qname, QTYPE.AAAA if six else QTYPE.A, rdata=AAAA(ip) if six else A(ip),
                                    ttl=TTL))
    wire = reply.pack()
    if udp and len(wire) > _udp_size(request):
        reply.rr = []
        reply.header.tc = 1
        wire = reply.pack()
    return wire


def failure(data):
    """SERVFAIL for query ``data`` (no upstream answered)."""
    try:
        return _rcode(DNSRecord.parse(data), RCODE.SERVFAIL)
    except Exception:  # noqa: BLE001
        return _formerr(data)


def _rcode(request, rcode, ra=1):
    reply = request.reply(ra=ra, aa=0)
    reply.header.rcode = rcode
    return reply.pack()


def _formerr(data):
    if len(data) < 12:
        return b""
    flags = 0x8000 | (data[2] & 0x79) << 8 | RCODE.FORMERR   # QR; opcode and RD kept
    return data[:2] + struct.pack("!5H", flags, 0, 0, 0, 0)


def _udp_size(request):
    opt = [rr.rclass for rr in request.ar if rr.rtype == QTYPE.OPT]
    return max(512, min(opt[0], 4096)) if opt else 512


def host_nameservers(path="/etc/resolv.conf"):
    """The ``nameserver`` addresses of the host's resolv.conf, as (ip, 53) pairs."""
    try:
        with open(path) as fh:
            words = [line.split() for line in fh]
    except OSError:
        return []
    return [(w[1].split("%")[0], 53) for w in words if len(w) >= 2 and w[0] == "nameserver"]


def _setns(fd):
    if hasattr(os, "setns"):                    # Python 3.12+
        return os.setns(fd, CLONE_NEWNET)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _ns_error(path, exc):
    code = getattr(exc, "errno", None) or errno.EIO
    detail = getattr(exc, "strerror", None) or exc
    return OSError(code, f"cannot serve DNS in network namespace {path}: {detail}")


def _open_in_netns(path):
    """[udp, tcp] bound to 127.0.0.11:53 in the netns at ``path``, lo brought up,
    made by a thread that joins the namespace and exits; the sockets stay there."""
    made, failed = [], []

    def run():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            ifreq = fcntl.ioctl(made[0], SIOCGIFFLAGS, struct.pack("16sh22x", b"lo", 0))
            flags = struct.unpack("16sh22x", ifreq)[1]
            if not flags & IFF_UP:
                fcntl.ioctl(made[0], SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))
            made[0].bind(ADDRESS)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            made[1].setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            made[1].bind(ADDRESS)
        except Exception as exc:  # noqa: BLE001 - raised below, on the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name="dockyard-dns-setns")
    thread.start()
    thread.join()
    if failed:
        for s in made:
            s.close()
        raise _ns_error(path, failed[0]) from failed[0]
    return made                                 # asyncio makes them non-blocking


class _Served(asyncio.DatagramProtocol):
    """One container: its UDP endpoint, TCP server, clients and forwards."""

    def __init__(self, resolver, key, ns_id, internal):
        self.resolver, self.key, self.ns_id, self.internal = resolver, key, ns_id, internal
        self.transport = self.server = None
        self.writers, self.tasks = set(), set()
        self.udp_closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        wire = answer(data, self.resolver.lookup, self.key, self.internal)
        if wire is None and len(self.tasks) >= MAX_PENDING:
            wire = failure(data)                # too many in flight
        if wire is None:
            self.track(asyncio.get_running_loop().create_task(self.forward_udp(data, addr)))
        elif wire:
            self.transport.sendto(wire, addr)

    def connection_lost(self, exc):
        self.udp_closed.done() or self.udp_closed.set_result(None)

    async def forward_udp(self, data, addr):
        wire = await self.resolver._forward(data, tcp=False)
        if not self.transport.is_closing():
            self.transport.sendto(wire, addr)

    def track(self, task):
        """Forwards and TCP clients are tasks, cancelled when the key goes."""
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve_tcp(self, reader, writer):
        """A client's TCP connection: length-prefixed queries, answered in turn."""
        if len(self.writers) >= MAX_TCP:
            return writer.close()
        self.writers.add(writer)
        self.track(asyncio.current_task())
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE):   # idle, or a query cut short
                    size = await reader.readexactly(2)
                    data = await reader.readexactly(int.from_bytes(size, "big"))
                wire = answer(data, self.resolver.lookup, self.key, self.internal, udp=False)
                if wire is None:
                    wire = await self.resolver._forward(data, tcp=True)
                if wire:
                    writer.write(len(wire).to_bytes(2, "big") + wire)
                    await writer.drain()
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError):
            pass                                # gone, idle, or cut short
        finally:
            self.writers.discard(writer)
            writer.close()


class Resolver:
    """The embedded DNS server of the containers on user-defined networks."""

    def __init__(self, lookup, upstreams=None):
        """``lookup(key, name)`` -> IPv4 and IPv6 strings (answered), [] (nobody's: NXDOMAIN)
        or None (not ours: forwarded); it runs on the resolver's thread and must be
        quick and thread-safe.  ``upstreams``: (ip, port) pairs, tried in order;
        default: the host's /etc/resolv.conf nameservers (read now), port 53."""
        self.lookup = lookup
        self.upstreams = list(host_nameservers() if upstreams is None else upstreams)
        self._served = {}                       # key -> _Served, changed on the loop only
        self._lock, self._loop, self._thread = threading.Lock(), None, None

    def add(self, key, netns_path, internal=False):
        """Serve DNS (UDP and TCP) on 127.0.0.11:53 in the netns at ``netns_path``
        (a bind-mounted netns file or /proc/PID/ns/net) for container ``key``;
        ``internal``: never forward.  Brings ``lo`` up there if it is down.  Again
        with the same key and namespace it only updates ``internal``; with another
        namespace the key moves there.  Raises OSError naming the namespace."""
        try:
            st = os.stat(netns_path)
        except OSError as exc:
            raise _ns_error(netns_path, exc) from exc
        old = self._served.get(key)
        if old is not None and old.ns_id == (st.st_dev, st.st_ino):
            old.internal = internal
            return
        socks = _open_in_netns(netns_path)
        try:
            self._call(self._start(key, (st.st_dev, st.st_ino), internal, *socks))
        except OSError as exc:
            raise _ns_error(netns_path, exc) from exc

    def remove(self, key):
        """Stop serving ``key``; its sockets are closed when this returns."""
        if key in self._served:
            self._call(self._stop(key))

    def close(self):
        """Stop serving everything; thread, loop and sockets are gone on return."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    # -- on the resolver's own event loop -----------------------------------------

    def _call(self, coro):
        """Run ``coro`` on the resolver's loop (started if need be); its result."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever,
                                                name="dockyard-dns", daemon=True)
                self._thread.start()
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start(self, key, ns_id, internal, udp, tcp):
        served = _Served(self, key, ns_id, internal)
        try:
            await asyncio.get_running_loop().create_datagram_endpoint(lambda: served, sock=udp)
            served.server = await asyncio.start_server(served.serve_tcp, sock=tcp, backlog=64)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        await self._stop(key)
        self._served[key] = served

    async def _stop(self, key):
        served = self._served.pop(key, None)
        if served is None:
            return
        served.server.close()                   # closes the listening socket now
        served.transport.close()
        for task in list(served.tasks):
            task.cancel()
        for writer in list(served.writers):
            writer.close()
        await asyncio.gather(*served.tasks, served.udp_closed, return_exceptions=True)
        await asyncio.sleep(0)                  # let the clients' transports close

    async def _stop_all(self):
        for key in list(self._served):
            await self._stop(key)

    async def _forward(self, data, tcp):
        """The first upstream's reply to ``data``, or SERVFAIL after 2 s."""
        try:
            async with asyncio.timeout(FORWARD_TIMEOUT):
                for ip, port in self.upstreams:
                    try:
                        return await self._ask(ip, port, data, tcp)
                    except OSError:
                        continue                # refused, reset: the next one
        except TimeoutError:
            pass
        return failure(data)

    async def _ask(self, ip, port, data, tcp):
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            await loop.sock_connect(sock, (ip, port))   # UDP: only its replies, ICMP errors
            if not tcp:
                await loop.sock_sendall(sock, data)
                while True:
                    reply = await loop.sock_recv(sock, 65535)
                    if reply[:2] == data[:2]:            # the same query id
                        return reply
            await loop.sock_sendall(sock, len(data).to_bytes(2, "big") + data)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + int.from_bytes(buf[:2], "big"):
                chunk = await loop.sock_recv(sock, 65537)
                if not chunk:
                    raise ConnectionResetError("upstream closed the connection")
                buf += chunk
            return buf[2:2 + int.from_bytes(buf[:2], "big")]
