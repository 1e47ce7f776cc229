"""Export a resolved pipeline as a GitHub Actions workflow, for teams whose code lives on
GitHub (``pave pipeline export --format github-actions``).

:func:`to_github_actions` writes the pipeline a service runs (a ``uses: template@N`` file
already merged with its template) as one workflow file, keeping what GitHub Actions has
an equivalent for and saying, in comments at the top, what it has not:

- ``on`` becomes ``push`` (the same branch, tag and path filters), ``workflow_dispatch``
  (the manual trigger, its typed inputs) and ``schedule``; ``env``, ``concurrency``,
  jobs (``needs``, ``if``, ``timeout-minutes``, ``strategy``, ``env``, ``outputs``,
  ``continue-on-error``) and steps are written as they are, since the syntax is GitHub's;
- ``runs-on`` labels mean nothing on GitHub: every job runs on ``ubuntu-latest``, its
  Pavedroad labels (and retries, which GitHub does not have) in a comment beside it;
- run scripts run in bash with ``-eo pipefail`` as on Pavedroad (``defaults.run.shell``),
  and the ``PAVEDROAD_*`` variables they read become GitHub's (``$PAVEDROAD_OUTPUT`` is
  ``$GITHUB_OUTPUT``, ``$PAVEDROAD_SHA`` is ``$GITHUB_SHA``, ...);
- a template's inputs are not workflow inputs on GitHub: every ``inputs.<name>`` of the
  template is replaced by the value the service gave (or the default), in ``${{ }}`` and in
  bare ``if:`` conditions; the manual trigger's inputs stay ``${{ inputs.<name> }}``;
- the built-in steps become their GitHub equivalents (see :func:`_translate_step`).

The output is the same text for the same pipeline: keys in a fixed order, no dates.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from pavedroad.core.errors import InputError
from pavedroad.pipelines import expressions
from pavedroad.pipelines.library import ResolvedPipeline
from pavedroad.pipelines.spec import (
    Concurrency,
    InputSpec,
    Job,
    Matrix,
    Pipeline,
    Step,
    Strategy,
    Triggers,
)

FORMATS = ("github-actions",)
RUNNER = "ubuntu-latest"
CHECKOUT = "actions/checkout@v4"
SETUP_PYTHON = "actions/setup-python@v5"
UPLOAD_ARTIFACT = "actions/upload-artifact@v4"
DOWNLOAD_ARTIFACT = "actions/download-artifact@v4"
RESTORE_CACHE = "actions/cache/restore@v4"
SAVE_CACHE = "actions/cache/save@v4"

#: The variables Pavedroad gives a step's processes, and GitHub Actions' names for them.
RENAMED_VARIABLES = {
    "PAVEDROAD": "GITHUB_ACTIONS",
    "PAVEDROAD_ACTOR": "GITHUB_ACTOR",
    "PAVEDROAD_ENV": "GITHUB_ENV",
    "PAVEDROAD_EVENT_NAME": "GITHUB_EVENT_NAME",
    "PAVEDROAD_JOB": "GITHUB_JOB",
    "PAVEDROAD_OUTPUT": "GITHUB_OUTPUT",
    "PAVEDROAD_PATH": "GITHUB_PATH",
    "PAVEDROAD_REF": "GITHUB_REF",
    "PAVEDROAD_REF_NAME": "GITHUB_REF_NAME",
    "PAVEDROAD_REPOSITORY": "GITHUB_REPOSITORY",
    "PAVEDROAD_RUN_ID": "GITHUB_RUN_ID",
    "PAVEDROAD_RUN_NUMBER": "GITHUB_RUN_NUMBER",
    "PAVEDROAD_SERVER_URL": "GITHUB_SERVER_URL",
    "PAVEDROAD_SHA": "GITHUB_SHA",
    "PAVEDROAD_TEMP": "RUNNER_TEMP",
    "PAVEDROAD_WORKSPACE": "GITHUB_WORKSPACE",
}
# $PAVEDROAD_X and ${PAVEDROAD_X} in shell, os.environ["PAVEDROAD_X"] in Python; the bare
# word PAVEDROAD only after a $ (it may be prose in a script).
_VARIABLE = re.compile(r"(?<![A-Za-z0-9_])PAVEDROAD_[A-Za-z0-9_]+(?![A-Za-z0-9_])")
_BARE_VARIABLE = re.compile(r"(?<=\$)(\{?)PAVEDROAD(?![A-Za-z0-9_])")
_VERSION = re.compile(r"(?:pypy)?[0-9]+(?:\.[0-9x*]+){0,2}(?:-dev)?")
_SLUG = re.compile(r"[^a-z0-9]+")


class ExportError(InputError):
    """A pipeline that cannot be exported in the format asked for."""

    title = "Cannot export the pipeline"
    type_slug = "pipeline-export"


@dataclass(frozen=True)
class Exported:
    """An exported pipeline: the file's text and where the format expects it."""

    content: str
    filename: str


