"""System commands: version, info, inspect; starting a daemon on demand; and our own
terminal and signals while a container runs attached."""

import os
import sys

from dockyard.cli import output

DAEMON_LOG = "/var/log/dockyard.log"
START_TIMEOUT = 10.0
PROXIED_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def register(sub):
    p = sub.add_parser("version", help="Show the Dockyard version information", allow_abbrev=False)
    p.add_argument("-f", "--format", help="Format the output using the given Go template")
    p.set_defaults(func=cmd_version)

    p = sub.add_parser("info", help="Display system-wide information", allow_abbrev=False)
    p.add_argument("-f", "--format", help="Format the output using the given Go template")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("inspect", help="Return low-level information on Dockyard objects", allow_abbrev=False)
    p.add_argument("--type", choices=("container", "image"), help="Return JSON for specified type")
    p.add_argument("-f", "--format", help="Format the output using the given Go template")
    p.add_argument("-s", "--size", action="store_true", help="Display total file sizes if the type is container")
    p.add_argument("names", nargs="+", metavar="NAME|ID")
    p.set_defaults(func=cmd_inspect)


def ensure_daemon(client):
    """Start ``dockyard daemon`` in the background if nobody answers on the default socket.

    Only as root and only when the socket is missing or refuses connections; a
    lock on the log file keeps two CLIs started at once from starting two daemons.
    """
    from dockyard.client import ClientError, DaemonUnreachable
    try:
        client.ping(timeout=5)
        return
    except DaemonUnreachable as exc:
        if not isinstance(exc.cause, (FileNotFoundError, ConnectionRefusedError)) or os.geteuid() != 0:
            return
    except ClientError:
        return  # something answers; the command will report what
    import fcntl
    import subprocess
    import time
    try:
        lock = open(DAEMON_LOG, "ab")
    except OSError as exc:
        output.error(f"dockyard: cannot start a daemon: {DAEMON_LOG}: {exc.strerror}")
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _answers(client, 2):  # another CLI started one while we waited for the lock
            return
        with open(DAEMON_LOG, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "daemon"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True, close_fds=True)
        output.error(f"dockyard: started a daemon in the background (pid {proc.pid}, log {DAEMON_LOG})")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                output.error(f"dockyard: the daemon exited with code {proc.returncode}; see {DAEMON_LOG}")
                return
            if _answers(client, 1):
                return
            time.sleep(0.05)
        output.error(f"dockyard: the daemon did not answer within {START_TIMEOUT:g} s; see {DAEMON_LOG}")


def _answers(client, timeout):
    from dockyard.client import ClientError
    try:
        client.ping(timeout=timeout)
        return True
    except ClientError:
        return False


def _print_template(fmt, data):
    try:
        print(output.Template(fmt).render(data))
    except output.TemplateError as exc:
        output.error(f"Error: template: {exc}")
        return 1
    return 0


def client_version():
    import platform
    from dockyard import __version__
    from dockyard.client import API_VERSION
    return {"Version": __version__, "ApiVersion": API_VERSION,
            "PythonVersion": platform.python_version(),
            "Os": sys.platform if sys.platform != "linux" else "linux",
            "Arch": _arch(platform.machine())}


