"""get_plugin_manager(): the hook specs, the hub's own plugins and the entry-point plugins.

A plugin that fails to load (its import raises, its hooks do not match the specs) or whose
``register_connectors`` raises something that is not a hub error is *broken*: it is left out,
reported once per process naming the entry point, its distribution, the exception and the fix,
and every other plugin and command goes on. ``broken_plugins(pm)`` lists them; a sync records
each as a failed pass (``plugin:<name>``), so that its exit code says a connector is missing,
and holds its new billing actions until the plugin is fixed (``hold_for_broken_plugins``).

Entry points are scanned once per process: a long-running daemon keeps the plugins it started
with, and a plugin installed (or broken) while it runs is seen at its next start only.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from dataclasses import dataclass
from typing import Any

import pluggy
import structlog

from hub import hookspecs
from hub.errors import ConfigError, HubError

log = structlog.get_logger()

ENTRY_POINT_GROUP = "msp_hub"

# Core behaviour that is hook-shaped is itself a plugin, registered by name.
DEFAULT_PLUGINS = ("hub.summary",)


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin left out: its entry point ``name``, distribution and version, when and how it failed."""

    name: str
    distribution: str | None
    version: str | None
    stage: str       # "load" (import or hook validation) or "register_connectors"
    error: str       # "ExceptionClass: message"

    @property
    def fix(self) -> str:
        dist = self.distribution or self.name
        return (f"reinstall it (pip install --force-reinstall {dist}) or, if it is not needed, "
                f"uninstall it (pip uninstall {dist})")

    @property
    def message(self) -> str:
        what = "failed to load" if self.stage == "load" else "failed in register_connectors"
        return (f"plugin {self.name!r} ({_dist_label(self.distribution, self.version)}) {what}: {self.error}; "
                f"its connectors are missing; fix: {self.fix}")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "distribution": self.distribution, "version": self.version,
                "stage": self.stage, "error": self.error, "fix": self.fix, "message": self.message}


@dataclass(frozen=True)
class _Loaded:
    name: str
    plugin: Any
    distribution: str | None
    version: str | None


_scan_lock = threading.Lock()
_scan: tuple[list[_Loaded], list[BrokenPlugin]] | None = None
_reported: set[tuple[str, str, str]] = set()


def _dist_label(dist: str | None, version: str | None) -> str:
    return f"{dist or 'unknown distribution'} {version or ''}".strip()


