"""The pipeline file model: a ``.pavedroad/pipeline.yaml`` read into dataclasses, with
every problem reported at its line.

The syntax is GitHub Actions' workflow syntax, so developers already know it. Where it
differs:

- the manual trigger is ``manual`` (GitHub's ``workflow_dispatch`` is accepted too);
- ``on`` may be left out: such a pipeline runs on every push;
- ``runs-on`` may be left out: no labels means any worker takes the job;
- ``uses`` names a registered step type (``python/test``, ``release/build@1``) or a
  step kept in the repository (``./ci/steps/lint``), never a Docker image or a URL;
- ``retries`` on a job is how many times a failed job is run again (Pavedroad's own);
- ``required`` on a step is only allowed in pipeline templates (see ``library``).

:func:`parse_pipeline` reads a full pipeline and raises :class:`PipelineError` with every
:class:`Problem` found (line, column, path such as ``jobs.test.steps[2].run``, message),
sorted by line. :class:`PipelineReader` is the same checking machinery for callers that
read pipeline parts from other places (pipeline templates, service files).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import yaml

from pavedroad.core.errors import InputError
from pavedroad.core.messages import describe, did_you_mean
from pavedroad.core.safeyaml import YamlError, YamlLimits, load_document
from pavedroad.pipelines import expressions

MAX_TIMEOUT_MINUTES = 360
DEFAULT_TIMEOUT_MINUTES = 60
MAX_RETRIES = 10
MAX_MATRIX_COMBINATIONS = 256
INPUT_TYPES = ("string", "boolean", "number", "choice", "environment")
SHELLS = ("bash", "sh", "python")
RESERVED_ENV_PREFIX = "PAVEDROAD_"

ID_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_STEP_TYPE = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9_.-]*(?:/[A-Za-z0-9][A-Za-z0-9_.-]*)*(?:@[A-Za-z0-9][A-Za-z0-9._-]*)?"
)

PIPELINE_KEYS = ("name", "on", "env", "jobs", "concurrency")
EVENT_KEYS = ("push", "manual", "workflow_dispatch", "schedule")
PUSH_KEYS = ("branches", "branches-ignore", "tags", "tags-ignore", "paths", "paths-ignore")
MANUAL_KEYS = ("inputs",)
INPUT_KEYS = ("type", "description", "required", "default", "options")
CONCURRENCY_KEYS = ("group", "cancel-in-progress")
JOB_KEYS = (
    "name",
    "needs",
    "if",
    "runs-on",
    "timeout-minutes",
    "strategy",
    "concurrency",
    "env",
    "outputs",
    "steps",
    "retries",
    "continue-on-error",
)
STRATEGY_KEYS = ("matrix", "fail-fast", "max-parallel")
STEP_KEYS = (
    "id",
    "name",
    "run",
    "uses",
    "with",
    "env",
    "if",
    "working-directory",
    "timeout-minutes",
    "continue-on-error",
    "shell",
)

# Keys people bring from elsewhere or put one level off: (key, where) → what to do.
_HINTS = {
    ("uses", "a pipeline"): (
        "a file with a top-level 'uses' references a pipeline template and is read with it"
    ),
    ("uses", "job"): "jobs cannot use a whole pipeline; give the job steps",
    ("runs-on", "a step"): "runs-on belongs to the job, not to a step",
    ("needs", "a step"): "needs belongs to the job, not to a step",
    ("retries", "a step"): "retries belongs to the job, not to a step",
    ("required", "a step"): "only pipeline templates mark steps required",
}


# --- problems ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a pipeline file; line and column are 1-based (0 when the
    pipeline came from data without a file)."""

    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.line}:{self.column}: " if self.line else ""
        return f"{where}{self.path + ': ' if self.path else ''}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class PipelineError(InputError):
    """A pipeline file that cannot be used; ``problems`` holds every problem, by line."""

    title = "Invalid pipeline"
    type_slug = "invalid-pipeline"

    def __init__(self, problems: Iterable[Problem], source: str = "<pipeline>") -> None:
        self.problems = sorted(problems)
        self.source = source
        lines = [
            f"{source}:{problem}" if problem.line else f"{source}: {problem}"
            for problem in self.problems
        ]
        super().__init__(
            "\n".join(lines) or f"{source}: invalid pipeline",
            source=source,
            problems=[p.as_dict() for p in self.problems],
        )


# --- the model --------------------------------------------------------------------------


