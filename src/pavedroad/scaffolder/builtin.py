"""The scaffolder's built-in plugin: the layer's permissions, and the catalog processor
that checks every Template's steps against the actions this platform has, so an unknown
action or a bad input fails when the template is ingested, not when someone runs it.
(The actions are plugins of their own: :mod:`pavedroad.scaffolder.actions` and
:mod:`pavedroad.scaffolder.platform_actions`.)"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pavedroad.catalog.processing import EntityProcessor
from pavedroad.core.hookspecs import hookimpl
from pavedroad.identity.policy import Scope, register_permission
from pavedroad.settings import Settings

TASK_CREATE = register_permission(
    "scaffolder.task.create",
    Scope.member,
    "Run a template (what its steps then create is checked step by step)",
)


class TemplateStepsProcessor(EntityProcessor):
    """Template entities (``scaffolder.backstage.io/v1beta3``): the form's schemas, step
    ids and references, and each step's action and input as written."""

    name = "scaffolder-templates"

    def validate(self, entity: dict[str, Any]) -> list[str]:
        from pavedroad.scaffolder.template import API_VERSION, template_problems

        if entity.get("kind") != "Template" or entity.get("apiVersion") != API_VERSION:
            return []
        registry = _registry()
        problems = template_problems(entity, registry.ids())
        steps = (entity.get("spec") or {}).get("steps")
        for index, step in enumerate(steps if isinstance(steps, list) else []):
            if not isinstance(step, Mapping) or step.get("action") not in registry.ids():
                continue
            for problem in registry.validate_step(step["action"], step.get("input") or {}):
                problems.append(
                    f"spec.steps[{index}] ({step.get('id') or step['action']}): {problem}"
                )
        return problems


@functools.cache
def _registry() -> Any:
    from pavedroad.core.plugins import plugin_manager
    from pavedroad.scaffolder.actions import ActionRegistry

    return ActionRegistry.from_plugins(plugin_manager())


@hookimpl
def pavedroad_catalog_processors(settings: Settings) -> list[EntityProcessor]:
    return [TemplateStepsProcessor()]
