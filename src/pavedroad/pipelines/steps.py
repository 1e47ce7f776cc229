"""Step types: what ``uses:`` in a pipeline step names, and the built-in ones.

A step type is an id (``python/test``), a JSON Schema for its ``with:`` input and a
handler that works in the job's workspace through a :class:`StepContext`. Plugins add
step types through the ``pavedroad_pipeline_steps`` hook, which the built-ins below use
too. A step names a type as ``name`` or ``name@version``; the built-ins have one version
each, so any version names it.

Built-ins: ``checkout``, ``python/setup``, ``python/test``, ``artifact/upload``,
``artifact/download``, ``release/build`` and ``deploy`` (through the environments
layer's deployments).
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy
from jsonschema import Draft7Validator
from sqlalchemy import insert

from pavedroad.core.db import Database
from pavedroad.core.errors import ProblemError
from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.pipelines.artifacts import (
    ArtifactStore,
    find_artifact,
    record_artifact,
)
from pavedroad.pipelines.junit import OUTCOMES, JUnitError, TestCase, read_junit
from pavedroad.pipelines.models import TestCaseRow
from pavedroad.secrets.masking import Masker
from pavedroad.settings import Settings

hookimpl = pluggy.HookimplMarker("pavedroad")

_HOSTED_REPOSITORY = re.compile(r"([a-z0-9][a-z0-9_.-]*)/([A-Za-z0-9][A-Za-z0-9_.-]*)")
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ARTIFACT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]{0,199}")
GIT_TIMEOUT_SECONDS = 120
FETCHED_REFS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")


class UnknownStepTypeError(ProblemError):
    title = "Unknown step type"
    type_slug = "unknown-step-type"


class StepFailed(Exception):
    """A step type's handler ends its step as failed with this message (and the outputs
    it had set, which later steps may still read)."""

    def __init__(self, message: str, outputs: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.outputs = dict(outputs or {})


class StepStopped(Exception):
    """The step ran out of time or the job was cancelled while a process ran."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "timeout" or "cancelled"


@dataclass(frozen=True)
class RunFacts:
    """What a step may know about the run it is part of."""

    run_id: str
    run_number: int
    repository: str  # "owner/name" of a hosted repository
    commit: str
    ref: str
    branch: str | None
    event: str
    actor: str
    entity_ref: str | None = None  # the component the repository holds


Runner = Callable[[Sequence[str], Path, Mapping[str, str]], int]


@dataclass
class StepContext:
    """What a step type's handler gets: its checked input, the job's folders and facts,
    the step's environment, and ways to log and run processes like ``run:`` steps do."""

    inputs: dict[str, Any]
    workspace: Path
    temp: Path
    facts: RunFacts
    job_id: str
    step_index: int
    settings: Settings
    db: Database
    env: dict[str, str]
    masker: Masker
    write: Callable[[bytes], None]
    runner: Runner
    cancelled: Callable[[], bool] = lambda: False
    added_env: dict[str, str] = field(default_factory=dict)
    added_path: list[str] = field(default_factory=list)

    def log(self, text: str) -> None:
        """A line in the step's log (masked like the output of its processes)."""
        self.write((text.rstrip("\n") + "\n").encode())

    def run(
        self, argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
    ) -> int:
        """Run a process as a ``run:`` step's: in its own session, output in the step's log,
        killed with its group at the step's timeout or the job's cancellation (raising
        :class:`StepStopped`). Returns its exit code."""
        return self.runner(argv, cwd or self.workspace, self.env if env is None else env)

    def path(self, relative: str, what: str = "path") -> Path:
        """``relative`` inside the workspace (symbolic links resolved); a path that leaves
        it fails the step."""
        try:
            return contained_path(self.workspace, relative or ".")
        except PathEscapeError:
            raise StepFailed(f"{what} {relative!r} is outside the workspace") from None

    def relative(self, path: Path) -> str:
        return path.relative_to(self.workspace.resolve()).as_posix() or "."

    def set_env(self, name: str, value: str) -> None:
        """Set a variable for the steps after this one (as ``$PAVEDROAD_ENV`` does)."""
        self.added_env[name] = value

    def add_path(self, folder: str) -> None:
        """Put a folder in front of ``PATH`` for the steps after this one."""
        self.added_path.append(folder)

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore.for_settings(self.settings)

    def setting(self, name: str, default: Any) -> Any:
        """A ``pipelines.*`` setting, or ``default`` where the settings have none."""
        return getattr(getattr(self.settings, "pipelines", None), name, default)


