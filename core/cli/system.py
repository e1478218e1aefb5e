"""System commands: version, info, inspect, df, prune; and starting a daemon on demand."""

import os
import sys

from dockyard.cli import output

DAEMON_LOG = "/var/log/dockyard.log"
START_TIMEOUT = 10.0


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


def _print_template(fmt, data, name, context):
    """``version``/``info --format``: a template that does not parse exits 64
    ("template parsing error: ..."), one that fails on ``data`` (docker's Go type
    ``context``) exits 1 with Go's words alone, as docker's do."""
    try:
        template = output.Template(fmt, name)
    except output.TemplateError as exc:
        output.error(f"template parsing error: {exc}")
        return 64
    try:
        print(template.render(data, context=context))
    except output.TemplateError as exc:
        output.error(str(exc))
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
        rc = _print_template(args.format, {"Client": client, "Server": server}, "version", "system.versionInfo")
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
        return _print_template(args.format, info, "", "system.dockerInfo")
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

    from dockyard.cli.common import inspect_render, inspect_template
    from dockyard.client import APIError, NotFound
    template = inspect_template(args.format)
    client = ctx.client
    found, rc, printed = [], 0, False
    for name in args.names:
        lookups = ([lambda n: client.inspect_container(n, size=args.size)] if args.type != "image" else []) + \
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
        if template is not None:
            text = inspect_render(template, obj)
            if text is None:
                rc = 1
            else:
                print(text, flush=True)
                printed = True
    if template is None:
        print(json.dumps(found, indent=4, ensure_ascii=False))
    elif not printed:
        print(flush=True)  # docker's template inspector flushes an empty buffer as an empty line
    return rc
