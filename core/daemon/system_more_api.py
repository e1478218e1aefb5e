"""``/system/df``, ``/build/prune``, ``/plugins*`` and ``/distribution/{name}/json``.

``system df`` reports what ``docker system df`` (and ``-v``) render: the images
as ``docker images`` lists them with ``SharedSize`` (bytes of their layers that
another listed image also uses) and ``Containers`` (how many containers use
each), every container with ``SizeRw``/``SizeRootFs``, the volumes with their
``UsageData`` (the volume engine's ``usage()``, when there is one) and the build
cache: the classic builder's step cache (:mod:`dockyard.builder.cache`), whose
records hold no bytes of their own (the images they point at do).

Plugins: Dockyard has drivers, not Docker managed plugins, so ``GET /plugins`` is
an empty list and a named plugin is a 404.
"""

import json
import os

from aiohttp import web

from ..errors import DockyardError, InvalidParameter, NotFound
from . import views
from .app import blocking, engine
from .bodies import auth_header, json_body
from .images_api import list_images, parse_filters

REPO_LIST = "RepoTags"


class PluginNotFound(NotFound):
    pass


class NotImplementedHere(DockyardError):
    status = 501


def _layer_sizes(eng, image_rows):
    """``{image id: [(chain id, size)]}`` for every image."""
    out = {}
    for row in image_rows:
        top = row["top_layer"]
        out[row["id"]] = [(r["chain_id"], r["size"]) for r in eng.layers.chain(top)] if top else []
    return out


def _rw_size(eng, rec, image_top):
    parent = eng.layers.driver_id(image_top) if image_top else None
    try:
        return int(eng.layers.hook.storage_size(id=rec["Id"], parent=parent) or 0)
    except DockyardError:
        return 0


def data_usage(eng):
    rows = {r["id"]: r for r in eng.images.all()}
    chains = _layer_sizes(eng, rows.values())
    layers_size = eng.store.one("SELECT COALESCE(SUM(size), 0) AS n FROM layers")["n"]
    recs = eng.containers.all()
    users = {}
    for rec in recs:
        users[rec["Image"]] = users.get(rec["Image"], 0) + 1
    images = list_images(eng, False, {})
    listed = {i["Id"] for i in images}
    count = {}
    for image_id in listed:
        for chain, _ in chains.get(image_id, []):
            count[chain] = count.get(chain, 0) + 1
    for img in images:
        img["SharedSize"] = sum(size for chain, size in chains.get(img["Id"], []) if count.get(chain, 0) > 1)
        img["Containers"] = users.get(img["Id"], 0)
    containers = []
    for rec in sorted(recs, key=lambda r: r["Created"], reverse=True):
        row = rows.get(rec["Image"])
        top = row["top_layer"] if row else None
        summary = views.container_summary(rec)
        summary["SizeRw"] = _rw_size(eng, rec, top)
        summary["SizeRootFs"] = summary["SizeRw"] + (eng.layers.size(top) if top else 0)
        containers.append(summary)
    return {"LayersSize": layers_size, "Images": images, "Containers": containers,
            "Volumes": _volumes(eng), "BuildCache": _build_cache(eng)}


def _volumes(eng):
    volumes = getattr(eng, "volumes", None)
    if volumes is None or not hasattr(volumes, "usage"):
        return []
    out = []
    for rec, size, refs in volumes.usage():
        view = volumes.view(rec) if hasattr(volumes, "view") else dict(rec)
        view["UsageData"] = {"Size": size, "RefCount": refs}
        out.append(view)
    return out


def _build_cache(eng):
    from ..builder.cache import BuildCache

    BuildCache(eng.store)
    out = []
    for row in eng.store.query("SELECT key, parent, step, created FROM build_cache ORDER BY created"):
        try:
            step = json.loads(row["step"])
        except ValueError:
            step = row["step"]
        desc = step if isinstance(step, str) else (step.get("created_by") if isinstance(step, dict) else None)
        out.append({"ID": row["key"].removeprefix("sha256:")[:25], "Parent": "", "Type": "regular",
                    "Description": desc or json.dumps(step), "InUse": False, "Shared": False, "Size": 0,
                    "CreatedAt": row["created"], "LastUsedAt": None, "UsageCount": 0})
    return out


async def system_df(request):
    return web.json_response(await blocking(request, data_usage, engine(request)))


async def build_prune(request):
    from ..builder import cache
    from ..engine.imageremove import parse_timestamp

    eng = engine(request)
    filters = parse_filters(request)
    for key in filters:
        if key not in ("until", "unused-for", "type", "id", "description", "inuse", "shared", "private"):
            raise InvalidParameter(f"invalid filter '{key}'")
    until = filters.get("until") or filters.get("unused-for")
    cutoff = min(parse_timestamp(v) for v in until) if until else None
    keys = await blocking(request, cache.prune, eng.store, cutoff)
    return web.json_response({"CachesDeleted": [k.removeprefix("sha256:")[:25] for k in keys] or None,
                              "SpaceReclaimed": 0})


