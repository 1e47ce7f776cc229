"""The scaffolder's built-in actions and the workspace they write into: what a template
step produces, and the hostile inputs (paths out, links, huge and many files) it refuses."""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy
import pytest

from pavedroad.core import hookspecs
from pavedroad.scaffolder import actions as actions_module
from pavedroad.scaffolder.actions import (
    BUILTIN_ACTIONS,
    Action,
    ActionCancelled,
    ActionContext,
    ActionRegistry,
    UnknownActionError,
)
from pavedroad.scaffolder.workspace import (
    ActionError,
    UnsafePathError,
    Workspace,
    WorkspaceLimitError,
    WorkspaceLimits,
)

_EXPRESSION = re.compile(r"\$\{\{\s*values\.(\w+)\s*\}\}")


def fake_render(text: str, values: Mapping[str, Any]) -> str:
    """Stands in for the ``${{ }}`` sandbox: replaces ``${{ values.x }}`` only."""
    return _EXPRESSION.sub(lambda m: str(values[m.group(1)]), text)


def fake_cookiecutter(text: str, values: Mapping[str, Any]) -> str:
    return re.sub(r"\{\{\s*cookiecutter\.(\w+)\s*\}\}", lambda m: str(values[m.group(1)]), text)


REGISTRY = ActionRegistry(BUILTIN_ACTIONS)


class Harness:
    """A template folder, a workspace inside an ``outer`` folder, and the log lines."""

    def __init__(self, tmp_path: Path, limits: WorkspaceLimits | None = None) -> None:
        self.template_dir = tmp_path / "template"
        self.template_dir.mkdir()
        self.outer = tmp_path / "outer"
        self.outer.mkdir()
        (self.outer / "precious.txt").write_text("keep me")
        self.workspace = Workspace(self.outer / "workspace", limits or WorkspaceLimits())
        self.lines: list[str] = []
        self.cancelled = False
        self.cookiecutter = False

    def skeleton(self, files: dict[str, str | bytes], folder: str = "skeleton") -> None:
        for name, content in files.items():
            path = self.template_dir / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content)

    def run(self, action_id: str, step_input: dict[str, Any]) -> dict[str, Any]:
        assert REGISTRY.validate_input(action_id, step_input) == []
        ctx = ActionContext(
            input=step_input,
            workspace=self.workspace,
            log=self.lines.append,
            render_text=fake_render,
            render_path=fake_render,
            template_dir=self.template_dir,
            cancelled=lambda: self.cancelled,
            render_cookiecutter=fake_cookiecutter if self.cookiecutter else None,
        )
        return REGISTRY.get(action_id).run(ctx)

    def files(self) -> dict[str, str]:
        return {
            name: self.workspace.read(name).decode("utf-8", "replace")
            for name, _ in self.workspace.tree()
        }

    def outside(self) -> list[str]:
        """Everything under the temporary folder that is not in the workspace."""
        root = self.outer.parent
        return sorted(
            str(path.relative_to(root))
            for path in root.rglob("*")
            if self.workspace.root not in (path, *path.parents)
        )


