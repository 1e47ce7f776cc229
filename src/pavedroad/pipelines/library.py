"""Pipeline templates: the ``PipelineTemplate`` kind, and resolving a service's
``uses: python-service@1`` into the pipeline it runs.

A template, owned by the platform team and ingested into the catalog::

    apiVersion: pavedroad.dev/v1alpha1
    kind: PipelineTemplate
    metadata:
      name: python-service
    spec:
      owner: group:platform-team
      description: Lint, test and release a Python service.
      versions:
        1:
          deprecated: Use python-service@2   # optional; shown to services still on 1
          inputs:                            # typed like manual-run inputs
            python-version: {type: string, default: "3.12"}
          on: {push: {}}                     # optional: the triggers services get
          env: {...}
          extendable:
            jobs: true                       # services may add jobs of their own
            steps:                           # jobs services may add steps to, and where
              test: [before, after]
              build: after
          jobs:                              # as in a pipeline file
            test:
              steps:
                - uses: python/test
                  required: true             # no service can remove or replace it

Each major version is a full definition under ``versions``: ``uses: python-service@1``
finds the entity named ``python-service`` and its version ``1``. One entity per template
(not one per version) because catalog names are unique, so a template has one owner, one
page and one list of "which services use which version", and two majors live side by
side while services migrate. Changing version 1 in place is a compatible update every
``@1`` service takes at its next run; an incompatible change is a new major.

A service's ``.pavedroad/pipeline.yaml`` that uses it::

    uses: python-service@1
    with:
      python-version: "3.13"
    on:                          # optional: replaces the template's triggers
      push: {branches: [main]}
    env: {LOG_LEVEL: debug}      # optional: added to the template's, never replacing one
    jobs:                        # only if the template's extendable.jobs is true
      smoke:
        needs: [build]
        steps: [{run: ./smoke.sh}]
    extend:                      # only where the template's extendable.steps allows
      test:
        before: [{run: sudo apt-get install -y libpq-dev}]
        after: [{uses: artifact/upload, with: {name: coverage, path: htmlcov}}]

``before`` steps run right before the template job's first required step (at the start
of the job when it has none), so the template's setup (checkout, ``python/setup``) has
run and the protected core has not; ``after`` steps run after the job's last step. There
is no way to remove, replace or reorder a template's steps: a job id or step
id that clashes with the template's is a problem naming the template (and the required
step, when it is one). Template inputs and manual-run inputs share the ``inputs``
expression context, so their names must differ.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pavedroad.catalog.kinds import PLATFORM_VERSION, KindSchema
from pavedroad.core.safeyaml import YamlLimits
from pavedroad.pipelines.spec import (
    Concurrency,
    InputSpec,
    Job,
    Located,
    Pipeline,
    PipelineError,
    PipelineReader,
    Problem,
    PushFilter,
    Step,
    Triggers,
    did_you_mean,
    load_located,
    unknown_key,
)

KIND = "PipelineTemplate"
POSITIONS = ("before", "after")
SPEC_KEYS = ("owner", "description", "versions")
DEFINITION_KEYS = (
    "description",
    "deprecated",
    "inputs",
    "on",
    "env",
    "concurrency",
    "extendable",
    "jobs",
)
EXTENDABLE_KEYS = ("jobs", "steps")
SERVICE_KEYS = ("uses", "with", "name", "on", "env", "concurrency", "jobs", "extend")
_USES = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]{0,62})@([1-9][0-9]{0,5})")
_VERSION = re.compile(r"[1-9][0-9]{0,5}")
_REMOVING = ("steps", "remove", "replace", "override", "skip", "disable", "without", "only")

FindTemplate = Callable[[str, int], "TemplateDefinition | None"]


# --- the model --------------------------------------------------------------------------


@dataclass
class Extendable:
    """Where services may add to a template: jobs of their own, and steps before or
    after a template job's steps (job id → allowed positions)."""

    jobs: bool = False
    steps: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass
