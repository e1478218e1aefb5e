"""``dockyard daemon``: flags (dockerd's names), start-up checks, serving the API.

Everything is validated before anything is written: a refused configuration
prints one line and exits 1 with nothing created on disk.

The API socket is ``0660 root:GROUP``: root and the members of ``-G GROUP``
(default ``dockyard``, as dockerd's is ``docker``; root's group when no such group
exists) may connect, and being able to connect is being root on the host.  It is
never more open than that, not for an instant (:func:`bind_unix`).

``-H fd://`` serves on the sockets systemd passes instead (socket activation,
``contrib/systemd/dockyard.socket``): their owner, group and mode are the socket
unit's, and ``sd_notify`` tells the service manager when the API answers
(:mod:`.systemd`).
"""

import argparse
import asyncio
import grp
import logging
import os
import signal
import socket
import sys

from . import systemd

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"
DEFAULT_GROUP = "dockyard"
#: the CRI's (dockyard.cri.config's, which this module does not import at start-up)
DEFAULT_CRI_SOCKET = "/run/dockyard/cri.sock"
DEFAULT_CNI_CONF_DIR = "/etc/cni/net.d"
DEFAULT_CNI_BIN_DIR = "/usr/lib/cni"
#: dockerd's (setDefaultUmask): files the daemon makes for containers get the modes
#: they expect; what must be private is given its mode explicitly
UMASK = 0o022

log = logging.getLogger("dockyard.daemon")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="dockyard daemon", description="Run the Dockyard daemon.")
    p.add_argument("-H", "--host", default=DEFAULT_HOST,
                   help=f"socket to listen on: unix://PATH, or fd://[N|NAME] for the sockets systemd passes "
                        f"(default {DEFAULT_HOST})")
    p.add_argument("-G", "--group", default=DEFAULT_GROUP,
                   help=f"group of the API socket, whose members may use the daemon (default {DEFAULT_GROUP}, "
                        "else root's when no such group exists; \"\" for root's)")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="root of persistent state")
    p.add_argument("--exec-root", default=DEFAULT_EXEC_ROOT, help="root of runtime state")
    p.add_argument("-s", "--storage-driver", help="storage driver (overrides plugins.toml)")
    p.add_argument("--exec-driver", help="exec driver (overrides plugins.toml)")
    p.add_argument("--exec-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the exec driver (overrides plugins.toml), e.g. cgroup_parent=dockyard")
    p.add_argument("--log-driver", help="log driver of containers that name none (default json-file; "
                                        "overrides plugins.toml's [logging] default)")
    p.add_argument("--log-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the default log driver, e.g. max-size=10m (overrides [logging] log_opts)")
    p.add_argument("--config", help="plugins.toml to use (default /etc/dockyard/plugins.toml, "
                                    "else the one shipped with Dockyard)")
    p.add_argument("-b", "--bridge", help="name of the default bridge network's Linux bridge (default dockyard0)")
    p.add_argument("--bip", help="address/prefix of the default bridge's gateway (default: a free 172.x.0.1/16)")
    p.add_argument("--network-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the network drivers (overrides plugins.toml), e.g. nft_table=dockyard")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT|CIDR",
                   help="registry tried over HTTPS without verifying its certificate, then plain HTTP "
                        "(repeatable; 127.0.0.0/8 and ::1 always are); every other registry needs verified HTTPS")
    p.add_argument("--registry-mirror", action="append", default=[], metavar="[HOST=]URL",
                   help="a mirror that pulls of HOST try first (repeatable; a bare URL: a mirror of Docker Hub); "
                        "also [registry.\"HOST\"] mirrors = [...] in plugins.toml")
    p.add_argument("--registry-certs-dir", action="append", default=[], metavar="DIR",
                   help="Docker-style certs.d directory: DIR/HOST:PORT/ca.crt (and client.cert/client.key) "
                        "(repeatable; default /etc/dockyard/certs.d, then /etc/docker/certs.d)")
    p.add_argument("--max-concurrent-downloads", type=int, default=3, metavar="N",
                   help="layers downloaded at once per pull (default 3)")
    p.add_argument("--max-concurrent-uploads", type=int, default=5, metavar="N",
                   help="layers uploaded at once per push (default 5)")
    p.add_argument("--registry-upload-chunk", type=int, default=16 << 20, metavar="BYTES",
                   help="blobs larger than this are uploaded in PATCH chunks of this size (default 16 MiB)")
    p.add_argument("--cri-socket", default=DEFAULT_CRI_SOCKET, metavar="PATH",
                   help=f"unix socket of the Kubernetes CRI (runtime.v1) a kubelet connects to "
                        f"(default {DEFAULT_CRI_SOCKET})")
    p.add_argument("--no-cri", action="store_true", help="serve no Kubernetes CRI")
    p.add_argument("--cni-conf-dir", metavar="DIR",
                   help=f"CNI network configuration of pods (default {DEFAULT_CNI_CONF_DIR}; "
                        "overrides plugins.toml's [network.options.cni] conf_dir)")
    p.add_argument("--cni-bin-dir", metavar="DIR",
                   help=f"CNI plugin binaries, DIR[:DIR...] (default {DEFAULT_CNI_BIN_DIR}; "
                        "overrides plugins.toml's [network.options.cni] bin_dir)")
    p.add_argument("--stream-address", default="127.0.0.1:0", metavar="HOST:PORT",
                   help="where the CRI's streaming server (exec, attach, port-forward) listens "
                        "(default 127.0.0.1:0, a free port on loopback)")
    p.add_argument("--pidfile", help="pid file (default EXEC_ROOT/dockyard.pid)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging (as --log-level debug)")
    p.add_argument("-l", "--log-level", default="info", type=str.lower, choices=tuple(systemd.LOG_LEVELS),
                   help="the least severe messages logged (default info)")
    return p.parse_args(argv)


