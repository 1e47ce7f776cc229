"""Hostile templates, run as real tasks end to end: they fail their own task with an error
that names the cause, leave nothing half-written (no repository, no catalog entity, no
file outside the task's folder, the task's folder removed), and the same app runs a normal
task to completion right afterwards.

Sandbox escapes, CPU and memory bombs, the wall-clock kill, paths that lead out, links in
skeletons, oversized template folders, publishing over someone's repository, bad answers
and oversized step lists. The expression sandbox's primitives are unit-tested in
tests/unit/test_scaffolder_expressions.py; here every case goes through the API, the job
queue and the task's own process.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from integration_support import wait_for
from test_scaffolder_tasks import TASKS, TEMPLATE, Scaffolder, git, write

from pavedroad.identity.policy import Role

API_VERSION = "scaffolder.backstage.io/v1beta3"
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def database_seed() -> str:
    return "demo"  # the teams that own repositories, and their members


def template_yaml(
    name: str,
    steps: list[dict[str, Any]],
    properties: dict[str, Any] | None = None,
    required: list[str] | None = None,
) -> str:
    """A template with one form page of ``properties`` and ``steps``."""
    page: dict[str, Any] = {"title": "Answers", "properties": properties}
    if required:
        page["required"] = required
    parameters = [page] if properties else []
    return yaml.safe_dump(
        {
            "apiVersion": API_VERSION,
            "kind": "Template",
            "metadata": {"name": name},
            "spec": {
                "owner": "group:default/platform-team",
                "type": "service",
                "parameters": parameters,
                "steps": steps,
            },
        },
        sort_keys=False,
    )


def fetch(values: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A fetch:template step of ./skeleton."""
    step_input: dict[str, Any] = {"url": "./skeleton", **extra}
    if values is not None:
        step_input["values"] = values
    return {"id": "fetch", "action": "fetch:template", "input": step_input}


def say(message: str, step_id: str = "say") -> dict[str, Any]:
    return {"id": step_id, "action": "debug:log", "input": {"message": message}}