class TemplateDefinition:
    """One major version of a pipeline template: what ``uses: name@version`` gets."""

    name: str
    version: int
    owner: str = ""
    description: str = ""
    deprecated: str | None = None
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    on: Triggers | None = None
    env: dict[str, str] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    jobs: dict[str, Job] = field(default_factory=dict)
    extendable: Extendable = field(default_factory=Extendable)

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def required_steps(self) -> list[tuple[str, Step]]:
        """(job id, step) for every step services cannot remove."""
        return [(job.id, step) for job in self.jobs.values() for step in job.required_steps]


@dataclass
class PipelineTemplate:
    """A ``PipelineTemplate`` entity: its versions by major number."""

    name: str
    owner: str
    description: str = ""
    versions: dict[int, TemplateDefinition] = field(default_factory=dict)


@dataclass
class TemplateUse:
    """A service file that references a template; checked when resolved."""

    uses: str
    source: str
    root: Located = field(repr=False)
    line: int = 0
    column: int = 0

    @property
    def template(self) -> tuple[str, int] | None:
        """(name, major version), or None when ``uses`` is not ``name@major``."""
        return parse_uses(self.uses)


@dataclass
class AddedStep:
    """A step a service added to a template's job."""

    job: str
    position: str  # "before" the job's first required step, or "after" its last step
    step: Step


@dataclass
class ResolvedPipeline:
    """The pipeline to run, and where it came from: a template (name and major version,
    the inputs given, what the service added) or the service's own full pipeline."""

    pipeline: Pipeline
    source: str = ""
    template: str | None = None
    template_version: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    added_jobs: list[str] = field(default_factory=list)
    added_steps: list[AddedStep] = field(default_factory=list)
    deprecated: str | None = None

    @property
    def uses(self) -> str | None:
        return f"{self.template}@{self.template_version}" if self.template else None

    @property
    def customised(self) -> bool:
        """Whether the service added jobs or steps of its own to the template's."""
        return bool(self.added_jobs or self.added_steps)


class TemplateLibrary:
    """Pipeline templates by name, e.g. read from the catalog's entities. Call it as
    ``find_template(name, version)``."""

    def __init__(self, templates: Iterable[PipelineTemplate] = ()) -> None:
        self.templates = {template.name: template for template in templates}

    @classmethod
    def from_entities(cls, entities: Iterable[Mapping[str, Any]]) -> TemplateLibrary:
        """Every valid ``PipelineTemplate`` among ``entities`` (invalid ones were refused at
        ingestion; one that slips through is left out rather than failing every run)."""
        templates = []
        for entity in entities:
            if entity.get("kind") == KIND and entity.get("apiVersion") == PLATFORM_VERSION:
                try:
                    templates.append(read_template(entity))
                except PipelineError:
                    continue
        return cls(templates)

    def find(self, name: str, version: int) -> TemplateDefinition | None:
        template = self.templates.get(name)
        return template.versions.get(version) if template else None

    def __call__(self, name: str, version: int) -> TemplateDefinition | None:
        return self.find(name, version)

    def versions(self, name: str) -> list[int]:
        template = self.templates.get(name)
        return sorted(template.versions) if template else []


# --- the catalog kind -------------------------------------------------------------------


def pipeline_template_kind() -> KindSchema:
    """The ``PipelineTemplate`` kind's envelope; :func:`template_problems` checks the
    definitions themselves with messages that name the job and step."""
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"enum": [PLATFORM_VERSION]},
            "kind": {"enum": [KIND]},
            "spec": {
                "type": "object",
                "required": ["owner", "versions"],
                "properties": {
                    "owner": {"type": "string", "minLength": 1},
                    "description": {"type": "string"},
                    "versions": {"type": "object", "minProperties": 1},
                },
            },
        },
    }
    return KindSchema(
        KIND,
        (PLATFORM_VERSION,),
        schema,
        "A CI/CD pipeline the platform team publishes; services use it as name@version.",
    )