@pytest.fixture
def harness(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


# --- fetch:template ----------------------------------------------------------------------


def test_fetch_template_renders_contents_and_names_under_target_path(harness: Harness) -> None:
    harness.skeleton(
        {
            "README.md": "# ${{ values.name }}\n",
            "src/${{ values.name }}/__init__.py": "NAME = '${{ values.name }}'\n",
            "empty/.keep": "",
        }
    )
    result = harness.run(
        "fetch:template",
        {"url": "./skeleton", "targetPath": "service", "values": {"name": "billing"}},
    )
    assert result == {}
    assert harness.files() == {
        "service/README.md": "# billing\n",
        "service/empty/.keep": "",
        "service/src/billing/__init__.py": "NAME = 'billing'\n",
    }
    assert any("wrote 3 file(s)" in line for line in harness.lines)


def test_fetch_template_keeps_existing_files_unless_replace(harness: Harness) -> None:
    harness.skeleton({"a.txt": "new ${{ values.x }}"})
    harness.workspace.write_text("a.txt", "old")
    harness.run("fetch:template", {"url": "skeleton", "values": {"x": 1}})
    assert harness.files() == {"a.txt": "old"}
    harness.run("fetch:template", {"url": "skeleton", "values": {"x": 1}, "replace": True})
    assert harness.files() == {"a.txt": "new 1"}


def test_copy_without_templating_copies_matching_files_as_they_are(harness: Harness) -> None:
    harness.skeleton(
        {
            "app.py": "name = '${{ values.name }}'",
            "static/${{ values.name }}.js": "const x = `${{ values.name }}`;",
            "static/deep/.hidden": "${{ values.name }}",
        }
    )
    harness.run(
        "fetch:template",
        {"url": "skeleton", "values": {"name": "web"}, "copyWithoutTemplating": ["static/**"]},
    )
    assert harness.files() == {
        "app.py": "name = 'web'",
        "static/${{ values.name }}.js": "const x = `${{ values.name }}`;",
        "static/deep/.hidden": "${{ values.name }}",
    }


@pytest.mark.parametrize(("option", "extension"), [(True, ".njk"), (".tmpl", ".tmpl")])
def test_template_file_extension_templates_only_those_files(
    harness: Harness, option: bool | str, extension: str
) -> None:
    harness.skeleton(
        {
            f"${{{{ values.name }}}}.py{extension}": "print('${{ values.name }}')",
            "${{ values.name }}.txt": "raw ${{ values.name }}",
        }
    )
    harness.run(
        "fetch:template",
        {"url": "skeleton", "values": {"name": "tool"}, "templateFileExtension": option},
    )
    assert harness.files() == {
        "tool.py": "print('tool')",
        "tool.txt": "raw ${{ values.name }}",
    }


def test_template_file_extension_and_copy_without_templating_exclude_each_other(
    harness: Harness,
) -> None:
    harness.skeleton({"a": "x"})
    with pytest.raises(ActionError, match="cannot be used together"):
        harness.run(
            "fetch:template",
            {"url": "skeleton", "templateFileExtension": True, "copyWithoutTemplating": ["a"]},
        )


def test_binary_files_are_copied_without_templating(harness: Harness) -> None:
    payload = b"\x89PNG\x00\x01${{ values.name }}\xff"
    harness.skeleton({"logo-${{ values.name }}.png": payload, "run.sh": "echo hi"})
    (harness.template_dir / "skeleton" / "run.sh").chmod(0o755)
    harness.run("fetch:template", {"url": "skeleton", "values": {"name": "x"}})
    assert harness.workspace.read("logo-x.png") == payload
    assert os.stat(harness.workspace.path("run.sh")).st_mode & 0o777 == 0o755


def test_cookiecutter_compat_uses_the_runners_cookiecutter_renderer(harness: Harness) -> None:
    harness.skeleton({"{{ cookiecutter.name }}.md": "hi {{ cookiecutter.name }}"})
    step = {"url": "skeleton", "values": {"name": "cc"}, "cookiecutterCompat": True}
    with pytest.raises(ActionError, match="cookiecutterCompat is not supported"):
        harness.run("fetch:template", step)
    harness.cookiecutter = True
    harness.run("fetch:template", step)
    assert harness.files() == {"cc.md": "hi cc"}


def test_fetch_from_a_url_or_outside_the_template_is_refused(harness: Harness) -> None:
    with pytest.raises(ActionError, match="not supported yet"):
        harness.run("fetch:template", {"url": "https://github.com/acme/skeleton"})
    with pytest.raises(UnsafePathError, match=r"'\.\.'"):
        harness.run("fetch:template", {"url": "../outer"})
    with pytest.raises(ActionError, match="not a folder"):
        harness.run("fetch:template", {"url": "missing"})


# --- hostile paths ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "target_path",
    ["../escaped", "a/../../escaped", "/tmp/escaped", "C:/escaped", "a\\..\\b", "a\x00b", "a\nb"],
)
def test_target_paths_leaving_the_workspace_are_refused(harness: Harness, target_path: str) -> None:
    harness.skeleton({"a.txt": "a"})
    before = harness.outside()
    with pytest.raises(UnsafePathError):
        harness.run("fetch:template", {"url": "skeleton", "targetPath": target_path})
    assert harness.outside() == before
    assert harness.workspace.tree() == []