class Hostile(Scaffolder):
    """A Scaffolder that checks what a hostile task left behind."""

    def __init__(self, client: TestClient, root: Path, home: Path, watched: Path) -> None:
        super().__init__(client, root)
        self.home = home
        self.watched = watched  # every file under it is compared before and after a task
        self.template(
            "plain",
            body=template_yaml(
                "plain", [fetch({"name": "${{ parameters.name }}"})], {"name": {"type": "string"}}
            ),
            **{"README.md": "# ${{ values.name }}\n"},
        )

    def register(
        self,
        name: str,
        steps: list[dict[str, Any]],
        properties: dict[str, Any] | None = None,
        files: dict[str, str] | None = None,
        required: list[str] | None = None,
    ) -> Path:
        body = template_yaml(name, steps, properties, required)
        return self.template(name, body=body, **(files or {"keep.txt": "kept\n"}))

    @contextlib.contextmanager
    def signed_in(self, headers: dict[str, str]) -> Iterator[None]:
        """Requests made meanwhile carry ``headers`` (someone's token) instead."""
        saved = dict(self.client.headers)
        self.client.headers.update(headers)
        try:
            yield
        finally:
            self.client.headers.clear()
            self.client.headers.update(saved)

    def files(self) -> dict[str, tuple[int, int]]:
        """Every file under the watched folder with its size and change time, except the
        databases and the job queue's (they change with every request) and the templates'
        version history (recording a version is what running a template does first)."""
        skipped = (self.watched / "db", self.home / "scaffolder" / "templates")
        found: dict[str, tuple[int, int]] = {}
        for folder, dirs, names in os.walk(self.watched):
            if Path(folder) in skipped:
                dirs[:] = []
                continue
            for name in names:
                if Path(folder) == self.home and name.startswith("queue.db"):
                    continue
                info = os.lstat(Path(folder, name))
                found[str(Path(folder, name))] = (info.st_size, info.st_mtime_ns)
        return found

    @property
    def tasks(self) -> Path:
        return self.home / "scaffolder" / "tasks"

    def wait(self, task_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """The ended task, once its process has ended too (the task ends first; then its
        process cleans up and the worker removes the process's output file)."""
        task = super().wait(task_id, timeout)
        assert wait_for(lambda: not (self.tasks / f"{task_id}.output").exists(), timeout=15)
        return task

    def entity_refs(self) -> set[str]:
        response = self.client.get("/api/v1/catalog/entities", params={"limit": 1000})
        assert response.status_code == 200, response.text
        return {
            f"{e['kind']}:{e['metadata'].get('namespace', 'default')}/{e['metadata']['name']}"
            for e in response.json()["items"]
        }

    def run_hostile(
        self, values: dict[str, Any], name: str, *fragments: str, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Run a task that must fail with an error holding every fragment, and check it
        left nothing behind."""
        before = self.state()
        task = self.wait(self.start(values, name)["id"], timeout)
        self.assert_failed_cleanly(task, before, *fragments)
        return task

    def state(self) -> tuple[Any, ...]:
        """What a failed task must leave as it was: files, entities, repositories."""
        return self.files(), self.entity_refs(), self.app.state.git.repos()

    def assert_failed_cleanly(
        self, task: dict[str, Any], before: tuple[Any, ...], *fragments: str
    ) -> None:
        files, entities, repos = before
        assert task["status"] == "failed", (task, self.log(task["id"]))
        for fragment in fragments:
            assert fragment in task["error"], task["error"]
        assert self.app.state.git.repos() == repos
        assert self.entity_refs() == entities
        # a killed task's folder is checked on its own (see test_a_killed_task_leaves_...)
        now = {k: v for k, v in self.files().items() if not k.startswith(self.folder(task))}
        changed = {path for path in now.keys() | files.keys() if now.get(path) != files.get(path)}
        assert not changed, f"files changed outside the task's folder: {sorted(changed)}"
        if "task_timeout_seconds" not in task["error"]:
            assert not Path(self.folder(task)).exists(), "the task's folder was left behind"

    def folder(self, task: dict[str, Any]) -> str:
        return str(self.tasks / task["id"])

    def assert_worker_fine(self) -> None:
        task = self.run({"name": "still-fine"}, "plain", dryRun=True)
        assert task["status"] == "completed", (task["error"], self.log(task["id"]))
        [readme] = [f for f in task["output"]["files"] if f["path"] == "README.md"]
        assert readme["content"] == "# still-fine\n"


@pytest.fixture
def make_hostile(make_app, make_settings, tmp_path) -> Iterator[Any]:
    """``make_hostile(**scaffolder_settings)``: an app running its job queue, with the
    scaffolder's limits changed as given. ``signed_in=True``: sign-in is required, the
    accounts root (admin), bob (checkout-team) and dave (catalog-team) exist, and requests
    are root's unless made in ``hostile.signed_in(token(...))``."""
    with contextlib.ExitStack() as stack:

        def make(signed_in: bool = False, **limits: Any) -> Hostile:
            settings = make_settings()
            settings.auth.required = signed_in
            for key, value in limits.items():
                setattr(settings.scaffolder, key, value)
            app = make_app(settings, background=True)
            client = stack.enter_context(TestClient(app))
            if signed_in:
                app.state.identity.create_account("root", Role.admin, None)
                app.state.identity.create_account("bob", Role.member, None)
                app.state.identity.create_account("dave", Role.member, None)
                client.headers.update(token(app, "root"))
            return Hostile(client, tmp_path / "templates", settings.home, tmp_path)

        yield make


def token(app: Any, account: str) -> dict[str, str]:
    scopes = ["read", "write", "admin"] if account == "root" else ["read", "write"]
    _info, secret = app.state.identity.create_token(account, "test", scopes)
    return {"authorization": f"Bearer {secret}"}


@pytest.fixture
def hostile(make_hostile) -> Hostile:
    return make_hostile()


# -- 1. escaping the expression sandbox ----------------------------------------------------

# (expression, what the error says); {data} is what the expression can see (``values`` in
# a skeleton file, ``parameters`` in a step input), {canary} a file it would create.
SANDBOX_ESCAPES = [
    ("''.__class__.__mro__[1].__subclasses__()", "'__class__' of a str is not allowed"),
    ("self.__init__.__globals__", "'__init__' of a TemplateReference is not allowed"),
    (
        "self.__init__.__globals__.__builtins__.open('{canary}', 'w')",
        "'__init__' of a TemplateReference is not allowed",
    ),
    ("cycler.__init__.__globals__.os.system('touch {canary}')", "cycler is not defined"),
    ("lipsum.__globals__.os.popen('touch {canary}').read()", "lipsum is not defined"),
    ("request", "request is not defined"),
    ("config", "config is not defined"),
    ("{data}.__class__", "access to attribute '__class__' of a"),
    ("''|attr('__class__')", "'__class__' of a str is not allowed"),
    ("{data}|attr('__class__')|attr('__base__')", "access to attribute '__class__' of a"),
    ("['x']|map('attr', '__class__')|list", "'__class__' of a str is not allowed"),
    ("(()|select|string)[10]", "a generator cannot be turned into text"),
    ("(range|string)[1:9]", "a function cannot be turned into text"),
    ("{data}.items|string", "cannot be turned into text"),
    ("range ~ ''", "a function cannot be turned into text"),
    ("[range]|join", "a function cannot be turned into text"),
    ("{{'f': range}}|dump", "a function cannot be turned into text"),
    ("'{{0.__class__}}'.format({data})", "method 'format' of a str is not available"),
    ("'%s' % {data}", "'%' does not format strings"),
]


def _escape_expressions(data: str, canary: Path) -> list[tuple[str, str]]:
    return [
        ("${{ " + expression.format(data=data, canary=canary) + " }}", expected)
        for expression, expected in SANDBOX_ESCAPES
    ]


def _assert_nothing_leaked(hostile: Hostile, task: dict[str, Any]) -> None:
    shown = json.dumps(task) + "\n".join(hostile.log(task["id"]))
    for leak in ("<class", " object at 0x", "<function", "<built-in", "<generator", "<module"):
        assert leak not in shown, shown


@sqlite_only
def test_sandbox_escapes_in_a_skeleton_file_fail_their_task(hostile, tmp_path):
    canary = tmp_path / "canary"
    cases = _escape_expressions("values", canary)
    for index, (expression, _expected) in enumerate(cases):
        hostile.register(
            f"escape-file-{index}",
            [fetch({"name": "x"})],
            files={"README.md": f"# hello\n{expression}\n"},
        )
    before = hostile.state()

    ids = [hostile.start({}, f"escape-file-{index}")["id"] for index in range(len(cases))]

    tasks = [hostile.wait(task_id) for task_id in ids]  # all ended: no task folder is left
    for task, (_expression, expected) in zip(tasks, cases, strict=True):
        hostile.assert_failed_cleanly(task, before, "step fetch: ", expected)
        _assert_nothing_leaked(hostile, task)
    assert not canary.exists()
    hostile.assert_worker_fine()


@sqlite_only
def test_sandbox_escapes_in_a_step_input_fail_their_task(hostile, tmp_path):
    canary = tmp_path / "canary"
    cases = _escape_expressions("parameters", canary)
    for index, (expression, _expected) in enumerate(cases):
        # alone, so it is evaluated as a value (a step input keeps an expression's type)
        hostile.register(f"escape-input-{index}", [say(expression)])
    before = hostile.state()

    ids = [hostile.start({}, f"escape-input-{index}")["id"] for index in range(len(cases))]

    tasks = [hostile.wait(task_id) for task_id in ids]  # all ended: no task folder is left
    for task, (_expression, expected) in zip(tasks, cases, strict=True):
        hostile.assert_failed_cleanly(task, before, "step say: ", expected)
        _assert_nothing_leaked(hostile, task)
    assert not canary.exists()
    hostile.assert_worker_fine()


# cookiecutterCompat skeletons read Jinja's own syntax, statements included
COOKIECUTTER_ESCAPES = [
    ("{{ self.__init__.__globals__ }}", "'__init__' of a TemplateReference is not allowed"),
    ("{{ cycler.__init__.__globals__.os.system('touch {canary}') }}", "cycler is not defined"),
    ("{% for x in [1] %}{{ loop|string }}{% endfor %}", "a LoopContext cannot be turned into"),
    ("{{ (()|select|string)[10] }}", "a generator cannot be turned into text"),
    ("{% set a = 'a' * 999999 %}{% set b = a ~ a %}{{ b|length }}", "concatenation would be"),
    ("{% include '/etc/passwd' %}", "no loader"),
    ("{% import 'os' as os %}{{ os.system('touch {canary}') }}", "no loader"),
    ("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "nests or recurses too deeply"),
]


@sqlite_only
def test_sandbox_escapes_in_a_cookiecutter_skeleton_fail_their_task(hostile, tmp_path):
    canary = tmp_path / "canary"
    for index, (source, _expected) in enumerate(COOKIECUTTER_ESCAPES):
        hostile.register(
            f"escape-cc-{index}",
            [fetch({"name": "x"}, cookiecutterCompat=True)],
            files={
                "README.md": "# {{ cookiecutter.name }}\n" + source.replace("{canary}", str(canary))
            },
        )
    before = hostile.state()

    ids = [hostile.start({}, f"escape-cc-{i}")["id"] for i in range(len(COOKIECUTTER_ESCAPES))]

    tasks = [hostile.wait(task_id) for task_id in ids]
    for task, (_source, expected) in zip(tasks, COOKIECUTTER_ESCAPES, strict=True):
        hostile.assert_failed_cleanly(task, before, "step fetch: ", expected)
        _assert_nothing_leaked(hostile, task)
    assert not canary.exists()
    hostile.assert_worker_fine()


def test_a_sandbox_escape_fails_its_task_and_the_worker_carries_on(hostile, tmp_path):
    canary = tmp_path / "canary"
    hostile.register(
        "escape",
        [
            fetch({"name": "x"}),
            say("${{ cycler.__init__.__globals__.os.system('touch " + str(canary) + "') }}"),
        ],
        files={"README.md": "${{ values.name }}\n"},
    )

    task = hostile.run_hostile({}, "escape", "step say: cycler is not defined")

    assert [step["status"] for step in task["steps"]] == ["completed", "failed"]
    assert not canary.exists()
    hostile.assert_worker_fine()


# -- 2. CPU bombs ------------------------------------------------------------------------------

CPU_BOMBS = [
    ("${{ range(10**9) | list }}", "ranges larger than MAX_RANGE (100000)"),
    ("${{ 'a' * 10**9 }}", "repetition would be 1000000000 characters"),
    ("${{ (2**30000) * (2**30000) * (2**30000) }}", "the product is too large a number"),
    ("${{ (2**30000) ** 3 }}", "the power is too large a number"),
    ("${{ ('a' * 999999) ~ ('b' * 999999) }}", "concatenation would be 1999998 characters"),
    (
        "${{ range(100000)" + " | map('abs')" * 50 + " | sum }}",
        "template rendering took longer than 2 s",
    ),
    (
        "${{ range(100000) | map('center', 100000) | map('wordcount') | list | length }}",
        "the template's filters produced more than 20000000 characters",
    ),
]
NESTED_LOOPS = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
# under 2 MB, but compiling it would take Jinja half a minute and a gigabyte
MANY_EXPRESSIONS = "${{ values.n }}\n" * 100_000


def test_cpu_bombs_fail_their_task_quickly_and_the_worker_carries_on(hostile):
    for index, (expression, _expected) in enumerate(CPU_BOMBS):
        hostile.register(f"bomb-{index}", [say(expression)])
    hostile.register(
        "loops", [fetch({"n": 1}, cookiecutterCompat=True)], files={"loops.txt": NESTED_LOOPS}
    )
    hostile.register("many", [fetch({"n": 1})], files={"many.txt": MANY_EXPRESSIONS})
    slow = "template rendering took longer than 2 s"
    cases = [*CPU_BOMBS, (NESTED_LOOPS, slow), (MANY_EXPRESSIONS, slow)]
    names = [f"bomb-{index}" for index in range(len(CPU_BOMBS))] + ["loops", "many"]
    before = hostile.state()

    ids = [hostile.start({}, name)["id"] for name in names]

    tasks = [hostile.wait(task_id) for task_id in ids]
    for task, (_source, expected) in zip(tasks, cases, strict=True):
        hostile.assert_failed_cleanly(task, before, expected)
        assert _seconds(task) < 10, task
    hostile.assert_worker_fine()


def _seconds(task: dict[str, Any]) -> float:
    started, finished = (datetime.fromisoformat(task[key]) for key in ("startedAt", "finishedAt"))
    return (finished - started).total_seconds()


# -- 3. memory bombs ---------------------------------------------------------------------------


def _rss_mb() -> float:
    """The resident memory of this process: the server, with its job queue's workers."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


MEMORY_BOMBS = [
    # a million characters a hundred thousand times, one at a time
    ("${{ range(100000) | map('center', 999999) | list | length }}", "produced more than"),
    ("${{ ('a ' * 400000) | wordwrap(1, true, 'b' * 2000) | length }}", "wordwrap would be"),
    ("${{ ('\\n' * 100000) | indent(100000, blank=true) | length }}", "indent would be"),
    ("${{ ('&' * 999999) | forceescape | forceescape | forceescape | length }}", "produced"),
]


@sqlite_only
def test_memory_bombs_are_stopped_by_the_sandbox(hostile):
    for index, (expression, _expected) in enumerate(MEMORY_BOMBS):
        hostile.register(f"memory-{index}", [say(expression)])
    before = hostile.state()
    rss = _rss_mb()

    ids = [hostile.start({}, f"memory-{index}")["id"] for index in range(len(MEMORY_BOMBS))]

    tasks = [hostile.wait(task_id) for task_id in ids]
    for task, (_expression, expected) in zip(tasks, MEMORY_BOMBS, strict=True):
        hostile.assert_failed_cleanly(task, before, expected)
    assert _rss_mb() - rss < 50
    hostile.assert_worker_fine()


@sqlite_only
def test_a_task_over_its_memory_limit_fails_and_the_server_is_unaffected(make_hostile):
    # a skeleton file within the size limits, but more than the task may hold in memory
    hostile = make_hostile(
        task_memory_mb=256, max_file_bytes=400 * 1024 * 1024, max_workspace_bytes=1024**3
    )
    # a normal task fits in the smallest memory limit, whatever the file limit (reading a
    # skeleton file once asked for max_file_bytes of memory, whatever the file's size)
    hostile.assert_worker_fine()
    folder = hostile.register("big", [fetch({"name": "x"})])
    with open(folder / "skeleton" / "big.bin", "wb") as handle:
        handle.truncate(300 * 1024 * 1024)  # sparse: made at once, takes no disk
    rss = _rss_mb()

    task = hostile.run_hostile({}, "big", "more than 256 MB of memory", timeout=120)
    assert not any(step["status"] == "completed" for step in task["steps"])

    assert _rss_mb() - rss < 50
    hostile.assert_worker_fine()


# -- 4. the wall-clock limit ----------------------------------------------------------------


def test_a_task_over_its_time_limit_is_killed_and_failed(make_hostile):
    hostile = make_hostile(task_timeout_seconds=5)
    hostile.register(
        "sleepy",
        [
            fetch({"name": "x"}),
            {"id": "wait", "action": "debug:wait", "input": {"seconds": 60}},
            say("never"),
        ],
    )
    started = time.monotonic()

    task = hostile.run_hostile({}, "sleepy", "longer than 5 s", "task_timeout_seconds")

    assert time.monotonic() - started < 12
    assert "never" not in hostile.log(task["id"])
    hostile.assert_worker_fine()


@sqlite_only
def test_a_killed_task_leaves_no_folder_behind(make_hostile):
    hostile = make_hostile(task_timeout_seconds=5)
    hostile.register(
        "sleepy", [fetch({"name": "x"}), {"action": "debug:wait", "input": {"seconds": 60}}]
    )

    task = hostile.run_hostile({}, "sleepy", "longer than 5 s")

    assert not Path(hostile.folder(task)).exists(), os.listdir(hostile.folder(task))


# -- 5. paths that lead out of the workspace or the template -------------------------------


def _path_cases(outside: Path) -> list[tuple[str, list[dict[str, Any]], dict[str, str], str]]:
    """(template, steps, skeleton files, what the error says); the answer ``name`` is
    given as ``../../evil`` to every template."""
    named = {"${{ values.name }}": "evil\n"}
    renamed = {"id": "move", "action": "fs:rename", "input": {"files": [{"from": "keep.txt"}]}}
    return [
        ("up-target", [fetch({"n": 1}, targetPath="../escape")], {}, "'../escape' contains '..'"),
        ("abs-target", [fetch({"n": 1}, targetPath=str(outside))], {}, "is absolute"),
        (
            "rename-up",
            [
                fetch({"n": 1}),
                {**renamed, "input": {"files": [{"from": "keep.txt", "to": "../x"}]}},
            ],
            {},
            "'../x' contains '..'",
        ),
        (
            "rename-abs",
            [
                fetch({"n": 1}),
                {**renamed, "input": {"files": [{"from": "keep.txt", "to": str(outside)}]}},
            ],
            {},
            "is absolute",
        ),
        ("named-up", [fetch({"name": "${{ parameters.name }}"})], named, "contains '..'"),
        ("named-abs", [fetch({"name": str(outside)})], named, "is absolute"),
        ("plain-up", [_plain_file("../../etc/passwd")], {}, "'../../etc/passwd' contains '..'"),
        ("plain-abs", [_plain_file("/etc/passwd")], {}, "url '/etc/passwd' is absolute"),
        ("url-up", [{"action": "fetch:template", "input": {"url": "../plain"}}], {}, "'..'"),
        ("url-abs", [{"action": "fetch:template", "input": {"url": "/etc"}}], {}, "absolute"),
    ]


def _plain_file(url: str) -> dict[str, Any]:
    return {"action": "fetch:plain:file", "input": {"url": url, "targetPath": "copied"}}


@sqlite_only
def test_paths_that_lead_out_are_refused_and_nothing_is_written_outside(hostile, tmp_path):
    outside = tmp_path / "outside"
    cases = _path_cases(outside)
    for name, steps, files, _expected in cases:
        hostile.register(name, steps, {"name": {"type": "string"}}, files or None)
    before = hostile.state()

    ids = [hostile.start({"name": "../../evil"}, name)["id"] for name, *_ in cases]

    tasks = [hostile.wait(task_id) for task_id in ids]
    for task, (_name, _steps, _files, expected) in zip(tasks, cases, strict=True):
        hostile.assert_failed_cleanly(task, before, expected)
    assert not outside.exists()
    assert not (hostile.tasks / "evil").exists() and not (hostile.tasks / "escape").exists()
    hostile.assert_worker_fine()


# -- 6. symbolic links in the template ---------------------------------------------------------


@sqlite_only
def test_links_in_a_skeleton_are_refused_before_anything_is_written(hostile, tmp_path):
    secret = write(tmp_path / "elsewhere" / "secret.txt", "not for templates\n")
    links = {
        "to-passwd": Path("/etc/passwd"),
        "to-folder": secret.parent,
        "to-inside": Path("a-file.txt"),  # relative, pointing inside the skeleton
    }
    for name, target in links.items():
        folder = hostile.register(
            f"link-{name}", [fetch({"n": 1})], files={"a-file.txt": "a\n", "z-file.txt": "z\n"}
        )
        (folder / "skeleton" / "m-link").symlink_to(target)
    folder = hostile.register("link-url", [_plain_file("secret-link")])
    (folder / "secret-link").symlink_to(secret)
    before = hostile.state()

    ids = [hostile.start({}, f"link-{name}")["id"] for name in [*links, "url"]]

    tasks = [hostile.wait(task_id) for task_id in ids]
    for task in tasks[:-1]:
        hostile.assert_failed_cleanly(
            task, before, "the template's m-link is a symbolic link; templates may not contain"
        )
        assert not any("wrote" in line for line in hostile.log(task["id"]))  # not a.txt either
    hostile.assert_failed_cleanly(tasks[-1], before, "url 'secret-link' leads outside")
    assert secret.read_text() == "not for templates\n"
    hostile.assert_worker_fine()


# -- 7. oversized template folders -------------------------------------------------------------


def test_a_template_with_a_file_over_the_size_limit_is_refused(make_hostile):
    hostile = make_hostile(max_file_bytes=1024 * 1024)
    folder = hostile.register("huge", [fetch({"n": 1})])
    with open(folder / "skeleton" / "huge.bin", "wb") as handle:
        handle.truncate(2 * 1024 * 1024)  # sparse: made at once

    hostile.run_hostile(
        {},
        "huge",
        "skeleton/huge.bin is 2097152 bytes",
        "at most 1048576 (scaffolder.max_file_bytes)",
    )

    hostile.assert_worker_fine()


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


@sqlite_only
def test_a_hosted_template_with_a_huge_file_is_refused_before_it_is_read(make_hostile, tmp_path):
    hostile = make_hostile(max_file_bytes=1024 * 1024)
    hostile.app.state.git.create("checkout-team", "huge-template", "bob")
    work = tmp_path / "huge-template"
    write(work / "template.yaml", template_yaml("huge-hosted", [fetch({"n": 1})]))
    write(work / "skeleton" / "keep.txt", "kept\n")
    with open(work / "skeleton" / "huge.bin", "wb") as handle:
        handle.truncate(200 * 1024 * 1024)  # git keeps it in a few hundred kilobytes
    bare = hostile.app.state.git.root / "checkout-team" / "huge-template.git"
    git("init", "-q", "-b", "main", cwd=work)
    git("add", "-A", cwd=work)
    git("-c", "user.name=T", "-c", "user.email=t@x", "commit", "-qm", "huge", cwd=work)
    git("push", "-q", str(bare), "HEAD:refs/heads/main", cwd=work)
    hostile.app.state.git.import_spool()  # the push is recorded now, not during the task
    public = hostile.app.state.settings.public_url
    url = f"{public}/repos/checkout-team/huge-template/blob/template.yaml?ref=main"
    response = hostile.client.post("/api/v1/catalog/locations", json={"type": "url", "target": url})
    assert response.status_code == 201, response.text
    message = "the template's skeleton/huge.bin is 209715200 bytes; a template file may have at"
    Path("/proc/self/clear_refs").write_text("5")  # the peak resident memory starts again here
    peak = _peak_rss_mb()

    # the server records the template's version when asked for its projects
    projects = hostile.client.get("/api/v1/scaffolder/templates/default/huge-hosted/projects")

    assert projects.status_code == 400, projects.text
    assert message in projects.json()["detail"]
    assert _peak_rss_mb() - peak < 50  # the file was never read into the server's memory
    hostile.run_hostile({}, "huge-hosted", message)
    hostile.assert_worker_fine()


@sqlite_only
def test_a_template_with_too_many_files_is_refused(make_hostile):
    hostile = make_hostile(max_workspace_files=10)
    hostile.register("many", [fetch({"n": 1})], files={f"f{i}.txt": "x\n" for i in range(20)})

    hostile.run_hostile({}, "many", "holds 21 files", "scaffolder.max_workspace_files")

    hostile.assert_worker_fine()


# -- 8. publishing over someone's repository ---------------------------------------------------


def _repository(hostile: Hostile, owner: str, name: str) -> tuple[str, str]:
    """The repository's main commit and every file of it with its blob hash."""
    bare = hostile.app.state.git.root / owner / f"{name}.git"
    head = git("--git-dir", str(bare), "rev-parse", "refs/heads/main").strip()
    return head, git("--git-dir", str(bare), "ls-tree", "-r", "refs/heads/main")


def test_publishing_over_an_existing_repository_is_refused_for_every_team(make_hostile):
    hostile = make_hostile(signed_in=True)
    hostile.template("tiny", body=TEMPLATE.format(name="tiny"))
    bob, dave = token(hostile.app, "bob"), token(hostile.app, "dave")
    with hostile.signed_in(dave):
        made = hostile.run({"name": "shared-lib", "owner": "catalog-team"}, "tiny")
    with hostile.signed_in(bob):
        own = hostile.run({"name": "own-svc", "owner": "checkout-team"}, "tiny")
    assert (made["status"], own["status"]) == ("completed", "completed"), (made, own)
    theirs, ours = (
        _repository(hostile, "catalog-team", "shared-lib"),
        _repository(hostile, "checkout-team", "own-svc"),
    )

    with hostile.signed_in(bob):
        over_theirs = hostile.run_hostile(
            {"name": "shared-lib", "owner": "catalog-team", "port": 1},
            "tiny",
            "step publish: ",
            "needs membership of group:default/catalog-team",
        )
        new_in_theirs = hostile.run_hostile(
            {"name": "new-lib", "owner": "catalog-team"}, "tiny", "group:default/catalog-team"
        )
        over_ours = hostile.run_hostile(
            {"name": "own-svc", "owner": "checkout-team", "port": 2},
            "tiny",
            "the repository checkout-team/own-svc exists already",
        )

    assert _repository(hostile, "catalog-team", "shared-lib") == theirs
    assert _repository(hostile, "checkout-team", "own-svc") == ours
    assert [t["steps"][2]["status"] for t in (over_theirs, new_in_theirs, over_ours)] == [
        "failed"
    ] * 3
    hostile.assert_worker_fine()


# -- 9. answers that do not fit the form -------------------------------------------------------

FORM = {
    "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{1,30}$"},
    "port": {"type": "integer"},
    "tier": {"type": "string", "enum": ["gold", "silver"]},
    "service": {
        "type": "object",
        "required": ["replicas"],
        "properties": {"replicas": {"type": "integer", "minimum": 1}},
    },
    "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}},
}


def test_answers_that_do_not_fit_get_per_field_errors_and_no_task(hostile):
    hostile.register("form", [say("${{ parameters.name }}")], FORM, required=["name", "tier"])

    def create(values: Any) -> Any:
        return hostile.client.post(
            TASKS, json={"templateRef": "template:default/form", "values": values}
        )

    wrong = create(
        {
            "name": "Bad Name",
            "port": "x",
            "tier": "bronze",
            "service": {"replicas": 0},
            "tags": ["ok", "far-too-long"],
        }
    )
    assert wrong.status_code == 422, wrong.text
    assert wrong.headers["content-type"].startswith("application/problem+json")
    assert wrong.json()["errors"] == {
        "name": ["must match the pattern ^[a-z][a-z0-9-]{1,30}$"],
        "port": ["must be of type integer"],
        "tier": ["must be one of: gold, silver"],
        "service.replicas": ["must be at least 1"],
        "tags[1]": ["must be at most 5 characters long"],
    }
    missing = create({"service": {}})
    assert missing.status_code == 422, missing.text
    assert missing.json()["errors"] == {
        "name": ["is required"],
        "tier": ["is required"],
        "service.replicas": ["is required"],
    }
    for not_an_object in ([], "values", 42, None):
        refused = create(not_an_object)
        assert refused.status_code == 400, refused.text
        assert refused.json()["errors"] == [
            {"location": "body.values", "message": "Input should be a valid dictionary"}
        ]
    huge = create({"name": "x" * (5 * 1024 * 1024)})
    assert huge.status_code == 413, huge.text
    assert "over the limit" in huge.json()["detail"]
    assert hostile.client.get(TASKS).json()["items"] == []
    hostile.assert_worker_fine()


# -- 10. too many steps, too many items --------------------------------------------------------


def test_a_step_over_too_many_items_fails_quickly(hostile):
    hostile.register(
        "each",
        [
            {
                "id": "loop",
                "action": "debug:log",
                "each": "${{ range(100000) | list }}",
                "input": {"message": "${{ each.value }}"},
            }
        ],
    )
    started = time.monotonic()

    task = hostile.run_hostile({}, "each", "step loop: each gives 100000 items; at most 1000")

    assert time.monotonic() - started < 10
    assert not any(line.startswith("each:") for line in hostile.log(task["id"]))
    hostile.assert_worker_fine()


@sqlite_only
def test_a_template_with_ten_thousand_steps_is_refused_quickly(hostile):
    hostile.register("long", [say("hi", f"s{index}") for index in range(10_000)])
    before = hostile.state()

    response = hostile.client.post(
        TASKS, json={"templateRef": "template:default/long", "values": {}}
    )

    # refused when the catalog read it: it never became a template anyone can run
    assert response.status_code == 404, response.text
    locations = hostile.client.get("/api/v1/catalog/locations").json()
    errors = json.dumps(
        [hostile.client.get(f"/api/v1/catalog/locations/{item['id']}").json() for item in locations]
    )
    assert "a template may have at most 200 steps, not 10000" in errors
    assert hostile.state() == before
    hostile.assert_worker_fine()
