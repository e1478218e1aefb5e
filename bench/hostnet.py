"""The host's network state around benchmarks of peers that change it: dockerd
makes docker0 and its ``DOCKER*`` iptables chains, podman's netavark (or CNI)
makes ``podman0`` and ``NETAVARK*`` chains, Dockyard keeps its default bridge and
nft table; none of them removes all of it when it stops.

* :func:`snapshot` and :func:`differences`: links, pinned network namespaces,
  nftables tables, iptables/ip6tables rules and a few sysctls, before and after;
* :func:`remove_xtables`: delete a peer's iptables chains and every rule that
  jumps to them or names its bridge or subnet, then the iptables tables that only
  the peer had made (iptables is the nf_tables backend here: each is an nft table);
* :func:`remove_link`, :func:`remove_nft_table`.

Other sessions on this host make and remove their own bridges and tables at the
same time, so a difference is reported as ours only if it matches the names a
benchmark says it used.
"""

import os
import re
import shlex
import subprocess

SYSCTLS = ("net/ipv4/ip_forward", "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables")
XTABLES = ("iptables", "ip6tables")
_COUNTERS = re.compile(r"\[\d+:\d+\]|counter packets \d+ bytes \d+")


def _out(cmd):
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout if done.returncode == 0 else ""


def links():
    try:
        return set(os.listdir("/sys/class/net"))
    except OSError:
        return set()


def nft_tables():
    """``{"ip filter": text}``: each nftables table as ``nft list table`` prints it (counters removed)."""
    tables, name = {}, None
    for line in _out(["nft", "list", "ruleset"]).splitlines():
        if line.startswith("table "):
            name = line[len("table "):].rstrip(" {")
            tables[name] = []
        elif name is not None:
            tables[name].append(_COUNTERS.sub("", line).rstrip())
    return {k: "\n".join(v) for k, v in tables.items()}


def xtables(tool):
    """``{table: {"chains": {name: policy}, "rules": [(chain, args)]}}`` from ``<tool>-save``."""
    found, table = {}, None
    for line in _out([f"{tool}-save"]).splitlines():
        if line.startswith("*"):
            table = found.setdefault(line[1:].strip(), {"chains": {}, "rules": []})
        elif table is None or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, policy = line[1:].split()[:2]
            table["chains"][name] = policy
        elif line.startswith("-A "):
            args = shlex.split(line)[1:]
            table["rules"].append((args[0], args[1:]))
    return found


def snapshot():
    state = {"links": links(), "netns": set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set(),
             "nft": nft_tables(), "sysctl": {}}
    for tool in XTABLES:
        state[tool] = xtables(tool)
    for key in SYSCTLS:
        try:
            with open(f"/proc/sys/{key}") as fh:
                state["sysctl"][key] = fh.read().strip()
        except OSError:
            pass
    return state


def _xtables_lines(tables):
    return {f"-t {t} " + (f"-A {c} {shlex.join(a)}" if a is not None else f"chain {c} policy {p}")
            for t, body in tables.items()
            for c, p, a in [(c, p, None) for c, p in body["chains"].items()] + [(c, None, a) for c, a in body["rules"]]}


def differences(before, after, ours):
    """``(ours, others)``: lines describing what changed; a change is ours when
    ``ours(text)`` is true of the name or rule it is about."""
    found = []
    for name in sorted(after["links"] - before["links"]):
        found.append((name, f"link {name} is new"))
    for name in sorted(before["links"] - after["links"]):
        found.append((name, f"link {name} is gone"))
    for name in sorted(after["netns"] ^ before["netns"]):
        found.append((name, f"network namespace /run/netns/{name} is {'new' if name in after['netns'] else 'gone'}"))
    for name in sorted(set(before["nft"]) | set(after["nft"])):
        if before["nft"].get(name) == after["nft"].get(name):
            continue
        what = "new" if name not in before["nft"] else "gone" if name not in after["nft"] else "changed"
        found.append((name + "\n" + after["nft"].get(name, ""), f"nft table {name} is {what}"))
    for tool in XTABLES:
        old, new = _xtables_lines(before[tool]), _xtables_lines(after[tool])
        found += [(line, f"{tool} {line} is new") for line in sorted(new - old)]
        found += [(line, f"{tool} {line} is gone") for line in sorted(old - new)]
    for key, value in before["sysctl"].items():
        if after["sysctl"].get(key) != value:
            found.append((key, f"sysctl {key} was {value}, is {after['sysctl'].get(key)}"))
    mine = [text for about, text in found if ours(about)]
    return mine, [text for about, text in found if not ours(about)]


# --- removal ---------------------------------------------------------------------------
def _run(cmd):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)}: {done.stderr.strip() or done.returncode}")


def remove_link(name):
    """Delete link ``name`` if it is there; True if it was."""
    if name not in links():
        return False
    _run(["ip", "link", "del", name])
    return True


def remove_nft_table(name):
    """Delete the nft table called ``name`` in whatever family; the families it was in."""
    families = [t.split()[0] for t in nft_tables() if t.split()[1:] == [name]]
    for family in families:
        _run(["nft", "delete", "table", family, name])
    return families


def remove_xtables(prefixes, mentions, before):
    """Undo a peer's iptables rules: in every table of iptables and ip6tables, the
    rules outside chains named ``prefixes*`` that jump to such a chain or contain
    one of ``mentions`` (an interface name, a subnet) as an argument, then the
    chains themselves.  Prefixes with a chain in the ``before`` snapshot are left
    alone (someone else's).  Tables absent from ``before`` that are left with no
    rules and ACCEPT policies are deleted.  Returns what it removed, as text."""
    removed = []
    for tool in XTABLES:
        had = {c for body in before[tool].values() for c in body["chains"]}
        mine = tuple(p for p in prefixes if not any(c.startswith(p) for c in had))
        for table, body in xtables(tool).items():
            chains = [c for c in body["chains"] if mine and c.startswith(mine)]
            for chain, args in body["rules"]:
                if chain in chains:
                    continue
                target = args[args.index("-j") + 1] if "-j" in args[:-1] else None
                if target in chains or any(m in args for m in mentions):
                    _run([tool, "-t", table, "-D", chain, *args])
                    removed.append(f"{tool} -t {table} -A {chain} {shlex.join(args)}")
            for flag in ("-F", "-X"):
                for chain in chains:
                    _run([tool, "-t", table, flag, chain])
            removed += [f"{tool} -t {table} chain {c}" for c in chains]
        family = "ip" if tool == "iptables" else "ip6"
        for table, body in xtables(tool).items():
            if table in before[tool] or body["rules"] or set(body["chains"].values()) - {"ACCEPT", "-"}:
                continue
            if any(c not in ("INPUT", "FORWARD", "OUTPUT", "PREROUTING", "POSTROUTING") for c in body["chains"]):
                continue
            _run(["nft", "delete", "table", family, table])
            removed.append(f"nft table {family} {table} (made for {tool}, now empty)")
    return removed