def template_problems(entity: Mapping[str, Any]) -> list[Problem]:
    """Every problem in a ``PipelineTemplate`` entity's definitions (none when valid)."""
    try:
        read_template(entity)
    except PipelineError as error:
        return error.problems
    return []


# --- reading templates ------------------------------------------------------------------


def read_template(
    entity: Mapping[str, Any], *, known_step: Callable[[str], bool] | None = None
) -> PipelineTemplate:
    """A template from entity data (e.g. from the catalog). Problems carry paths such
    as ``spec.versions.1.jobs.test.steps[0].uses`` and no lines."""
    metadata = entity.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, Mapping) else ""
    source = f"pipelinetemplate:{name}"
    return _read(Located(entity.get("spec"), None, "spec"), name, source, known_step)


def parse_template(
    text: bytes | str,
    source: str = "<template>",
    *,
    known_step: Callable[[str], bool] | None = None,
    limits: YamlLimits | None = None,
) -> PipelineTemplate:
    """A template from its YAML file, with line-numbered problems."""
    root = load_located(text, source, limits)
    data = root.value if isinstance(root.value, dict) else {}
    metadata = data.get("metadata")
    name = str(metadata.get("name", "")) if isinstance(metadata, dict) else ""
    spec = next((value for key, value in root.entries() if key == "spec"), None)
    problems = []
    if data.get("kind") != KIND or data.get("apiVersion") != PLATFORM_VERSION:
        problems.append(
            Problem(root.line, root.column, "", f"not a {PLATFORM_VERSION} {KIND} entity")
        )
    if spec is None:
        problems.append(Problem(root.line, root.column, "spec", "a template needs a spec"))
    if problems:
        raise PipelineError(problems, source)
    assert spec is not None
    return _read(spec, name, source, known_step)


def _read(
    spec: Located, name: str, source: str, known_step: Callable[[str], bool] | None
) -> PipelineTemplate:
    reader = PipelineReader(known_step, template=True)
    template = PipelineTemplate(name, owner="")
    found = reader.fields(spec, SPEC_KEYS, "a pipeline template's spec")
    if found is not None:
        if "owner" in found:
            template.owner = reader.text(found["owner"], "owner") or ""
        else:
            reader.report(spec, "a pipeline template needs an owner")
        if "description" in found:
            template.description = reader.text(found["description"], "description") or ""
        if "versions" in found:
            template.versions = _read_versions(found["versions"], template, reader, known_step)
        else:
            reader.report(spec, "a pipeline template needs versions (e.g. versions: {1: ...})")
    reader.raise_problems(source)
    return template


def _read_versions(
    loc: Located,
    template: PipelineTemplate,
    reader: PipelineReader,
    known_step: Callable[[str], bool] | None,
) -> dict[int, TemplateDefinition]:
    if not isinstance(loc.value, dict) or not loc.value:
        reader.report(loc, "versions must map major version numbers to definitions")
        return {}
    versions = {}
    for key, value in loc.entries():
        if not _VERSION.fullmatch(key):
            reader.report(value.key, f"{key!r} is not a major version number (1, 2, ...)")
            continue
        # One reader per version: each version's jobs are a graph of their own.
        version_reader = PipelineReader(known_step, template=True)
        versions[int(key)] = _read_definition(value, template, int(key), version_reader)
        reader.problems.extend(version_reader.problems)
    return versions