def _arch(machine):
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def cmd_version(ctx, args):
    from dockyard.client import APIError, ClientError
    client = client_version()
    server, problem = None, None
    try:
        server = ctx.client.version()
    except APIError as exc:
        problem = f"Error response from daemon: {exc.message}"
    except ClientError as exc:
        problem = str(exc)
    if args.format:
        rc = _print_template(args.format, {"Client": client, "Server": server})
        if problem:
            output.error(problem)
        return 1 if problem else rc
    print("Client:")
    print(f" Version:           {client['Version']}")
    print(f" API version:       {client['ApiVersion']}")
    print(f" Python version:    {client['PythonVersion']}")
    print(f" OS/Arch:           {client['Os']}/{client['Arch']}")
    if problem:
        sys.stdout.flush()
        output.error(problem)
        return 1
    print()
    print("Server:")
    print(" Engine:")
    print(f"  Version:          {server.get('Version', '')}")
    api = server.get("ApiVersion", "")
    if server.get("MinAPIVersion"):
        api += f" (minimum version {server['MinAPIVersion']})"
    print(f"  API version:      {api}")
    for key, label in (("GoVersion", "Go version"), ("GitCommit", "Git commit"), ("BuildTime", "Built")):
        if server.get(key):
            print(f"  {label + ':':<18}{server[key]}")
    print(f"  OS/Arch:          {server.get('Os', '')}/{server.get('Arch', '')}")
    if server.get("KernelVersion"):
        print(f"  Kernel version:   {server['KernelVersion']}")
    for comp in server.get("Components") or []:
        if comp.get("Name") == "Engine":
            continue
        print(f" {comp.get('Name')}:")
        print(f"  Version:          {comp.get('Version', '')}")
    return 0


_INFO_FIELDS = (
    ("Containers", "Containers"), ("ContainersRunning", " Running"), ("ContainersPaused", " Paused"),
    ("ContainersStopped", " Stopped"), ("Images", "Images"), ("ServerVersion", "Server Version"),
    ("Driver", "Storage Driver"), ("DriverStatus", None), ("Drivers", None),
    ("CgroupDriver", "Cgroup Driver"), ("CgroupVersion", "Cgroup Version"),
    ("KernelVersion", "Kernel Version"), ("OperatingSystem", "Operating System"),
    ("OSType", "OSType"), ("Architecture", "Architecture"), ("NCPU", "CPUs"),
    ("MemTotal", "Total Memory"), ("Name", "Name"), ("ID", "ID"),
    ("DockerRootDir", "Dockyard Root Dir"), ("Debug", "Debug Mode"),
)


def _info_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return " ".join(str(v) for v in value)
    return str(value)


def cmd_info(ctx, args):
    from dockyard.client import APIError
    try:
        info = ctx.client.info()
    except APIError as exc:
        output.daemon_error(exc)
        return 1
    if args.format:
        return _print_template(args.format, info)
    print("Server:")
    for key, label in _INFO_FIELDS:
        if key not in info:
            continue
        value = info[key]
        if key == "DriverStatus":
            for pair in value or []:
                print(f"  {pair[0]}: {pair[1]}" if len(pair) == 2 else f"  {pair}")
        elif key == "Drivers":
            print(" Drivers:")
            for kind, name in (value or {}).items():
                print(f"  {kind}: {_info_value(name)}")
        elif key == "MemTotal":
            print(f" {label}: {_mib(value)}")
        else:
            print(f" {label}: {_info_value(value)}")
    for warning in info.get("Warnings") or []:
        output.error(warning)
    return 0


def _mib(size):
    size = float(size or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.4g}{unit}"
        size /= 1024


def cmd_inspect(ctx, args):
    import json
    from dockyard.client import APIError, NotFound
    client = ctx.client
    found, rc = [], 0
    for name in args.names:
        lookups = ([client.inspect_container] if args.type != "image" else []) + \
                  ([client.inspect_image] if args.type != "container" else [])
        obj, problem = None, None
        for lookup in lookups:
            try:
                obj = lookup(name)
                break
            except NotFound as exc:
                problem = exc.message
            except APIError as exc:
                problem = f"Error response from daemon: {exc.message}"
                break
        if obj is None:
            rc = 1
            if args.type is None and (problem or "").startswith("No such"):
                problem = f"No such object: {name}"
            output.error(problem if problem.startswith("Error") else f"Error: {problem}")
            continue
        found.append(obj)
        if args.format:
            try:
                print(output.Template(args.format).render(obj), flush=True)
            except output.TemplateError as exc:
                output.error(f"Error: template: {exc}")
                return 1
    if not args.format:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    return rc