@pytest.mark.parametrize("name", ["../../x", "/etc/evil", "ok/../../x"])
def test_templated_file_names_leaving_the_workspace_are_refused(
    harness: Harness, name: str
) -> None:
    harness.skeleton({"${{ values.name }}": "pwned"})
    before = harness.outside()
    with pytest.raises(UnsafePathError):
        harness.run("fetch:template", {"url": "skeleton", "values": {"name": name}})
    assert harness.outside() == before
    assert (harness.outer / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("link_target", ["inside.txt", "../../outer/precious.txt", "/etc/passwd"])
def test_symlinks_in_the_skeleton_are_refused_before_anything_is_written(
    harness: Harness, link_target: str
) -> None:
    harness.skeleton({"a.txt": "a", "inside.txt": "b"})
    (harness.template_dir / "skeleton" / "link").symlink_to(link_target)
    before = harness.outside()
    with pytest.raises(UnsafePathError, match="symbolic link"):
        harness.run("fetch:template", {"url": "skeleton"})
    assert harness.workspace.tree() == []
    assert harness.outside() == before


def test_a_symlinked_folder_in_the_skeleton_is_refused(harness: Harness, tmp_path: Path) -> None:
    harness.skeleton({"a.txt": "a"})
    (harness.template_dir / "skeleton" / "etc").symlink_to(tmp_path / "outer")
    with pytest.raises(UnsafePathError, match="etc is a symbolic link"):
        harness.run("fetch:plain", {"url": "skeleton"})
    assert harness.workspace.tree() == []


def test_workspace_refuses_paths_through_a_link_that_leads_out(harness: Harness) -> None:
    (harness.workspace.root / "out").symlink_to(harness.outer)
    with pytest.raises(UnsafePathError, match="outside the workspace"):
        harness.workspace.write_text("out/precious.txt", "overwritten")
    assert (harness.outer / "precious.txt").read_text() == "keep me"


def test_rename_targets_leaving_the_workspace_are_refused(harness: Harness) -> None:
    harness.workspace.write_text("a.txt", "a")
    before = harness.outside()
    for to in ("../a.txt", "/tmp/a.txt", "sub/../../a.txt"):
        with pytest.raises(UnsafePathError):
            harness.run("fs:rename", {"files": [{"from": "a.txt", "to": to}]})
    assert harness.outside() == before
    assert harness.files() == {"a.txt": "a"}


# --- limits ----------------------------------------------------------------------------


def test_a_huge_skeleton_file_is_refused_and_nothing_is_half_written(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WorkspaceLimits(max_file_bytes=1000))
    harness.skeleton({"big.bin": b"\x00" * 5000})
    with pytest.raises(WorkspaceLimitError, match="larger than the 1000 bytes"):
        harness.run("fetch:template", {"url": "skeleton"})
    assert list(harness.workspace.root.rglob("*")) == []


def test_a_rendered_file_over_the_limit_is_refused_and_nothing_is_half_written(
    tmp_path: Path,
) -> None:
    harness = Harness(tmp_path, WorkspaceLimits(max_file_bytes=1000))
    harness.skeleton({"small.txt": "${{ values.blob }}"})
    with pytest.raises(WorkspaceLimitError, match=r"small\.txt is larger"):
        harness.run("fetch:template", {"url": "skeleton", "values": {"blob": "x" * 5000}})
    assert [p for p in harness.workspace.root.rglob("*") if p.is_file()] == []


def test_too_many_files_are_refused(tmp_path: Path) -> None:
    harness = Harness(tmp_path, WorkspaceLimits(max_files=3))
    harness.skeleton({f"f{i}.txt": str(i) for i in range(5)})
    with pytest.raises(WorkspaceLimitError, match="at most 3 files"):
        harness.run("fetch:template", {"url": "skeleton"})
    assert len(harness.workspace.tree()) == 3


def test_total_bytes_are_limited_and_replacing_a_file_counts_once(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws", WorkspaceLimits(max_total_bytes=100))
    workspace.write_bytes("a", b"x" * 60)
    workspace.write_bytes("a", b"y" * 90, overwrite=True)
    with pytest.raises(WorkspaceLimitError, match="at most 100 bytes in all"):
        workspace.write_bytes("b", b"z" * 20)
    workspace.delete("a")
    workspace.write_bytes("b", b"z" * 100)
    assert workspace.tree() == [("b", 100)]


# --- fetch:plain, fetch:plain:file -----------------------------------------------------------


def test_fetch_plain_copies_a_folder_without_templating(harness: Harness) -> None:
    harness.skeleton({"${{ values.x }}/a.txt": "${{ values.x }}"}, folder="docs")
    harness.run("fetch:plain", {"url": "docs", "targetPath": "site"})
    assert harness.files() == {"site/${{ values.x }}/a.txt": "${{ values.x }}"}


def test_fetch_plain_file_copies_one_file(harness: Harness) -> None:
    harness.skeleton({"LICENSE": "Apache"}, folder="common")
    harness.run("fetch:plain:file", {"url": "common/LICENSE", "targetPath": "repo/LICENSE"})
    assert harness.files() == {"repo/LICENSE": "Apache"}
    with pytest.raises(UnsafePathError):
        harness.run("fetch:plain:file", {"url": "common/LICENSE", "targetPath": "../LICENSE"})


# --- fs:rename, fs:delete --------------------------------------------------------------------


def test_fs_rename_moves_files_and_respects_overwrite(harness: Harness) -> None:
    harness.workspace.write_text("a.txt", "a")
    harness.workspace.write_text("b.txt", "b")
    with pytest.raises(ActionError, match="already exists"):
        harness.run("fs:rename", {"files": [{"from": "a.txt", "to": "b.txt"}]})
    assert harness.files() == {"a.txt": "a", "b.txt": "b"}

    harness.run("fs:rename", {"files": [{"from": "a.txt", "to": "b.txt", "overwrite": True}]})
    assert harness.files() == {"b.txt": "a"}

    harness.run("fs:rename", {"files": [{"from": "b.txt", "to": "deep/new/c.txt"}]})
    assert harness.files() == {"deep/new/c.txt": "a"}

    with pytest.raises(ActionError, match="does not exist"):
        harness.run("fs:rename", {"files": [{"from": "nope", "to": "x"}]})


def test_fs_delete_removes_what_the_globs_match(harness: Harness) -> None:
    for name in ("keep.py", "a.pyc", "pkg/b.pyc", "pkg/c.py", "build/out.o", ".env"):
        harness.workspace.write_text(name, name)
    harness.run("fs:delete", {"files": ["**/*.pyc", "build", ".env", "nothing-*"]})
    assert sorted(harness.files()) == ["keep.py", "pkg/c.py"]
    assert not harness.workspace.exists("build")
    with pytest.raises(UnsafePathError):
        harness.run("fs:delete", {"files": ["../outer/*"]})
    assert (harness.outer / "precious.txt").exists()


# --- debug:log, debug:wait ---------------------------------------------------------------


def test_debug_log_writes_the_message_and_the_tree(harness: Harness) -> None:
    harness.workspace.write_text("a/b.txt", "hello")
    harness.run("debug:log", {"message": "checking", "listWorkspace": True})
    assert harness.lines == ["checking", "a/b.txt (5 bytes)"]


def test_debug_wait_stops_soon_after_cancellation(harness: Harness) -> None:
    timer = threading.Timer(0.2, lambda: setattr(harness, "cancelled", True))
    timer.start()
    started = time.monotonic()
    with pytest.raises(ActionCancelled):
        harness.run("debug:wait", {"minutes": 5})
    assert time.monotonic() - started < 1.5


def test_debug_wait_waits_and_refuses_more_than_ten_minutes(harness: Harness) -> None:
    started = time.monotonic()
    harness.run("debug:wait", {"seconds": 0.15})
    assert time.monotonic() - started >= 0.15
    with pytest.raises(ActionError, match="at most 10 minutes"):
        harness.run("debug:wait", {"minutes": 10, "seconds": 1})


# --- the registry --------------------------------------------------------------------------


def test_validate_step_accepts_expressions_for_any_field() -> None:
    step = {
        "url": "./skeleton",
        "targetPath": "${{ parameters.name }}",
        "values": "${{ parameters }}",
        "replace": "${{ parameters.replace }}",
        "copyWithoutTemplating": ["${{ parameters.static }}/**"],
    }
    assert REGISTRY.validate_step("fetch:template", step) == []
    assert REGISTRY.validate_step("debug:wait", {"seconds": "${{ parameters.delay }}"}) == []
    assert REGISTRY.validate_step("debug:log", None) == []


def test_validate_step_explains_wrong_types_unknown_and_missing_inputs() -> None:
    assert REGISTRY.validate_step("fetch:template", {"url": 3, "targetPath": "x"}) == [
        "fetch:template: input.url must be a string, not integer 3"
    ]
    assert REGISTRY.validate_step("fetch:template", {"url": "s", "token": "t"}) == [
        "fetch:template: input has unknown properties 'token' (allowed: cookiecutterCompat, "
        "copyWithoutTemplating, replace, targetPath, templateFileExtension, url, values)"
    ]
    assert REGISTRY.validate_step("fetch:template", {"targetPath": "x"}) == [
        "fetch:template: input is missing the required property 'url'"
    ]
    assert REGISTRY.validate_step("fs:rename", {"files": [{"from": "a", "to": 5}]}) == [
        "fs:rename: input.files[0].to must be a string, not integer 5"
    ]
    assert REGISTRY.validate_step("debug:log", {"listWorkspace": "all"}) == [
        "debug:log: input.listWorkspace must be a boolean or one of 'with-filenames', "
        "'with-contents', not string 'all'"
    ]
    assert REGISTRY.validate_input(
        "fetch:template", {"url": "${{ x }}", "replace": "${{ y }}"}
    ) == ["fetch:template: input.replace must be a boolean, not string '${{ y }}'"]


def test_running_an_action_checks_its_rendered_input(harness: Harness) -> None:
    ctx = ActionContext(
        input={"files": [{"from": "a"}]},
        workspace=harness.workspace,
        log=harness.lines.append,
        render_text=fake_render,
        render_path=fake_render,
        template_dir=harness.template_dir,
    )
    with pytest.raises(
        ActionError, match=r"input.files\[0\] is missing the required property 'to'"
    ):
        REGISTRY.get("fs:rename").run(ctx)


def test_unknown_actions_are_named_with_the_known_ones() -> None:
    [message] = REGISTRY.validate_step("publish:github", {})
    assert message.startswith("unknown action 'publish:github'; known actions: debug:log,")
    assert "fetch:template" in message
    with pytest.raises(UnknownActionError, match="known actions: debug:log"):
        REGISTRY.get("publish:github")


def test_actions_come_from_the_plugin_hook_and_ids_are_unique() -> None:
    manager = pluggy.PluginManager("pavedroad")
    manager.add_hookspecs(hookspecs)
    manager.register(actions_module)
    registry = ActionRegistry.from_plugins(manager)
    assert registry.ids() == sorted(action.id for action in BUILTIN_ACTIONS)

    duplicate = Action("debug:log", "again", {"type": "object"}, lambda ctx: {})
    with pytest.raises(ValueError, match="debug:log"):
        ActionRegistry([*BUILTIN_ACTIONS, duplicate])
