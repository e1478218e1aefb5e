"""Loading drivers and extensions: stevedore finds them, pluggy checks and calls them.

* :func:`installed` lists the entry points of a kind (stevedore ``ExtensionManager``).
* :func:`load_driver` loads one driver by name (stevedore ``DriverManager``),
  registers it in a fresh :class:`pluggy.PluginManager` holding that kind's hook
  specs, and validates it (``check_pending()`` plus the required hooks), so a
  misspelled hook or a wrong signature fails here, at load time.
* :func:`select_driver` walks a priority list: unsupported drivers are skipped,
  every other error stops start-up; a data root that already holds a driver's
  state keeps that driver (Docker's "prior state wins").
* :func:`choose` is *the* driver-selection policy of a daemon on a data root and
  an exec root: what a migration pinned, the daemon's flags, then
  :func:`select_driver` over ``plugins.toml``.  The engine starts with what it
  chooses; ``dockyard driver ls`` (:func:`active`) shows it without a daemon.
* :func:`load_extensions` registers ``dockyard.plugins`` extensions in every slot
  whose hooks they implement (wrappers around driver calls) and in the events slot.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import attrs
import pluggy

from . import hookspecs
from .errors import ConfigError, DockyardError, DriverUnsupported, PluginError
from .hookspecs import GROUPS, PROJECT
from .hookspecs import exec as exec_specs
from .hookspecs import extensions as extension_specs
from .hookspecs import logging as logging_specs
from .hookspecs import network as network_specs
from .hookspecs import storage as storage_specs
from .hookspecs import volume as volume_specs

if TYPE_CHECKING:
    from .config import Config

SPECS = {"storage": storage_specs, "exec": exec_specs, "network": network_specs, "volume": volume_specs,
         "logging": logging_specs}

#: Hooks a driver must implement itself (the others are optional or have fallbacks).
REQUIRED = {
    "storage": ("supported", "init", "create", "remove", "mount", "unmount", "exists"),
    "exec": ("supported", "init", "create", "start", "state", "kill", "wait", "delete", "restore"),
    "network": ("supported", "init", "attach", "detach"),
    "volume": ("supported", "init", "create", "remove", "mount", "unmount", "get"),
    "logging": ("supported", "init", "validate", "writer"),
}


@attrs.define
class Slot:
    """One loaded driver in its own plugin manager."""

    kind: str
    name: str
    pm: pluggy.PluginManager
    driver: object
    home: Path
    options: dict

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def supported(self) -> str | None:
        """``None`` if the driver can run here, else its reason (a string)."""
        call = getattr(self.pm.hook, f"{self.kind}_supported")
        try:
            return call(home=self.home, options=self.options)
        except Exception as exc:  # a crashing check is a reason, not a crash
            return f"support check failed: {exc}"

    def init(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        getattr(self.pm.hook, f"{self.kind}_init")(home=self.home, options=self.options)


def _entry_points(group: str) -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def installed(kind: str) -> list[str]:
    """Names of every installed driver (or extension, kind ``plugins``), sorted."""
    return sorted(_entry_points(GROUPS[kind]))


def new_manager(kind: str) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(SPECS[kind])
    return pm


def _hook_names(obj: object) -> list[str]:
    return [n for n in dir(obj) if getattr(getattr(obj, n, None), f"{PROJECT}_impl", None) is not None]


def _load_class(kind: str, name: str, source: str) -> Any:
    from stevedore import DriverManager
    from stevedore.exception import NoMatches

    def failed(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        raise PluginError(f"{kind} driver {name!r} ({entrypoint.value}) failed to import: {exc}") from exc

    try:
        return DriverManager(
            GROUPS[kind], name, on_load_failure_callback=failed,
            on_missing_entrypoints_callback=lambda names: None
        ).driver
    except NoMatches:
        choices = ", ".join(installed(kind)) or "none installed"
        raise ConfigError(f"{source}: {kind}.driver: unknown driver {name!r} (choices: {choices})") from None


def _one_line(exc: Exception) -> str:
    """pluggy's validation messages span lines; refusals are printed as one."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def register_driver(kind: str, name: str, driver: object, home: str | Path, options: dict | None = None) -> Slot:
    """Register an already built driver object in a new slot and validate it."""
    pm = new_manager(kind)
    where = f"{type(driver).__module__}.{type(driver).__qualname__}"
    try:
        pm.register(driver, name=name)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"{kind} driver {name!r} ({where}) rejected: {_one_line(exc)}") from None
    have = set(_hook_names(driver))
    missing = [f"{kind}_{h}" for h in REQUIRED[kind] if f"{kind}_{h}" not in have]
    if missing:
        raise PluginError(f"{kind} driver {name!r} ({where}) rejected: missing hook(s) {', '.join(missing)}")
    return Slot(kind, name, pm, driver, Path(home), dict(options or {}))


