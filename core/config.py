"""``plugins.toml``: which driver of each kind, their options, and extensions.

Search order: ``--config FILE``, else ``/etc/dockyard/plugins.toml``, else the
default shipped with the package.  Daemon flags override the file.  Everything
wrong with the file is refused with one line naming the file, the key and the
choices; loading never changes anything on disk.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable

SYSTEM_CONFIG = Path("/etc/dockyard/plugins.toml")
KINDS = ("storage", "exec", "network")
#: the log drivers enabled when ``[logging] drivers`` names none (dockerd's built-in ones)
LOG_DRIVERS = ("json-file", "local", "none", "journald", "syslog", "cri")

# The schema: table -> allowed keys (and their expected Python types).
_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "storage": {"driver": (str, list), "options": dict},
    "exec": {"driver": (str, list), "options": dict},
    "network": {"drivers": list, "default": str, "options": dict},
    "volume": {"drivers": list, "default": str, "options": dict},
    "logging": {"drivers": list, "default": str, "log_opts": dict, "options": dict},
    "plugins": {"enable": list, "block": list, "options": dict},
    "registry": {},  # one table per registry host: _REGISTRY_HOST's keys
}
#: ``[registry."HOST"]``: the mirrors a pull of HOST tries first, and whether a
#: pull that every mirror missed goes to HOST itself (default true)
_REGISTRY_HOST: dict[str, type | tuple[type, ...]] = {"mirrors": list, "mirror_fallback": bool}


@attrs.define
class Config:
    """The validated content of one ``plugins.toml`` (names not yet resolved)."""

    source: str
    #: kind -> priority list of driver names (network: the enabled drivers)
    drivers: dict[str, list[str]]
    #: kind -> {driver name -> options dict}
    options: dict[str, dict[str, dict[str, Any]]]
    default_network: str = "none"
    enable: list[str] = attrs.Factory(list)
    block: list[str] = attrs.Factory(list)
    plugin_options: dict[str, dict[str, Any]] = attrs.Factory(dict)
    #: the volume driver used when a request names none (Docker's ``local``)
    default_volume: str = "local"
    #: the log driver of containers that name none (dockerd's ``--log-driver``) and its
    #: ``--log-opt`` defaults
    default_log_driver: str = "json-file"
    log_opts: dict[str, str] = attrs.Factory(dict)
    #: ``[registry."HOST"]`` tables: host -> {"mirrors": [URL, ...], "mirror_fallback": bool}
    registries: dict[str, dict[str, Any]] = attrs.Factory(dict)

    def with_override(self, kind: str, name: str) -> Config:
        """Return a copy where ``kind`` uses exactly driver ``name`` (a daemon flag)."""
        drivers = dict(self.drivers)
        drivers[kind] = [name]
        return attrs.evolve(self, drivers=drivers, source=f"{self.source} (--{kind}-driver)")

    def with_options(self, kind: str, pairs: Iterable[str]) -> Config:
        """Return a copy whose ``kind`` drivers all get the ``KEY=VALUE`` options
        in ``pairs`` (daemon flags such as ``--exec-opt``)."""
        extra: dict[str, str] = {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--{kind}-opt {pair!r}: expected KEY=VALUE")
            extra[key.strip()] = value
        options = dict(self.options)
        options[kind] = {name: {**options.get(kind, {}).get(name, {}), **extra}
                         for name in set(self.drivers[kind]) | set(options.get(kind, {}))}
        return attrs.evolve(self, options=options, source=f"{self.source} (--{kind}-opt)")

    def with_log_defaults(self, driver: str | None, pairs: Iterable[str]) -> Config:
        """Return a copy whose default log driver is ``driver`` (``--log-driver``;
        its ``log_opts`` then start empty) with the ``KEY=VALUE`` options in
        ``pairs`` (``--log-opt``)."""
        opts = dict(self.log_opts) if not driver or driver == self.default_log_driver else {}
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--log-opt {pair!r}: expected KEY=VALUE")
            opts[key.strip()] = value
        driver = driver or self.default_log_driver
        if driver not in self.drivers["logging"]:
            raise ConfigError(f"--log-driver {driver!r}: not one of the enabled log drivers "
                              f"(choices: {', '.join(self.drivers['logging'])})")
        return attrs.evolve(self, default_log_driver=driver, log_opts=opts)

    def to_toml(self) -> dict[str, dict[str, Any]]:
        """Return the dict that, written as TOML, loads back to this config."""
        out: dict[str, dict[str, Any]] = {}
        for kind in ("storage", "exec"):
            names = self.drivers[kind]
            out[kind] = {"driver": names[0] if len(names) == 1 else list(names)}
            if self.options.get(kind):
                out[kind]["options"] = self.options[kind]
        out["network"] = {"drivers": list(self.drivers["network"]), "default": self.default_network}
        if self.options.get("network"):
            out["network"]["options"] = self.options["network"]
        if self.drivers.get("volume", ["local"]) != ["local"] or self.options.get("volume"):
            out["volume"] = {"drivers": list(self.drivers["volume"]), "default": self.default_volume}
            if self.options.get("volume"):
                out["volume"]["options"] = self.options["volume"]
        if self.drivers.get("logging", list(LOG_DRIVERS)) != list(LOG_DRIVERS) or self.options.get("logging") \
                or self.default_log_driver != "json-file" or self.log_opts:
            out["logging"] = {"drivers": list(self.drivers["logging"]), "default": self.default_log_driver}
            if self.log_opts:
                out["logging"]["log_opts"] = dict(self.log_opts)
            if self.options.get("logging"):
                out["logging"]["options"] = self.options["logging"]
        out["plugins"] = {"enable": list(self.enable), "block": list(self.block)}
        if self.plugin_options:
            out["plugins"]["options"] = self.plugin_options
        if self.registries:
            out["registry"] = {host: dict(table) for host, table in self.registries.items()}
        return out


def default_path() -> Path:
    """The config file the daemon would read with no ``--config``."""
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return Path(str(resources.files("dockyard") / "plugins.toml"))


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Read and validate ``path`` (or the default file); return a :class:`Config`."""
    path = Path(path) if path else default_path()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None
    return parse(data, str(path))