Handler = Callable[[StepContext], Mapping[str, Any] | None]


@dataclass(frozen=True)
class StepType:
    """One step type; ``handler(ctx)`` returns the step's outputs."""

    id: str
    description: str
    input_schema: dict[str, Any]
    handler: Handler


def split_uses(uses: str) -> tuple[str, str | None]:
    """``python/test@1`` → (``python/test``, ``1``)."""
    name, _, version = uses.partition("@")
    return name, version or None


class StepRegistry:
    """The step types a worker knows, by id, with their input validators."""

    def __init__(self, step_types: Iterable[StepType]) -> None:
        self._types: dict[str, StepType] = {}
        self._validators: dict[str, Draft7Validator] = {}
        for step_type in step_types:
            if step_type.id in self._types:
                raise ValueError(f"two plugins register the step type {step_type.id!r}")
            Draft7Validator.check_schema(step_type.input_schema)
            self._types[step_type.id] = step_type
            self._validators[step_type.id] = Draft7Validator(step_type.input_schema)

    @classmethod
    def from_plugins(cls, manager: pluggy.PluginManager | None = None) -> StepRegistry:
        """Every step type the registered plugins offer through ``pavedroad_pipeline_steps``."""
        if manager is None:
            from pavedroad.core.plugins import plugin_manager

            manager = plugin_manager()
        return cls(itertools.chain.from_iterable(manager.hook.pavedroad_pipeline_steps()))

    def ids(self) -> list[str]:
        return sorted(self._types)

    def __iter__(self) -> Iterator[StepType]:
        return iter(self._types[step_id] for step_id in self.ids())

    def known(self, uses: str) -> bool:
        """Whether ``uses`` (``name`` or ``name@version``) names a registered step type."""
        return split_uses(uses)[0] in self._types

    def get(self, uses: str) -> StepType:
        name = split_uses(uses)[0]
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(self.ids()) or "none"
            raise UnknownStepTypeError(
                f"unknown step type {name!r}; known step types: {known}"
            ) from None

    def input_problems(
        self, uses: str, step_input: Any, *, allow_expressions: bool = True
    ) -> list[str]:
        """Problems with a step's ``with:``; with ``allow_expressions``, a string holding
        ``${{`` is accepted anywhere, since only evaluating it tells what it becomes."""
        name = split_uses(uses)[0]
        if name not in self._types:
            return [f"unknown step type {name!r}; known step types: {', '.join(self.ids())}"]
        if step_input is None:
            step_input = {}
        if allow_expressions and _is_expression(step_input):
            return []
        problems = []
        for error in self._validators[name].iter_errors(step_input):
            if allow_expressions and _is_expression(error.instance):
                continue
            where = "".join(
                f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
            )
            problems.append(f"{name}: with{where}: {error.message}")
        return sorted(problems)


def _is_expression(value: Any) -> bool:
    return isinstance(value, str) and "${{" in value


# -- built-in step types ----------------------------------------------------------------