def load_driver(kind: str, name: str, home: str | Path, options: dict | None = None, source: str = "<config>") -> Slot:
    """Load driver ``name`` of ``kind`` into its own plugin manager (not initialised)."""
    factory = _load_class(kind, name, source)
    try:
        driver = factory() if inspect.isclass(factory) or callable(factory) else factory
    except Exception as exc:
        raise PluginError(f"{kind} driver {name!r} failed to start: {exc}") from exc
    return register_driver(kind, name, driver, home, options)


def prior_state(home_root: str | Path, names: Iterable[str]) -> list[str]:
    """Driver names (from ``names``) whose home under ``home_root`` holds data."""
    found = []
    for name in names:
        home = Path(home_root) / name
        if home.is_dir() and any(home.iterdir()):
            found.append(name)
    return found


def select_driver(kind: str, names: Iterable[str], home_root: str | Path, options: dict, source: str = "<config>",
                  prior_wins: bool = False) -> Slot:
    """Return the initialised :class:`Slot` of the first usable driver in ``names``.

    ``home_root / name`` is each driver's home.  A driver that is unsupported here
    is skipped when it is one of several, refused when it is the only one named.
    With ``prior_wins`` (storage), a driver whose home already holds data is kept.
    """
    names = list(names)
    for name in names:  # refuse unknown names before anything else
        if name not in installed(kind):
            choices = ", ".join(installed(kind)) or "none installed"
            raise ConfigError(f"{source}: {kind}.driver: unknown driver {name!r} (choices: {choices})")
    if prior_wins and len(names) > 1:
        prior = prior_state(home_root, installed(kind))
        if len(prior) > 1:
            raise ConfigError(
                f"{home_root} holds data of several {kind} drivers ({', '.join(prior)}); "
                f"name one with --{kind}-driver"
            )
        if prior:
            names = prior
    reasons = []
    for name in names:
        slot = load_driver(kind, name, Path(home_root) / name, options.get(name, {}), source)
        reason = slot.supported()
        if reason is None:
            return slot
        if len(names) == 1:
            raise DriverUnsupported(kind, name, reason)
        reasons.append(f"{name}: {reason}")
    raise PluginError(f"no {kind} driver of {names} is supported here ({'; '.join(reasons)})")


#: the meta key of the store naming the storage driver a migration moved the layers to
PIN_KEY = "storage_driver"


def driver_home(kind: str, name: str, data_root: str | Path, exec_root: str | Path) -> Path:
    """The home of driver ``name`` of ``kind`` under a daemon's roots: exec drivers
    keep runtime state (the exec root); the ``local`` volume driver keeps Docker's
    ``volumes/``; every other driver ``<data root>/<kind>/<name>``."""
    if kind == "exec":
        return Path(exec_root) / "exec" / name
    if kind == "volume":
        return Path(data_root) / ("volumes" if name == "local" else os.path.join("volume", name))
    return Path(data_root) / kind / name


def pinned_storage(data_root: str | Path) -> str | None:
    """The storage driver ``data_root`` is pinned to by ``dockyard storage migrate``,
    or ``None`` (reads the store without opening it for writing)."""
    from .store import read_meta

    return read_meta(str(data_root), PIN_KEY)


def choose(kind: str, config: Config, data_root: str | Path, exec_root: str | Path | None = None,
           override: str | None = None) -> list[Slot]:
    """The driver selection policy: the slots of ``kind`` a daemon on ``data_root``
    and ``exec_root`` runs, loaded and checked (not initialised).

    * storage: the driver a migration pinned the data root to; else ``override``
      (``--storage-driver``, refused if it is not the pinned one); else the
      priority list of ``config``, where a driver whose home holds data wins;
    * exec: ``override`` (``--exec-driver``), else the priority list;
    * network, volume, logging: every enabled driver, each of which must be supported.
    """
    options = config.options.get(kind, {})
    if kind == "storage":
        pinned = pinned_storage(data_root)
        if pinned and override and override != pinned:
            raise ConfigError(f"{os.path.abspath(data_root)} keeps its layers with storage driver {pinned!r}, not "
                              f"{override!r}: drop --storage-driver, or move them first with "
                              f"`dockyard storage migrate --to {override}`")
        names = [override] if override else [pinned] if pinned else list(config.drivers["storage"])
        return [select_driver("storage", names, Path(data_root) / "storage", options, config.source,
                              prior_wins=not (override or pinned))]
    if kind == "exec":
        if exec_root is None:
            raise ValueError("choosing the exec driver needs the exec root")
        names = [override] if override else list(config.drivers["exec"])
        return [select_driver("exec", names, Path(exec_root) / "exec", options, config.source)]
    return [_enabled(kind, name, config, data_root, exec_root)
            for name in config.drivers.get(kind, ["local"] if kind == "volume" else [])]