def check_format(name: str) -> None:
    """Raise :class:`ExportError` unless ``name`` is a format pipelines export to."""
    if name not in FORMATS:
        raise ExportError(
            f"cannot export a pipeline as {name[:80]!r}; the formats are: {', '.join(FORMATS)}"
        )


def export_pipeline(
    resolved: ResolvedPipeline, format: str, *, template_inputs: Iterable[str] = ()
) -> Exported:
    """``resolved`` in ``format`` (see :data:`FORMATS`), with its usual file name."""
    check_format(format)
    return Exported(
        to_github_actions(resolved, template_inputs=template_inputs),
        workflow_filename(resolved),
    )


def workflow_filename(resolved: ResolvedPipeline) -> str:
    """``.github/workflows/<the pipeline's name>.yml``."""
    slug = _SLUG.sub("-", resolved.pipeline.name.lower()).strip("-")[:60].strip("-")
    return f".github/workflows/{slug or 'pavedroad'}.yml"


def to_github_actions(resolved: ResolvedPipeline, *, template_inputs: Iterable[str] = ()) -> str:
    """The resolved pipeline as a GitHub Actions workflow (YAML text).

    ``template_inputs`` names the template's inputs that have no value (optional ones
    without a default): their references become ``null``, as they evaluate on Pavedroad.
    The inputs with values come from ``resolved.inputs``.
    """
    values: dict[str, Any] = {name: None for name in template_inputs}
    values.update(resolved.inputs if resolved.template else {})
    return _GitHubWorkflow(resolved, values).render()


# --- template inputs written in as their values ----------------------------------------


class InputValues:
    """Replaces ``inputs.<name>`` of a template's inputs by their values in ``${{ }}``
    texts and bare conditions; other inputs (the manual trigger's) are left alone.

    References are found with the expression module's own lexer, token by token, so a
    string literal that happens to read ``'inputs.x'`` or a property such as
    ``github.event.inputs.x`` is never touched."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = {name.upper(): value for name, value in values.items()}

    def text(self, text: str) -> str:
        """A text with ``${{ }}`` in it (a run script, a name, an env value)."""
        result = self.value(text, typed=False)
        return result if isinstance(result, str) else expressions.to_string(result)

    def value(self, value: Any, *, typed: bool = True) -> Any:
        """A YAML value: a text that is exactly one ``${{ inputs.x }}`` becomes x's value
        (keeping its type when ``typed``); mappings and lists are walked."""
        if isinstance(value, dict):
            return {key: self.value(item, typed=typed) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item, typed=typed) for item in value]
        if not isinstance(value, str) or not self.values or "${{" not in value:
            return value
        try:
            spans = list(expressions._expression_spans(value))
        except expressions.ExpressionError:
            return value  # not a valid text: the pipeline checks refused it already
        if len(spans) == 1 and not value[: spans[0][0]].strip():
            opening, closing = spans[0]
            name = self._lone(value, opening + 3, closing)
            if name is not None and not value[closing + 2 :].strip():
                found = self.values[name]
                return found if typed or isinstance(found, str) else _plain_text(found)
        pieces: list[str] = []
        at = 0
        for opening, closing in spans:
            pieces.append(value[at:opening])
            name = self._lone(value, opening + 3, closing)
            if name is not None:
                pieces.append(_plain_text(self.values[name]))
            else:
                inner = self.expression(value, opening + 3, closing)
                pieces.append("${{" + inner + "}}")
            at = closing + 2
        pieces.append(value[at:])
        return "".join(pieces)

    def condition(self, text: str) -> str:
        """An ``if:`` (a ``${{ }}`` or a bare expression), references replaced by
        literals so it stays an expression: ``${{ inputs.x }}`` gives ``${{ true }}``."""
        if not self.values:
            return text
        if "${{" not in text:
            return self.expression(text, 0, len(text))
        try:
            spans = list(expressions._expression_spans(text))
        except expressions.ExpressionError:
            return text
        pieces: list[str] = []
        at = 0
        for opening, closing in spans:
            pieces.append(text[at:opening])
            pieces.append("${{" + self.expression(text, opening + 3, closing) + "}}")
            at = closing + 2
        pieces.append(text[at:])
        return "".join(pieces)

    def expression(self, source: str, start: int, end: int) -> str:
        """``source[start:end]``, an expression, with each template input reference
        replaced by a literal of its value."""
        try:
            tokens = expressions._lex(source, start, end)
        except expressions._Problem:
            return source[start:end]
        out: list[str] = []
        at = start
        index = 0
        while index < len(tokens):
            found = self._reference(tokens, index)
            if found is None:
                index += 1
                continue
            name, last = found
            out.append(source[at : tokens[index].start])
            out.append(_literal(self.values[name]))
            at = tokens[last].end
            index = last + 1
        out.append(source[at:end])
        return "".join(out)

    def _reference(self, tokens: list[Any], index: int) -> tuple[str, int] | None:
        """(input name, index of its last token) when ``inputs.<name>`` or
        ``inputs['<name>']`` of a template input starts at ``tokens[index]``."""
        token = tokens[index]
        if token.kind != "ident" or token.value.upper() != "INPUTS":
            return None
        if index and tokens[index - 1].kind == ".":
            return None  # github.event.inputs: a property, not the context
        kinds = [t.kind for t in tokens[index + 1 : index + 4]]
        if kinds[:2] == [".", "ident"]:
            name, last = tokens[index + 2].value, index + 2
        elif kinds == ["[", "string", "]"]:
            name, last = tokens[index + 2].value, index + 3
        else:
            return None
        if not isinstance(name, str) or name.upper() not in self.values:
            return None
        if last + 1 < len(tokens) and tokens[last + 1].kind in (".", "["):
            return None  # inputs.x.y: inputs are scalars; leave the odd case alone
        return name.upper(), last

    def _lone(self, source: str, start: int, end: int) -> str | None:
        """The input's name when ``source[start:end]`` is only ``inputs.<name>``."""
        try:
            tokens = expressions._lex(source, start, end)
        except expressions._Problem:
            return None
        found = self._reference(tokens, 0)
        if found is None or tokens[found[1] + 1].kind != "eof":
            return None
        return found[0]


