"""Local steps: ``uses: ./path/to/folder`` runs steps kept in the repository, as GitHub
runs a local composite action.

The folder (in the job's workspace, so the repository must be checked out first) holds
``step.yaml``; GitHub's ``action.yml`` / ``action.yaml`` with ``runs.using: composite``
is read too, so an action written for GitHub runs unchanged::

    name: No TODOs
    inputs:
      path: {description: The folder to look in, default: src}
      strict: {required: true}
    outputs:
      count: {value: "${{ steps.count.outputs.count }}"}
    runs:
      using: composite            # optional in step.yaml
      steps:
        - id: count
          run: echo "count=$(grep -rn TODO "$INPUT_PATH" | wc -l)" >> "$PAVEDROAD_OUTPUT"
        - if: inputs.strict == 'true' && steps.count.outputs.count != '0'
          run: grep -rn TODO "$INPUT_PATH"; exit 1

:func:`load_local_step` finds and checks the file (the folder contained in the
workspace through :func:`~pavedroad.core.paths.contained_path`, the file read through
the safe YAML loader and the pipeline file's own reader, so every problem has its line
and the same words as in a pipeline file). :class:`LocalStep` resolves the step's
inputs (defaults, required, unknown names) and names their ``INPUT_*`` variables; the
executor runs its steps as part of the step that uses it, in that step's log.

A local step may use other local steps, up to :data:`MAX_DEPTH` deep; a cycle is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.core.safeyaml import YamlLimits
from pavedroad.pipelines.expressions import to_string
from pavedroad.pipelines.spec import (
    MAX_TIMEOUT_MINUTES,
    Job,
    Located,
    PipelineError,
    PipelineReader,
    Problem,
    Step,
    did_you_mean,
    load_located,
)
from pavedroad.pipelines.steps import StepFailed

STEP_FILES = ("step.yaml", "step.yml", "action.yml", "action.yaml")
MAX_FILE_BYTES = 256 * 1024
MAX_DEPTH = 5  # local steps using local steps, counting the outermost

FILE_KEYS = ("name", "description", "author", "branding", "inputs", "outputs", "runs")
INPUT_KEYS = ("description", "required", "default", "deprecationMessage")
OUTPUT_KEYS = ("description", "value")
RUNS_KEYS = ("using", "steps")


class LocalStepInvalid(StepFailed):
    """A local step's file has problems; ``problems`` are its lines, each with the file,
    line and column (the message names them all when there is one, else counts them)."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        message = (
            self.problems[0]
            if len(self.problems) == 1
            else f"{source} has {len(self.problems)} problems (listed above)"
        )
        super().__init__(message)


@dataclass(frozen=True)
class LocalInput:
    name: str
    description: str = ""
    required: bool = False
    default: str | None = None  # may hold expressions, evaluated where the step is used


@dataclass(frozen=True)
class LocalOutput:
    name: str
    value: str  # an expression over the step's own steps: ${{ steps.<id>.outputs.<name> }}
    description: str = ""


@dataclass
class LocalStep:
    """A local step read from its folder; ``steps`` are planned like a job's steps."""

    uses: str  # as written: ./ci/steps/lint
    folder: Path  # resolved, inside the workspace
    source: str  # the file, relative to the workspace: ci/steps/lint/step.yaml
    name: str
    inputs: dict[str, LocalInput] = field(default_factory=dict)
    outputs: dict[str, LocalOutput] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)

    def resolve_inputs(
        self, given: Mapping[str, Any], evaluate_default: Callable[[str], Any]
    ) -> dict[str, str]:
        """The ``inputs`` context inside the step: every input as text (as on GitHub),
        given or its default (evaluated by ``evaluate_default``) or ``''``. Fails the
        step for an input it does not have or a required one not given."""
        unknown = [str(name) for name in given if name not in self.inputs]
        if unknown:
            names = ", ".join(self.inputs) or "none"
            raise StepFailed(
                f"{self.uses} has no input {unknown[0]!r}"
                + (did_you_mean(unknown[0], self.inputs) or f"; its inputs: {names}")
            )
        values: dict[str, str] = {}
        for name, spec in self.inputs.items():
            if name in given:
                values[name] = to_string(given[name])
            elif spec.default is not None:
                values[name] = to_string(evaluate_default(spec.default))
            elif spec.required:
                raise StepFailed(f"{self.uses} needs the input {name!r} (with: {{{name}: ...}})")
            else:
                values[name] = ""
        return values

    @staticmethod
    def input_env(values: Mapping[str, str]) -> dict[str, str]:
        """``INPUT_<NAME>`` for each input: upper case, ``-`` written as ``_``."""
        return {env_name(name): value for name, value in values.items()}