@dataclass
class InputSpec:
    """A typed input: of a manual run, or of a pipeline template."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = False
    default: Any = None
    options: list[str] = field(default_factory=list)
    line: int = 0
    column: int = 0

    def check(self, value: Any) -> str | None:
        """Why ``value`` does not fit this input, or None when it does."""
        if self.type == "boolean" and not isinstance(value, bool):
            return f"expects true or false, not {describe(value)}"
        if self.type == "number" and (
            isinstance(value, bool) or not isinstance(value, int | float)
        ):
            return f"expects a number, not {describe(value)}"
        if self.type in ("string", "environment", "choice") and not isinstance(value, str):
            return f"expects a string, not {describe(value)} (quote it)"
        if self.type == "environment" and not value:
            return "expects the name of an environment"
        if self.type == "choice" and value not in self.options:
            return f"must be one of {', '.join(map(repr, self.options))}, not {value!r}"
        return None


@dataclass
class PushFilter:
    """Which pushes start the pipeline; empty lists filter nothing."""

    branches: list[str] = field(default_factory=list)
    branches_ignore: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    tags_ignore: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    paths_ignore: list[str] = field(default_factory=list)
    line: int = 0
    column: int = 0


@dataclass
class ManualTrigger:
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    line: int = 0
    column: int = 0


@dataclass
class Triggers:
    push: PushFilter | None = None
    manual: ManualTrigger | None = None
    schedule: list[str] = field(default_factory=list)
    line: int = 0
    column: int = 0


@dataclass
class Concurrency:
    group: str
    cancel_in_progress: bool = False
    line: int = 0
    column: int = 0


@dataclass
class Matrix:
    """Axes (name → values), GitHub's ``include``/``exclude``, or one ``${{ }}``
    expression giving the whole matrix at run time."""

    axes: dict[str, list[Any]] = field(default_factory=dict)
    include: list[dict[str, Any]] = field(default_factory=list)
    exclude: list[dict[str, Any]] = field(default_factory=list)
    expression: str | None = None
    line: int = 0
    column: int = 0

    def combinations(self) -> list[dict[str, Any]]:
        """The jobs this matrix makes, with GitHub's rules: the axes' product, minus the
        combinations an ``exclude`` entry matches, then each ``include`` entry merged into
        every combination whose original values it does not change, or added as a
        combination of its own when it fits none."""
        names = list(self.axes)
        base = (
            [
                dict(zip(names, values, strict=True))
                for values in itertools.product(*self.axes.values())
            ]
            if names
            else []
        )
        base = [c for c in base if not any(_subset(entry, c) for entry in self.exclude)]
        originals = [dict(c) for c in base]
        extra: list[dict[str, Any]] = []
        for entry in self.include:
            fitted = False
            for combination, original in zip(base, originals, strict=True):
                if all(original.get(key, value) == value for key, value in entry.items()):
                    combination.update(entry)
                    fitted = True
            if not fitted:
                extra.append(dict(entry))
        return base + extra


@dataclass
class Strategy:
    matrix: Matrix | None = None
    fail_fast: bool = True
    max_parallel: int | None = None
    line: int = 0
    column: int = 0


@dataclass
class Step:
    """One step: a script (``run``) or a step type (``uses``)."""

    id: str | None = None
    name: str | None = None
    run: str | None = None
    uses: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    if_: str | None = None
    working_directory: str | None = None
    timeout_minutes: float | None = None  # None: bounded by the job's timeout
    continue_on_error: bool | str = False
    shell: str | None = None  # run steps only; None means bash -eo pipefail
    required: bool = False  # pipeline templates only: a service cannot remove it
    line: int = 0
    column: int = 0

    @property
    def display_name(self) -> str:
        """What the portal and logs call the step."""
        if self.name:
            return self.name
        if self.uses:
            return self.uses
        first = (self.run or "").strip().splitlines()
        return f"Run {first[0]}" if first else "Run"

    @property
    def label(self) -> str:
        """How an error message names the step."""
        return repr(self.id) if self.id else repr(self.display_name)


@dataclass
class Job:
    id: str
    name: str = ""
    needs: list[str] = field(default_factory=list)
    if_: str | None = None
    runs_on: list[str] = field(default_factory=list)  # empty: any worker
    timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
    strategy: Strategy | None = None
    concurrency: Concurrency | None = None
    env: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    retries: int = 0
    continue_on_error: bool | str = False
    line: int = 0
    column: int = 0

    @property
    def required_steps(self) -> list[Step]:
        return [step for step in self.steps if step.required]


@dataclass
class Pipeline:
    name: str
    on: Triggers = field(default_factory=lambda: Triggers(push=PushFilter()))
    env: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    source: str = ""
    line: int = 0
    column: int = 0


# --- cron -------------------------------------------------------------------------------

_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, {name: number for number, name in enumerate(_MONTHS, 1)}),
    ("day of week", 0, 7, {name: number for number, name in enumerate(_WEEKDAYS)}),
)


class CronError(ValueError):
    """A cron expression that is not valid; the message says which field and why."""


@dataclass(frozen=True)
class CronSchedule:
    """A parsed five-field cron expression (minute hour day-of-month month day-of-week)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday (7 is read as 0)
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, moment: datetime) -> bool:
        """Whether the schedule fires in ``moment``'s minute. As in cron, when both the day
        of month and the day of week are restricted, either one matching is enough."""
        if not (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
        ):
            return False
        day = moment.day in self.days
        weekday = moment.isoweekday() % 7 in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day or weekday
        return day and weekday