def _plain_text(value: Any) -> str:
    return value if isinstance(value, str) else expressions.to_string(value)


def _literal(value: Any) -> str:
    """An expression that evaluates to ``value``. A text holding ``${{ }}`` (an input given
    as an expression decided at run time) becomes that expression."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return expressions.to_string(value)
    if isinstance(value, str):
        if "${{" in value:
            return _as_expression(value)
        return "'" + value.replace("'", "''") + "'"
    return f"fromJSON({_literal(json.dumps(value, sort_keys=True))})"


def _as_expression(text: str) -> str:
    try:
        spans = list(expressions._expression_spans(text))
    except expressions.ExpressionError:
        return _literal(text.replace("${{", "$ {{"))
    if len(spans) == 1 and not text[: spans[0][0]].strip() and not text[spans[0][1] + 2 :].strip():
        return "(" + text[spans[0][0] + 3 : spans[0][1]].strip() + ")"
    template: list[str] = []
    arguments: list[str] = []
    at = 0
    for opening, closing in spans:
        template.append(_format_escape(text[at:opening]) + "{" + str(len(arguments)) + "}")
        arguments.append("(" + text[opening + 3 : closing].strip() + ")")
        at = closing + 2
    template.append(_format_escape(text[at:]))
    return f"format({_literal(''.join(template))}, {', '.join(arguments)})"


def _format_escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def rename_variables(script: str) -> tuple[str, list[str]]:
    """``script`` with Pavedroad's variables named as GitHub Actions names them, and the
    ``PAVEDROAD_*`` names it uses that GitHub has no equivalent for (left as they are)."""
    unknown: list[str] = []

    def rename(match: re.Match[str]) -> str:
        name = match.group(0)
        if name in RENAMED_VARIABLES:
            return RENAMED_VARIABLES[name]
        if name not in unknown:
            unknown.append(name)
        return name

    renamed = _VARIABLE.sub(rename, script)
    renamed = _BARE_VARIABLE.sub(lambda m: m.group(1) + RENAMED_VARIABLES["PAVEDROAD"], renamed)
    return renamed, unknown


# --- substituting inputs through the whole pipeline ------------------------------------


def _substituted(pipeline: Pipeline, inputs: InputValues) -> Pipeline:
    """A copy of ``pipeline`` with the template's inputs written in everywhere."""
    if not inputs.values:
        return pipeline
    return replace(
        pipeline,
        env=_env(pipeline.env, inputs),
        concurrency=_concurrency(pipeline.concurrency, inputs),
        jobs={job_id: _job(job, inputs) for job_id, job in pipeline.jobs.items()},
    )


