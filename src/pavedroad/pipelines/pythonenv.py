"""The cached install of ``python/setup``: a project's dependencies are installed once per
worker for each (interpreter, dependency declaration), and every job's ``.venv`` sees
them.

A job's virtualenv is made without pip (milliseconds) and given a ``.pth`` file naming
the site-packages of the shared environment for its declaration: the project's
``[project].dependencies``, the optional-dependencies of the extras asked for, and its
``[build-system].requires``. The project itself is then installed into the job's
virtualenv with ``--no-deps --no-build-isolation`` (its own build, about a second), so
the code under test is always the commit's. pip, installed in the shared environment,
works in the job's virtualenv too and installs into it.

A declaration this cannot read exactly (dynamic dependencies, ``setup.py`` without a
``[project]`` table, requirement files with options or local paths) gets the full
install in the job's own virtualenv, as pip would do it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pavedroad.core.paths import file_lock

SHARED_PTH = "_pavedroad_dependencies.pth"
COMPLETE = ".complete"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Declaration:
    """What a project needs installed, read from its files."""

    requirements: tuple[str, ...]  # PEP 508 strings
    installs_project: bool  # a pyproject.toml (or setup.py) to install with --no-deps

    def key(self, interpreter_version: str) -> str:
        text = json.dumps([interpreter_version, sorted(self.requirements)])
        return hashlib.sha256(text.encode()).hexdigest()


def read_declaration(project: Path, extras: list[str]) -> Declaration | None:
    """The project's declared requirements with ``extras``; None when they cannot be read
    exactly (then the job installs the usual way)."""
    pyproject = project / "pyproject.toml"
    requirements: list[str] = []
    installs = False
    if pyproject.is_file():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
            return None
        table = data.get("project")
        if not isinstance(table, dict) or "dependencies" in (table.get("dynamic") or []):
            return None
        if "optional-dependencies" in (table.get("dynamic") or []) and extras:
            return None
        build = list((data.get("build-system") or {}).get("requires") or ["setuptools>=61"])
        if any(isinstance(b, str) and b.lower().startswith("setuptools") for b in build):
            build.append("wheel")  # what setuptools asks for when building without isolation
        dependencies = table.get("dependencies") or []
        optional = table.get("optional-dependencies") or {}
        chosen: list[Any] = []
        for extra in extras:
            if extra not in optional:
                return None  # pip would warn; let it
            chosen += optional[extra]
        for item in [*build, *dependencies, *chosen]:
            if not isinstance(item, str) or _refers_to_project(item, table.get("name")):
                return None
            requirements.append(item)
        installs = True
    elif (project / "setup.py").is_file():
        return None
    requirements_file = project / "requirements.txt"
    if requirements_file.is_file():
        for line in requirements_file.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(("-", ".", "/", "file:")) or "://" in line:
                return None
            requirements.append(line)
    if not installs and not requirements_file.is_file():
        return None
    return Declaration(tuple(requirements), installs)


def _refers_to_project(requirement: str, name: Any) -> bool:
    """``myproj[test]`` inside myproj's own extras: leave that to pip."""
    head = re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0]
    return isinstance(name, str) and _normal(head) == _normal(name)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def site_packages(venv: Path) -> Path:
    found = sorted(venv.glob("lib/python3*/site-packages"))
    if not found:
        raise FileNotFoundError(f"{venv} has no lib/python3.*/site-packages")
    return found[0]


def interpreter_version(interpreter: str) -> str:
    result = subprocess.run(
        [interpreter, "-c", "import sys; print(sys.version.split()[0], sys.implementation.name)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return result.stdout.strip()


@dataclass
class SharedEnvironment:
    """The shared environment of one declaration, made once under a lock."""

    root: Path  # <home>/pipelines/cache/python/<key>
    created: bool  # made now (False: found)


def shared_environment(
    cache: Path,
    interpreter: str,
    declaration: Declaration,
    run: Any,
    pip_env: dict[str, str],
) -> SharedEnvironment:
    """The shared environment for ``declaration``: found, or made now with ``run``
    (the step's process runner, so pip's output is in the step's log). A failed install
    leaves nothing behind to be found next time."""
    key = declaration.key(interpreter_version(interpreter))
    root = cache / key
    cache.mkdir(parents=True, exist_ok=True)
    with file_lock(cache / f"{key}.lock"):
        if (root / COMPLETE).is_file():
            return SharedEnvironment(root, created=False)
        shutil.rmtree(root, ignore_errors=True)
        if run([interpreter, "-m", "venv", str(root)], None) != 0:
            shutil.rmtree(root, ignore_errors=True)
            raise RuntimeError("creating the shared virtualenv failed")
        if declaration.requirements:
            argv = [
                str(root / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--progress-bar",
                "off",
                *declaration.requirements,
            ]
            if run(argv, pip_env) != 0:
                shutil.rmtree(root, ignore_errors=True)
                raise RuntimeError("installing the dependencies failed")
        (root / COMPLETE).write_text(json.dumps(list(declaration.requirements)) + "\n")
    return SharedEnvironment(root, created=True)


def link(venv: Path, shared: Path) -> None:
    """Let ``venv`` import what ``shared`` has installed (after its own packages)."""
    (site_packages(venv) / SHARED_PTH).write_text(f"{site_packages(shared)}\n")


def valid_extra(name: str) -> bool:
    return bool(_NAME.match(name))