def env_name(input_name: str) -> str:
    return "INPUT_" + input_name.replace("-", "_").upper()


# -- finding and reading the file ---------------------------------------------------------


def load_local_step(
    workspace: Path,
    uses: str,
    *,
    known_step: Callable[[str], bool] | None = None,
    chain: Sequence[LocalStep] = (),
) -> LocalStep:
    """The local step ``uses`` (``./path``) names, read from the workspace. ``chain`` is
    the local steps being run around this one (outermost first), to refuse cycles and
    nesting deeper than :data:`MAX_DEPTH`. Raises :class:`StepFailed` saying what to do."""
    relative = uses.removeprefix("./")
    parts = relative.split("/")
    if not uses.startswith("./") or not relative or any(p in ("", ".", "..") for p in parts):
        raise StepFailed(
            f"uses: {uses!r} is not a local step: write ./path/to/folder, a folder of the "
            "repository, without '.' or '..' parts"
        )
    try:
        folder = contained_path(workspace, relative)
    except PathEscapeError:
        raise StepFailed(f"uses: {uses} leads outside the workspace") from None
    _check_chain(uses, folder, chain)
    if not folder.is_dir():
        if folder.exists():
            raise StepFailed(f"uses: {uses} is a file: name the folder that holds step.yaml")
        raise StepFailed(
            f"uses: {uses}: there is no folder {relative} in the workspace "
            "(check the repository out first: uses: checkout)"
        )
    name, path = _step_file(uses, workspace, relative)
    source = f"{relative}/{name}"
    with open(path, "rb") as handle:
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise StepFailed(f"{source} is larger than {MAX_FILE_BYTES // 1024} KiB")
    return _parse(data, uses, folder, source, action=name.startswith("action."), known=known_step)


def _check_chain(uses: str, folder: Path, chain: Sequence[LocalStep]) -> None:
    route = " → ".join([*(step.uses for step in chain), uses])
    if any(step.folder == folder for step in chain):
        raise StepFailed(f"local steps use each other in a cycle: {route}")
    if len(chain) >= MAX_DEPTH:
        raise StepFailed(f"local steps are nested more than {MAX_DEPTH} deep: {route}")


def _step_file(uses: str, workspace: Path, relative: str) -> tuple[str, Path]:
    """The folder's step file (its name and resolved path), which must be in the
    workspace too."""
    found: list[tuple[str, Path]] = []
    for name in STEP_FILES:
        try:
            path = contained_path(workspace, f"{relative}/{name}")
        except PathEscapeError:
            raise StepFailed(f"uses: {uses}: {name} leads outside the workspace") from None
        if path.is_file():
            found.append((name, path))
    if not found:
        raise StepFailed(f"uses: {uses}: the folder has no step.yaml (nor action.yml)")
    if len(found) > 1:
        names = " and ".join(name for name, _ in found)
        raise StepFailed(f"uses: {uses}: the folder has both {names}; keep one")
    return found[0]


def _parse(
    data: bytes,
    uses: str,
    folder: Path,
    source: str,
    *,
    action: bool,
    known: Callable[[str], bool] | None,
) -> LocalStep:
    try:
        root = load_located(data, source, YamlLimits(max_bytes=MAX_FILE_BYTES))
    except PipelineError as error:
        raise LocalStepInvalid(source, _lines(source, error.problems)) from None
    reader = _LocalStepReader(known)
    step = reader.local_step(root, uses, folder, source, action=action)
    if reader.problems:
        raise LocalStepInvalid(source, _lines(source, sorted(reader.problems)))
    return step


def _lines(source: str, problems: Sequence[Problem]) -> list[str]:
    return [f"{source}:{p}" if p.line else f"{source}: {p}" for p in problems]