def socket_path(host):
    if not host.startswith("unix://"):
        raise SystemExit(f"dockyard daemon: -H {host}: only unix:// sockets (or fd:// from systemd) are supported")
    return host[len("unix://"):]


def socket_gid(name):
    """The gid ``-G name`` gives the socket: a group that must exist, except the
    default (as dockerd's ``docker``), which falls back to root's group."""
    from ..errors import ConfigError

    if not name:
        return 0
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if name == DEFAULT_GROUP:
            log.debug("no group %r: the API socket is root's only", name)
            return 0
        raise ConfigError(f"-G {name}: no such group") from None


def bind_unix(path, gid=0):
    """A unix socket bound at ``path``, ``0660 root:gid``, that no one else can
    connect to at any instant, whatever the umask (even 000).

    Linux makes the socket file with the mode of the socket's inode less the
    umask, so the inode is made ``0600`` (fchmod) before ``bind``; the group gets
    it once the file is its.  dockerd sets a umask around its bind instead; a
    umask is the whole process', and other threads of this daemon may be making
    files for containers at that moment."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        os.fchmod(sock.fileno(), 0o600)
        sock.bind(path)
        os.chown(path, -1, gid)
        os.chmod(path, 0o660)
    except BaseException:
        sock.close()
        raise
    return sock


def _answers(path):
    s = socket.socket(socket.AF_UNIX)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


def _ancestors():
    """Our parent, its parent, ...: a wrapper (``timeout dockyard daemon``) is not another daemon."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                pid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        pids.add(pid)
    return pids


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    os.umask(UMASK)  # before any thread or file: whatever umask we were started with (000 too)
    systemd.setup_logging(args.log_level, args.debug)
    notifier = systemd.Notifier()  # before any child: none inherits $NOTIFY_SOCKET
    from ..config import load
    from ..errors import ConfigError, DockyardError

    path = listeners = None
    if args.host.startswith("fd://"):
        try:
            listeners = systemd.activated_sockets(args.host)
        except ConfigError as exc:
            print(f"dockyard daemon: {exc}", file=sys.stderr)
            return 1
    else:
        path = socket_path(args.host)
        if _answers(path):
            print(f"dockyard daemon: another daemon is already listening on {path}", file=sys.stderr)
            return 1
    if not args.no_cri and _answers(args.cri_socket):
        print(f"dockyard daemon: another process is serving on the CRI socket {args.cri_socket}: stop it, "
              "or give this daemon another --cri-socket, or --no-cri", file=sys.stderr)
        return 1
    from ..engine.layers.migrate import daemons_using

    others = sorted(set(daemons_using(args.data_root)) - _ancestors())
    if others:  # two daemons on one data root would each take the other's state for leftovers
        print(f"dockyard daemon: a daemon (pid {', '.join(map(str, others))}) already uses the data root "
              f"{args.data_root}: stop it, or give this one a --data-root of its own", file=sys.stderr)
        return 1
    try:
        from ..engine.engine import Engine, RegistryOptions

        config = load(args.config)
        if args.exec_driver:
            config = config.with_override("exec", args.exec_driver)
        if args.exec_opt:
            config = config.with_options("exec", args.exec_opt)
        if args.log_driver or args.log_opt:
            config = config.with_log_defaults(args.log_driver, args.log_opt)
        net_opts = list(args.network_opt) + ([f"default_bridge={args.bridge}"] if args.bridge else [])
        # the cni driver's (every network driver gets them, as --network-opt)
        net_opts += [f"{key}={value}" for key, value in (("cni_conf_dir", args.cni_conf_dir),
                                                          ("cni_bin_dir", args.cni_bin_dir)) if value]
        if args.bip:
            import ipaddress

            try:
                iface = ipaddress.ip_interface(args.bip)
            except ValueError:
                raise ConfigError(f"--bip {args.bip!r}: expected an address with a prefix, e.g. 172.17.0.1/16") from None
            net_opts += [f"default_subnet={iface.network}", f"default_gateway={iface.ip}"]
        if net_opts:
            config = config.with_options("network", net_opts)
        cri = None if args.no_cri else cri_config(args, config.options.get("network", {}).get("cni", {}))
        gid = socket_gid(args.group) if path else 0  # fd://: the socket unit's SocketGroup= instead
        from ..registry.service import mirrors_from, parse_insecure, parse_transfer_options

        mirrors, no_fallback = mirrors_from(args.registry_mirror, config.registries, config.source)
        registry = RegistryOptions(parse_insecure(args.insecure_registry), args.registry_certs_dir or None,
                                   mirrors, no_fallback,
                                   **parse_transfer_options(args.max_concurrent_downloads,
                                                            args.max_concurrent_uploads, args.registry_upload_chunk))
        for sock in listeners or ():  # systemd's socket in the exec root: its group may pass to it
            if spath := systemd.socket_file(sock):
                _socket_dir(os.path.dirname(spath), args.exec_root, os.stat(spath).st_gid)
        from ..engine.bundle import nofile

        nofile.raise_for_daemon()  # before the hub's keeper starts: it and the hub hold fds per container
        eng = Engine(config, args.data_root, args.exec_root, args.storage_driver, registry=registry)
    except DockyardError as exc:
        print(f"dockyard daemon: {exc}", file=sys.stderr)
        return 1
    pidfile = args.pidfile or os.path.join(args.exec_root, "dockyard.pid")
    with open(pidfile, "w") as fh:
        fh.write(f"{os.getpid()}\n")
    if not eng.store.get_meta("daemon_id"):
        eng.store.set_meta("daemon_id", os.urandom(16).hex())
    bound = {}
    try:
        asyncio.run(serve(eng, path, bound, gid, listeners=listeners, notifier=notifier, cri=cri))
    except DockyardError as exc:  # the CRI's socket taken since the check above
        print(f"dockyard daemon: {exc}", file=sys.stderr)
        return 1
    finally:
        eng.close()
        _unlink_if_ours(pidfile, path, bound)
    return 0


