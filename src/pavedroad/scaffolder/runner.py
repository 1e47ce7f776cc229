"""Running a template's steps in a workspace: the scaffolder's interpreter.

:class:`StepRunner` evaluates each step's ``if`` and ``each``, renders its input with
``${{ parameters / secrets / steps / user / each }}``, checks the rendered input against
the action's schema and runs the action; then it renders the template's ``output``.
It knows nothing of tasks, queues or processes: :mod:`pavedroad.scaffolder.task_process`
runs it for a task, and tests run it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pavedroad.core.errors import ProblemError
from pavedroad.scaffolder.actions import ActionCancelled, ActionContext, ActionRegistry
from pavedroad.scaffolder.expressions import (
    Answers,
    ExpressionLimits,
    render_cookiecutter,
    render_text,
    render_value,
)
from pavedroad.scaffolder.platform import TaskPlatform
from pavedroad.scaffolder.template import Step, TemplateSpec
from pavedroad.scaffolder.workspace import Workspace

log = logging.getLogger("pavedroad.scaffolder")

MAX_EACH_ITEMS = 1000


def _without_nones(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nones(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nones(item) for item in value]
    return value


class StepFailed(Exception):
    """A step could not run; ``step`` names it and the message says why."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(message)
        self.step = step
        self.message = message


@dataclass
class RunCallbacks:
    log: Callable[[str | None, str], None]  # (step id, line)
    step_status: Callable[[str, str, str | None], None]  # (step id, status, step name)
    cancelled: Callable[[], bool] = lambda: False


@dataclass
class StepRunner:
    spec: TemplateSpec
    registry: ActionRegistry
    workspace: Workspace
    template_dir: Path
    parameters: dict[str, Any]
    secrets: dict[str, Any]
    callbacks: RunCallbacks
    user: dict[str, Any] = field(default_factory=dict)
    platform: TaskPlatform | None = None
    dry_run: bool = False
    limits: ExpressionLimits = field(default_factory=ExpressionLimits)
    steps_output: dict[str, dict[str, Any]] = field(default_factory=dict)

    def context(self, each: Any = None) -> dict[str, Any]:
        context = {
            "parameters": Answers(self.parameters),
            "secrets": Answers(self.secrets),
            "steps": {key: {"output": value} for key, value in self.steps_output.items()},
            "user": self.user,
        }
        if each is not None:
            context["each"] = each
        return context

    def run(self) -> dict[str, Any]:
        """Every step in order, then the rendered output (``links``, ``text``)."""
        for index, step in enumerate(self.spec.steps):
            if self.callbacks.cancelled():
                raise ActionCancelled("the task was cancelled")
            self.run_step(step, index)
        return self.output()

    def step_id(self, step: Step, index: int) -> str:
        return step.id or f"step-{index + 1}"

    def run_step(self, step: Step, index: int) -> None:
        step_id = self.step_id(step, index)
        name = step.name or step.action
        try:
            if not self._should_run(step):
                self.callbacks.step_status(step_id, "skipped", name)
                self.callbacks.log(step_id, f"skipped: its condition {step.if_!r} is false")
                return
            self.callbacks.step_status(step_id, "processing", name)
            started = time.monotonic()
            if step.each is None:
                output = self._run_action(step, step_id, None)
            else:
                output = self._run_each(step, step_id)
            self.steps_output[step_id] = output
            seconds = time.monotonic() - started
            self.callbacks.log(step_id, f"finished {name} in {seconds:.2f} s")
            self.callbacks.step_status(step_id, "completed", name)
        except (ActionCancelled, MemoryError):
            self.callbacks.step_status(step_id, "cancelled", name)
            raise
        except Exception as exc:  # an action (maybe a plugin's) may raise anything
            if isinstance(exc, StepFailed):
                message = exc.message
            elif isinstance(exc, ProblemError):
                message = exc.detail
            else:
                log.exception("step %s failed", step_id)
                message = f"{type(exc).__name__}: {exc}"
            self.callbacks.step_status(step_id, "failed", name)
            raise StepFailed(step_id, message) from exc

    def _should_run(self, step: Step) -> bool:
        if step.if_ is None:
            return True
        value = render_value(step.if_, self.context(), self.limits)
        if isinstance(value, str):
            return value.strip().lower() not in ("", "false", "0", "no", "null", "none")
        return bool(value)

    def _run_each(self, step: Step, step_id: str) -> dict[str, Any]:
        items = render_value(step.each, self.context(), self.limits)
        if isinstance(items, Mapping):
            pairs = [(key, value) for key, value in items.items()]
        elif isinstance(items, list):
            pairs = list(enumerate(items))
        else:
            raise StepFailed(step_id, f"each must give a list or a mapping, not {items!r:.80}")
        if len(pairs) > MAX_EACH_ITEMS:
            raise StepFailed(step_id, f"each gives {len(pairs)} items; at most {MAX_EACH_ITEMS}")
        collected: dict[str, list[Any]] = {}
        for key, value in pairs:
            self.callbacks.log(step_id, f"each: {key}")
            output = self._run_action(step, step_id, {"key": key, "value": value})
            for name, item in output.items():
                collected.setdefault(name, []).append(item)
        return collected

    def _run_action(self, step: Step, step_id: str, each: Any) -> dict[str, Any]:
        action = self.registry.get(step.action)
        rendered = _without_nones(render_value(step.input, self.context(each), self.limits))
        problems = self.registry.validate_input(step.action, rendered)
        if problems:
            raise StepFailed(step_id, "; ".join(problems))
        if self.dry_run and not action.supports_dry_run:
            self.callbacks.log(step_id, f"{step.action} does not run in a dry run: skipped")
            return {}
        ctx = ActionContext(
            input=rendered,
            workspace=self.workspace,
            log=lambda line: self.callbacks.log(step_id, line),
            render_text=self._render_values,
            render_path=self._render_values,
            template_dir=self.template_dir,
            dry_run=self.dry_run,
            cancelled=self.callbacks.cancelled,
            render_cookiecutter=self._render_cookiecutter,
            platform=self.platform,
        )
        return action.run(ctx) or {}

    def _render_values(self, text: str, values: Mapping[str, Any]) -> str:
        return render_text(text, {"values": values}, self.limits)

    def _render_cookiecutter(self, text: str, values: Mapping[str, Any]) -> str:
        return render_cookiecutter(text, values, self.limits)

    def output(self) -> dict[str, Any]:
        context = self.context()
        links = []
        for link in self.spec.links:
            rendered = render_value(
                {"title": link.title, "url": link.url, "entityRef": link.entity_ref}, context
            )
            links.append(
                {**{k: v for k, v in rendered.items() if v not in (None, "")}, "icon": link.icon}
            )
        text = [
            {
                "title": item.title,
                "content": render_value(item.content, context, self.limits),
                "icon": item.icon,
            }
            for item in self.spec.text
        ]
        return {"links": links, "text": text}
