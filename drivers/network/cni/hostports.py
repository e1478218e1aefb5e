"""What the portmap plugin leaves behind once no port is mapped, removed.

portmap (containernetworking-plugins 1.1.1, Debian 12's) maps host ports with
iptables: a chain per container (``CNI-DN-<hash>``), removed by its DEL, and
shared chains it "always creates and never deletes" (``CNI-HOSTPORT-DNAT``,
``-SETMARK``, ``-MASQ``, and the jumps to them from ``PREROUTING``, ``OUTPUT`` and
``POSTROUTING``).  With iptables' nf_tables backend (this platform's) the first
use also makes the ``ip nat`` and ``ip6 nat`` tables.  So that a host whose
containers have gone has none of it, :func:`sweep` removes the shared chains
when no per-container chain is left (any CNI user's: containerd's, podman's),
and a ``nat`` table that then holds nothing but empty base chains.  A CNI user's
next ADD makes them again.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess

log = logging.getLogger("dockyard.network.cni")

SHARED = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
#: the jumps portmap adds to the base chains (iptables -S syntax, without "-A ")
JUMPS = ("PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
         "OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT",
         'POSTROUTING -m comment --comment "CNI portfwd requiring masquerade" -j CNI-HOSTPORT-MASQ')
_BASE = re.compile(r"^-P (PREROUTING|INPUT|OUTPUT|POSTROUTING) ACCEPT$")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


def _rules(tool: str) -> list[str] | None:
    """``iptables -t nat -S`` lines, or None when the tool cannot list them."""
    done = _run(tool, "-w", "-t", "nat", "-S")
    return done.stdout.splitlines() if done.returncode == 0 else None


def sweep() -> None:
    """Remove portmap's shared chains, and an empty ``nat`` table, in both families,
    when no container's chain is left.  Errors are logged, never raised (a DEL
    has already succeeded)."""
    for tool, family in (("iptables", "ip"), ("ip6tables", "ip6")):
        if shutil.which(tool) is None:
            continue
        try:
            _sweep(tool, family)
        except (OSError, subprocess.SubprocessError) as e:
            log.warning("cni: removing portmap's shared %s chains: %s", tool, e)


def _sweep(tool: str, family: str) -> None:
    rules = _rules(tool)
    if rules is None:
        return
    if any(r.startswith("-N CNI-DN-") for r in rules):
        return  # a container's ports are still mapped (ours or another CNI user's)
    if any(r.startswith("-A CNI-HOSTPORT-DNAT ") for r in rules):
        return
    if any(f"-N {c}" in rules for c in SHARED):
        for jump in JUMPS:
            if f"-A {jump}" in rules:
                _run(tool, "-w", "-t", "nat", "-D", *_split(jump))
        for chain in SHARED:
            if f"-N {chain}" in rules:
                _run(tool, "-w", "-t", "nat", "-F", chain)
        for chain in SHARED:
            if f"-N {chain}" in rules:
                done = _run(tool, "-w", "-t", "nat", "-X", chain)
                if done.returncode != 0:
                    log.warning("cni: %s -t nat -X %s: %s", tool, chain, done.stderr.strip())
        rules = _rules(tool) or []
    nft = "nf_tables" in _run(tool, "--version").stdout
    if nft and rules and all(_BASE.match(r) for r in rules) and shutil.which("nft"):
        _run("nft", "delete", "table", family, "nat")  # nothing in it: as before the first portmap


def _split(rule: str) -> list[str]:
    import shlex

    return shlex.split(rule)