def cri_config(args, cni_options):
    """The CRI's settings from the flags (the CNI directories: the flags, else the
    cni driver's options in plugins.toml); its own state under the exec root."""
    from ..cri.config import CriConfig
    from ..errors import ConfigError

    stream = args.stream_address
    host, sep, port = stream.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--stream-address {stream!r}: expected HOST:PORT, e.g. 127.0.0.1:0")
    return CriConfig(socket=os.path.abspath(args.cri_socket),
                     cni_conf_dir=args.cni_conf_dir or cni_options.get("cni_conf_dir") or
                     cni_options.get("conf_dir") or DEFAULT_CNI_CONF_DIR,
                     cni_bin_dir=args.cni_bin_dir or cni_options.get("cni_bin_dir") or
                     cni_options.get("bin_dir") or DEFAULT_CNI_BIN_DIR,
                     stream_address=stream, root=os.path.join(os.path.abspath(args.exec_root), "cri"))


def _socket_dir(directory, exec_root, gid):
    """The socket's directory: made ``0755`` if missing (``/run``-like), or, when
    it is the exec root (the default layout), given the socket's group, so that
    group passes the exec root's ``0710`` to the socket and nowhere else."""
    if os.path.realpath(directory) == os.path.realpath(exec_root):
        if os.stat(directory).st_gid != gid:
            os.chown(directory, -1, gid)
        return
    os.makedirs(directory, mode=0o755, exist_ok=True)