class _LocalStepReader(PipelineReader):
    """The pipeline file's reader, for the parts of a local step's file."""

    def local_step(
        self, root: Located, uses: str, folder: Path, source: str, *, action: bool
    ) -> LocalStep:
        step = LocalStep(uses=uses, folder=folder, source=source, name=uses)
        if root.value is None:
            self.report(root, "the file is empty: a local step needs runs.steps")
            return step
        found = self.fields(root, FILE_KEYS, "a local step")
        if found is None:
            return step
        if "name" in found:
            step.name = self.text(found["name"], "name") or uses
        if "inputs" in found:
            step.inputs = self.local_inputs(found["inputs"])
        if "outputs" in found:
            step.outputs = self.local_outputs(found["outputs"])
        if "runs" in found:
            step.steps = self.runs(found["runs"], uses, action=action)
        else:
            self.report(root, "a local step needs runs.steps")
        return step

    def local_inputs(self, loc: Located) -> dict[str, LocalInput]:
        if loc.value is None:
            return {}
        if not isinstance(loc.value, dict):
            self.report(loc, f"inputs must be a mapping of input names, not {_kind(loc.value)}")
            return {}
        inputs: dict[str, LocalInput] = {}
        variables: dict[str, str] = {}
        for name, value in loc.entries():
            if not self.identifier(value.key, "input name"):
                continue
            variable = env_name(name)
            if variable in variables:
                self.report(
                    value.key,
                    f"inputs {variables[variable]!r} and {name!r} would both be ${variable}",
                )
                continue
            variables[variable] = name
            inputs[name] = self.local_input(name, value)
        return inputs

    def local_input(self, name: str, loc: Located) -> LocalInput:
        if loc.value is None:
            return LocalInput(name)
        found = self.fields(loc, INPUT_KEYS, f"input {name!r}")
        if found is None:
            return LocalInput(name)
        description = ""
        if "description" in found:
            description = self.text(found["description"], "description", empty=True) or ""
        required = bool(self.flag(found["required"], "required")) if "required" in found else False
        default = None
        if "default" in found and found["default"].value is not None:
            default = self.scalar_text(found["default"], f"the default of {name!r}")
        return LocalInput(name, description, required, default)

    def local_outputs(self, loc: Located) -> dict[str, LocalOutput]:
        if loc.value is None:
            return {}
        if not isinstance(loc.value, dict):
            self.report(loc, f"outputs must be a mapping of output names, not {_kind(loc.value)}")
            return {}
        outputs: dict[str, LocalOutput] = {}
        for name, value in loc.entries():
            if not self.identifier(value.key, "output name"):
                continue
            found = self.fields(value, OUTPUT_KEYS, f"output {name!r}")
            if found is None:
                continue
            if "value" not in found:
                self.report(
                    value.key,
                    f"output {name!r} needs a value, e.g. ${{{{ steps.<id>.outputs.{name} }}}}",
                )
                continue
            text = self.text(found["value"], "value")
            description = ""
            if "description" in found:
                description = self.text(found["description"], "description", empty=True) or ""
            if text is not None:
                outputs[name] = LocalOutput(name, text, description)
        return outputs

    def runs(self, loc: Located, uses: str, *, action: bool) -> list[dict[str, Any]]:
        if isinstance(loc.value, dict):
            using = loc.value.get("using")
            if using is not None and using != "composite":
                where = next((v for k, v in loc.entries() if k == "using"), loc)
                self.report(
                    where,
                    f"runs.using {using!r}: only composite steps run here (runs.using: "
                    "composite, with runs.steps); JavaScript and Docker actions do not",
                )
                return []
            if action and using is None:
                self.report(loc, "an action.yml runs here when it says runs.using: composite")
        found = self.fields(loc, RUNS_KEYS, "runs")
        if found is None:
            return []
        if "steps" not in found:
            self.report(loc.key, "runs needs steps")
            return []
        job = Job(uses, timeout_minutes=MAX_TIMEOUT_MINUTES)
        return [_planned(step, index) for index, step in enumerate(self.steps(found["steps"], job))]


def _planned(step: Step, index: int) -> dict[str, Any]:
    """A step as a job's planned steps are stored (what the executor runs)."""
    return {
        "index": index,
        "id": step.id,
        "name": step.display_name,
        "run": step.run,
        "uses": step.uses,
        "with": dict(step.with_),
        "env": dict(step.env),
        "if": step.if_,
        "working-directory": step.working_directory,
        "timeout-minutes": step.timeout_minutes,
        "continue-on-error": step.continue_on_error,
        "shell": step.shell,
    }


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else type(value).__name__
