"""Running CNI plugins, as the CNI specification (0.4.0, 1.0.0) has a runtime do.

A plugin is an executable named by its ``type`` in one of the bin directories;
it gets the command and the container in ``CNI_*`` environment variables, its
configuration on stdin, and answers a result (ADD) or nothing (DEL) on stdout,
or an error ``{"code", "msg", "details"}`` and a non-zero exit.  A list runs
each plugin in order for ADD, each receiving the result so far as
``prevResult``, and in reverse order for DEL.
"""

from __future__ import annotations

import json
import os
import subprocess

from dockyard.errors import NetworkError

from .conf import plugin_config, version

#: how long one plugin may run (the bridge plugin waits for DAD, portmap for iptables' lock)
TIMEOUT = 60
_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # portmap runs iptables


class Call:
    """One container's attachment as the plugins see it: the ``CNI_*`` variables."""

    def __init__(self, label: str, bin_dirs: list[str], container_id: str, netns: str, ifname: str) -> None:
        self.label, self.bin_dirs = label, bin_dirs
        self.container_id, self.netns, self.ifname = container_id, netns, ifname

    def find(self, kind: str) -> str:
        for d in self.bin_dirs:
            path = os.path.join(d, kind)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
        raise NetworkError(f"{self.label}: CNI plugin {kind!r} not found in {':'.join(self.bin_dirs)} "
                           "(the CNI bin dir: --cni-bin-dir, or the cni driver's bin_dir option)")

    def run(self, command: str, conf: dict) -> dict | None:
        """Run the plugin of ``conf`` for ``command``; its result (ADD), else None."""
        kind = conf["type"]
        path = self.find(kind)
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": self.container_id, "CNI_NETNS": self.netns,
               "CNI_IFNAME": self.ifname, "CNI_PATH": ":".join(self.bin_dirs),
               "PATH": os.environ.get("PATH") or _PATH}
        what = f"{self.label}: CNI plugin {kind} ({command} on network {conf.get('name')})"
        try:
            done = subprocess.run([path], input=json.dumps(conf).encode(), env=env, capture_output=True,
                                  timeout=TIMEOUT, close_fds=True)
        except subprocess.TimeoutExpired:
            raise NetworkError(f"{what}: no answer in {TIMEOUT} s") from None
        except OSError as e:
            raise NetworkError(f"{what}: {path}: {e.strerror}") from None
        out = done.stdout.strip()
        answer = None
        if out:
            try:
                answer = json.loads(out)
            except ValueError:
                answer = None
        if done.returncode != 0:
            raise NetworkError(f"{what} failed: {_reason(answer, done)}")
        if command != "ADD" or not out:
            return None
        if not isinstance(answer, dict):
            raise NetworkError(f"{what}: its result is not a JSON object: {out[:200]!r}")
        return answer


def _reason(answer: object, done: subprocess.CompletedProcess) -> str:
    """A failed plugin's error, as the spec has it print one, else its stderr."""
    if isinstance(answer, dict) and answer.get("msg"):
        text = str(answer["msg"])
        if answer.get("details"):
            text += f": {answer['details']}"
        return f"{text} (CNI error code {answer.get('code', '?')})"
    err = done.stderr.decode(errors="replace").strip() or done.stdout.decode(errors="replace").strip()
    return err[-500:] or f"exit status {done.returncode}"


def add(call: Call, conflist: dict, runtime: dict) -> dict:
    """ADD every plugin of ``conflist`` in order; the last result.  A plugin that
    fails undoes the list (DEL of all, errors ignored) before the error is raised."""
    prev: dict | None = None
    try:
        for n in range(len(conflist["plugins"])):
            got = call.run("ADD", plugin_config(conflist, n, runtime, prev))
            prev = got if got is not None else prev
    except BaseException:
        delete(call, conflist, runtime, prev, quiet=True)
        raise
    if prev is None:
        raise NetworkError(f"{call.label}: the CNI plugins of network {conflist['name']} gave no result")
    return prev


def add_some(call: Call, conflist: dict, which: list[int], runtime: dict, prev: dict) -> None:
    """ADD only the plugins ``which`` (port mappings published after the attach),
    each given the attachment's result as ``prevResult``."""
    for n in which:
        call.run("ADD", plugin_config(conflist, n, runtime, prev))


def delete(call: Call, conflist: dict, runtime: dict, prev: dict | None, quiet: bool = False,
           which: list[int] | None = None) -> None:
    """DEL the plugins of ``conflist`` (or ``which`` of them) in reverse order, the
    same ``runtime`` arguments as their ADD and, from CNI 0.4.0, the attachment's
    result as ``prevResult``.  Every plugin gets its DEL even when one fails;
    the first failure is raised after (unless ``quiet``)."""
    if version(conflist["cniVersion"]) < (0, 4, 0):
        prev = None
    failed = None
    for n in reversed(which if which is not None else range(len(conflist["plugins"]))):
        try:
            call.run("DEL", plugin_config(conflist, n, runtime, prev))
        except NetworkError as e:
            failed = failed or e
    if failed is not None and not quiet:
        raise failed


def attached(label: str, result: dict, ifname: str) -> dict:
    """The hook's ``Attached`` of a CNI result (0.3.0 to 1.0.0, and 0.1/0.2's ``ip4``):
    the addresses on the container's interface ``ifname``, its MAC, gateways and
    name servers."""
    out: dict = {"interface": ifname, "ipv4": None, "gateway": None, "mac": None, "dns": [], "mtu": None}
    ifaces = result.get("interfaces") or []
    mine = {n for n, i in enumerate(ifaces) if isinstance(i, dict) and i.get("name") == ifname and i.get("sandbox")}
    for n in mine:
        out["mac"] = ifaces[n].get("mac") or None
    ips = list(result.get("ips") or [])
    for old, ver in (("ip4", "4"), ("ip6", "6")):  # CNI 0.1.0/0.2.0
        if isinstance(result.get(old), dict):
            ips.append({"version": ver, "address": result[old].get("ip"), "gateway": result[old].get("gateway")})
    for ip in ips:
        if not isinstance(ip, dict) or not ip.get("address"):
            continue
        if "interface" in ip and mine and ip["interface"] not in mine:
            continue
        six = ":" in str(ip["address"])
        key, gw = ("ipv6", "gateway6") if six else ("ipv4", "gateway")
        if out.get(key) is None:
            out[key] = str(ip["address"])
            out[gw] = ip.get("gateway") or None
    if out["ipv4"] is None and out.get("ipv6") is None:
        raise NetworkError(f"{label}: the CNI result gives the interface {ifname} no address")
    dns = result.get("dns") or {}
    out["dns"] = [str(a) for a in dns.get("nameservers") or []] if isinstance(dns, dict) else []
    return out
