"""The built-in workloads plugin: the resource types every Pavedroad knows
(``environment``, ``service-port``, ``route``, ``volume``, ``secret``).

It registers through the same hook a pip-installed plugin uses.
"""

from __future__ import annotations

from pavedroad.core.hookspecs import hookimpl
from pavedroad.workloads.resources import ResourceType, builtin_types


@hookimpl
def pavedroad_resource_types() -> list[ResourceType]:
    return builtin_types()
