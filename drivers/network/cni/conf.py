"""CNI network configurations: found in a directory, as libcni finds them.

A directory holds ``.conflist`` files (a list of plugins run in order) and
``.conf``/``.json`` files (one plugin: read as a list of one).  The first file
by name that loads is the one used, unless a network names a configuration
(its ``name`` field).  A configuration is re-read at each attach (kubelets'
runtimes pick up a configuration installed later); what an attachment used is
kept with it, so its DEL runs the same plugins with the same settings.
"""

from __future__ import annotations

import json
import os
import re

from dockyard.errors import NetworkError

EXTENSIONS = (".conflist", ".conf", ".json")
_TYPE = re.compile(r"^[A-Za-z0-9_.-]+$")  # a plugin's type is a file name in the bin dir


def version(text: str) -> tuple[int, ...]:
    """``"0.4.0"`` -> ``(0, 4, 0)``; a version that is not one is ``(0, 1, 0)`` (the oldest)."""
    try:
        return tuple(int(p) for p in str(text).split("."))
    except ValueError:
        return (0, 1, 0)


def load_file(path: str) -> dict:
    """The configuration list in ``path`` (a ``.conf`` made a list of one), checked."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read())
    except OSError as e:
        raise NetworkError(f"CNI configuration {path}: {e.strerror}") from None
    except ValueError as e:
        raise NetworkError(f"CNI configuration {path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise NetworkError(f"CNI configuration {path}: not a JSON object")
    if not path.endswith(".conflist"):
        if "plugins" in data:
            raise NetworkError(f"CNI configuration {path}: a list of plugins needs the .conflist extension")
        data = {"cniVersion": data.get("cniVersion", "0.1.0"), "name": data.get("name"), "plugins": [data]}
    name, plugins = data.get("name"), data.get("plugins")
    if not isinstance(name, str) or not name:
        raise NetworkError(f"CNI configuration {path}: it has no name")
    if not isinstance(plugins, list) or not plugins:
        raise NetworkError(f"CNI configuration {path}: it has no plugins")
    for n, plugin in enumerate(plugins):
        kind = plugin.get("type") if isinstance(plugin, dict) else None
        if not isinstance(kind, str) or not _TYPE.match(kind):
            raise NetworkError(f"CNI configuration {path}: plugin {n} has no valid type ({kind!r})")
    data.setdefault("cniVersion", "0.1.0")
    return data


def find(conf_dir: str, wanted: str | None = None) -> tuple[str, dict]:
    """``(path, configuration list)`` of the first file in ``conf_dir`` that loads
    (or the one named ``wanted``).  Files that do not load are skipped, as libcni
    skips them, but named in the error when none is left."""
    try:
        names = sorted(n for n in os.listdir(conf_dir) if n.endswith(EXTENSIONS))
    except FileNotFoundError:
        names = []
    except OSError as e:
        raise NetworkError(f"CNI configuration directory {conf_dir}: {e.strerror}") from None
    bad = []
    for name in names:
        path = os.path.join(conf_dir, name)
        try:
            data = load_file(path)
        except NetworkError as e:
            bad.append(str(e))
            continue
        if wanted is None or data["name"] == wanted:
            return path, data
    what = f"no CNI network configuration named {wanted!r}" if wanted else "no CNI network configuration"
    why = f" ({'; '.join(bad)})" if bad else ""
    raise NetworkError(f"{what} in {conf_dir} (files {', '.join('*' + e for e in EXTENSIONS)}){why}")


def plugin_config(conflist: dict, n: int, runtime: dict, prev: dict | None) -> dict:
    """Plugin ``n``'s configuration as it goes to its stdin: the list's ``name``
    and ``cniVersion``, ``prevResult`` if given, and ``runtimeConfig`` holding
    the ``runtime`` arguments whose capability the plugin declares (libcni's
    ``injectRuntimeConfig``)."""
    conf = dict(conflist["plugins"][n])
    conf["name"], conf["cniVersion"] = conflist["name"], conflist["cniVersion"]
    caps = conf.get("capabilities") or {}
    given = {k: v for k, v in runtime.items() if caps.get(k) is True}
    conf.pop("runtimeConfig", None)
    if given:
        conf["runtimeConfig"] = given
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def with_capability(conflist: dict, capability: str) -> list[int]:
    """The indexes of the plugins that declare ``capability`` (``portMappings``)."""
    return [n for n, p in enumerate(conflist["plugins"]) if (p.get("capabilities") or {}).get(capability) is True]