def _check_table(data: dict[str, Any], table: str, source: str) -> None:
    allowed = _SCHEMA[table]
    for key, value in data.items():
        if key not in allowed:
            raise ConfigError(
                f"{source}: unknown key '{table}.{key}' (choices: {', '.join(allowed)})"
            )
        if not isinstance(value, allowed[key]):
            want = " or ".join(t.__name__ for t in _as_tuple(allowed[key]))
            raise ConfigError(
                f"{source}: '{table}.{key}' must be a {want}, not {type(value).__name__}"
            )


def _check_registries(data: dict[str, Any], source: str) -> None:
    for host, table in data.items():
        where = f'registry."{host}"'
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: '{where}' must be a table (e.g. [registry.\"docker.io\"] with "
                              f"mirrors = [\"https://mirror.example\"])")
        for key, value in table.items():
            if key not in _REGISTRY_HOST:
                raise ConfigError(f"{source}: unknown key '{where}.{key}' (choices: {', '.join(_REGISTRY_HOST)})")
            if not isinstance(value, _REGISTRY_HOST[key]):
                want = _REGISTRY_HOST[key].__name__  # type: ignore[union-attr]
                raise ConfigError(f"{source}: '{where}.{key}' must be a {want}, not {type(value).__name__}")
        if not all(isinstance(url, str) for url in table.get("mirrors", [])):
            raise ConfigError(f"{source}: '{where}.mirrors' must be a list of URLs")


def _as_tuple(t: type | tuple[type, ...]) -> tuple[type, ...]:
    return t if isinstance(t, tuple) else (t,)


def _names(value: str | list[Any], key: str, source: str) -> list[str]:
    names = [value] if isinstance(value, str) else list(value)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError(f"{source}: '{key}' must name at least one driver")
    return names


def parse(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate a loaded TOML document; see :func:`load`."""
    for table, value in data.items():
        if table not in _SCHEMA:
            raise ConfigError(
                f"{source}: unknown key '{table}' (choices: {', '.join(_SCHEMA)})"
            )
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{table}' must be a table")
        if table == "registry":
            _check_registries(value, source)
        else:
            _check_table(value, table, source)
    storage = data.get("storage", {})
    exec_ = data.get("exec", {})
    network = data.get("network", {})
    plugins = data.get("plugins", {})
    drivers = {
        "storage": _names(storage.get("driver", ["overlay", "vfs"]), "storage.driver", source),
        "exec": _names(exec_.get("driver", "native"), "exec.driver", source),
        "network": _names(network.get("drivers", ["none", "host"]), "network.drivers", source),
        "volume": _names(data.get("volume", {}).get("drivers", ["local"]), "volume.drivers", source),
        "logging": _names(data.get("logging", {}).get("drivers", list(LOG_DRIVERS)), "logging.drivers", source),
    }
    options: dict[str, dict[str, dict[str, Any]]] = {}
    for kind, table in (("storage", storage), ("exec", exec_), ("network", network),
                        ("volume", data.get("volume", {})), ("logging", data.get("logging", {}))):
        opts = table.get("options", {})
        for name, value in opts.items():
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{kind}.options.{name}' must be a table")
        options[kind] = opts
    default = network.get("default", drivers["network"][0])
    if default not in drivers["network"]:
        raise ConfigError(
            f"{source}: 'network.default' is {default!r}, not one of the enabled drivers "
            f"(choices: {', '.join(drivers['network'])})"
        )
    default_volume = data.get("volume", {}).get("default", drivers["volume"][0])
    if default_volume not in drivers["volume"]:
        raise ConfigError(f"{source}: 'volume.default' is {default_volume!r}, not one of the enabled drivers "
                          f"(choices: {', '.join(drivers['volume'])})")
    logging = data.get("logging", {})
    default_log = logging.get("default", "json-file")
    if default_log not in drivers["logging"]:
        raise ConfigError(f"{source}: 'logging.default' is {default_log!r}, not one of the enabled drivers "
                          f"(choices: {', '.join(drivers['logging'])})")
    log_opts = logging.get("log_opts", {})
    if not all(isinstance(v, str) for v in log_opts.values()):
        raise ConfigError(f"{source}: 'logging.log_opts' values must be strings")
    return Config(
        source=source,
        drivers=drivers,
        options=options,
        default_network=default,
        enable=list(plugins.get("enable", [])),
        block=list(plugins.get("block", [])),
        plugin_options=dict(plugins.get("options", {})),
        default_volume=default_volume,
        default_log_driver=default_log,
        log_opts=dict(log_opts),
        registries={host: dict(table) for host, table in data.get("registry", {}).items()},
    )


def write_atomic(path: str | os.PathLike[str], config: Config) -> None:
    """Write ``config`` to ``path`` atomically (temp file, fsync, rename)."""
    import tomli_w

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            tomli_w.dump(config.to_toml(), fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # leave nothing behind; the old file is intact
        raise
