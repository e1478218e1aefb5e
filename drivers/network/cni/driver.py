"""The ``cni`` network driver: endpoints made by CNI plugins, as the kubelet's
runtimes (containerd, CRI-O) make a pod's network.

* options: ``conf_dir`` (``/etc/cni/net.d``) and ``bin_dir`` (``/usr/lib/cni``,
  or several joined by ``:``) in ``[network.options.cni]``; the daemon's
  ``--cni-conf-dir``/``--cni-bin-dir`` reach every network driver as
  ``cni_conf_dir``/``cni_bin_dir`` and win over them;
* a network uses the first configuration of the conf dir by file name, or the
  one whose ``name`` its option ``cni_network`` gives (``docker network create
  -d cni -o cni_network=NAME``); nothing is made at ``network create``: the
  plugins make their bridge at the first ADD, as they do under a kubelet;
* an endpoint is one ADD of the list in the container's namespace
  (``CNI_CONTAINERID`` its container's id, ``CNI_IFNAME`` eth0, or the next free
  ethN), its addresses those the plugins' IPAM gave (the core's IPAM address is
  not used); detach is the DEL of the list in reverse order with what the ADD had
  (see :mod:`.state`), also when the namespace is gone or the daemon restarted;
* published ports are the ``portMappings`` capability.  The engine publishes
  after it has attached every network, and a plugin such as portmap reads its
  mappings only at ADD: so the attach runs the whole list with no mappings (the
  list's order and results as they are without ports), and publishing runs ADD
  again of just the plugins that declare the capability, with the mappings and
  the attachment's result as ``prevResult`` (after a DEL of them with the
  mappings they had, when these change).  The DEL at detach passes the mappings
  too (portmap removes nothing without them).  A host port 0 gets a free port.

Drivers import only the hook specs, the errors and the driver kit.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from dockyard.errors import Conflict, NetworkError
from dockyard.hookspecs import hookimpl

from . import conf, hostports, invoke
from .state import Records, interface_names, is_netns

DEFAULT_CONF_DIR = "/etc/cni/net.d"
DEFAULT_BIN_DIR = "/usr/lib/cni"
OPT_NETWORK = "cni_network"
PORTS = "portMappings"
log = logging.getLogger("dockyard.network.cni")


class PortTaken(NetworkError, Conflict):
    """A host port another endpoint of this driver publishes (409, as dockerd's)."""


class CniDriver:
    """Runs the CNI plugins of a configuration directory."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # records, and portmap's ADDs against the sweep of its chains
        self.conf_dir, self.bin_dirs = DEFAULT_CONF_DIR, [DEFAULT_BIN_DIR]
        self.records: Records | None = None

    # -- set-up --------------------------------------------------------------------

    @hookimpl
    def network_supported(self, home, options):
        """Root only: the plugins make interfaces and rules.  A missing plugin or
        configuration is an error of the attach that needs it (a kubelet installs
        the configuration when it likes), not a reason to refuse the driver."""
        if os.geteuid() != 0:
            return "needs root (the CNI plugins make interfaces and firewall rules)"
        return None

    @hookimpl
    def network_init(self, home, options):
        options = dict(options or {})
        conf_dir = options.get("cni_conf_dir") or options.get("conf_dir") or DEFAULT_CONF_DIR
        bins = options.get("cni_bin_dir") or options.get("bin_dir") or DEFAULT_BIN_DIR
        self.conf_dir = os.path.abspath(str(conf_dir))
        self.bin_dirs = [os.path.abspath(d) for d in str(bins).split(":") if d]
        self.records = Records(str(home))
        return None

    @hookimpl
    def network_namespace(self, network):
        return "private"

    # -- networks ------------------------------------------------------------------

    @hookimpl
    def network_create(self, network):
        """Nothing to make: the plugins make their bridge at the first ADD."""
        return {}

    @hookimpl
    def network_delete(self, network):
        """DEL what the network's endpoints still have (attachments never detached:
        a daemon that crashed), so the plugins free their addresses and rules."""
        for endpoint_id, rec in self._records().all().items():
            if rec.get("network_id") == network.get("id"):
                try:
                    self._delete(_label(network, rec.get("name")), endpoint_id, rec)
                except NetworkError as e:
                    log.warning("%s", e)
        return None

    # -- endpoints -----------------------------------------------------------------

    @hookimpl
    def network_attach(self, network, endpoint, netns):
        label = _label(network, endpoint.get("name"))
        records = self._records()
        if not netns:
            raise NetworkError(f"{label}: the cni driver needs a network namespace")
        done = records.get(endpoint["id"])
        if done is not None and done.get("result") is not None and done.get("netns") == netns:
            return invoke.attached(label, done["result"], done["ifname"])  # attached already
        path, conflist = conf.find(self.conf_dir, (network.get("options") or {}).get(OPT_NETWORK) or None)
        ifname = _free_ifname(interface_names(netns))
        rec = {"network_id": network.get("id"), "container_id": endpoint["container_id"],
               "name": endpoint.get("name"), "netns": netns, "ifname": ifname, "conf_file": path,
               "conflist": conflist, "runtime": {}, "result": None}
        records.put(endpoint["id"], rec)  # first: a crash in the ADD leaves what its DEL needs
        call = self._call(label, rec)
        try:
            rec["result"] = invoke.add(call, conflist, rec["runtime"])
            out = invoke.attached(label, rec["result"], ifname)
            records.put(endpoint["id"], rec)
        except BaseException:
            if rec["result"] is not None:  # ADD ran but its result is unusable
                invoke.delete(call, conflist, rec["runtime"], rec["result"], quiet=True)
            records.remove(endpoint["id"])
            raise
        return out

    @hookimpl
    def network_detach(self, network, endpoint, netns):
        rec = self._records().get(endpoint["id"])
        if rec is None:
            return None  # never attached, or detached already
        self._delete(_label(network, endpoint.get("name")), endpoint["id"], rec)
        return None

    def _delete(self, label: str, endpoint_id: str, rec: dict) -> None:
        """DEL of the whole list with what its ADD had; the record goes only when
        every plugin's DEL worked (the network's delete tries again)."""
        invoke.delete(self._call(label, rec), rec["conflist"], rec.get("runtime") or {}, rec.get("result"))
        self._records().remove(endpoint_id)
        if (rec.get("runtime") or {}).get(PORTS):
            self._sweep()

    def _sweep(self) -> None:
        """The last mapped port gone: portmap's shared chains go too (:mod:`.hostports`)."""
        with self._lock:  # no publish of ours between the look and the sweep
            if not any((r.get("runtime") or {}).get(PORTS) for r in self._records().all().values()):
                hostports.sweep()

    # -- published ports -----------------------------------------------------------

    @hookimpl
    def network_publish(self, network, endpoint, ports):
        """Hand ``ports`` to the plugins of the ``portMappings`` capability."""
        label = _label(network, endpoint.get("name"))
        records = self._records()
        rec = records.get(endpoint["id"])
        if rec is None or rec.get("result") is None:
            raise NetworkError(f"{label}: not attached, so no port can be published")
        conflist = rec["conflist"]
        which = conf.with_capability(conflist, PORTS)
        if ports and not which:
            raise NetworkError(f"{label}: the CNI configuration {rec['conf_file']} has no plugin with the "
                               f"{PORTS} capability (such as portmap), so ports cannot be published")
        with self._lock:  # the host ports checked and recorded at once
            mappings, bound = self._claim(label, endpoint["id"], ports)
            old = (rec.get("runtime") or {}).get(PORTS) or []
            if old == mappings:
                return bound  # published already (a restarted daemon holds them again)
            rec["runtime"] = dict(rec.get("runtime") or {}, **{PORTS: mappings})
            records.put(endpoint["id"], rec)
        call = self._call(label, rec)
        with self._lock:  # a sweep after another endpoint's DEL must not remove the chains this ADD uses
            if old:
                invoke.delete(call, conflist, {PORTS: old}, rec["result"], which=which)
            if mappings:
                invoke.add_some(call, conflist, which, rec["runtime"], rec["result"])
            else:
                self._sweep()
        return bound

    def _claim(self, label: str, endpoint_id: str, ports: list) -> tuple[list[dict], list[dict]]:
        """``(CNI port mappings, the hook's ports bound)``: a host port 0 gets a free
        one; a host port another endpoint of this driver publishes is refused."""
        taken = {}
        for other_id, other in self._records().all().items():
            if other_id != endpoint_id:
                for m in (other.get("runtime") or {}).get(PORTS) or []:
                    taken[(m["protocol"], m["hostPort"])] = m.get("hostIP") or ""
        mappings, bound = [], []
        for p in ports:
            proto = str(p.get("proto") or "tcp").lower()
            host_ip = p.get("host_ip") or ""
            if host_ip in ("0.0.0.0", "::"):
                host_ip = ""
            host_port = int(p.get("host_port") or 0) or _free_port(proto, host_ip)
            if (proto, host_port) in taken and (not host_ip or not taken[(proto, host_port)]
                                                or taken[(proto, host_port)] == host_ip):
                raise PortTaken(f"{label}: host port {host_port}/{proto} is already published by another "
                                "endpoint of the cni driver")
            m = {"hostPort": host_port, "containerPort": int(p["container_port"]), "protocol": proto}
            if host_ip:
                m["hostIP"] = host_ip
            mappings.append(m)
            bound.append({"proto": proto, "host_ip": host_ip, "host_port": host_port,
                          "container_port": int(p["container_port"])})
        return mappings, bound

    # -- helpers -------------------------------------------------------------------

    def _records(self) -> Records:
        if self.records is None:
            raise NetworkError("cni driver: network_init was not called")
        return self.records

    def _call(self, label: str, rec: dict) -> invoke.Call:
        """The plugins' ``CNI_*`` of ``rec``; a namespace that is gone is given as
        "" (the plugins then release addresses and rules only, as the spec allows)."""
        netns = rec["netns"] if is_netns(rec["netns"]) else ""
        return invoke.Call(label, self.bin_dirs, rec["container_id"], netns, rec["ifname"])


def _label(network: dict, endpoint_name: str | None) -> str:
    name = network.get("name") or str(network.get("id") or "?")[:12]
    return f"network {name}, endpoint {str(endpoint_name or '?').lstrip('/')}"


def _free_ifname(names: set[str]) -> str:
    n = 0
    while f"eth{n}" in names:
        n += 1
    return f"eth{n}"


def _free_port(proto: str, host_ip: str) -> int:
    """A port the kernel gives as free now (portmap binds nothing: like a kubelet's
    runtime, this driver only rewrites packets)."""
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host_ip, 0))
        return int(s.getsockname()[1])