def parse_cron(expression: str) -> CronSchedule:
    """Parse ``*/15 9-17 * * MON-FRI``: numbers, ``*``, ranges, steps, lists, and month
    and weekday names (``JAN``, ``MON``, any case). Raises :class:`CronError`."""
    fields = expression.split()
    if len(fields) != 5:
        raise CronError(
            f"expected 5 fields (minute hour day-of-month month day-of-week), found {len(fields)}"
        )
    values = [_cron_field(text, *spec) for text, spec in zip(fields, _CRON_FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    return CronSchedule(
        expression,
        frozenset(values[0]),
        frozenset(values[1]),
        frozenset(values[2]),
        frozenset(values[3]),
        weekdays,
        days_restricted=not fields[2].startswith("*"),
        weekdays_restricted=not fields[4].startswith("*"),
    )


def _cron_field(text: str, name: str, low: int, high: int, names: dict[str, int]) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        if not part:
            raise CronError(f"{name}: empty item in the list {text!r}")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: step {step_text!r} must be a whole number above 0")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = (
                _cron_value(first, name, low, high, names),
                _cron_value(last, name, low, high, names),
            )
            if start > end:
                raise CronError(f"{name}: range {base!r} runs backwards")
        else:
            start = _cron_value(base, name, low, high, names)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return values


def _cron_value(text: str, name: str, low: int, high: int, names: dict[str, int]) -> int:
    if text.isdigit():
        number = int(text)
        if not low <= number <= high:
            raise CronError(f"{name}: {number} is out of range {low}-{high}")
        return number
    if text.lower() in names:
        return names[text.lower()]
    if names:
        allowed = "JAN-DEC" if "jan" in names else "SUN-SAT"
        raise CronError(
            f"{name}: {text!r} is not a number from {low} to {high} or a name ({allowed})"
        )
    raise CronError(f"{name}: {text!r} is not a number from {low} to {high}")


# --- expressions ------------------------------------------------------------------------


def expression_problems(text: str, *, condition: bool = False) -> list[str]:
    """Syntax problems of the ``${{ }}`` expressions in ``text`` (none when it has none);
    with ``condition``, ``text`` is an ``if:`` and may be a bare expression."""
    if not condition and "${{" not in text:
        return []
    return expressions.check(text, condition=condition)


# --- reading YAML with positions --------------------------------------------------------


class Located:
    """A value read from YAML with the node it came from, so problems point at lines.

    ``node`` is None for values that did not come from a file (an entity from the
    catalog, a mapping built in code): their problems have line 0 and only a path.
    """

    __slots__ = ("has_key", "key_node", "key_value", "node", "path", "value")

    def __init__(
        self,
        value: Any,
        node: yaml.Node | None = None,
        path: str = "",
        key: tuple[Any, yaml.Node | None] | None = None,
    ) -> None:
        self.value = value
        self.node = node
        self.path = path
        self.has_key = key is not None
        self.key_value: Any = key[0] if key is not None else None
        self.key_node: yaml.Node | None = key[1] if key is not None else None

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1 if self.node is not None else 0

    @property
    def column(self) -> int:
        return self.node.start_mark.column + 1 if self.node is not None else 0

    @property
    def key(self) -> Located:
        """The key this value is written under, where it is written (the value itself
        when it is not a mapping's value)."""
        if not self.has_key:
            return self
        return Located(self.key_value, self.key_node, self.path)

    @property
    def plain_text(self) -> str | None:
        """The text of a plain (unquoted) scalar as written: ``3.10`` stays ``3.10``."""
        node = self.node
        if isinstance(node, yaml.ScalarNode) and not node.style and not isinstance(self.value, str):
            return str(node.value)
        return None

    def entries(self) -> list[tuple[str, Located]]:
        """A mapping's keys and values, in the file's order."""
        if not isinstance(self.value, dict):
            return []
        pairs = self.node.value if isinstance(self.node, yaml.MappingNode) else []
        if len(pairs) != len(self.value):
            pairs = [(None, None)] * len(self.value)
        return [
            (key, Located(value, value_node, _join(self.path, key), (key, key_node)))
            for (key, value), (key_node, value_node) in zip(self.value.items(), pairs, strict=True)
        ]

    def items(self) -> list[Located]:
        """A list's items."""
        if not isinstance(self.value, list):
            return []
        nodes = self.node.value if isinstance(self.node, yaml.SequenceNode) else []
        if len(nodes) != len(self.value):
            nodes = [None] * len(self.value)
        return [
            Located(value, node, f"{self.path}[{index}]")
            for index, (value, node) in enumerate(zip(self.value, nodes, strict=True))
        ]


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


_ComposeLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_located(
    text: bytes | str, source: str = "<pipeline>", limits: YamlLimits | None = None
) -> Located:
    """Load one YAML document through the platform's safe loader (size, alias and depth
    caps, duplicate keys refused), with node positions. Raises :class:`PipelineError`."""
    try:
        data = load_document(text, source, limits)
    except YamlError as error:
        raise PipelineError(
            [Problem(error.line or 0, error.column or 0, "", error.message)], source
        ) from None
    decoded = text.decode("utf-8-sig") if isinstance(text, bytes) else text.removeprefix("\ufeff")
    node = yaml.compose(decoded, Loader=_ComposeLoader) if data is not None else None
    return Located(data, node)


# --- the reader -------------------------------------------------------------------------


class PipelineReader:
    """Turns located YAML into the model, collecting every problem instead of stopping.

    ``known_step(uses)`` says whether a step type exists; it is asked about registry
    references (``python/test``, ``release/build@1``), not about ``./local`` steps,
    which only exist in the repository at run time. ``template=True`` allows the
    template-only ``required`` on steps.
    """

    def __init__(
        self, known_step: Callable[[str], bool] | None = None, *, template: bool = False
    ) -> None:
        self.known_step = known_step
        self.template = template
        self.problems: list[Problem] = []
        self._needs_at: dict[str, Located] = {}

    # reporting

    def report(self, at: Located, message: str, line: int | None = None) -> None:
        self.problems.append(
            Problem(at.line if line is None else line, at.column, at.path, message)
        )

    def raise_problems(self, source: str) -> None:
        if self.problems:
            raise PipelineError(self.problems, source)

    # shapes

    def fields(
        self, loc: Located, allowed: Collection[str], what: str
    ) -> dict[str, Located] | None:
        """A mapping's values by key; unknown keys are reported with a suggestion."""
        if not isinstance(loc.value, dict):
            self.report(loc, f"{what} must be a mapping, not {describe(loc.value)}")
            return None
        result: dict[str, Located] = {}
        for key, value in loc.entries():
            if key in allowed:
                result[key] = value
            else:
                self.report(value.key, unknown_key(key, allowed, what))
        return result

    def text(self, loc: Located, what: str, *, empty: bool = False) -> str | None:
        """A string (numbers and booleans are refused), its expressions checked."""
        if not isinstance(loc.value, str):
            self.report(loc, f"{what} must be a string, not {describe(loc.value)}")
            return None
        if not empty and not loc.value.strip():
            self.report(loc, f"{what} must not be empty")
            return None
        self.expressions(loc, loc.value)
        return loc.value

    def scalar_text(self, loc: Located, what: str) -> str | None:
        """A string, number or boolean as text (numbers as written: ``3.10``)."""
        value = loc.value
        if isinstance(value, str):
            self.expressions(loc, value)
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return loc.plain_text or str(value)
        self.report(loc, f"{what} must be a string, number or boolean, not {describe(value)}")
        return None

    def flag(self, loc: Located, what: str) -> bool | None:
        if isinstance(loc.value, bool):
            return loc.value
        self.report(loc, f"{what} must be true or false, not {describe(loc.value)}")
        return None

    def switch(self, loc: Located, what: str) -> bool | str:
        """true/false, or an expression deciding at run time."""
        if isinstance(loc.value, str) and "${{" in loc.value:
            self.expressions(loc, loc.value)
            return loc.value
        return bool(self.flag(loc, what))

    def count(self, loc: Located, what: str, low: int, high: int) -> int | None:
        value = loc.value
        if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
            return value
        self.report(
            loc, f"{what} must be a whole number from {low} to {high}, not {describe(value)}"
        )
        return None

    def minutes(self, loc: Located, what: str = "timeout-minutes") -> float | None:
        value = loc.value
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and 0 < value <= MAX_TIMEOUT_MINUTES
        ):
            return float(value)
        self.report(
            loc,
            f"{what} must be a number of minutes above 0 and at most {MAX_TIMEOUT_MINUTES}, "
            f"not {describe(value)}",
        )
        return None

    def string_list(self, loc: Located, what: str) -> list[Located]:
        """A string or a list of strings, as the located strings."""
        if isinstance(loc.value, str):
            items = [loc]
        elif isinstance(loc.value, list):
            items = loc.items()
        else:
            self.report(
                loc, f"{what} must be a string or a list of strings, not {describe(loc.value)}"
            )
            return []
        good = []
        for item in items:
            if isinstance(item.value, str) and item.value.strip():
                good.append(item)
            else:
                self.report(item, f"{what} must hold non-empty strings, not {describe(item.value)}")
        return good

    def identifier(self, loc: Located, what: str) -> bool:
        if isinstance(loc.value, str) and ID_PATTERN.fullmatch(loc.value):
            return True
        self.report(
            loc,
            f"{what} {loc.value!r} is not valid: use letters, digits, '_' and '-', "
            "starting with a letter or '_'",
        )
        return False

    # expressions

    def expressions(self, loc: Located, text: str) -> None:
        """Report the syntax problems of the expressions in ``text``, at their own line
        when ``text`` is a literal block (``run: |``)."""
        messages = expression_problems(text)
        if not messages:
            return
        node = loc.node
        if "\n" in text and isinstance(node, yaml.ScalarNode) and node.style == "|":
            found = False
            for offset, part in enumerate(text.split("\n")):
                for message in expression_problems(part):
                    self.report(loc, message, loc.line + 1 + offset)
                    found = True
            if found:
                return
        for message in messages:
            self.report(loc, message)

    def condition(self, loc: Located) -> str | None:
        """An ``if``: an expression with or without ``${{ }}``, or true/false."""
        value = loc.value
        if isinstance(value, bool):
            return "true" if value else "false"
        if not isinstance(value, str) or not value.strip():
            self.report(loc, f"if must be an expression, not {describe(value)}")
            return None
        for message in expression_problems(value, condition=True):
            self.report(loc, message)
        return value.strip()

    def data(self, loc: Located) -> Any:
        """Free-form data (step ``with``, matrix values): every string's expressions
        checked, returned as it is."""
        if isinstance(loc.value, str):
            self.expressions(loc, loc.value)
        elif isinstance(loc.value, dict):
            for _, value in loc.entries():
                self.data(value)
        elif isinstance(loc.value, list):
            for item in loc.items():
                self.data(item)
        return loc.value

    # pipeline parts

    def pipeline(self, root: Located, source: str) -> Pipeline:
        pipeline = Pipeline(name=source, source=source, line=root.line, column=root.column)
        if root.value is None:
            self.report(root, "the file is empty: a pipeline needs jobs")
            return pipeline
        found = self.fields(root, PIPELINE_KEYS, "a pipeline")
        if found is None:
            return pipeline
        if "name" in found:
            pipeline.name = self.text(found["name"], "name") or source
        if "on" in found:
            pipeline.on = self.triggers(found["on"])
        if "env" in found:
            pipeline.env = self.env(found["env"])
        if "concurrency" in found:
            pipeline.concurrency = self.concurrency(found["concurrency"])
        if "jobs" in found:
            pipeline.jobs = self.jobs(found["jobs"])
        else:
            self.report(root, "a pipeline needs 'jobs'")
        self.check_cycles(pipeline.jobs)
        return pipeline

    def triggers(self, loc: Located) -> Triggers:
        triggers = Triggers(line=loc.line, column=loc.column)
        events: list[tuple[Any, Located, Located | None]]
        if isinstance(loc.value, str | list):
            events = [(item.value, item, None) for item in self.string_list(loc, "on")]
        elif isinstance(loc.value, dict):
            events = [(key, value.key, value) for key, value in loc.entries()]
        else:
            self.report(
                loc, f"on must name triggers (push, manual, schedule), not {describe(loc.value)}"
            )
            return triggers
        if not events:
            self.report(loc, "on names no trigger: give push, manual or schedule")
        for event, at, value in events:
            if event not in EVENT_KEYS:
                self.report(at, unknown_key(event, ("push", "manual", "schedule"), "on"))
            elif event == "push":
                triggers.push = self.push(value, at)
            elif event == "schedule":
                triggers.schedule = self.schedule(value, at)
            elif triggers.manual is not None:
                self.report(
                    at,
                    "give the manual trigger once: 'manual' and 'workflow_dispatch' are the same",
                )
            else:
                triggers.manual = self.manual(value, at)
        return triggers

    def push(self, loc: Located | None, at: Located) -> PushFilter:
        push = PushFilter(line=at.line, column=at.column)
        if loc is None or loc.value is None:
            return push
        found = self.fields(loc, PUSH_KEYS, "push")
        if found is None:
            return push
        for key, value in found.items():
            patterns = [item.value for item in self.string_list(value, key)]
            setattr(push, key.replace("-", "_"), patterns)
        for name in ("branches", "tags", "paths"):
            if name in found and f"{name}-ignore" in found:
                self.report(
                    found[f"{name}-ignore"].key,
                    f"use {name} or {name}-ignore, not both (a '!pattern' in {name} excludes)",
                )
        return push

    def manual(self, loc: Located | None, at: Located) -> ManualTrigger:
        manual = ManualTrigger(line=at.line, column=at.column)
        if loc is None or loc.value is None:
            return manual
        found = self.fields(loc, MANUAL_KEYS, "manual")
        if found and "inputs" in found:
            manual.inputs = self.inputs(found["inputs"])
        return manual

    def inputs(self, loc: Located) -> dict[str, InputSpec]:
        """Typed inputs: name → type, description, required, default, options."""
        if loc.value is None:
            return {}
        if not isinstance(loc.value, dict):
            self.report(loc, f"inputs must be a mapping of input names, not {describe(loc.value)}")
            return {}
        return {
            name: self.input_spec(name, value)
            for name, value in loc.entries()
            if self.identifier(value.key, "input name")
        }

    def input_spec(self, name: str, loc: Located) -> InputSpec:
        spec = InputSpec(name, line=loc.key.line, column=loc.key.column)
        if loc.value is None:
            return spec
        found = self.fields(loc, INPUT_KEYS, f"input {name!r}")
        if found is None:
            return spec
        if "type" in found:
            kind = found["type"].value
            if kind in INPUT_TYPES:
                spec.type = kind
            else:
                self.report(found["type"], unknown_value(kind, INPUT_TYPES, "input type"))
        if "description" in found:
            spec.description = self.text(found["description"], "description", empty=True) or ""
        if "required" in found:
            spec.required = bool(self.flag(found["required"], "required"))
        if "options" in found:
            if spec.type != "choice":
                self.report(found["options"].key, "options are for inputs of type choice")
            spec.options = [item.value for item in self.string_list(found["options"], "options")]
        elif spec.type == "choice":
            self.report(loc.key, f"input {name!r} of type choice needs options")
        if "default" in found and found["default"].value is not None:
            default = found["default"]
            value = default.plain_text if spec.type in ("string", "environment") else None
            spec.default = value if value is not None else default.value
            problem = spec.check(spec.default)
            if problem and (spec.type != "choice" or spec.options):
                self.report(default, f"default {problem}")
        return spec

    def schedule(self, loc: Located | None, at: Located) -> list[str]:
        if loc is None or not isinstance(loc.value, list) or not loc.value:
            self.report(
                loc or at, "schedule must be a list of cron expressions, e.g. - cron: '0 3 * * *'"
            )
            return []
        crons = []
        for item in loc.items():
            entry = item
            if isinstance(item.value, dict):
                found = self.fields(item, ("cron",), "a schedule entry")
                if found is None or "cron" not in found:
                    if not item.value:
                        self.report(item, "a schedule entry needs cron")
                    continue
                entry = found["cron"]
            if not isinstance(entry.value, str):
                self.report(
                    entry, f"a cron expression must be a string, not {describe(entry.value)}"
                )
                continue
            try:
                parse_cron(entry.value)
            except CronError as error:
                self.report(entry, f"invalid cron expression {entry.value!r}: {error}")
                continue
            crons.append(entry.value)
        return crons

    def env(self, loc: Located) -> dict[str, str]:
        if loc.value is None:
            return {}
        if not isinstance(loc.value, dict):
            self.report(loc, f"env must be a mapping of variable names, not {describe(loc.value)}")
            return {}
        env = {}
        for name, value in loc.entries():
            if not _ENV_NAME.fullmatch(name):
                self.report(
                    value.key,
                    f"{name!r} is not a variable name: use letters, digits and '_', "
                    "not starting with a digit",
                )
                continue
            if name.upper().startswith(RESERVED_ENV_PREFIX):
                self.report(
                    value.key,
                    f"{name!r}: variables starting with {RESERVED_ENV_PREFIX} are the platform's",
                )
                continue
            text = self.scalar_text(value, f"env {name}")
            if text is not None:
                env[name] = text
        return env

    def concurrency(self, loc: Located) -> Concurrency | None:
        if isinstance(loc.value, str):
            group = self.text(loc, "concurrency")
            return Concurrency(group, line=loc.line, column=loc.column) if group else None
        found = self.fields(loc, CONCURRENCY_KEYS, "concurrency")
        if found is None:
            return None
        if "group" not in found:
            self.report(loc, "concurrency needs a group")
            return None
        group = self.text(found["group"], "group")
        cancel = found.get("cancel-in-progress")
        concurrency = Concurrency(group or "", line=loc.line, column=loc.column)
        if cancel is not None:
            concurrency.cancel_in_progress = bool(self.flag(cancel, "cancel-in-progress"))
        return concurrency if group else None

    # jobs

    def jobs(self, loc: Located, also_known: Collection[str] = ()) -> dict[str, Job]:
        """The jobs of a mapping; ``also_known`` are other jobs ``needs`` may name."""
        if not isinstance(loc.value, dict) or not loc.value:
            self.report(
                loc, f"jobs must be a mapping of job ids to jobs, not {describe(loc.value)}"
            )
            return {}
        known = {*loc.value, *also_known}
        jobs = {}
        for job_id, value in loc.entries():
            if self.identifier(value.key, "job id"):
                jobs[job_id] = self.job(job_id, value, known)
        return jobs

    def job(self, job_id: str, loc: Located, known_jobs: Collection[str]) -> Job:
        key = loc.key
        job = Job(job_id, name=job_id, line=key.line, column=key.column)
        found = self.fields(loc, JOB_KEYS, f"job {job_id!r}")
        if found is None:
            return job
        if "name" in found:
            job.name = self.text(found["name"], "name") or job_id
        if "needs" in found:
            self._needs_at[job_id] = found["needs"]
            job.needs = self.needs(found["needs"], job_id, known_jobs)
        if "if" in found:
            job.if_ = self.condition(found["if"])
        if "runs-on" in found:
            job.runs_on = self.labels(found["runs-on"])
        if "timeout-minutes" in found:
            job.timeout_minutes = self.minutes(found["timeout-minutes"]) or DEFAULT_TIMEOUT_MINUTES
        if "strategy" in found:
            job.strategy = self.strategy(found["strategy"])
        if "concurrency" in found:
            job.concurrency = self.concurrency(found["concurrency"])
        if "env" in found:
            job.env = self.env(found["env"])
        if "outputs" in found:
            job.outputs = self.outputs(found["outputs"])
        if "retries" in found:
            job.retries = self.count(found["retries"], "retries", 0, MAX_RETRIES) or 0
        if "continue-on-error" in found:
            job.continue_on_error = self.switch(found["continue-on-error"], "continue-on-error")
        if "steps" in found:
            job.steps = self.steps(found["steps"], job)
        else:
            self.report(key, f"job {job_id!r} has no steps")
        return job

    def needs(self, loc: Located, job_id: str, known_jobs: Collection[str]) -> list[str]:
        needs: list[str] = []
        for item in self.string_list(loc, "needs"):
            name = item.value
            if name == job_id:
                self.report(item, f"job {job_id!r} needs itself")
            elif name not in known_jobs:
                self.report(
                    item,
                    f"needs {name!r}, which is not a job of this pipeline"
                    + did_you_mean(name, [j for j in known_jobs if j != job_id]),
                )
            elif name in needs:
                self.report(item, f"{name!r} is listed twice in needs")
            else:
                needs.append(name)
        return needs

    def labels(self, loc: Located) -> list[str]:
        labels = []
        for item in self.string_list(loc, "runs-on"):
            if "${{" in item.value:
                self.expressions(item, item.value)
            elif not _LABEL.fullmatch(item.value):
                self.report(
                    item,
                    f"runs-on label {item.value!r} is not valid: letters, digits, '.', '_' "
                    "and '-', at most 63 characters",
                )
                continue
            labels.append(item.value)
        return labels

    def outputs(self, loc: Located) -> dict[str, str]:
        if not isinstance(loc.value, dict):
            self.report(
                loc, f"outputs must be a mapping of output names, not {describe(loc.value)}"
            )
            return {}
        outputs = {}
        for name, value in loc.entries():
            if self.identifier(value.key, "output name"):
                text = self.text(value, f"output {name}")
                if text is not None:
                    outputs[name] = text
        return outputs

    def strategy(self, loc: Located) -> Strategy | None:
        found = self.fields(loc, STRATEGY_KEYS, "strategy")
        if found is None:
            return None
        strategy = Strategy(line=loc.line, column=loc.column)
        if "matrix" in found:
            strategy.matrix = self.matrix(found["matrix"])
        else:
            self.report(loc.key, "strategy needs a matrix")
        if "fail-fast" in found:
            strategy.fail_fast = self.flag(found["fail-fast"], "fail-fast") is not False
        if "max-parallel" in found:
            strategy.max_parallel = self.count(
                found["max-parallel"], "max-parallel", 1, MAX_MATRIX_COMBINATIONS
            )
        return strategy

    def matrix(self, loc: Located) -> Matrix:
        matrix = Matrix(line=loc.line, column=loc.column)
        if isinstance(loc.value, str) and "${{" in loc.value:
            self.expressions(loc, loc.value)
            text = loc.value.strip()
            if not (text.startswith("${{") and text.endswith("}}") and text.count("${{") == 1):
                self.report(
                    loc,
                    "a matrix given as an expression is one ${{ }} and nothing else, "
                    "whose value is the matrix (a mapping of axes, include, exclude)",
                )
            matrix.expression = loc.value
            return matrix
        if not isinstance(loc.value, dict):
            self.report(loc, f"matrix must be a mapping of axes, not {describe(loc.value)}")
            return matrix
        for name, value in loc.entries():
            if name in ("include", "exclude"):
                setattr(matrix, name, self.matrix_entries(value, name))
            elif self.identifier(value.key, "matrix axis"):
                values = self.matrix_axis(value, name)
                if values:
                    matrix.axes[name] = values
        if not loc.value:
            self.report(loc, "the matrix is empty: give an axis (a list of values) or include")
        elif all(key in ("include", "exclude") for key in loc.value) and not matrix.include:
            self.report(loc, "a matrix needs an axis (a list of values) or include")
        for name, value in loc.entries():
            if name == "exclude":
                self.check_exclude(value, matrix)
        self.check_matrix_size(loc, matrix)
        return matrix

    def check_exclude(self, loc: Located, matrix: Matrix) -> None:
        """An exclude entry only names axes (GitHub refuses others too)."""
        for item in loc.items():
            for key, value in item.entries():
                if key not in matrix.axes:
                    self.report(
                        value.key,
                        f"exclude key {key!r} is not a matrix axis"
                        + did_you_mean(key, list(matrix.axes)),
                    )

    def matrix_axis(self, loc: Located, name: str) -> list[Any]:
        if not isinstance(loc.value, list) or not loc.value:
            self.report(loc, f"matrix axis {name!r} must be a non-empty list of values")
            return []
        for item in loc.items():
            if item.value is None or isinstance(item.value, list):
                self.report(item, f"a value of matrix axis {name!r} must be a scalar or a mapping")
            self.data(item)
        return list(loc.value)

    def matrix_entries(self, loc: Located, name: str) -> list[dict[str, Any]]:
        if not isinstance(loc.value, list):
            self.report(loc, f"{name} must be a list of mappings (axis: value)")
            return []
        entries = []
        for item in loc.items():
            if isinstance(item.value, dict) and item.value:
                self.data(item)
                entries.append(item.value)
            else:
                self.report(item, f"an {name} entry must be a non-empty mapping (axis: value)")
        return entries

    def check_matrix_size(self, loc: Located, matrix: Matrix) -> None:
        product = math.prod(len(values) for values in matrix.axes.values())
        size = product if product > MAX_MATRIX_COMBINATIONS * 16 else len(matrix.combinations())
        if size > MAX_MATRIX_COMBINATIONS:
            self.report(
                loc,
                f"the matrix makes {size} jobs, more than the limit of {MAX_MATRIX_COMBINATIONS}",
            )
        elif matrix.axes and size == 0:
            self.report(loc, "exclude removes every combination: the matrix makes no job")

    # steps

    def steps(
        self,
        loc: Located,
        job: Job,
        taken: Mapping[str, str] | None = None,
    ) -> list[Step]:
        """A job's steps. ``taken`` maps step ids already used (by a template) to the
        problem to report when a step here reuses one."""
        if not isinstance(loc.value, list) or not loc.value:
            self.report(loc, f"steps must be a non-empty list of steps, not {describe(loc.value)}")
            return []
        seen: set[str] = set()
        steps = []
        for item in loc.items():
            step = self.step(item, job, seen, taken or {})
            steps.append(step)
        return steps

    def step(self, loc: Located, job: Job, seen: set[str], taken: Mapping[str, str]) -> Step:
        step = Step(line=loc.line, column=loc.column)
        allowed = (*STEP_KEYS, "required") if self.template else STEP_KEYS
        found = self.fields(loc, allowed, "a step")
        if found is None:
            return step
        if "id" in found and self.identifier(found["id"], "step id"):
            step.id = found["id"].value
            if step.id in taken:
                self.report(found["id"], taken[step.id])
            elif step.id in seen:
                self.report(found["id"], f"step id {step.id!r} is used twice in job {job.id!r}")
            seen.add(found["id"].value)
        if "name" in found:
            step.name = self.text(found["name"], "name")
        self.step_action(found, loc, step)
        if "env" in found:
            step.env = self.env(found["env"])
        if "if" in found:
            step.if_ = self.condition(found["if"])
        if "working-directory" in found:
            step.working_directory = self.workspace_path(found["working-directory"])
        if "timeout-minutes" in found:
            step.timeout_minutes = self.minutes(found["timeout-minutes"])
            if step.timeout_minutes and step.timeout_minutes > job.timeout_minutes:
                self.report(
                    found["timeout-minutes"],
                    f"the step's timeout-minutes ({step.timeout_minutes:g}) is longer than its "
                    f"job's ({job.timeout_minutes:g}): raise the job's timeout-minutes",
                )
        if "continue-on-error" in found:
            step.continue_on_error = self.switch(found["continue-on-error"], "continue-on-error")
        if "required" in found:
            step.required = bool(self.flag(found["required"], "required"))
        return step

    def step_action(self, found: dict[str, Located], loc: Located, step: Step) -> None:
        """``run`` or ``uses`` (exactly one), and what goes only with each."""
        run, uses = found.get("run"), found.get("uses")
        if run is None and uses is None:
            self.report(loc, "a step needs 'run' (a script) or 'uses' (a step type)")
        elif run is not None and uses is not None:
            self.report(uses.key, "a step has 'run' or 'uses', not both")
        if run is not None:
            step.run = self.text(run, "run")
        if uses is not None:
            step.uses = self.step_type(uses)
        if "with" in found:
            if uses is None:
                self.report(found["with"].key, "'with' gives inputs to a 'uses' step, not to 'run'")
            elif not isinstance(found["with"].value, dict | None):
                self.report(
                    found["with"], f"with must be a mapping, not {describe(found['with'].value)}"
                )
            else:
                step.with_ = dict(self.data(found["with"]) or {})
        if "shell" in found:
            shell = found["shell"].value
            if run is None:
                self.report(found["shell"].key, "'shell' is for 'run' steps")
            elif shell not in SHELLS:
                self.report(found["shell"], unknown_value(shell, SHELLS, "shell"))
            else:
                step.shell = shell

    def step_type(self, loc: Located) -> str | None:
        uses = loc.value
        if not isinstance(uses, str):
            self.report(loc, f"uses must be a string, not {describe(uses)}")
            return None
        if uses.startswith("./"):
            parts = uses[2:].split("/")
            if not uses[2:] or any(part in ("", ".", "..") for part in parts):
                self.report(loc, f"local step {uses!r} must be a path inside the repository")
                return None
            return uses
        if not _STEP_TYPE.fullmatch(uses):
            self.report(
                loc,
                f"uses {uses!r} is not a step reference: write a step type (python/test, "
                "release/build@1) or a local step (./path/to/step)",
            )
            return None
        if self.known_step is not None and not self.known_step(uses):
            self.report(loc, f"unknown step type {uses!r}")
        return uses

    def workspace_path(self, loc: Located) -> str | None:
        path = self.text(loc, "working-directory")
        if path is None or "${{" in path:
            return path
        if path.startswith(("/", "\\")) or ".." in re.split(r"[/\\]", path):
            self.report(
                loc, f"working-directory {path!r} must be a relative path inside the workspace"
            )
            return None
        return path

    # the job graph

    def check_cycles(self, jobs: Mapping[str, Job]) -> None:
        for cycle in find_cycles(jobs):
            first = cycle[0]
            at = self._needs_at.get(first) or Located(None, path=f"jobs.{first}.needs")
            self.report(at.key, "jobs form a cycle in needs: " + " → ".join(cycle))