# /info and /version ------------------------------------------------------------
def _read(path, default=""):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError:
        return default


def _kernel_features():
    """What ``docker info`` reports (and warns about) from the host's cgroups."""
    from ..driverkit.cgroups import layout as cg_layout

    try:
        lay = cg_layout.detect()
    except Exception:  # no cgroups here: every limit is missing
        return "1", {}
    ctrls = lay.controllers
    if lay.version == "v2":
        mem = "memory" in ctrls
        cpu = "cpu" in ctrls
        return "2", {"MemoryLimit": mem, "SwapLimit": mem and any(
                         os.path.exists(os.path.join(lay.unified, d, "memory.swap.max"))
                         for d in ("", "init.scope", "system.slice")),
                     "CpuCfsPeriod": cpu, "CpuCfsQuota": cpu, "CPUShares": cpu, "CPUSet": "cpuset" in ctrls,
                     "PidsLimit": "pids" in ctrls, "OomKillDisable": False, "KernelMemory": False,
                     "KernelMemoryTCP": False}
    mem, cpu = ctrls.get("memory"), ctrls.get("cpu")
    return "1", {"MemoryLimit": bool(mem),
                 "SwapLimit": bool(mem) and os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes")),
                 "KernelMemory": bool(mem) and os.path.exists(os.path.join(mem, "memory.kmem.limit_in_bytes")),
                 "KernelMemoryTCP": bool(mem) and os.path.exists(os.path.join(mem, "memory.kmem.tcp.limit_in_bytes")),
                 "CpuCfsPeriod": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.cfs_period_us")),
                 "CpuCfsQuota": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.cfs_quota_us")),
                 "CPUShares": bool(cpu) and os.path.exists(os.path.join(cpu, "cpu.shares")),
                 "CPUSet": "cpuset" in ctrls, "PidsLimit": "pids" in ctrls,
                 "OomKillDisable": bool(mem) and os.path.exists(os.path.join(mem, "memory.oom_control"))}


_WARNINGS = [("MemoryLimit", "WARNING: No memory limit support"), ("SwapLimit", "WARNING: No swap limit support"),
             ("CpuCfsPeriod", "WARNING: No cpu cfs period support"), ("CpuCfsQuota", "WARNING: No cpu cfs quota support"),
             ("CPUShares", "WARNING: No cpu shares support"), ("CPUSet", "WARNING: No cpuset support"),
             ("PidsLimit", "WARNING: No pids limit support")]


def _registry_config(eng):
    insecure = list(getattr(getattr(eng, "registry", None), "insecure", None) or [])
    index = {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}}
    for host in insecure:
        index[host] = {"Name": host, "Mirrors": [], "Secure": False, "Official": False}
    return {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
            "InsecureRegistryCIDRs": [], "IndexConfigs": index, "Mirrors": []}


def _tini_version():
    from ..engine.containers import INIT_PATH

    if not os.path.isfile(INIT_PATH):
        return ""
    import subprocess
    try:
        out = subprocess.run([INIT_PATH, "--version"], capture_output=True, timeout=5).stdout.decode()
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.strip().split(" - ")[0].replace("tini version ", "")


def complete_info(eng, info, listeners=0):
    """``/info`` made whole: the kernel's features, swarm (inactive), the registry
    configuration from the daemon's flags, runtimes, versions, warnings."""
    from .. import __version__

    version, features = _kernel_features()
    info.update(features)
    exec_name = eng.drivers_info()["exec"]
    volumes = getattr(eng, "volumes", None)
    info["Plugins"] = dict(info.get("Plugins") or {})
    if not info["Plugins"].get("Volume") and volumes is not None:
        info["Plugins"]["Volume"] = sorted(getattr(volumes, "slots", None) or ["local"])
    forwarding = _read("/proc/sys/net/ipv4/ip_forward", "0") == "1"
    bridge_nf = _read("/proc/sys/net/bridge/bridge-nf-call-iptables", "0") == "1"
    bridge_nf6 = _read("/proc/sys/net/bridge/bridge-nf-call-ip6tables", "0") == "1"
    tini = _tini_version()
    info.update({
        "CgroupVersion": version, "CgroupDriver": "cgroupfs", "NEventsListener": listeners,
        "IPv4Forwarding": forwarding, "BridgeNfIptables": bridge_nf, "BridgeNfIp6tables": bridge_nf6,
        "IndexServerAddress": "https://index.docker.io/v1/", "RegistryConfig": _registry_config(eng),
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "Runtimes": {exec_name: {"path": f"dockyard exec driver {exec_name}"}}, "DefaultRuntime": exec_name,
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": f"dockyard-{exec_name}-{__version__}", "Expected": f"dockyard-{exec_name}-{__version__}"},
        "InitBinary": "docker-init" if tini else "", "InitCommit": {"ID": tini, "Expected": tini},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
        "HttpProxy": os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or "",
        "HttpsProxy": os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or "",
        "NoProxy": os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "",
        "GenericResources": None, "DefaultAddressPools": [], "ProductLicense": "",
        "OSVersion": info.get("OSVersion") or _os_version(),
    })
    warnings = [w for key, w in _WARNINGS if not features.get(key, True)]
    if not forwarding:
        warnings.append("WARNING: IPv4 forwarding is disabled")
    info["Warnings"] = list(info.get("Warnings") or []) + warnings
    return info