def _env(env: Mapping[str, str], inputs: InputValues) -> dict[str, str]:
    return {name: inputs.text(value) for name, value in env.items()}


def _concurrency(concurrency: Concurrency | None, inputs: InputValues) -> Concurrency | None:
    if concurrency is None:
        return None
    return replace(concurrency, group=inputs.text(concurrency.group))


def _switch(value: bool | str, inputs: InputValues) -> bool | str:
    """``continue-on-error``: true/false, or an expression (``${{ inputs.x }}`` alone gives
    x's value as a boolean)."""
    found = inputs.value(value) if isinstance(value, str) else value
    return found if isinstance(found, bool | str) else expressions.truthy(found)


def _optional(value: str | None, apply: Callable[[str], str]) -> str | None:
    return None if value is None else apply(value)


def _job(job: Job, inputs: InputValues) -> Job:
    strategy = job.strategy
    if strategy is not None and strategy.matrix is not None:
        matrix = strategy.matrix
        strategy = replace(
            strategy,
            matrix=replace(
                matrix,
                axes=inputs.value(matrix.axes),
                include=inputs.value(matrix.include),
                exclude=inputs.value(matrix.exclude),
                expression=_optional(matrix.expression, inputs.text),
            ),
        )
    return replace(
        job,
        name=inputs.text(job.name),
        if_=_optional(job.if_, inputs.condition),
        runs_on=[inputs.text(label) for label in job.runs_on],
        strategy=strategy,
        concurrency=_concurrency(job.concurrency, inputs),
        env=_env(job.env, inputs),
        outputs={name: inputs.text(value) for name, value in job.outputs.items()},
        continue_on_error=_switch(job.continue_on_error, inputs),
        steps=[_step(step, inputs) for step in job.steps],
    )


def _step(step: Step, inputs: InputValues) -> Step:
    return replace(
        step,
        name=_optional(step.name, inputs.text),
        run=_optional(step.run, inputs.text),
        with_=inputs.value(step.with_),
        env=_env(step.env, inputs),
        if_=_optional(step.if_, inputs.condition),
        working_directory=_optional(step.working_directory, inputs.text),
        continue_on_error=_switch(step.continue_on_error, inputs),
    )


# --- the workflow ----------------------------------------------------------------------