def find_cycles(jobs: Mapping[str, Job]) -> list[list[str]]:
    """Each cycle in the jobs' ``needs``, as ``[a, b, c, a]`` (a needs b needs c needs a),
    starting from the job written first. Needs naming unknown jobs are ignored."""
    waiting = {job_id: {n for n in job.needs if n in jobs} for job_id, job in jobs.items()}
    needed_by: dict[str, list[str]] = {job_id: [] for job_id in jobs}
    for job_id, needs in waiting.items():
        for need in needs:
            needed_by[need].append(job_id)
    # Peel off every job whose needs can all run: what is left is in or after a cycle.
    ready = [job_id for job_id, needs in waiting.items() if not needs]
    while ready:
        done = ready.pop()
        for job_id in needed_by[done]:
            waiting[job_id].discard(done)
            if not waiting[job_id]:
                ready.append(job_id)
    order = {job_id: index for index, job_id in enumerate(jobs)}
    remaining = {
        job_id: sorted(needs, key=order.__getitem__) for job_id, needs in waiting.items() if needs
    }
    cycles: list[list[str]] = []
    in_cycle: set[str] = set()
    for start in remaining:
        walk: list[str] = []
        current = start
        while current not in walk and current not in in_cycle:
            walk.append(current)
            current = remaining[current][0]
        if current in in_cycle:
            continue  # a job after a cycle already reported
        cycle = walk[walk.index(current) :]
        in_cycle.update(cycle)
        first = min(cycle, key=order.__getitem__)
        turn = cycle.index(first)
        ordered = cycle[turn:] + cycle[:turn]
        cycles.append([*ordered, first])
    return cycles