def _dist_of(ep: importlib.metadata.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    try:
        return dist.metadata["Name"], dist.version
    except Exception:  # noqa: BLE001 - broken metadata must not hide the plugin's own failure
        return None, None


def entry_points() -> list[importlib.metadata.EntryPoint]:
    """The ``msp_hub`` entry points of the environment (tests replace this to simulate plugins)."""
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _describe(exc: BaseException) -> str:
    return f"{exc.__class__.__name__}: {exc}"


def report_broken(broken: BrokenPlugin) -> None:
    """Log a broken plugin, once per process for the same failure."""
    key = (broken.name, broken.stage, broken.error)
    if key in _reported:
        return
    _reported.add(key)
    log.error("plugin.broken", plugin=broken.name, distribution=broken.distribution, version=broken.version,
              stage=broken.stage, error=broken.error, fix=broken.fix)


def _scan_entrypoints() -> tuple[list[_Loaded], list[BrokenPlugin]]:
    """Load every entry point one by one, each checked against the specs on its own."""
    loaded: list[_Loaded] = []
    broken: list[BrokenPlugin] = []
    seen: set[str] = set()
    probe = _base_manager()
    for ep in entry_points():
        if ep.name in seen:
            continue
        seen.add(ep.name)
        dist, version = _dist_of(ep)
        try:
            plugin = ep.load()
            probe.register(plugin, name=ep.name)
            try:
                probe.check_pending()       # a misspelt hook name is this plugin's failure
            except BaseException:
                probe.unregister(name=ep.name)
                raise
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one plugin's failure must not stop the others
            broken.append(BrokenPlugin(ep.name, dist, version, "load", _describe(exc)))
            continue
        loaded.append(_Loaded(ep.name, plugin, dist, version))
    return loaded, broken


def scanned_entrypoints(*, rescan: bool = False) -> tuple[list[_Loaded], list[BrokenPlugin]]:
    """The entry-point plugins of this process, loaded at the first call (``rescan``: again)."""
    global _scan
    with _scan_lock:
        if _scan is None or rescan:
            _scan = _scan_entrypoints()
        return _scan


def forget_entrypoints() -> None:
    """Scan the entry points again at the next get_plugin_manager() (tests; never a running daemon)."""
    global _scan
    with _scan_lock:
        _scan = None
        _reported.clear()


def _base_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    pm.msp_hub_broken = []        # type: ignore[attr-defined]
    pm.msp_hub_dists = {}         # type: ignore[attr-defined]
    return pm


def get_plugin_manager(*plugins, load_entrypoints: bool = True, report: bool = True) -> pluggy.PluginManager:
    """Return a fresh plugin manager: specs, default plugins, entry points, then ``plugins``.

    ``check_pending()`` makes a misspelt hook name fail here instead of never running (for an
    entry-point plugin: that plugin is broken, the others load). ``report=False``: the caller
    shows the broken plugins itself (``msp-hub plugins``), they are not logged.
    """
    pm = _base_manager()
    if load_entrypoints:
        loaded, broken = scanned_entrypoints()
        for item in loaded:
            if pm.is_blocked(item.name) or pm.get_plugin(item.name) is not None:
                continue
            pm.register(item.plugin, name=item.name)
            pm.msp_hub_dists[item.name] = (item.distribution, item.version)
        for b in broken:
            if report:
                report_broken(b)
            else:
                _reported.add((b.name, b.stage, b.error))    # shown by the caller: not logged later
        pm.msp_hub_broken.extend(broken)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def broken_plugins(pm: pluggy.PluginManager) -> list[BrokenPlugin]:
    """The plugins left out of ``pm`` (failed to load, or their register_connectors raised)."""
    return list(getattr(pm, "msp_hub_broken", []))


def collect_connectors(pm: pluggy.PluginManager, config) -> dict[str, Any]:
    """Call each plugin's ``register_connectors`` on its own: name -> connector.

    A hub error (a wrong config section) is raised as it is: the config must be fixed. Any other
    exception makes that plugin broken: it is unregistered (none of its hooks runs) and reported,
    and the other plugins' connectors are returned.
    """
    connectors: dict[str, Any] = {}
    # pluggy calls the last registered first: keep that order.
    for impl in reversed(pm.hook.register_connectors.get_hookimpls()):
        if getattr(impl, "hookwrapper", False) or getattr(impl, "wrapper", False):
            continue
        try:
            batch = impl.function(**{name: config for name in impl.argnames})
        except HubError:
            raise
        except Exception as exc:  # noqa: BLE001 - one plugin's bug must not stop the others
            dist, version = getattr(pm, "msp_hub_dists", {}).get(impl.plugin_name, (None, None))
            broken = BrokenPlugin(impl.plugin_name, dist, version, "register_connectors", _describe(exc))
            report_broken(broken)
            getattr(pm, "msp_hub_broken", []).append(broken)
            pm.unregister(name=impl.plugin_name)
            continue
        for connector in batch or []:
            if connector.name in connectors:
                raise ConfigError(f"two plugins provide a connector named {connector.name!r}",
                                  file=config.file, key=f"connectors.{connector.name}",
                                  fix="uninstall one of the plugins")
            connectors[connector.name] = connector
    return connectors


def hooks_of(pm: pluggy.PluginManager, plugin) -> list[str]:
    """The hooks a registered plugin implements, sorted."""
    return sorted(caller.name for caller in (pm.get_hookcallers(plugin) or []))


def describe_plugins(pm: pluggy.PluginManager) -> list[dict[str, Any]]:
    """Each plugin of ``pm`` but the core's own: name, distribution, version, hooks, status, error."""
    out: list[dict[str, Any]] = []
    dists = getattr(pm, "msp_hub_dists", {})
    for plugin in pm.get_plugins():
        name = pm.get_name(plugin) or repr(plugin)
        if name in DEFAULT_PLUGINS:
            continue
        dist, version = dists.get(name, (None, None))
        out.append({"name": name, "distribution": dist, "version": version, "hooks": hooks_of(pm, plugin),
                    "status": "ok", "error": None, "fix": None})
    for b in broken_plugins(pm):
        out.append({"name": b.name, "distribution": b.distribution, "version": b.version, "hooks": [],
                    "status": "broken", "error": b.error, "fix": b.fix, "stage": b.stage})
    return sorted(out, key=lambda p: p["name"])


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """The names of the registered plugins, sorted."""
    return sorted(pm.get_name(p) or repr(p) for p in pm.get_plugins())