@dataclass
class _JobWriter:
    """Writes one job's steps, collecting what GitHub cannot do as notes."""

    job: Job
    notes: list[str] = field(default_factory=list)

    def steps(self) -> list[dict[str, Any]]:
        written: list[dict[str, Any]] = []
        for index, step in enumerate(self.job.steps):
            written.extend(self._translate_step(step, index))
        return written

    def _where(self, index: int, step: Step) -> str:
        return f"jobs.{self.job.id}.steps[{index}] ({step.uses or 'run'})"

    def _translate_step(self, step: Step, index: int) -> list[dict[str, Any]]:
        """One Pavedroad step as the GitHub Actions steps that do the same."""
        if step.run is not None:
            return [self._run_step(step, index)]
        uses = step.uses or ""
        if uses.startswith("./"):
            self.notes.append(
                f"{self._where(index, step)}: {uses} is kept as a local action: GitHub "
                "needs an action.yml there"
            )
            return [_common(step, {"uses": uses, "with": dict(step.with_) or None})]
        kind = uses.partition("@")[0]
        translate = {
            "checkout": self._checkout,
            "python/setup": self._python_setup,
            "python/test": self._python_test,
            "artifact/upload": self._artifact_upload,
            "artifact/download": self._artifact_download,
            "cache/restore": self._cache_restore,
            "cache/save": self._cache_save,
            "release/build": self._release_build,
        }.get(kind)
        if translate is None:
            return [self._placeholder(step, index)]
        return translate(step, index)

    # run steps

    def _run_step(self, step: Step, index: int) -> dict[str, Any]:
        script, unknown = rename_variables(step.run or "")
        for name in unknown:
            self.notes.append(
                f"{self._where(index, step)}: ${name} has no GitHub Actions equivalent"
            )
        return _common(
            step,
            {
                "run": script,
                "shell": step.shell if step.shell and step.shell != "bash" else None,
                "working-directory": step.working_directory,
            },
        )

    # the built-in steps

    def _checkout(self, step: Step, index: int) -> list[dict[str, Any]]:
        # Pavedroad fetches every branch and tag: the whole history, as fetch-depth 0.
        with_ = {"fetch-depth": 0, "path": step.with_.get("path")}
        return [_common(step, {"uses": CHECKOUT, "with": with_})]

    def _python_setup(self, step: Step, index: int) -> list[dict[str, Any]]:
        inputs = step.with_
        version = inputs.get("python-version")
        interpreter = inputs.get("python")
        if version is None and _version_like(interpreter):
            version = interpreter
        elif interpreter is not None:
            self.notes.append(
                f"{self._where(index, step)}: the interpreter {interpreter!r} is "
                "Pavedroad's; GitHub uses the Python actions/setup-python installs"
            )
        extras = inputs.get("extras")
        if isinstance(extras, list):
            extras = ",".join(str(extra).strip() for extra in extras if str(extra).strip())
        env = {}
        if isinstance(extras, str) and "${{" in extras:
            env["INSTALL_EXTRAS"], extras = extras, "$INSTALL_EXTRAS"
        install = inputs.get("install", True) is not False
        label = step.name or "Set up Python"
        setup = _common(
            step,
            {"name": label, "uses": SETUP_PYTHON, "with": {"python-version": version}},
            with_id=False,
        )
        run = _common(
            step,
            {
                "name": f"{label}: install the project" if step.name else "Install the project",
                "run": _install_script(extras, install),
                "working-directory": inputs.get("path"),
                "env": {**step.env, **env} or None,
            },
        )
        return [setup, run]

    def _python_test(self, step: Step, index: int) -> list[dict[str, Any]]:
        inputs = step.with_
        report = f"pavedroad-junit-{self.job.id}-{index}.xml"
        python = inputs.get("python")
        command = ["python" if python is None else str(python), "-m", "pytest"]
        words = shlex.join(command) + f' --junitxml="$RUNNER_TEMP/{report}"'
        env = {}
        args = inputs.get("args")
        if isinstance(args, str) and "${{" in args:
            env["PYTEST_ARGS"] = args
            words += " $PYTEST_ARGS"
        elif isinstance(args, str) and args.strip():
            words += " " + args.strip()
        elif isinstance(args, list) and args:
            words += " " + shlex.join(str(arg) for arg in args)
        self.notes.append(
            f"{self._where(index, step)}: the JUnit report is kept as an artifact; GitHub "
            "does not show test results or set the step's outputs (passed, failed, ...)"
        )
        test = _common(
            step,
            {
                "run": words,
                "working-directory": inputs.get("path"),
                "env": {**step.env, **env} or None,
            },
        )
        upload = {
            "name": "Keep the test report",
            "if": "${{ !cancelled() }}",
            "uses": UPLOAD_ARTIFACT,
            "with": {
                "name": f"test-results-{self.job.id}-{index}{self._matrix_suffix()}",
                "path": "${{ runner.temp }}/" + report,
                "if-no-files-found": "ignore",
            },
        }
        return [test, upload]

    def _artifact_upload(self, step: Step, index: int) -> list[dict[str, Any]]:
        with_ = {
            "name": step.with_.get("name"),
            "path": step.with_.get("path"),
            "if-no-files-found": "error",
        }
        return [_common(step, {"uses": UPLOAD_ARTIFACT, "with": with_})]

    def _artifact_download(self, step: Step, index: int) -> list[dict[str, Any]]:
        with_ = {"name": step.with_.get("name"), "path": step.with_.get("path", ".")}
        return [_common(step, {"uses": DOWNLOAD_ARTIFACT, "with": with_})]

    def _cache_restore(self, step: Step, index: int) -> list[dict[str, Any]]:
        prefixes = step.with_.get("restore-keys")
        if isinstance(prefixes, list):
            prefixes = "\n".join(str(prefix) for prefix in prefixes) or None
        with_ = {"key": step.with_.get("key"), "path": step.with_.get("path")}
        with_["restore-keys"] = prefixes
        if step.id:
            self.notes.append(
                f"{self._where(index, step)}: the key restored is the output "
                "cache-matched-key on GitHub (key on Pavedroad)"
            )
        return [_common(step, {"uses": RESTORE_CACHE, "with": with_})]

    def _cache_save(self, step: Step, index: int) -> list[dict[str, Any]]:
        with_ = {"key": step.with_.get("key"), "path": step.with_.get("path")}
        if step.id:
            self.notes.append(
                f"{self._where(index, step)}: GitHub does not set the outputs saved and digest"
            )
        return [_common(step, {"uses": SAVE_CACHE, "with": with_})]

    def _release_build(self, step: Step, index: int) -> list[dict[str, Any]]:
        score = str(step.with_.get("score", "score.yaml"))
        build = _common(
            step,
            {
                "run": _release_script(score),
                "working-directory": step.with_.get("path"),
            },
        )
        keep = _compact(
            {
                "name": "Keep the release bundle",
                "if": step.if_,
                "uses": UPLOAD_ARTIFACT,
                "with": {
                    "name": f"release{self._matrix_suffix()}",
                    "path": "${{ runner.temp }}/pavedroad-release/release.tar.gz",
                    "if-no-files-found": "error",
                },
            }
        )
        self.notes.append(
            f"{self._where(index, step)}: builds the release bundle as the artifact "
            "'release'; Pavedroad records releases itself, GitHub does not"
        )
        return [build, keep]

    def _placeholder(self, step: Step, index: int) -> dict[str, Any]:
        kind = (step.uses or "").partition("@")[0]
        if kind == "deploy":
            why = (
                "Pavedroad deploys releases to its environments; GitHub Actions cannot do "
                "that for it"
            )
        else:
            why = f"the Pavedroad step type {kind} has no GitHub Actions equivalent"
        self.notes.append(f"{self._where(index, step)}: a placeholder that fails: {why}")
        lines = [f"# Placeholder for the Pavedroad step `uses: {step.uses}`: {why}."]
        lines.append(
            "# Replace this step with your own, or keep running this pipeline on Pavedroad."
        )
        if step.with_:
            # Written for reading only: GitHub would evaluate a ${{ }} even in a comment.
            given = json.dumps(step.with_, sort_keys=True, default=str)
            lines.append("# with: " + given.replace("${{", "$ {{"))
        message = f"{step.uses} is a Pavedroad step: {why}. Replace this step."
        lines.append(f"echo {shlex.quote('::error::' + message)}")
        lines.append("exit 1")
        return _common(
            step,
            {"name": step.name or f"{step.uses} (placeholder)", "run": "\n".join(lines) + "\n"},
        )

    def _matrix_suffix(self) -> str:
        """Artifact names are unique per workflow run: one per matrix job."""
        return "-${{ strategy.job-index }}" if self.job.strategy else ""


