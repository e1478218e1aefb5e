"""``dockyard daemon``: flags (dockerd's names), start-up checks, serving the API.

Everything is validated before anything is written: a refused configuration
prints one line and exits 1 with nothing created on disk.
"""

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
DEFAULT_DATA_ROOT = "/var/lib/dockyard"
DEFAULT_EXEC_ROOT = "/run/dockyard"

log = logging.getLogger("dockyard.daemon")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="dockyard daemon", description="Run the Dockyard daemon.")
    p.add_argument("-H", "--host", default=DEFAULT_HOST, help=f"socket to listen on (default {DEFAULT_HOST})")
    p.add_argument("--data-root", default=DEFAULT_DATA_ROOT, help="root of persistent state")
    p.add_argument("--exec-root", default=DEFAULT_EXEC_ROOT, help="root of runtime state")
    p.add_argument("-s", "--storage-driver", help="storage driver (overrides plugins.toml)")
    p.add_argument("--exec-driver", help="exec driver (overrides plugins.toml)")
    p.add_argument("--exec-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the exec driver (overrides plugins.toml), e.g. cgroup_parent=dockyard")
    p.add_argument("--config", help="plugins.toml to use (default /etc/dockyard/plugins.toml, "
                                    "else the one shipped with Dockyard)")
    p.add_argument("-b", "--bridge", help="name of the default bridge network's Linux bridge (default dockyard0)")
    p.add_argument("--bip", help="address/prefix of the default bridge's gateway (default: a free 172.x.0.1/16)")
    p.add_argument("--network-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the network drivers (overrides plugins.toml), e.g. nft_table=dockyard")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST:PORT",
                   help="registry reached over plain HTTP (repeatable); every other registry needs HTTPS")
    p.add_argument("--registry-certs-dir", action="append", default=[], metavar="DIR",
                   help="Docker-style certs.d directory: DIR/HOST:PORT/ca.crt (and client.cert/client.key) "
                        "(repeatable; default /etc/dockyard/certs.d, then /etc/docker/certs.d)")
    p.add_argument("--max-concurrent-downloads", type=int, default=3, metavar="N",
                   help="layers downloaded at once per pull (default 3)")
    p.add_argument("--max-concurrent-uploads", type=int, default=5, metavar="N",
                   help="layers uploaded at once per push (default 5)")
    p.add_argument("--registry-upload-chunk", type=int, default=16 << 20, metavar="BYTES",
                   help="blobs larger than this are uploaded in PATCH chunks of this size (default 16 MiB)")
    p.add_argument("--pidfile", help="pid file (default EXEC_ROOT/dockyard.pid)")
    p.add_argument("-D", "--debug", action="store_true", help="debug logging")
    return p.parse_args(argv)


def socket_path(host):
    if not host.startswith("unix://"):
        raise SystemExit(f"dockyard daemon: -H {host}: only unix:// sockets are supported")
    return host[len("unix://"):]


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
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = socket_path(args.host)
    from ..config import load
    from ..errors import ConfigError, DockyardError

    if _answers(path):
        print(f"dockyard daemon: another daemon is already listening on {path}", file=sys.stderr)
        return 1
    from ..engine.migrate import daemons_using

    others = sorted(set(daemons_using(args.data_root)) - _ancestors())
    if others:  # two daemons on one data root would each take the other's state for leftovers
        print(f"dockyard daemon: a daemon (pid {', '.join(map(str, others))}) already uses the data root "
              f"{args.data_root}: stop it, or give this one a --data-root of its own", file=sys.stderr)
        return 1
    try:
        from ..engine.engine import Engine

        config = load(args.config)
        if args.exec_driver:
            config = config.with_override("exec", args.exec_driver)
        if args.exec_opt:
            config = config.with_options("exec", args.exec_opt)
        net_opts = list(args.network_opt) + ([f"default_bridge={args.bridge}"] if args.bridge else [])
        if args.bip:
            import ipaddress

            try:
                iface = ipaddress.ip_interface(args.bip)
            except ValueError:
                raise ConfigError(f"--bip {args.bip!r}: expected an address with a prefix, e.g. 172.17.0.1/16") from None
            net_opts += [f"default_subnet={iface.network}", f"default_gateway={iface.ip}"]
        if net_opts:
            config = config.with_options("network", net_opts)
        from ..registry.service import Registry, parse_insecure, parse_transfer_options

        insecure = parse_insecure(args.insecure_registry)
        transfer = parse_transfer_options(args.max_concurrent_downloads, args.max_concurrent_uploads,
                                          args.registry_upload_chunk)
        eng = Engine(config, args.data_root, args.exec_root, args.storage_driver)
        eng.registry = Registry(eng, insecure=insecure, certs_dir=args.registry_certs_dir or None, **transfer)
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
        asyncio.run(serve(eng, path, bound))
    finally:
        eng.close()
        _unlink_if_ours(pidfile, path, bound)
    return 0


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
        st = os.stat(path)
        if (st.st_dev, st.st_ino) == bound.get("socket"):
            os.unlink(path)
    except OSError:
        pass


async def serve(eng, path, bound=None):
    from aiohttp import web

    from .app import make_app

    app = make_app(eng)
    # at shutdown, streams still open (a wait, events, logs -f) get 2 s, then are cut, as dockerd cuts them
    runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    os.makedirs(os.path.dirname(path), mode=0o755, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)  # stale: nobody answered on it (checked at start-up)
    loop = asyncio.get_running_loop()
    # what the containers did while no daemon watched is recorded before the
    # first request is answered (a client must never see the stale state)
    await loop.run_in_executor(None, eng.restore)
    site = web.UnixSite(runner, path)
    await site.start()
    os.chmod(path, 0o660)
    if bound is not None:
        st = os.stat(path)
        bound["socket"] = (st.st_dev, st.st_ino)
    drivers = eng.drivers_info()
    log.info("dockyard daemon listening on %s (storage %s, exec %s, network %s; config %s)",
             path, drivers["storage"], drivers["exec"], ",".join(drivers["network"]), eng.config.source)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down; containers keep running")
    await runner.cleanup()


if __name__ == "__main__":
    sys.exit(main())