def _enabled(kind: str, name: str, config: Config, data_root: str | Path, exec_root: str | Path | None) -> Slot:
    """An enabled driver of a kind that runs several at once: loaded, and supported."""
    slot = load_driver(kind, name, driver_home(kind, name, data_root, exec_root or ""),
                       config.options.get(kind, {}).get(name, {}), config.source)
    reason = slot.supported()
    if reason is not None:
        raise DriverUnsupported(kind, name, reason)
    return slot


def choice_source(config: Config, data_root: str | Path, override: str | None = None) -> str:
    """Where the storage choice comes from, for the daemon's log and ``/info``:
    ``config.source``, marked when a migration's pin decides."""
    if not override and pinned_storage(data_root):
        return f"{config.source} (storage driver pinned by a migration)"
    return config.source


def active(kind: str, config: Config, data_root: str | Path, exec_root: str | Path) -> list[str]:
    """The names :func:`choose` picks (``dockyard driver ls`` without a daemon);
    of the kinds that run several drivers, those it would accept; ``[]`` where it
    refuses."""
    if kind in ("network", "volume", "logging"):
        names = []
        for name in config.drivers.get(kind, ["local"] if kind == "volume" else []):
            try:
                names.append(_enabled(kind, name, config, data_root, exec_root).name)
            except DockyardError:
                continue
        return names
    try:
        return [slot.name for slot in choose(kind, config, data_root, exec_root)]
    except DockyardError:
        return []


def adopt_wrappers(old: Slot, new: Slot) -> None:
    """Register in ``new`` the plug-ins ``old`` has besides its driver (extensions'
    wrappers, the naive-diff fallback excepted: each slot has its own), so that a
    driver swapped in at run time (a live storage migration) is wrapped as the
    old one was."""
    for name, plugin in old.pm.list_name_plugin():
        if plugin is not old.driver and name != "naive-diff" and new.pm.get_plugin(name) is None:
            new.pm.register(plugin, name=name)


class _KindView:
    """The hook implementations of an extension that belong to one slot."""

    def __init__(self, obj: object, prefix: str) -> None:
        for name in _hook_names(obj):
            if name.startswith(prefix):
                setattr(self, name, getattr(obj, name))


def load_extensions(config: Config, slots: Iterable[Slot]) -> pluggy.PluginManager:
    """Load the enabled extensions and register them; return the events manager.

    ``slots`` is an iterable of :class:`Slot` whose managers receive the extensions'
    driver-hook wrappers.
    """
    events = pluggy.PluginManager(PROJECT)
    events.add_hookspecs(extension_specs)
    available = _entry_points(GROUPS["plugins"])
    wanted = sorted(available) if "*" in config.enable else list(config.enable)
    for name in wanted:
        if name not in available:
            raise ConfigError(
                f"{config.source}: plugins.enable: unknown extension {name!r} "
                f"(choices: {', '.join(sorted(available)) or 'none installed'})"
            )
    prefixes = [("dockyard_", events)] + [(f"{slot.kind}_", slot.pm) for slot in slots]
    for name in wanted:
        if name in config.block:
            continue
        try:
            factory = available[name].load()
            obj = factory(**config.plugin_options.get(name, {})) if inspect.isclass(factory) else factory
        except Exception as exc:
            raise PluginError(f"extension {name!r} failed to load: {exc}") from exc
        register_extension(name, obj, prefixes)
    return events


def register_extension(name: str, obj: object, prefixes: Iterable[tuple[str, pluggy.PluginManager]]) -> None:
    """Register extension ``obj`` in each manager whose hooks it names.

    ``prefixes`` is a list of ``(hook name prefix, plugin manager)``.
    """
    known = set(SPECS) | {"dockyard"}
    for hook in _hook_names(obj):
        if hook.split("_", 1)[0] not in known:
            raise PluginError(f"extension {name!r} rejected: unknown hook {hook!r}")
    for prefix, pm in prefixes:
        view = _KindView(obj, prefix)
        if not vars(view):
            continue
        try:
            pm.register(view, name=f"{name}:{prefix.rstrip('_')}")
            pm.check_pending()
        except pluggy.PluginValidationError as exc:
            pm.unregister(view)
            raise PluginError(f"extension {name!r} rejected: {_one_line(exc)}") from None


__all__ = ["Slot", "installed", "load_driver", "register_driver", "select_driver", "choose", "active", "driver_home",
           "prior_state", "pinned_storage", "adopt_wrappers", "load_extensions", "hookspecs"]