class _ValueReader(PipelineReader):
    """Checks values made at run time: their strings are data, not expressions."""

    def expressions(self, loc: Located, text: str) -> None:
        return None


def read_matrix(value: Any, path: str = "strategy.matrix") -> Matrix:
    """A matrix given at run time (the value of ``matrix: ${{ fromJSON(...) }}``),
    checked by the rules a matrix written in the file follows: axes are non-empty lists,
    ``include``/``exclude`` lists of mappings, exclude keys name axes, at least one and at
    most :data:`MAX_MATRIX_COMBINATIONS` jobs. Raises :class:`PipelineError` with each
    problem, its path under ``path``."""
    if not isinstance(value, dict):
        message = (
            f"the matrix expression gave {describe(value)}, not a mapping of axes "
            "(with include and exclude); give it an object, e.g. "
            "${{ fromJSON(needs.setup.outputs.matrix) }}"
        )
        raise PipelineError([Problem(0, 0, path, message)], path)
    reader = _ValueReader()
    matrix = reader.matrix(Located(value, path=path))
    reader.raise_problems(path)
    return matrix


def parse_pipeline(
    text: bytes | str,
    source: str = "<pipeline>",
    *,
    known_step: Callable[[str], bool] | None = None,
    limits: YamlLimits | None = None,
) -> Pipeline:
    """Read a full pipeline file. Raises :class:`PipelineError` with every problem."""
    root = load_located(text, source, limits)
    reader = PipelineReader(known_step)
    pipeline = reader.pipeline(root, source)
    reader.raise_problems(source)
    return pipeline


# --- messages ---------------------------------------------------------------------------


def unknown_key(key: Any, allowed: Collection[str], what: str) -> str:
    """The message for a key that is not allowed: a hint, a suggestion or the choices."""
    hint = _HINTS.get((key, "job" if what.startswith("job ") else what))
    suggestion = did_you_mean(key, allowed)
    message = f"unknown key {key!r} in {what}"
    if hint:
        return f"{message}: {hint}"
    if suggestion:
        return message + suggestion
    return f"{message}; expected one of: {', '.join(allowed)}"


def unknown_value(value: Any, allowed: Collection[str], what: str) -> str:
    return f"unknown {what} {value!r}" + (
        did_you_mean(value, allowed) or f"; expected one of: {', '.join(allowed)}"
    )


def _subset(entry: Mapping[str, Any], combination: Mapping[str, Any]) -> bool:
    return all(key in combination and combination[key] == value for key, value in entry.items())