def _read_definition(
    loc: Located, template: PipelineTemplate, version: int, reader: PipelineReader
) -> TemplateDefinition:
    definition = TemplateDefinition(template.name, version, template.owner, template.description)
    found = reader.fields(loc, DEFINITION_KEYS, f"version {version}")
    if found is None:
        return definition
    if "description" in found:
        definition.description = reader.text(found["description"], "description") or ""
    if "deprecated" in found:
        definition.deprecated = reader.text(found["deprecated"], "deprecated")
    if "inputs" in found:
        definition.inputs = reader.inputs(found["inputs"])
    if "on" in found:
        definition.on = reader.triggers(found["on"])
    if "env" in found:
        definition.env = reader.env(found["env"])
    if "concurrency" in found:
        definition.concurrency = reader.concurrency(found["concurrency"])
    if "jobs" in found:
        definition.jobs = reader.jobs(found["jobs"])
        reader.check_cycles(definition.jobs)
    else:
        reader.report(loc.key, f"version {version} needs jobs")
    if "extendable" in found:
        definition.extendable = _read_extendable(found["extendable"], definition.jobs, reader)
    return definition


def _read_extendable(loc: Located, jobs: Mapping[str, Job], reader: PipelineReader) -> Extendable:
    extendable = Extendable()
    found = reader.fields(loc, EXTENDABLE_KEYS, "extendable")
    if found is None:
        return extendable
    if "jobs" in found:
        extendable.jobs = bool(reader.flag(found["jobs"], "extendable.jobs"))
    steps = found.get("steps")
    if steps is None:
        return extendable
    if not isinstance(steps.value, dict):
        reader.report(steps, "extendable.steps must map job ids to before, after or both")
        return extendable
    for job_id, value in steps.entries():
        if job_id not in jobs:
            reader.report(
                value.key,
                f"extendable.steps names {job_id!r}, which is not a job of this template"
                + did_you_mean(job_id, jobs),
            )
            continue
        positions = []
        for item in reader.string_list(value, f"extendable.steps.{job_id}"):
            if item.value in POSITIONS:
                positions.append(item.value)
            else:
                reader.report(item, f"{item.value!r} is not a position: use before or after")
        if positions:
            extendable.steps[job_id] = tuple(p for p in POSITIONS if p in positions)
    return extendable


# --- service files ----------------------------------------------------------------------


def parse_uses(uses: Any) -> tuple[str, int] | None:
    """``python-service@1`` → ``("python-service", 1)``; None when not of that form."""
    match = _USES.fullmatch(uses) if isinstance(uses, str) else None
    return (match.group(1), int(match.group(2))) if match else None


def parse_pipeline_file(
    text: bytes | str,
    source: str = ".pavedroad/pipeline.yaml",
    *,
    known_step: Callable[[str], bool] | None = None,
    limits: YamlLimits | None = None,
) -> Pipeline | TemplateUse:
    """A service's pipeline file: a full :class:`Pipeline` (checked now), or a
    :class:`TemplateUse` (checked by :func:`resolve`)."""
    root = load_located(text, source, limits)
    if isinstance(root.value, dict) and "uses" in root.value:
        return _template_use(root, source)
    reader = PipelineReader(known_step)
    pipeline = reader.pipeline(root, source)
    reader.raise_problems(source)
    return pipeline


def load_pipeline_file(
    text: bytes | str,
    find_template: FindTemplate,
    source: str = ".pavedroad/pipeline.yaml",
    *,
    known_step: Callable[[str], bool] | None = None,
    limits: YamlLimits | None = None,
) -> ResolvedPipeline:
    """Read and resolve a service's pipeline file: what a run (or ``pave pipeline
    validate``) needs. Raises :class:`PipelineError` with every problem, by line."""
    parsed = parse_pipeline_file(text, source, known_step=known_step, limits=limits)
    return resolve(parsed, find_template, known_step=known_step, source=source)


def _template_use(root: Located, source: str) -> TemplateUse:
    uses = next(value for key, value in root.entries() if key == "uses")
    return TemplateUse(str(uses.value), source, root, uses.line, uses.column)