def _version_like(value: Any) -> bool:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return True
    return isinstance(value, str) and ("${{" in value or bool(_VERSION.fullmatch(value)))


def _install_script(extras: Any, install: bool) -> str:
    """python/setup's work: a virtualenv in .venv, on PATH for later steps, the project
    installed in it (with the extras given, else its test extra when it has one)."""
    lines = [
        "python -m venv .venv",
        'echo "VIRTUAL_ENV=$PWD/.venv" >> "$GITHUB_ENV"',
        'echo "$PWD/.venv/bin" >> "$GITHUB_PATH"',
    ]
    if not install:
        return "\n".join(lines) + "\n"
    if extras not in (None, ""):
        target = f".[{extras}]"
        quoted = f'"{target}"' if "$" in target else shlex.quote(target)
        lines.append(f".venv/bin/python -m pip install --progress-bar off {quoted}")
        return "\n".join(lines) + "\n"
    lines += [
        "# As Pavedroad does: the project with its test extra when it has one, else the",
        "# project and requirements.txt (either when present).",
        "extra=$(.venv/bin/python - <<'PY'",
        "import pathlib",
        "try:",
        "    import tomllib",
        "    path = pathlib.Path('pyproject.toml')",
        "    data = tomllib.loads(path.read_text()) if path.is_file() else {}",
        "except Exception:",
        "    data = {}",
        "extras = (data.get('project') or {}).get('optional-dependencies') or {}",
        "print(next((name for name in ('test', 'tests') if name in extras), ''))",
        "PY",
        ")",
        "args=()",
        'if [ -n "$extra" ]; then',
        '  args=(".[$extra]")',
        "else",
        "  if [ -f pyproject.toml ] || [ -f setup.py ]; then args+=(.); fi",
        "  if [ -f requirements.txt ]; then args+=(-r requirements.txt); fi",
        "fi",
        "if [ ${#args[@]} -gt 0 ]; then",
        '  .venv/bin/python -m pip install --progress-bar off "${args[@]}"',
        "else",
        '  echo "Nothing to install: no pyproject.toml, setup.py or requirements.txt"',
        "fi",
    ]
    return "\n".join(lines) + "\n"


