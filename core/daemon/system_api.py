"""``/_ping``, ``/version`` and ``/info`` (the image routes are :mod:`.images_api`)."""

import os
import platform

from aiohttp import web

from .. import __version__
from .app import API_VERSION, MIN_API_VERSION, blocking, engine


async def ping(request):
    headers = {"Api-Version": API_VERSION, "Ostype": "linux", "Docker-Experimental": "false",
               "Cache-Control": "no-cache, no-store, must-revalidate", "Pragma": "no-cache",
               "Builder-Version": "1"}
    if request.method == "HEAD":
        return web.Response(status=200, headers=headers)
    return web.Response(text="OK", headers=headers)


def _version_info():
    uname = os.uname()
    return {
        "Platform": {"Name": "Dockyard"},
        "Components": [{"Name": "Engine", "Version": __version__,
                        "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
                                    "Os": "linux", "Arch": _arch(), "KernelVersion": uname.release}}],
        "Version": __version__, "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "", "GoVersion": "python" + platform.python_version(), "Os": "linux",
        "Arch": _arch(), "KernelVersion": uname.release, "BuildTime": "",
    }


def _arch():
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())


async def version(request):
    from .system_more_api import complete_version

    return web.json_response(complete_version(engine(request), _version_info()))


def _info(eng):
    recs = eng.containers.all()
    running = sum(1 for r in recs if r["State"]["Running"] and not r["State"].get("Paused"))
    paused = sum(1 for r in recs if r["State"].get("Paused"))
    status = list(eng.storage_slot.hook.storage_status() or [])
    if not any(key == "Layers" for key, _ in status):  # image layers + one writable layer per container
        status.append(["Layers", str(eng.layers.count() + len(recs))])
    uname = os.uname()
    drivers = eng.drivers_info()
    return {
        "ID": eng.store.get_meta("daemon_id") or "", "Containers": len(recs),
        "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(recs) - running - paused,
        "Images": len(eng.images.all()), "Driver": drivers["storage"], "DriverStatus": status,
        "Plugins": {"Volume": [], "Network": drivers["network"], "Authorization": None, "Log": ["json-file"]},
        "MemoryLimit": False, "SwapLimit": False, "KernelMemory": False, "CpuCfsPeriod": False,
        "CpuCfsQuota": False, "CPUShares": False, "CPUSet": False, "PidsLimit": False,
        "IPv4Forwarding": True, "BridgeNfIptables": False, "BridgeNfIp6tables": False,
        "Debug": False, "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": False,
        "NGoroutines": 0, "SystemTime": views_now(), "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs", "CgroupVersion": "1", "NEventsListener": 0,
        "KernelVersion": uname.release, "OperatingSystem": _os_name(), "OSVersion": "",
        "OSType": "linux", "Architecture": platform.machine(), "IndexServerAddress": "",
        "RegistryConfig": {"InsecureRegistryCIDRs": [], "IndexConfigs": {}, "Mirrors": []},
        "NCPU": os.cpu_count(), "MemTotal": _memtotal(), "DockerRootDir": eng.data_root,
        "Name": uname.nodename, "Labels": [], "ExperimentalBuild": False,
        "ServerVersion": __version__, "Runtimes": {drivers["exec"]: {"path": drivers["exec"]}},
        "DefaultRuntime": drivers["exec"], "LiveRestoreEnabled": True, "Isolation": "",
        "InitBinary": "", "SecurityOptions": [], "Warnings": [],
        # Dockyard's own: every active driver by kind
        "Drivers": drivers, "ExecRoot": eng.exec_root, "PluginsConfig": eng.config.source,
    }


def views_now():
    from datetime import datetime, timezone
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _os_name():
    try:
        with open("/etc/os-release") as fh:
            for line in fh:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def _memtotal():
    try:
        with open("/proc/meminfo") as fh:
            return int(fh.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return 0


async def info(request):
    from .app import HUB
    from .system_more_api import complete_info

    listeners = len(request.app[HUB].listeners) if HUB in request.app else 0
    data = await blocking(request, lambda: complete_info(engine(request), _info(engine(request)), listeners))
    return web.json_response(data)


ROUTES = [
    ("GET", "/_ping", ping),
    ("HEAD", "/_ping", ping),
    ("GET", "/version", version),
    ("GET", "/info", info),
]
