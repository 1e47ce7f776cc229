"""The secrets layer's built-in plugin: the database backend (and, by being loaded, the
layer's permissions)."""

from __future__ import annotations

from typing import Any

import pluggy

import pavedroad.secrets.permissions  # noqa: F401  (registers them)
from pavedroad.secrets.backend import DatabaseBackend

hookimpl = pluggy.HookimplMarker("pavedroad")


@hookimpl
def pavedroad_secret_backends(settings: Any) -> list[Any]:
    return [DatabaseBackend()]
