"""Fixtures for the unit tests: one entity pipeline (built from the registered plugins,
as the server builds it) and helpers to write entities and process them."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pavedroad.catalog.processing import (
    EntityPipeline,
    ProcessedEntity,
    ProcessingContext,
    build_pipeline,
)
from pavedroad.settings import Settings


@pytest.fixture(scope="session")
def unit_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings on a throwaway home; no pavedroad.yaml or PAVEDROAD_* from the machine."""
    home = tmp_path_factory.mktemp("home")
    empty = home / "empty-pavedroad.yaml"
    empty.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("PAVEDROAD_")]:
            patch.delenv(name, raising=False)
        patch.setenv("PAVEDROAD_CONFIG", str(empty))
        settings = Settings(home=home)
    # Restored before any test runs: later test folders read PAVEDROAD_* variables.
    yield settings


@pytest.fixture(scope="session")
def pipeline(unit_settings: Settings) -> EntityPipeline:
    return build_pipeline(unit_settings)


@pytest.fixture
def process(
    pipeline: EntityPipeline, unit_settings: Settings, tmp_path: Path
) -> Callable[..., ProcessedEntity]:
    """Process an entity as if read from ``tmp_path/catalog-info.yaml``."""

    def read(relative: str) -> bytes:
        return (tmp_path / relative).read_bytes()

    def run(raw: dict[str, Any]) -> ProcessedEntity:
        target = str(tmp_path / "catalog-info.yaml")
        context = ProcessingContext("file", target, read, unit_settings)
        return pipeline.process(copy.deepcopy(raw), context)

    return run