# --- our terminal and signals during an attached run ------------------------------------


def copy_stdin(attachment):
    fd = sys.stdin.fileno()
    try:
        while data := os.read(fd, 65536):
            attachment.send(data)
    except OSError:
        pass
    finally:
        attachment.close_stdin()


class Terminal:
    """Raw mode for our terminal while an interactive tty container runs; follows resizes."""

    def __init__(self, client, cid, active, resize=None):
        self.client, self.cid = client, cid
        self.active = active and sys.stdin.isatty()
        self.saved = None
        self._resize = resize or client.resize  # (id, rows, columns)

    def __enter__(self):
        if self.active:
            import signal
            import termios
            import tty
            self.saved = termios.tcgetattr(sys.stdin.fileno())
            tty.setraw(sys.stdin.fileno())
            self.old_winch = signal.signal(signal.SIGWINCH, lambda *_: self.resize())
        return self

    def resize(self):
        if not self.active:
            return
        from dockyard.client import ClientError
        try:
            size = os.get_terminal_size(sys.stdout.fileno())
            self._resize(self.cid, size.lines, size.columns)
        except (OSError, ClientError):
            pass

    def __exit__(self, *exc):
        if self.saved is not None:
            import signal
            import termios
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, self.saved)
            signal.signal(signal.SIGWINCH, self.old_winch)


class SignalProxy:
    """Forward the signals we receive to the container (docker's --sig-proxy)."""

    def __init__(self, client, cid, enabled):
        self.client, self.cid, self.enabled = client, cid, enabled
        self.saved = {}

    def _forward(self, signum, _frame):
        import signal
        from dockyard.client import ClientError
        try:
            self.client.kill(self.cid, signal.Signals(signum).name)
        except ClientError:
            pass

    def __enter__(self):
        if self.enabled:
            import signal
            for name in PROXIED_SIGNALS:
                self.saved[name] = signal.signal(getattr(signal, name), self._forward)
        return self

    def __exit__(self, *exc):
        import signal
        for name, handler in self.saved.items():
            signal.signal(getattr(signal, name), handler)


# system df, system prune ------------------------------------------------------------
def register_more(sub):
    """Add ``df`` and ``prune`` to the ``system`` group (made by the image commands)."""
    import argparse

    group = sub.choices.get("system")
    if group is None:
        group = sub.add_parser("system", help="Manage Dockyard", allow_abbrev=False)
        group.add_subparsers(dest="system_command", metavar="COMMAND", title="commands")
    ssub = next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))
    p = ssub.add_parser("df", help="Show docker disk usage", allow_abbrev=False)
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.set_defaults(func=cmd_df)
    p = ssub.add_parser("prune", help="Remove unused data", allow_abbrev=False)
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("--filter", action="append", default=[], help="Provide filter values (e.g. 'label=<key>=<value>')")
    p.set_defaults(func=cmd_system_prune)


def _pct(part, whole):
    return f"{output.human_size(part)} ({int(part * 100 / whole) if whole else 0}%)"