def resolve(
    service_file: Pipeline | TemplateUse | Mapping[str, Any],
    find_template: FindTemplate,
    *,
    known_step: Callable[[str], bool] | None = None,
    source: str | None = None,
) -> ResolvedPipeline:
    """The pipeline a service file stands for: a full pipeline as it is, or a template
    reference merged with its template. Raises :class:`PipelineError` with every problem
    (lines in the service file; template problems name the template)."""
    if isinstance(service_file, Pipeline):
        return ResolvedPipeline(service_file, source or service_file.source)
    if not isinstance(service_file, TemplateUse):
        where = source or "<pipeline>"
        root = Located(dict(service_file))
        if "uses" not in service_file:
            reader = PipelineReader(known_step)
            pipeline = reader.pipeline(root, where)
            reader.raise_problems(where)
            return ResolvedPipeline(pipeline, where)
        service_file = _template_use(root, where)
    return _Resolution(service_file, find_template, known_step).run()


class _Resolution:
    """Merging one service file with its template, collecting every problem."""

    def __init__(
        self,
        use: TemplateUse,
        find_template: FindTemplate,
        known_step: Callable[[str], bool] | None,
    ) -> None:
        self.use = use
        self.find_template = find_template
        self.known_step = known_step
        self.reader = PipelineReader(known_step)
        self.template: TemplateDefinition | None = None

    @property
    def ref(self) -> str:
        return self.template.ref if self.template else self.use.uses

    def run(self) -> ResolvedPipeline:
        reader, source = self.reader, self.use.source
        found = self._fields()
        uses = found.get("uses") or Located(self.use.uses)
        self.template = self._find(uses)
        template = self.template
        pipeline = Pipeline(
            name=template.name if template else self.use.uses,
            source=source,
            line=self.use.root.line,
            column=self.use.root.column,
        )
        if "name" in found:
            pipeline.name = reader.text(found["name"], "name") or pipeline.name
        inputs = self._inputs(found.get("with"), uses)
        pipeline.on = self._triggers(found.get("on"))
        pipeline.env = self._env(found.get("env"))
        pipeline.concurrency = template.concurrency if template else None
        if "concurrency" in found:
            pipeline.concurrency = reader.concurrency(found["concurrency"])
        pipeline.jobs = copy.deepcopy(template.jobs) if template else {}
        added_jobs = self._extra_jobs(found.get("jobs"), pipeline.jobs)
        added_steps = self._extend(found.get("extend"), pipeline.jobs)
        reader.check_cycles(pipeline.jobs)
        self._check_template_steps(uses)
        reader.raise_problems(source)
        assert template is not None  # a missing template is a problem raised above
        return ResolvedPipeline(
            pipeline,
            source,
            template.name,
            template.version,
            inputs,
            added_jobs,
            added_steps,
            template.deprecated,
        )

    def _fields(self) -> dict[str, Located]:
        root = self.use.root
        for key, value in root.entries():
            if key in _REMOVING:
                self.reader.report(
                    value.key,
                    f"a service cannot remove or replace a template's steps ({key!r}); "
                    "add steps with extend: {job: {before: [...], after: [...]}} "
                    "where the template allows",
                )
        allowed = [*SERVICE_KEYS, *_REMOVING]
        found = self.reader.fields(root, allowed, "a pipeline file that uses a template") or {}
        return {key: value for key, value in found.items() if key in SERVICE_KEYS}

    def _find(self, uses: Located) -> TemplateDefinition | None:
        parsed = parse_uses(uses.value)
        if parsed is None:
            self.reader.report(
                uses,
                f"uses {uses.value!r} must name a pipeline template and its major version, "
                "e.g. python-service@1",
            )
            return None
        name, version = parsed
        template = self.find_template(name, version)
        if template is None:
            known = (
                self.find_template.versions(name)
                if isinstance(self.find_template, TemplateLibrary)
                else []
            )
            hint = f" (it has {', '.join(f'@{v}' for v in known)})" if known else ""
            subject = "version of pipeline template" if known else "pipeline template"
            self.reader.report(uses, f"no {subject} {uses.value!r}{hint}")
        return template

    def _inputs(self, loc: Located | None, uses: Located) -> dict[str, Any]:
        template, reader = self.template, self.reader
        given: dict[str, Any] = {}
        if loc is not None and loc.value is not None:
            if not isinstance(loc.value, dict):
                reader.report(loc, "with must be a mapping of the template's inputs")
            for name, value in loc.entries():
                given[name] = self._input(name, value)
        if template is None:
            return given
        for name, spec in template.inputs.items():
            if name in given:
                continue
            if spec.required:
                at = loc.key if loc is not None else uses
                about = f": {spec.description}" if spec.description else ""
                reader.report(at, f"pipeline template {self.ref} needs input {name!r}{about}")
            elif spec.default is not None:
                given[name] = spec.default
        return {name: value for name, value in given.items() if value is not None}

    def _input(self, name: str, loc: Located) -> Any:
        template = self.template
        if template is None:
            return loc.value
        spec = template.inputs.get(name)
        if spec is None:
            known = ", ".join(template.inputs) or "none"
            hint = did_you_mean(name, template.inputs) or f" (its inputs: {known})"
            self.reader.report(loc.key, f"pipeline template {self.ref} has no input {name!r}{hint}")
            return None
        value = loc.value
        if spec.type in ("string", "environment") and loc.plain_text is not None:
            value = loc.plain_text  # python-version: 3.10 means "3.10", not 3.1
        if isinstance(value, str) and "${{" in value:
            self.reader.expressions(loc, value)  # decided at run time
            return value
        problem = spec.check(value)
        if problem:
            self.reader.report(loc, f"input {name!r} {problem}")
            return None
        return value

    def _triggers(self, loc: Located | None) -> Triggers:
        template = self.template
        if loc is None:
            return copy.deepcopy(template.on) if template and template.on else _default_triggers()
        triggers = self.reader.triggers(loc)
        if template and triggers.manual:
            for name, spec in triggers.manual.inputs.items():
                if name in template.inputs:
                    self.reader.problems.append(
                        Problem(
                            spec.line,
                            spec.column,
                            f"on.manual.inputs.{name}",
                            f"{name!r} is an input of pipeline template {self.ref} too: "
                            "both are read as inputs.<name>, give this one another name",
                        )
                    )
        return triggers

    def _env(self, loc: Located | None) -> dict[str, str]:
        env = dict(self.template.env) if self.template else {}
        if loc is None:
            return env
        added = self.reader.env(loc)
        for name, value in loc.entries():
            if name in env:
                self.reader.report(
                    value.key,
                    f"env {name} is set by pipeline template {self.ref}: a service adds "
                    "variables, it does not change the template's (ask for an input)",
                )
                added.pop(name, None)
        return {**env, **added}

    def _extra_jobs(self, loc: Located | None, jobs: dict[str, Job]) -> list[str]:
        template = self.template
        if loc is None:
            return []
        if template and not template.extendable.jobs:
            self.reader.report(
                loc.key, f"pipeline template {self.ref} does not let services add jobs"
            )
        extra = self.reader.jobs(loc, also_known=jobs)
        added = []
        for job_id, job in extra.items():
            if job_id in jobs:
                self.reader.problems.append(
                    Problem(job.line, job.column, f"jobs.{job_id}", self._job_clash(job_id))
                )
            elif template is None or template.extendable.jobs:
                jobs[job_id] = job
                added.append(job_id)
        return added

    def _job_clash(self, job_id: str) -> str:
        required = self.template.jobs[job_id].required_steps if self.template else []
        message = f"job {job_id!r} is defined by pipeline template {self.ref}"
        if required:
            message += f" and holds its required step {_describe_step(required[0])}"
            message += ": a service cannot remove or replace it"
        return message + "; add steps with extend where the template allows, or rename your job"

    def _extend(self, loc: Located | None, jobs: dict[str, Job]) -> list[AddedStep]:
        template = self.template
        if loc is None:
            return []
        if not isinstance(loc.value, dict):
            self.reader.report(loc, "extend must map template job ids to before/after steps")
            return []
        added: list[AddedStep] = []
        for job_id, value in loc.entries():
            job = jobs.get(job_id)
            if template is not None and job is None:
                self.reader.report(
                    value.key,
                    f"pipeline template {self.ref} has no job {job_id!r}"
                    + did_you_mean(job_id, template.jobs),
                )
                continue
            added.extend(self._extend_job(job_id, value, job))
        return added

    def _extend_job(self, job_id: str, loc: Located, job: Job | None) -> list[AddedStep]:
        template, reader = self.template, self.reader
        allowed = template.extendable.steps.get(job_id, ()) if template else POSITIONS
        if template is not None and not allowed:
            open_jobs = ", ".join(template.extendable.steps)
            reader.report(
                loc.key,
                f"pipeline template {self.ref} does not let services add steps to job "
                f"{job_id!r}" + (f" (only to: {open_jobs})" if open_jobs else ""),
            )
        if not isinstance(loc.value, dict):
            reader.report(
                loc, f"extend.{job_id} must be a mapping: before: [steps], after: [steps]"
            )
            return []
        found = {}
        for key, value in loc.entries():
            if key in POSITIONS:
                found[key] = value
            else:
                reader.report(value.key, self._not_a_position(key, job_id))
        target = job or Job(job_id)
        taken = self._taken_ids(target)
        added: dict[str, list[Step]] = {}
        for position in POSITIONS:
            if position not in found:
                continue
            if allowed and position not in allowed:
                reader.report(
                    found[position].key,
                    f"pipeline template {self.ref} lets services add steps to job "
                    f"{job_id!r} only {' and '.join(allowed)} its own",
                )
            added[position] = reader.steps(found[position], target, taken)
            taken.update(
                (s.id, f"step id {s.id!r} is used twice in job {job_id!r}")
                for s in added[position]
                if s.id
            )
        if job is not None and allowed:
            at = next((i for i, step in enumerate(job.steps) if step.required), 0)
            before, after = added.get("before", []), added.get("after", [])
            job.steps = [*job.steps[:at], *before, *job.steps[at:], *after]
        return [AddedStep(job_id, p, step) for p, steps in added.items() for step in steps]

    def _not_a_position(self, key: str, job_id: str) -> str:
        if key in _REMOVING:
            return (
                f"a service cannot remove or replace the steps of job {job_id!r} of pipeline "
                f"template {self.ref}; it can only add steps before or after them"
            )
        return unknown_key(key, POSITIONS, f"extend.{job_id}")

    def _taken_ids(self, job: Job) -> dict[str, str]:
        taken = {}
        for step in job.steps:
            if not step.id:
                continue
            if step.required:
                taken[step.id] = (
                    f"step {_describe_step(step)} is a required step of job {job.id!r} in "
                    f"pipeline template {self.ref}: a service cannot override it; give your "
                    "step another id"
                )
            else:
                taken[step.id] = (
                    f"step id {step.id!r} is already used in job {job.id!r} by pipeline "
                    f"template {self.ref}"
                )
        return taken

    def _check_template_steps(self, uses: Located) -> None:
        template, known_step = self.template, self.known_step
        if template is None or known_step is None:
            return
        for job in template.jobs.values():
            for step in job.steps:
                if step.uses and not step.uses.startswith("./") and not known_step(step.uses):
                    self.reader.report(
                        uses,
                        f"pipeline template {self.ref}: step {step.label} of job {job.id!r} "
                        f"uses unknown step type {step.uses!r}",
                    )


def _describe_step(step: Step) -> str:
    return f"{step.label} ({step.uses})" if step.uses and step.id else step.label


def _default_triggers() -> Triggers:
    return Triggers(push=PushFilter())
