"""The plugin manager: built-in plugins first, then those installed with pip."""

from __future__ import annotations

from functools import lru_cache

import pluggy

from pavedroad.core import hookspecs

ENTRY_POINT_GROUP = "pavedroad.plugins"

BUILTIN_PLUGINS = (
    "pavedroad.core.background",
    "pavedroad.catalog.builtin",
    "pavedroad.secrets.builtin",
    "pavedroad.git.builtin",
    "pavedroad.scaffolder.builtin",
    "pavedroad.scaffolder.actions",
    "pavedroad.scaffolder.platform_actions",
    "pavedroad.pipelines.builtin",
    "pavedroad.pipelines.steps",
    "pavedroad.workloads.builtin",
    "pavedroad.environments.builtin",
)


@lru_cache(maxsize=1)
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager (entry points are read once per process)."""
    import importlib

    manager = pluggy.PluginManager("pavedroad")
    manager.add_hookspecs(hookspecs)
    for module_name in BUILTIN_PLUGINS:
        manager.register(importlib.import_module(module_name), name=module_name)
    manager.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    return manager


def plugin_names() -> list[str]:
    manager = plugin_manager()
    return sorted(name for name, _ in manager.list_name_plugin() if name)
