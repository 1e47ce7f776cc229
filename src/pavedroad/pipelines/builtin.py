"""The built-in pipelines plugin: the ``PipelineTemplate`` catalog kind, the check of its
definitions (jobs, steps, inputs, what services may extend) and its owner relation; the
layer's permissions.

It registers through the same hooks a pip-installed plugin uses.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pavedroad.catalog.kinds import PLATFORM_VERSION, KindSchema
from pavedroad.catalog.processing import EntityProcessor, Relation
from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core.hookspecs import hookimpl
from pavedroad.identity.policy import Scope, register_permission
from pavedroad.pipelines.library import KIND, pipeline_template_kind, template_problems
from pavedroad.settings import Settings

RUN_START = register_permission(
    "pipeline.run.start",
    Scope.owner,
    "Start, cancel and re-run the pipeline of a repository owned by a group or user",
)


@hookimpl
def pavedroad_catalog_kinds() -> list[KindSchema]:
    return [pipeline_template_kind()]


@hookimpl
def pavedroad_catalog_processors(settings: Settings) -> list[EntityProcessor]:
    return [PipelineTemplateProcessor()]


def _is_template(entity: dict[str, Any]) -> bool:
    return entity.get("kind") == KIND and entity.get("apiVersion") == PLATFORM_VERSION


class PipelineTemplateProcessor(EntityProcessor):
    """Checks a template's versions as pipelines and relates it to its owner."""

    name = "pipeline-templates"
    # The kind's JSON Schema already reports these; the processor does not repeat them.
    _SCHEMA_PATHS = frozenset({"spec", "spec.owner", "spec.description", "spec.versions"})

    def validate(self, entity: dict[str, Any]) -> list[str]:
        if not _is_template(entity):
            return []
        return [
            f"{problem.path}: {problem.message}" if problem.path else problem.message
            for problem in template_problems(entity)
            if problem.path not in self._SCHEMA_PATHS
        ]

    def relations(self, entity: dict[str, Any], ref: EntityRef) -> Iterable[Relation]:
        if not _is_template(entity):
            return
        owner = (entity.get("spec") or {}).get("owner")
        if isinstance(owner, str) and owner:
            target = parse_ref(owner, "Group", ref.namespace).key
            yield Relation(ref.key, "ownedBy", target)
            yield Relation(target, "ownerOf", ref.key)