def _release_script(score: str) -> str:
    quoted = shlex.quote(score)
    return (
        "\n".join(
            [
                "# Pavedroad's release/build records an immutable release (the commit's tracked",
                "# files, content-hashed, with its Score workload) that Pavedroad's environments",
                "# deploy. GitHub Actions keeps no such record: this builds the same bundle, which",
                "# the next step keeps as the artifact 'release'. Its output 'release' is the",
                "# bundle's digest here, since no release is recorded.",
                f"if [ ! -f {quoted} ]; then",
                "  echo "
                + shlex.quote(
                    f"::error::there is no {score}: a release needs the Score workload "
                    "(score.dev/v1b1) that says how to run it"
                ),
                "  exit 1",
                "fi",
                'bundle="$RUNNER_TEMP/pavedroad-release/release.tar.gz"',
                'mkdir -p "$(dirname "$bundle")"',
                "git ls-files -z | tar --null --files-from=- --sort=name --owner=0 --group=0 \\",
                '  --numeric-owner --mtime=@0 -cf - | gzip -n > "$bundle"',
                'digest="sha256:$(sha256sum "$bundle" | cut -d\' \' -f1)"',
                'echo "Built the release bundle $digest"',
                '{ echo "release=$digest"; echo "digest=$digest"; echo "created=true"; } \\',
                '  >> "$GITHUB_OUTPUT"',
            ]
        )
        + "\n"
    )


# Key orders, as GitHub's documentation lists them.
_STEP_KEYS = (
    "name",
    "id",
    "if",
    "uses",
    "with",
    "run",
    "shell",
    "working-directory",
    "env",
    "timeout-minutes",
    "continue-on-error",
)


def _common(step: Step, fields: Mapping[str, Any], *, with_id: bool = True) -> dict[str, Any]:
    """A GitHub step with the Pavedroad step's own fields (name, id, if, env, timeouts)
    and ``fields``, in GitHub's key order, empty ones left out."""
    base: dict[str, Any] = {
        "name": step.name,
        "id": step.id if with_id else None,
        "if": step.if_,
        "env": dict(step.env) or None,
        "timeout-minutes": _number(step.timeout_minutes),
        "continue-on-error": step.continue_on_error or None,
    }
    base.update(fields)
    if isinstance(base.get("with"), dict):
        base["with"] = {k: v for k, v in base["with"].items() if v is not None} or None
    return _compact({key: base.get(key) for key in _STEP_KEYS})


def _compact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value is not None}


def _number(value: float | None) -> int | float | None:
    if value is None:
        return None
    return int(value) if float(value).is_integer() else value