def _unlink_if_ours(pidfile, path, bound):
    """Remove the pid file and the socket, unless another daemon has since taken
    them over (its pid in the file, its socket at the path)."""
    try:
        with open(pidfile) as fh:
            if fh.read().strip() == str(os.getpid()):
                os.unlink(pidfile)
    except OSError:
        pass
    try:
        st = os.stat(path) if path else None  # fd://: systemd's socket stays
        if st and (st.st_dev, st.st_ino) == bound.get("socket"):
            os.unlink(path)
    except OSError:
        pass


async def serve(eng, path, bound=None, gid=0, listeners=None, notifier=None, cri=None):
    """Serve the API on a socket bound at ``path`` (``0660 root:gid``), or on
    ``listeners`` (systemd's, as they are), until SIGTERM or SIGINT; and the
    Kubernetes CRI as ``cri`` (a CriConfig) says, in gRPC's own threads."""
    from aiohttp import web

    from .app import make_app

    app = make_app(eng)
    # at shutdown, streams still open (a wait, events, logs -f) get 2 s, then are cut, as dockerd cuts them
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    if listeners is None:
        _socket_dir(os.path.dirname(path), eng.exec_root, gid)
        if os.path.exists(path):
            os.unlink(path)  # stale: nobody answered on it (checked at start-up)
    loop = asyncio.get_running_loop()
    # what the containers did while no daemon watched is recorded before the
    # first request is answered (a client must never see the stale state)
    await loop.run_in_executor(None, eng.restore)
    cri_server = None
    if cri is not None:
        from ..cri.server import CriServer

        cri_server = CriServer(eng, cri)
        try:
            await loop.run_in_executor(None, cri_server.start)
        except BaseException:
            await loop.run_in_executor(None, cri_server.stop, 0)
            await runner.cleanup()
            raise
    for sock in listeners if listeners is not None else [bind_unix(path, gid)]:
        await web.SockSite(runner, sock).start()
    if bound is not None and listeners is None:
        st = os.stat(path)
        bound["socket"] = (st.st_dev, st.st_ino)
    where = path or ", ".join(systemd.socket_file(s) or f"fd {s.fileno()}" for s in listeners)
    drivers = eng.drivers_info()
    log.info("dockyard daemon listening on %s (storage %s, exec %s, network %s; config %s)",
             where, drivers["storage"], drivers["exec"], ",".join(drivers["network"]), eng.config.source)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if notifier is not None:  # the API answers from here on: Type=notify's start is over
        await loop.run_in_executor(None, notifier.ready, f"serving the API on {where}")
    await stop.wait()
    log.info("shutting down; containers keep running")
    if notifier is not None:
        await loop.run_in_executor(None, notifier.stopping)
    if cri_server is not None:
        await loop.run_in_executor(None, cri_server.stop, 2.0)
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