def _os_version():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("VERSION_ID="):
            return line.split("=", 1)[1].strip().strip('"')
    return ""


def complete_version(eng, version):
    """``/version``: a component per active driver besides the engine."""
    drivers = eng.drivers_info()
    components = list(version.get("Components") or [])
    if components:  # what `docker version` prints for the engine
        details = components[0].setdefault("Details", {})
        for key in ("GitCommit", "GoVersion", "BuildTime"):
            details.setdefault(key, version.get(key, ""))
        details.setdefault("Experimental", "false")
    components.append({"Name": f"exec driver {drivers['exec']}", "Version": version.get("Version", ""),
                       "Details": {"Kind": "exec"}})
    components.append({"Name": f"storage driver {drivers['storage']}", "Version": version.get("Version", ""),
                       "Details": {"Kind": "storage"}})
    tini = _tini_version()
    if tini:
        components.append({"Name": "docker-init", "Version": tini, "Details": {"GitCommit": ""}})
    version["Components"] = components
    return version


# plugins -----------------------------------------------------------------------
async def plugins_list(request):
    return web.json_response([])


async def plugin_privileges(request):
    remote = request.query.get("remote") or ""
    raise NotImplementedHere(f"Dockyard does not install Docker managed plugins ({remote or 'no name'}): "
                             "its storage, exec, network and volume backends are drivers "
                             "(see `dockyard driver ls`)")


async def plugin_named(request):
    operation = {"set": "PluginSet", "upgrade": "PluginUpgrade"}.get(request.match_info.get("action"))
    if operation:
        await json_body(request, operation)
    raise PluginNotFound(f"plugin \"{request.match_info['name']}\" not found")


async def plugin_install(request):
    if request.path.endswith("/pull"):
        await json_body(request, "PluginPull")
    await plugin_privileges(request)


# distribution ------------------------------------------------------------------
def _distribution(eng, ref, auth):
    from .. import imagespec as mf
    from ..registry import names
    from ..registry.auth import scope
    from ..registry.errors import sent_by_registry
    from ..engine.content import digest_of

    registry = getattr(eng, "registry", None)
    if registry is None:
        raise NotImplementedHere("this daemon has no registry client")
    name = names.parse(ref)
    session = registry.session(name.domain, auth)
    scopes = [scope(name.path, "pull")]
    try:
        resp = session.request("GET", f"/v2/{name.path}/manifests/{name.ref}", scopes, {"Accept": mf.ACCEPT})
        if resp.status != 200:
            session.fail(resp, f"manifest for {name}")
        data = resp.read_all(limit=mf.MAX_MANIFEST)
        media_type = mf.media_type_of(data, resp.header("Content-Type"))
        resp.close()
        doc = json.loads(data)
        descriptor = {"mediaType": media_type, "digest": digest_of(data), "size": len(data)}
        if media_type in mf.INDEX_TYPES:
            platforms = [m.get("platform") or {} for m in doc.get("manifests") or []]
        else:
            with sent_by_registry():
                config = mf.parse_manifest(data, media_type).config
            resp = session.request("GET", f"/v2/{name.path}/blobs/{config.digest}", scopes)
            if resp.status != 200:
                session.fail(resp, f"image config of {name}")
            cfg = json.loads(resp.read_all(limit=mf.MAX_MANIFEST))
            resp.close()
            platforms = [{k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}]
    finally:
        session.close()
    return {"Descriptor": descriptor, "Platforms": platforms}


async def distribution_inspect(request):
    eng = engine(request)
    auth = auth_header(request)
    out = await blocking(request, _distribution, eng, request.match_info["name"], auth)
    return web.json_response(out)


ROUTES = [
    ("GET", "/system/df", system_df),
    ("POST", "/build/prune", build_prune),
    ("GET", "/plugins", plugins_list),
    ("GET", "/plugins/privileges", plugin_privileges),
    ("POST", "/plugins/pull", plugin_install),
    ("POST", "/plugins/create", plugin_install),
    ("GET", "/plugins/{name:.+}/json", plugin_named),
    ("DELETE", "/plugins/{name:.+}", plugin_named),
    ("POST", "/plugins/{name:.+}/{action:enable|disable|upgrade|push|set}", plugin_named),
    ("GET", "/distribution/{name:.+}/json", distribution_inspect),
]