class _GitHubWorkflow:
    def __init__(self, resolved: ResolvedPipeline, inputs: Mapping[str, Any]) -> None:
        self.resolved = resolved
        self.inputs = dict(inputs)
        self.pipeline = _substituted(resolved.pipeline, InputValues(inputs))
        self.notes: list[str] = []
        self.comments: dict[str, str] = {}  # runs-on placeholder → the comment beside it

    def render(self) -> str:
        document = self.workflow()
        text = yaml.dump(
            document,
            Dumper=_Dumper,
            sort_keys=False,
            allow_unicode=True,
            width=1_000_000,
            default_flow_style=False,
        )
        for mark, comment in self.comments.items():
            line = f"runs-on: {mark}\n"
            if text.count(line) != 1:  # the mark is unique: nothing in a file spells it
                raise ExportError("the workflow could not be written (a label comment clashed)")
            text = text.replace(line, f"runs-on: {RUNNER}  # {_one_line(comment)}\n")
        return self.header(document) + text

    def workflow(self) -> dict[str, Any]:
        pipeline = self.pipeline
        jobs = {job_id: self.job(job) for job_id, job in pipeline.jobs.items()}
        document: dict[str, Any] = {
            "name": pipeline.name,
            "on": self.triggers(pipeline.on),
            "permissions": {"contents": "read"},
            "env": dict(pipeline.env) or None,
            "concurrency": _concurrency_mapping(pipeline.concurrency),
            "defaults": {"run": {"shell": "bash"}},
            "jobs": jobs,
        }
        return _compact(document)

    def header(self, document: Mapping[str, Any]) -> str:
        resolved = self.resolved
        source = resolved.source or resolved.pipeline.source or "the pipeline file"
        lines = [
            "GitHub Actions workflow exported by Pavedroad "
            "(pave pipeline export --format github-actions)",
            f"from {source}"
            + (f", which uses the pipeline template {resolved.uses}." if resolved.uses else "."),
            "Export again after changing the pipeline (or the template's version).",
        ]
        given = {k: v for k, v in sorted(self.inputs.items()) if v is not None}
        if given:
            values = ", ".join(f"{name}={_plain_text(value)}" for name, value in given.items())
            lines.append(f"The template's inputs are written in as their values: {values}.")
        lines.append(
            f"Pavedroad's runs-on labels mean nothing on GitHub: jobs run on {RUNNER} "
            "(the labels are kept in comments)."
        )
        if re.search(r"\bsecrets\s*[.\[]", json.dumps(document.get("jobs"), default=str)):
            lines.append(
                "The secrets it reads are the component's Pavedroad secrets: create them as "
                "GitHub Actions secrets of the repository."
            )
        if self.notes:
            lines.append("Not the same on GitHub Actions:")
            lines.extend(f"- {note}" for note in self.notes)
        return "".join(f"# {_one_line(line)}\n" for line in lines)

    # triggers

    def triggers(self, on: Triggers) -> dict[str, Any]:
        triggers: dict[str, Any] = {}
        if on.push is not None:
            push = on.push
            triggers["push"] = _compact(
                {
                    "branches": push.branches or None,
                    "branches-ignore": push.branches_ignore or None,
                    "tags": push.tags or None,
                    "tags-ignore": push.tags_ignore or None,
                    "paths": push.paths or None,
                    "paths-ignore": push.paths_ignore or None,
                }
            )
        if on.manual is not None:
            inputs = {name: _dispatch_input(spec) for name, spec in on.manual.inputs.items()}
            triggers["workflow_dispatch"] = {"inputs": inputs} if inputs else {}
            if inputs and (on.push is not None or on.schedule):
                self.notes.append(
                    "inputs of the manual trigger are empty in push and scheduled runs on "
                    "GitHub; Pavedroad gives them their defaults"
                )
        if on.schedule:
            triggers["schedule"] = [{"cron": cron} for cron in on.schedule]
        if not triggers:
            triggers["workflow_dispatch"] = {}
        return triggers

    # jobs

    def job(self, job: Job) -> dict[str, Any]:
        writer = _JobWriter(job)
        steps = writer.steps()
        self.notes.extend(writer.notes)
        return _compact(
            {
                "name": job.name if job.name and job.name != job.id else None,
                "needs": list(job.needs) or None,
                "if": job.if_,
                "runs-on": self.runs_on(job),
                "timeout-minutes": _number(job.timeout_minutes),
                "continue-on-error": job.continue_on_error or None,
                "strategy": _strategy(job.strategy),
                "concurrency": _concurrency_mapping(job.concurrency),
                "env": dict(job.env) or None,
                "outputs": dict(job.outputs) or None,
                "steps": steps,
            }
        )

    def runs_on(self, job: Job) -> str:
        said = []
        if job.runs_on:
            said.append("Pavedroad runs-on: " + ", ".join(job.runs_on))
        if job.retries:
            said.append(f"retries: {job.retries} (GitHub Actions does not retry jobs)")
        if not said:
            return RUNNER
        mark = f"pavedroad-export-runs-on-{len(self.comments)}-7d1c0f"
        self.comments[mark] = "; ".join(said)
        return mark


def _dispatch_input(spec: InputSpec) -> dict[str, Any]:
    return _compact(
        {
            "description": spec.description or None,
            "required": True if spec.required else None,
            "type": spec.type,
            "default": spec.default,
            "options": list(spec.options) if spec.type == "choice" else None,
        }
    )


def _concurrency_mapping(concurrency: Concurrency | None) -> dict[str, Any] | None:
    if concurrency is None:
        return None
    return {"group": concurrency.group, "cancel-in-progress": concurrency.cancel_in_progress}


def _strategy(strategy: Strategy | None) -> dict[str, Any] | None:
    if strategy is None or strategy.matrix is None:
        return None
    return _compact(
        {
            "matrix": _matrix(strategy.matrix),
            "fail-fast": False if not strategy.fail_fast else None,
            "max-parallel": strategy.max_parallel,
        }
    )


def _matrix(matrix: Matrix) -> dict[str, Any] | str:
    if matrix.expression is not None:
        return matrix.expression
    written: dict[str, Any] = {name: list(values) for name, values in matrix.axes.items()}
    if matrix.include:
        written["include"] = [dict(entry) for entry in matrix.include]
    if matrix.exclude:
        written["exclude"] = [dict(entry) for entry in matrix.exclude]
    return written


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Dumper(yaml.SafeDumper):
    """Block style, lists indented under their key, scripts as literal blocks."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "|" if "\n" in text.rstrip("\n") or text.endswith("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _represent_text)
