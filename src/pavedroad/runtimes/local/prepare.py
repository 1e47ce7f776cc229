"""Releases made ready to run on this host: files unpacked once, a virtualenv per set of
dependencies.

A release's files are unpacked once per bundle digest into ``<root>/releases/<hex>/``:
into a temporary folder first, renamed into place when complete, so a folder that is
there is whole. A second process (or thread) preparing the same digest meanwhile waits
on a file lock and then uses the folder the first one made. Instances run from that
folder; every instance of a release shares it.

A Python service (a ``pyproject.toml`` or ``requirements.txt`` at the top of the release)
gets a virtualenv holding its declared dependencies only, under
``<root>/venvs/<key>/``, where the key hashes the declaration (``requirements.txt`` as
written, else ``[project].dependencies`` of ``pyproject.toml``) and the interpreter. So
releases whose dependencies did not change share a virtualenv, made once: pip runs only
when they change. The service's own code is not installed: the environment puts the
release's ``src/`` (if any) and its top folder on ``PYTHONPATH``, and the virtualenv's
``bin`` first on ``PATH`` (so ``python`` is the virtualenv's). A service without
dependencies gets a virtualenv without pip, made in a moment with no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pavedroad.core.errors import ProblemError
from pavedroad.core.paths import file_lock
from pavedroad.pipelines.artifacts import DIGEST

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
REQUIREMENTS = "requirements.txt"
PYPROJECT = "pyproject.toml"
_READY_MARKER = ".pavedroad-ready"
_OUTPUT_LINES = 25
# Variables of the server's environment that must not reach pip in the virtualenv.
_NOT_FOR_PIP = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER")


class PrepareError(ProblemError):
    status = 422
    title = "Release cannot be prepared"
    type_slug = "release-prepare-failed"


@dataclass(frozen=True)
class PreparedRelease:
    """Where a release's files are, the interpreter of its virtualenv (None: not a
    Python service) and the environment variables that run it."""

    app_dir: Path
    python: Path | None
    env: dict[str, str]


@dataclass(frozen=True)
class Dependencies:
    """What a Python release declares it needs."""

    source: str  # requirements.txt or pyproject.toml
    requirements: tuple[str, ...]  # from pyproject.toml
    text: str | None = None  # requirements.txt, as written

    def key(self, interpreter: str) -> str:
        declared = {"source": self.source, "requirements": self.requirements, "text": self.text}
        data = json.dumps({"declared": declared, "python": interpreter}, sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:32]

    @property
    def empty(self) -> bool:
        if self.text is not None:
            return not any(_is_requirement(line) for line in self.text.splitlines())
        return not self.requirements

    def pip_arguments(self, app_dir: Path) -> list[str]:
        if self.text is not None:
            return ["-r", str(app_dir / REQUIREMENTS)]
        return list(self.requirements)


def prepare_release(
    root: Path,
    digest: str,
    extract: Callable[[Path], None],
    *,
    python: str | None = None,
    system_path: str | None = None,
    timeout: float = 900.0,
) -> PreparedRelease:
    """The release with bundle ``digest`` ready to run: ``extract(folder)`` unpacks it
    (once per digest on this host), and a Python release gets its virtualenv, made with
    ``python`` (None: this interpreter). ``system_path`` follows the virtualenv on
    ``PATH``; ``timeout`` bounds each step of making the virtualenv."""
    match = DIGEST.fullmatch(digest)
    if match is None:
        raise PrepareError(f"{digest[:80]!r} is not a digest (sha256:<64 hex digits>)")
    app_dir = _unpacked(root / "releases", match.group(1), extract)
    path = system_path or DEFAULT_PATH
    dependencies = declared_dependencies(app_dir)
    if dependencies is None:
        return PreparedRelease(app_dir, None, {"PATH": path})
    interpreter = _interpreter(python or sys.executable, timeout)
    venv = _virtualenv(root / "venvs", app_dir, dependencies, interpreter, timeout)
    python_path = [app_dir / "src"] if (app_dir / "src").is_dir() else []
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}{path}",
        "PYTHONPATH": os.pathsep.join(str(folder) for folder in [*python_path, app_dir]),
        "VIRTUAL_ENV": str(venv),
        "PYTHONUNBUFFERED": "1",  # so that its log shows lines as they are printed
    }
    return PreparedRelease(app_dir, venv / "bin" / "python", env)


def declared_dependencies(app_dir: Path) -> Dependencies | None:
    """The dependencies a release declares; None if it is not a Python project."""
    requirements = app_dir / REQUIREMENTS
    if requirements.is_file():
        return Dependencies(REQUIREMENTS, (), _read_text(requirements))
    pyproject = app_dir / PYPROJECT
    if not pyproject.is_file():
        return None
    try:
        data = tomllib.loads(_read_text(pyproject))
    except tomllib.TOMLDecodeError as error:
        raise PrepareError(f"the release's {PYPROJECT} cannot be read: {error}") from None
    project = data.get("project")
    if not isinstance(project, dict):
        return Dependencies(PYPROJECT, ())  # no [project] table: nothing declared
    if "dependencies" in (project.get("dynamic") or []):
        raise PrepareError(
            f"the release's {PYPROJECT} declares its dependencies as dynamic: list them "
            f"in [project].dependencies or in a {REQUIREMENTS}, so that they can be "
            "installed without building the project"
        )
    declared = project.get("dependencies") or []
    if not isinstance(declared, list) or not all(isinstance(item, str) for item in declared):
        raise PrepareError(f"[project].dependencies of {PYPROJECT} must be a list of strings")
    return Dependencies(PYPROJECT, tuple(declared))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PrepareError(f"the release's {path.name} is not UTF-8 text") from None


def _unpacked(releases: Path, hex_digest: str, extract: Callable[[Path], None]) -> Path:
    final = releases / hex_digest
    if final.is_dir():
        return final
    releases.mkdir(parents=True, exist_ok=True)
    (releases / ".locks").mkdir(parents=True, exist_ok=True)
    with file_lock(releases / ".locks" / f"{hex_digest}.lock"):
        if final.is_dir():  # unpacked by whoever held the lock before
            return final
        temporary = Path(tempfile.mkdtemp(prefix=f".{hex_digest[:16]}-", dir=releases))
        try:
            extract(temporary)
            temporary.chmod(0o755)
            os.rename(temporary, final)
        except ProblemError:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        except Exception as error:
            shutil.rmtree(temporary, ignore_errors=True)
            raise PrepareError(
                f"the release sha256:{hex_digest} cannot be unpacked: {error}"
            ) from None
    return final


def _virtualenv(
    venvs: Path,
    app_dir: Path,
    dependencies: Dependencies,
    interpreter: tuple[str, str],
    timeout: float,
) -> Path:
    python, version = interpreter
    venv = venvs / dependencies.key(f"{python} {version}")
    if (venv / _READY_MARKER).is_file():
        return venv
    venvs.mkdir(parents=True, exist_ok=True)
    (venvs / ".locks").mkdir(parents=True, exist_ok=True)
    with file_lock(venvs / ".locks" / f"{venv.name}.lock"):
        if (venv / _READY_MARKER).is_file():
            return venv
        # Made in place (its scripts name their folder); an earlier attempt that did
        # not finish left no marker, and is made again.
        shutil.rmtree(venv, ignore_errors=True)
        try:
            without_pip = ["--without-pip"] if dependencies.empty else []
            _run([python, "-m", "venv", *without_pip, str(venv)], app_dir, timeout, "venv")
            if not dependencies.empty:
                _run(
                    [
                        str(venv / "bin" / "python"),
                        "-m",
                        "pip",
                        "install",
                        "--disable-pip-version-check",
                        "--no-input",
                        *dependencies.pip_arguments(app_dir),
                    ],
                    app_dir,
                    timeout,
                    f"pip install of the dependencies in {dependencies.source}",
                )
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        (venv / _READY_MARKER).write_text(f"{python} {version}\n", encoding="utf-8")
    return venv


def _interpreter(python: str, timeout: float) -> tuple[str, str]:
    """The interpreter's path and version (a virtualenv is kept per interpreter)."""
    found = shutil.which(python)
    if found is None:
        raise PrepareError(f"there is no Python interpreter {python!r} (runtime.python)")
    output = _run(
        [found, "-c", "import sys; print(sys.version.split()[0])"],
        Path("/"),
        min(timeout, 60),
        f"the interpreter {found}",
    )
    return os.path.abspath(found), output.strip()


def _run(argv: list[str], cwd: Path, timeout: float, what: str) -> str:
    """Run ``argv``; its output, or :class:`PrepareError` with its last lines."""
    env = {name: value for name, value in os.environ.items() if name not in _NOT_FOR_PIP}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    try:
        completed = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        lines = _last_lines(expired.output or b"")
        raise PrepareError(
            f"{what} took longer than {timeout:g} s" + _as_block(lines), output=lines
        ) from None
    except OSError as error:
        raise PrepareError(f"{what} cannot be run: {error.strerror or error}") from None
    output = completed.stdout.decode("utf-8", errors="replace")
    if completed.returncode != 0:
        lines = _last_lines(completed.stdout)
        raise PrepareError(
            f"{what} failed (exit code {completed.returncode})" + _as_block(lines), output=lines
        )
    return output


def _last_lines(output: bytes) -> list[str]:
    text = output.decode("utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()][-_OUTPUT_LINES:]


def _as_block(lines: list[str]) -> str:
    return (":\n" + "\n".join(lines)) if lines else ""


def _is_requirement(line: str) -> bool:
    stripped = line.split("#", 1)[0].strip()
    return bool(stripped) and not stripped.startswith(("--index-url", "--extra-index-url", "-i "))