def _schema(properties: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


_PATH = {"type": "string", "minLength": 1, "maxLength": 1000}


def _git_env(ctx: StepContext) -> dict[str, str]:
    return {**ctx.env, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1"}


def _git_output(ctx: StepContext, cwd: Path, *args: str) -> bytes:
    """A short git command's output (not logged); failing, it fails the step."""
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env=_git_env(ctx),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        detail = result.stderr.decode(errors="replace").strip().splitlines()
        raise StepFailed(f"git {args[0]} failed: {detail[-1] if detail else result.returncode}")
    return result.stdout


def _hosted_repository(ctx: StepContext) -> Path:
    match = _HOSTED_REPOSITORY.fullmatch(ctx.facts.repository)
    if match is None:
        raise StepFailed(
            f"checkout clones hosted repositories (owner/name); {ctx.facts.repository[:200]!r} "
            "is not one"
        )
    try:
        bare = contained_path(ctx.settings.home / "git", f"{match[1]}/{match[2]}.git")
    except PathEscapeError:
        raise StepFailed(f"{ctx.facts.repository!r} is not a hosted repository") from None
    if not bare.is_dir():
        raise StepFailed(f"there is no hosted repository {ctx.facts.repository}")
    return bare


def checkout(ctx: StepContext) -> dict[str, Any]:
    """Clone the run's repository at the run's commit into the workspace: a hosted
    repository, or the mirror of a GitHub or GitLab repository its webhook push filled
    (which fetches the commit again from its URL, under the outbound policy, if it
    lacks it)."""
    from pavedroad.git.mirrors import MirrorError, Mirrors, is_mirrored, pinned_ref

    commit = ctx.facts.commit
    mirrored = is_mirrored(ctx.facts.repository)
    bare = None if mirrored else _hosted_repository(ctx)
    if not _COMMIT.fullmatch(commit):
        raise StepFailed(f"the run's commit {commit[:80]!r} is not a full commit hash")
    refs = list(FETCHED_REFS)
    if mirrored:
        try:
            bare = Mirrors(ctx.settings).ensure(ctx.facts.repository, commit)
        except MirrorError as error:
            raise StepFailed(error.detail) from None
        refs.append(f"+{pinned_ref(commit)}:refs/pavedroad/commit")  # kept for this run
    target = ctx.path(ctx.inputs.get("path", "."))
    target.mkdir(parents=True, exist_ok=True)
    env = _git_env(ctx)

    def git(*args: str) -> None:
        code = ctx.run(["git", "-C", str(target), *args], env=env)
        if code != 0:
            raise StepFailed(f"git {args[0]} failed with exit code {code}")

    ctx.log(f"Checking out {ctx.facts.repository} at {commit} into {ctx.relative(target)}")
    code = ctx.run(["git", "init", "--quiet", str(target)], env=env)
    if code != 0:
        raise StepFailed(f"git init failed with exit code {code}")
    git("config", "remote.origin.url", str(bare))
    git("config", "remote.origin.fetch", "+refs/heads/*:refs/remotes/origin/*")
    git("fetch", "--quiet", "--no-tags", "origin", *refs)
    found = subprocess.run(
        ["git", "-C", str(target), "cat-file", "-e", f"{commit}^{{commit}}"],
        env=env,
        capture_output=True,
        timeout=GIT_TIMEOUT_SECONDS,
        check=False,
    )
    if found.returncode != 0:
        raise StepFailed(
            f"the commit {commit} is not in {ctx.facts.repository} any more "
            "(was its branch deleted or force-pushed?)"
        )
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--force", "--detach", commit)
    return {"commit": commit, "ref": ctx.facts.ref, "path": ctx.relative(target)}


def _project(ctx: StepContext) -> Path:
    project = ctx.path(ctx.inputs.get("path", "."))
    if not project.is_dir():
        raise StepFailed(f"the project folder {ctx.inputs.get('path', '.')!r} does not exist")
    return project


def _read_small(path: Path, limit: int = 1024 * 1024) -> bytes:
    with open(path, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise StepFailed(f"{path.name} is larger than {limit} bytes")
    return data


def _test_extra(pyproject: Path) -> str | None:
    try:
        data = tomllib.loads(_read_small(pyproject).decode("utf-8", errors="replace"))
    except tomllib.TOMLDecodeError as error:
        raise StepFailed(f"pyproject.toml is not valid TOML: {error}") from None
    extras = (data.get("project") or {}).get("optional-dependencies") or {}
    return next((name for name in ("test", "tests") if name in extras), None)


def _requirement_files(project: Path) -> list[Path]:
    return sorted(project.glob("requirements*.txt"))


def _extras(project: Path, extras: Any = None) -> list[str]:
    """The extras to install: those asked for, else the project's test extra if any."""
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return []
    if extras:
        chosen = [extras] if isinstance(extras, str) else list(extras)
        names = [e.strip() for item in chosen for e in str(item).split(",") if e.strip()]
        if names:
            return names
    extra = _test_extra(pyproject)
    return [extra] if extra else []


def _install_arguments(project: Path, extras: Any = None) -> list[str]:
    """What ``pip install`` gets: the project with the extras asked for, or with its test
    extra when it has one, else the project and ``requirements.txt`` (when present)."""
    chosen = _extras(project, extras)
    if chosen:
        return [f".[{','.join(chosen)}]"]
    arguments: list[str] = []
    if (project / "pyproject.toml").is_file() or (project / "setup.py").is_file():
        arguments.append(".")
    if (project / "requirements.txt").is_file():
        arguments += ["-r", "requirements.txt"]
    return arguments


def _dependency_hash(project: Path) -> str:
    digest = hashlib.sha256()
    for path in [project / "pyproject.toml", project / "setup.py", *_requirement_files(project)]:
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + hashlib.sha256(_read_small(path)).digest())
    return digest.hexdigest()


def _interpreter(ctx: StepContext) -> str:
    """The interpreter asked for (``python``), or the worker's ``python<version>`` for a
    ``python-version``, or the configured one, or the worker's own (said in the log when
    the version asked for is not on this worker)."""
    chosen = ctx.inputs.get("python") or ctx.setting("python", None)
    if chosen:
        return str(chosen)
    version = str(ctx.inputs.get("python-version") or "").strip()
    if version:
        mine = f"{sys.version_info.major}.{sys.version_info.minor}"
        if version == mine or mine.startswith(version + "."):
            return sys.executable
        found = shutil.which(f"python{version}")
        if found and _runs(found):
            return found
        ctx.log(f"Python {version} is not on this worker; using Python {mine}")
    return sys.executable


def _runs(interpreter: str) -> bool:
    """Whether the interpreter starts (a version manager's shim may be on PATH without
    the version behind it)."""
    try:
        return (
            subprocess.run(
                [interpreter, "-c", "pass"], capture_output=True, timeout=20, check=False
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def python_setup(ctx: StepContext) -> dict[str, Any]:
    """A virtualenv in the project's ``.venv`` with the project installed into it. The
    dependencies are installed once per worker for each declaration and shared by the
    jobs (:mod:`pavedroad.pipelines.pythonenv`); pip's download and wheel cache is shared
    too."""
    from pavedroad.pipelines import pythonenv

    project = _project(ctx)
    venv = project / ".venv"
    python = venv / "bin" / "python"
    cache = ctx.settings.home / "pipelines" / "cache" / "pip"
    cache.mkdir(parents=True, exist_ok=True)
    env = {
        **ctx.env,
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{venv / 'bin'}:{ctx.env.get('PATH', '')}",
        "PIP_CACHE_DIR": str(cache),
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    install = bool(ctx.inputs.get("install", True))
    declaration = (
        pythonenv.read_declaration(project, _extras(project, ctx.inputs.get("extras")))
        if install and not python.exists()
        else None
    )
    if declaration is not None:
        _shared_install(ctx, project, venv, declaration, env)
    else:
        _full_install(ctx, project, venv, env, install)
    ctx.set_env("VIRTUAL_ENV", str(venv))
    ctx.add_path(str(venv / "bin"))
    return {
        "python-path": str(python),
        "venv": ctx.relative(venv),
        "cache-key": _dependency_hash(project),
    }


def _shared_install(
    ctx: StepContext, project: Path, venv: Path, declaration: Any, env: dict[str, str]
) -> None:
    from pavedroad.pipelines import pythonenv

    interpreter = _interpreter(ctx)

    def run(argv: list[str], extra: dict[str, str] | None) -> int:
        return ctx.run(argv, cwd=project, env=extra or None)

    try:
        shared = pythonenv.shared_environment(
            ctx.settings.home / "pipelines" / "cache" / "python",
            interpreter,
            declaration,
            run,
            {**env, "VIRTUAL_ENV": ""},
        )
    except (RuntimeError, subprocess.SubprocessError) as error:
        raise StepFailed(str(error)) from None
    count = len(declaration.requirements)
    verb = "Installed" if shared.created else "Reusing"
    ctx.log(f"{verb} the {count} declared requirement(s) ({shared.root.name[:12]})")
    code = ctx.run([interpreter, "-m", "venv", "--without-pip", str(venv)], cwd=project)
    if code != 0:
        raise StepFailed(f"creating the virtualenv failed with exit code {code}")
    pythonenv.link(venv, shared.root)
    if declaration.installs_project:
        arguments = ["--no-deps", "--no-build-isolation", "."]
        ctx.log(f"pip install {shlex.join(arguments)}")
        code = ctx.run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--progress-bar",
                "off",
                *arguments,
            ],
            cwd=project,
            env=env,
        )
        if code != 0:
            raise StepFailed(f"pip install failed with exit code {code}")


def _full_install(
    ctx: StepContext, project: Path, venv: Path, env: dict[str, str], install: bool
) -> None:
    python = venv / "bin" / "python"
    if not python.exists():
        code = ctx.run([_interpreter(ctx), "-m", "venv", str(venv)], cwd=project)
        if code != 0:
            raise StepFailed(f"creating the virtualenv failed with exit code {code}")
    arguments = _install_arguments(project, ctx.inputs.get("extras")) if install else []
    if arguments:
        ctx.log(f"pip install {shlex.join(arguments)}")
        code = ctx.run(
            [str(python), "-m", "pip", "install", "--progress-bar", "off", *arguments],
            cwd=project,
            env=env,
        )
        if code != 0:
            raise StepFailed(f"pip install failed with exit code {code}")
    else:
        ctx.log("Nothing to install: no pyproject.toml, setup.py or requirements.txt")


def _test_python(ctx: StepContext, project: Path) -> str:
    """The project's virtualenv's interpreter, else the workspace's, else the one
    ``VIRTUAL_ENV`` names, else the worker's own."""
    if ctx.inputs.get("python"):
        return str(ctx.inputs["python"])
    candidates = [project / ".venv", ctx.workspace / ".venv"]
    if ctx.env.get("VIRTUAL_ENV"):
        candidates.append(Path(ctx.env["VIRTUAL_ENV"]))
    for venv in candidates:
        if (venv / "bin" / "python").exists():
            return str(venv / "bin" / "python")
    return _interpreter(ctx)


def _arguments(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        try:
            return shlex.split(value)
        except ValueError as error:
            raise StepFailed(f"args: {error}") from None
    return [str(item) for item in value]


def python_test(ctx: StepContext) -> dict[str, Any]:
    """pytest with a JUnit report, read into the job's test results."""
    project = _project(ctx)
    report = ctx.temp / f"junit-{ctx.step_index}.xml"
    report.unlink(missing_ok=True)
    argv = [_test_python(ctx, project), "-m", "pytest", f"--junitxml={report}"]
    code = ctx.run([*argv, *_arguments(ctx.inputs.get("args"))], cwd=project)
    cases: list[TestCase] = []
    if report.is_file():
        try:
            cases = read_junit(report, ctx.setting("junit_max_bytes", 50 * 1024 * 1024))
        except JUnitError as error:
            raise StepFailed(error.detail) from None
        _store_test_cases(ctx, cases)
    counts = {outcome: sum(case.outcome == outcome for case in cases) for outcome in OUTCOMES}
    outputs = {
        "passed": counts["passed"],
        "failed": counts["failed"],
        "errors": counts["error"],
        "skipped": counts["skipped"],
        "total": len(cases),
    }
    ctx.log(
        f"{outputs['passed']} passed, {outputs['failed']} failed, {outputs['errors']} errors, "
        f"{outputs['skipped']} skipped"
    )
    if counts["failed"] or counts["error"]:
        bad = counts["failed"] + counts["error"]
        raise StepFailed(f"{bad} test{'s' if bad != 1 else ''} did not pass", outputs)
    if code == 5:
        raise StepFailed("pytest collected no tests", outputs)
    if code != 0:
        raise StepFailed(f"pytest exited with code {code}", outputs)
    return outputs


def _store_test_cases(ctx: StepContext, cases: list[TestCase]) -> None:
    rows = [
        {
            "job_id": ctx.job_id,
            "suite": case.suite,
            "classname": case.classname,
            "name": case.name,
            "outcome": case.outcome,
            "seconds": case.seconds,
            "message": None
            if case.message is None
            else ctx.masker.mask(case.message).replace("\x00", "\ufffd"),
        }
        for case in cases
    ]
    for start in range(0, len(rows), 1000):
        with ctx.db.session() as session:
            session.execute(insert(TestCaseRow), rows[start : start + 1000])


def _artifact_name(ctx: StepContext) -> str:
    name = str(ctx.inputs["name"])
    if not _ARTIFACT_NAME.fullmatch(name) or name != name.strip():
        raise StepFailed(
            f"{name[:80]!r} is not an artifact name: letters, digits, space and ._- "
            "(at most 200), starting with a letter or digit"
        )
    return name


def artifact_upload(ctx: StepContext) -> dict[str, Any]:
    """Store a file or folder of the workspace as an artifact of the run."""
    name = _artifact_name(ctx)
    source = ctx.path(str(ctx.inputs["path"]))
    if not source.exists():
        raise StepFailed(f"there is nothing at {ctx.inputs['path']!r} to upload")
    blob = ctx.artifacts.put_tree(source)
    try:
        record_artifact(ctx.db, ctx.facts.run_id, ctx.job_id, name, blob)
    except ProblemError as error:
        raise StepFailed(error.detail) from None
    ctx.log(f"Uploaded {ctx.relative(source)} as {name!r}: {blob.digest}, {blob.size} bytes")
    return {"name": name, "digest": blob.digest, "size": blob.size}


def artifact_download(ctx: StepContext) -> dict[str, Any]:
    """Unpack an artifact of the run into a folder of the workspace."""
    name = _artifact_name(ctx)
    row = find_artifact(ctx.db, ctx.facts.run_id, name)
    if row is None:
        raise StepFailed(f"this run has no artifact named {name!r} (yet)")
    target = ctx.path(str(ctx.inputs.get("path", ".")))
    try:
        names = ctx.artifacts.extract(row.digest, target)
    except ProblemError as error:
        raise StepFailed(error.detail) from None
    except Exception as error:  # tarfile's filter refusing a member, a damaged blob
        raise StepFailed(f"the artifact {name!r} cannot be unpacked: {error}") from None
    ctx.log(f"Downloaded {name!r} ({len(names)} entries) into {ctx.relative(target)}")
    return {"name": name, "digest": row.digest, "path": ctx.relative(target)}


def release_build(ctx: StepContext) -> dict[str, Any]:
    """Bundle the checkout's tracked files with the Score workload as a release."""
    from pavedroad.environments.releases import ReleaseStore, ScoreError

    component = ctx.facts.entity_ref
    if not component:
        raise StepFailed(
            "release/build needs the run's component: the repository has no catalog "
            "entity (a Component whose source is this repository)"
        )
    root = _project(ctx)
    try:
        prefix = _git_output(ctx, root, "rev-parse", "--show-prefix").decode().strip()
    except StepFailed:
        raise StepFailed(
            f"{ctx.relative(root)} is not a git checkout: release/build bundles the files "
            "git tracks, so run the checkout step first"
        ) from None
    listing = _git_output(ctx, root, "ls-files", "-z", "--cached", "--full-name", ".")
    names = sorted(
        name[len(prefix) :]
        for name in listing.decode("utf-8", errors="surrogateescape").split("\0")
        if name and name.startswith(prefix)
    )
    if not names:
        raise StepFailed(f"{ctx.relative(root)} has no tracked files to release")
    score_name = str(ctx.inputs.get("score", "score.yaml"))
    try:
        score_path = contained_path(root, score_name)
    except PathEscapeError:
        raise StepFailed(f"score {score_name!r} is outside {ctx.relative(root)}") from None
    if not score_path.is_file():
        raise StepFailed(
            f"there is no {score_name} in {ctx.relative(root)}: a release needs the Score "
            "workload (score.dev/v1b1) that says how to run it"
        )
    score_text = _read_small(score_path, 256 * 1024).decode("utf-8", errors="replace")
    bundle = ctx.artifacts.put_files(root, names)
    store = ReleaseStore(ctx.db, ctx.artifacts)
    try:
        release, created = store.create_from_bundle(
            bundle,
            component=component,
            score_text=score_text,
            created_by=ctx.facts.actor,
            repository=ctx.facts.repository,
            commit=ctx.facts.commit,
            branch=ctx.facts.branch,
            run_id=ctx.facts.run_id,
        )
    except ScoreError as error:
        raise StepFailed(error.detail) from None
    verb = "Created" if created else "Found"
    ctx.log(f"{verb} release {release.id} of {component}: {bundle.digest} ({len(names)} files)")
    return {"release": release.id, "digest": bundle.digest, "created": created}


# -- cache ----------------------------------------------------------------------------------


def _cache_key(ctx: StepContext) -> str:
    key = str(ctx.inputs["key"]).strip()
    if not key or len(key) > 250:
        raise StepFailed("a cache key is 1 to 250 characters, e.g. deps-${{ hashFiles('*.toml') }}")
    return f"{ctx.facts.repository}:{key}"


def cache_restore(ctx: StepContext) -> dict[str, Any]:
    """Unpack the cache saved under ``key`` (or the newest whose key starts with one of
    ``restore-keys``) into ``path``; ``cache-hit`` says whether the exact key was found."""
    from sqlalchemy import select

    from pavedroad.core.timeutil import utcnow
    from pavedroad.pipelines.models import CacheEntryRow

    key = _cache_key(ctx)
    target = ctx.path(str(ctx.inputs["path"]))
    prefixes = [f"{ctx.facts.repository}:{p}" for p in ctx.inputs.get("restore-keys") or []]
    with ctx.db.session() as session:
        entry = session.get(CacheEntryRow, key)
        exact = entry is not None
        for prefix in prefixes if entry is None else []:
            entry = session.scalar(
                select(CacheEntryRow)
                .where(CacheEntryRow.key.startswith(prefix, autoescape=True))
                .order_by(CacheEntryRow.created_at.desc())
                .limit(1)
            )
            if entry is not None:
                break
        if entry is None or not ctx.artifacts.exists(entry.digest):
            ctx.log(f"No cache for {ctx.inputs['key']!r}")
            return {"cache-hit": False, "key": ""}
        entry.used_at = utcnow()
        digest, found = entry.digest, entry.key.split(":", 1)[1]
    target.mkdir(parents=True, exist_ok=True)
    try:
        ctx.artifacts.extract(digest, target)
    except Exception as error:  # a damaged archive is a miss, not a failed job
        ctx.log(f"The cache {found!r} could not be restored ({error}); going on without it")
        return {"cache-hit": False, "key": ""}
    ctx.log(f"Restored the cache {found!r} into {ctx.relative(target)}")
    return {"cache-hit": exact, "key": found}


def cache_save(ctx: StepContext) -> dict[str, Any]:
    """Save ``path`` under ``key`` unless a cache has that key already (keys are
    immutable: put what the cache depends on in the key)."""
    from sqlalchemy.exc import IntegrityError

    from pavedroad.core.timeutil import utcnow
    from pavedroad.pipelines.models import CacheEntryRow

    key = _cache_key(ctx)
    source = ctx.path(str(ctx.inputs["path"]))
    with ctx.db.read_session() as session:
        if session.get(CacheEntryRow, key) is not None:
            ctx.log(f"A cache {ctx.inputs['key']!r} exists already: not saved again")
            return {"saved": False}
    if not source.exists():
        ctx.log(f"Nothing at {ctx.inputs['path']!r} to cache")
        return {"saved": False}
    blob = ctx.artifacts.put_tree(source)
    now = utcnow()
    try:
        with ctx.db.session() as session:
            session.add(
                CacheEntryRow(
                    key=key,
                    repository=ctx.facts.repository,
                    digest=blob.digest,
                    size=blob.size,
                    created_at=now,
                    used_at=now,
                )
            )
    except IntegrityError:
        return {"saved": False}  # another job saved the same key meanwhile
    ctx.log(f"Saved {ctx.relative(source)} as the cache {ctx.inputs['key']!r} ({blob.size} bytes)")
    return {"saved": True, "digest": blob.digest}


def deploy(ctx: StepContext) -> dict[str, Any]:
    """Deploy a release of the run's component (``release``, or the newest this run
    built) to ``environment`` and, with ``wait`` (the default), follow it to its end:
    the step fails if the deployment does. The environment's rules apply as to anyone:
    promotesFrom, and approvals (the step waits for them)."""
    import time

    from pavedroad.core.errors import ProblemError
    from pavedroad.environments.factory import deployment_service
    from pavedroad.environments.models import DEPLOYMENT_ENDED

    component = ctx.facts.entity_ref
    if not component:
        raise StepFailed(
            "deploy needs the run's component: the repository has no catalog entity "
            "(a Component whose source is this repository)"
        )
    service = deployment_service(ctx.db, ctx.settings)
    wanted = str(ctx.inputs.get("release") or "")
    if not wanted:
        recent = service.releases.list(component=component, limit=50)
        # this run's release, or (a re-run) the one release/build found for this commit
        built = [r for r in recent if r.run_id == ctx.facts.run_id] or [
            r for r in recent if r.commit == ctx.facts.commit
        ]
        if not built:
            raise StepFailed(
                "this run built no release of "
                f"{component}: run release/build first, or give the release in with.release"
            )
        wanted = built[0].id
    environment = str(ctx.inputs["environment"])
    try:
        requested = service.deploy(component, environment, wanted, ctx.facts.actor)
    except ProblemError as error:
        raise StepFailed(error.detail) from None
    deployment = requested.deployment
    joined = " (joined the one in progress)" if not requested.created else ""
    ctx.log(
        f"Deployment {deployment.number}: release {deployment.release_id} to "
        f"{environment}: {deployment.status}{joined}"
    )
    if not ctx.inputs.get("wait", True):
        return {"deployment": deployment.id, "status": deployment.status, "url": ""}
    seen = 0
    while deployment.status not in DEPLOYMENT_ENDED:
        if ctx.cancelled():
            raise StepFailed(f"cancelled while deployment {deployment.number} ran on")
        time.sleep(0.5)
        deployment = service.get(deployment.id)
        events = service.timeline(deployment.id)
        for event in events[seen:]:
            message = f": {event.message}" if event.message else ""
            ctx.log(f"  {event.step} {event.status}{message}")
        seen = len(events)
    if deployment.status not in ("live", "replaced"):
        for line in deployment.log_tail or []:
            ctx.log(f"  | {line}")
        raise StepFailed(
            f"deployment {deployment.number} {deployment.status}: {deployment.reason or ''}"
        )
    ctx.log(f"Live in {environment}: {deployment.url}")
    return {"deployment": deployment.id, "status": deployment.status, "url": deployment.url or ""}


BUILTIN_STEP_TYPES = (
    StepType(
        "checkout",
        "Clone the run's repository at the run's commit into the workspace",
        _schema({"path": _PATH}),
        checkout,
    ),
    StepType(
        "python/setup",
        "Create a virtualenv in .venv and pip install the project (with its test extra)",
        _schema(
            {
                "path": _PATH,
                "python": _PATH,
                "python-version": {"type": ["string", "number"]},
                "extras": {"type": ["string", "array"], "items": {"type": "string"}},
                "install": {"type": "boolean"},
            }
        ),
        python_setup,
    ),
    StepType(
        "python/test",
        "Run pytest and record its JUnit report as the job's test results",
        _schema(
            {
                "path": _PATH,
                "python": _PATH,
                "args": {
                    "anyOf": [
                        {"type": "string", "maxLength": 10_000},
                        {"type": "array", "items": {"type": "string"}, "maxItems": 500},
                    ]
                },
            }
        ),
        python_test,
    ),
    StepType(
        "artifact/upload",
        "Store a file or folder of the workspace as an artifact of the run",
        _schema({"name": {"type": "string", "minLength": 1}, "path": _PATH}, ["name", "path"]),
        artifact_upload,
    ),
    StepType(
        "artifact/download",
        "Unpack an artifact of the run into the workspace",
        _schema({"name": {"type": "string", "minLength": 1}, "path": _PATH}, ["name"]),
        artifact_download,
    ),
    StepType(
        "cache/restore",
        "Restore a folder saved by cache/save under a key (or the newest by restore-keys)",
        _schema(
            {
                "key": {"type": "string", "minLength": 1},
                "path": _PATH,
                "restore-keys": {"type": "array", "items": {"type": "string"}},
            },
            ["key", "path"],
        ),
        cache_restore,
    ),
    StepType(
        "cache/save",
        "Save a folder of the workspace under a key, for later jobs' cache/restore",
        _schema({"key": {"type": "string", "minLength": 1}, "path": _PATH}, ["key", "path"]),
        cache_save,
    ),
    StepType(
        "release/build",
        "Bundle the checkout's tracked files with score.yaml as an immutable release",
        _schema({"path": _PATH, "score": _PATH}),
        release_build,
    ),
    StepType(
        "deploy",
        "Deploy a release of the component (default: the one this run built) to an environment",
        _schema(
            {
                "environment": {"type": "string", "minLength": 1, "maxLength": 63},
                "release": {"type": "string", "maxLength": 100},
                "wait": {"type": "boolean"},
            },
            ["environment"],
        ),
        deploy,
    ),
)


@hookimpl
def pavedroad_pipeline_steps() -> list[StepType]:
    return list(BUILTIN_STEP_TYPES)
