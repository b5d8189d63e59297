"""get_plugin_manager(): the hook specs, the hub's own plugins and the entry-point plugins."""

from __future__ import annotations

import importlib

import pluggy

from hub import hookspecs

ENTRY_POINT_GROUP = "msp_hub"

# Core behaviour that is hook-shaped is itself a plugin, registered by name.
DEFAULT_PLUGINS = ("hub.summary",)


def get_plugin_manager(*plugins, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """Return a fresh plugin manager: specs, default plugins, entry points, then ``plugins``.

    ``check_pending()`` makes a misspelt hook name fail here instead of never running.
    """
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    for plugin in plugins:
        pm.register(plugin)
    pm.check_pending()
    return pm


def plugin_names(pm: pluggy.PluginManager) -> list[str]:
    """The names of the registered plugins, sorted."""
    return sorted(pm.get_name(p) or repr(p) for p in pm.get_plugins())