def cmd_df(ctx, args):
    df = ctx.client.request("GET", "/system/df")
    images, containers = df.get("Images") or [], df.get("Containers") or []
    volumes, cache = df.get("Volumes") or [], df.get("BuildCache") or []
    img_size = df.get("LayersSize") or 0
    img_free = sum(i["Size"] - max(i.get("SharedSize", 0), 0) for i in images if not i.get("Containers"))
    c_size = sum(c.get("SizeRw") or 0 for c in containers)
    c_free = sum(c.get("SizeRw") or 0 for c in containers if c.get("State") != "running")
    v_size = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes)
    v_free = sum(max((v.get("UsageData") or {}).get("Size", 0), 0) for v in volumes
                 if not (v.get("UsageData") or {}).get("RefCount"))
    rows = [["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"],
            ["Images", len(images), sum(1 for i in images if i.get("Containers")), output.human_size(img_size),
             _pct(img_free, img_size)],
            ["Containers", len(containers), sum(1 for c in containers if c.get("State") == "running"),
             output.human_size(c_size), _pct(c_free, c_size)],
            ["Local Volumes", len(volumes), sum(1 for v in volumes if (v.get("UsageData") or {}).get("RefCount")),
             output.human_size(v_size), _pct(v_free, v_size)],
            ["Build Cache", len(cache), sum(1 for b in cache if b.get("InUse")),
             output.human_size(sum(b.get("Size", 0) for b in cache)), output.human_size(0)]]
    for line in output.table(rows):
        print(line)
    if args.verbose:
        print("\nImages space usage:\n")
        rows = [["REPOSITORY:TAG", "IMAGE ID", "SIZE", "SHARED SIZE", "CONTAINERS"]]
        rows += [[(i.get("RepoTags") or ["<none>:<none>"])[0], i["Id"].removeprefix("sha256:")[:12],
                  output.human_size(i["Size"]), output.human_size(max(i.get("SharedSize", 0), 0)),
                  i.get("Containers", 0)] for i in images]
        print("\n".join(output.table(rows)))
        print("\nContainers space usage:\n")
        rows = [["CONTAINER ID", "IMAGE", "SIZE", "STATUS", "NAMES"]]
        rows += [[c["Id"][:12], c["Image"], output.human_size(c.get("SizeRw") or 0), c["Status"],
                  c["Names"][0].lstrip("/")] for c in containers]
        print("\n".join(output.table(rows)))
        print("\nLocal Volumes space usage:\n")
        rows = [["VOLUME NAME", "LINKS", "SIZE"]]
        rows += [[v["Name"], (v.get("UsageData") or {}).get("RefCount", 0),
                  output.human_size(max((v.get("UsageData") or {}).get("Size", 0), 0))] for v in volumes]
        print("\n".join(output.table(rows)))
    return 0


def cmd_system_prune(ctx, args):
    import json

    from dockyard.cli.containers_more import confirm
    what = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        what.append("all anonymous volumes not used by at least one container")
    what.append("all images without at least one container associated to them" if args.all
                else "all dangling images")
    what.append("unused build cache")
    if not confirm("WARNING! This will remove:\n" + "\n".join(f"  - {w}" for w in what), args.force):
        return 0
    filters = output.parse_filters(args.filter)
    q = {"filters": json.dumps(filters) if filters else None}
    total = 0
    report = ctx.client.request("POST", "/containers/prune", q) or {}
    total += report.get("SpaceReclaimed") or 0
    if report.get("ContainersDeleted"):
        print("Deleted Containers:\n" + "\n".join(report["ContainersDeleted"]) + "\n")
    nets = (ctx.client.request("POST", "/networks/prune", q) or {}).get("NetworksDeleted") or []
    if nets:
        print("Deleted Networks:\n" + "\n".join(nets) + "\n")
    if args.volumes:
        report = ctx.client.request("POST", "/volumes/prune", q) or {}
        total += report.get("SpaceReclaimed") or 0
        if report.get("VolumesDeleted"):
            print("Deleted Volumes:\n" + "\n".join(report["VolumesDeleted"]) + "\n")
    img_filters = dict(filters, dangling=["false" if args.all else "true"])
    report = ctx.client.request("POST", "/images/prune", {"filters": json.dumps(img_filters)}) or {}
    total += report.get("SpaceReclaimed") or 0
    deleted = report.get("ImagesDeleted") or []
    if deleted:
        print("Deleted Images:")
        for d in deleted:
            print(*(f"{k.lower()}: {v}" for k, v in d.items()))
        print()
    report = ctx.client.request("POST", "/build/prune", {"all": args.all or None}) or {}
    if report.get("CachesDeleted"):
        print("Deleted build cache objects:\n" + "\n".join(report["CachesDeleted"]) + "\n")
    print(f"Total reclaimed space: {output.human_size(total)}")
    return 0
