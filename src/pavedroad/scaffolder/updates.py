"""Template updates: bring a project made from a template up to the template's new version.

The project's ``.pavedroad/template.yaml`` says which template, which version and which
answers made it. The update renders that old version and the newest one with the same
answers (dry runs: nothing is published), then three-way merges the difference into a
new branch of the project's repository: git applies old → new on top of the project's
default branch with the old rendering as the merge base, exactly as a cherry-pick. What
the project changed itself is kept; where both changed the same lines the file keeps
git's conflict markers and is listed, so nothing is silently lost. The branch is pushed
for review; the default branch is never touched.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pavedroad.core.errors import ConflictError, ForbiddenError, InputError
from pavedroad.identity.policy import decide
from pavedroad.scaffolder.runner import StepRunner
from pavedroad.scaffolder.versions import TemplateVersion
from pavedroad.scaffolder.workspace import Workspace

if TYPE_CHECKING:
    from pavedroad.scaffolder.task_process import TaskProcess

GIT_TIMEOUT_SECONDS = 120
BRANCH_PREFIX = "template-update/"


def run_update(process: TaskProcess) -> dict[str, Any]:
    repository = process.task.target or ""
    owner, _, name = repository.partition("/")
    repo = process.git.repo(owner, name)
    with process.catalog.reader() as reader:
        decision = decide(reader, process.actor, "git.repo.push", repo.owner_ref)
    if not decision.allowed:
        raise ForbiddenError(decision.reason, permission="git.repo.push")
    origin = process.projects.origin(repository)
    old = process.versions.get(origin.template_ref, origin.version)
    if old is None:
        raise InputError(
            f"{repository} was made from {origin.template_ref} at version "
            f"{origin.version[:12]}, which this platform never recorded: it cannot render "
            "that version again"
        )
    new = process.versions.record(process.tasks.template_entity(origin.template_ref))
    process._set_version(new.version)
    log = process.log.log
    log(None, f"{repository} is at {origin.template_ref} version {old.version[:12]}")
    if new.version == old.version:
        log(None, "it is at the template's newest version already: nothing to do")
        return {"upToDate": True, "repository": repository, "links": [], "text": []}
    log(None, f"the newest version is {new.version[:12]} ({new.ordinal - old.ordinal} later)")
    values = {**origin.values, **process.task.values}
    old_tree = _render(process, old, values, "old")
    new_tree = _render(process, new, values, "new")
    clone = process.folder / "repo"
    merge = _merge(process, repo, clone, old, new, old_tree, new_tree)
    process.git.import_spool()
    process.projects.refresh(repository)
    base = process.settings.public_url
    links = []
    if merge["branch"]:
        links.append(
            {
                "title": "Review the update branch",
                "url": f"{base}/repos/{owner}/{name}/commits?ref={merge['branch']}",
                "icon": "git",
            }
        )
    text = []
    if merge["conflicts"]:
        text.append(
            {
                "title": "Conflicts to resolve",
                "content": "These files changed in the project and in the template at the "
                "same places; they hold git's conflict markers on the branch:\n\n"
                + "\n".join(f"- {path}" for path in merge["conflicts"]),
                "icon": None,
            }
        )
    return {
        "repository": repository,
        "fromVersion": old.version,
        "toVersion": new.version,
        **merge,
        "links": links,
        "text": text,
    }


def _render(
    process: TaskProcess, version: TemplateVersion, values: dict[str, Any], name: str
) -> Path:
    process.log.log(None, f"rendering version {version.version[:12]}")
    runner, workspace = process.runner(version, values, name, dry_run=True)
    assert runner.platform is not None
    runner.platform.rendering = True
    runner.run()
    return _published_tree(runner, workspace)


def _published_tree(runner: StepRunner, workspace: Workspace) -> Path:
    assert runner.platform is not None
    paths = runner.platform.published_paths
    if not paths:
        raise InputError(
            "the template publishes nothing (no publish:git step ran), so there is no "
            "project tree to compare"
        )
    return workspace.path(paths[0])


def _merge(
    process: TaskProcess,
    repo: Any,
    clone: Path,
    old: TemplateVersion,
    new: TemplateVersion,
    old_tree: Path,
    new_tree: Path,
) -> dict[str, Any]:
    actor = process.actor
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": actor.name,
        "GIT_AUTHOR_EMAIL": f"{actor.name}@pavedroad.local",
        "GIT_COMMITTER_NAME": "Pavedroad",
        "GIT_COMMITTER_EMAIL": "pavedroad@localhost",
    }

    def git(*args: str, cwd: Path | None = clone, check: bool = True, **extra: str) -> str:
        result = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            timeout=GIT_TIMEOUT_SECONDS,
            env={**env, **extra},
            check=False,
        )
        if check and result.returncode != 0:
            raise ConflictError(
                f"git {args[0]} failed: {result.stderr.decode(errors='replace').strip()[:500]}"
            )
        return result.stdout.decode(errors="replace")

    bare = process.git.path(repo)
    git("clone", "--quiet", "--no-hardlinks", str(bare), str(clone), cwd=None)
    git("config", "commit.gpgsign", "false")
    branch = _free_branch(git, f"{BRANCH_PREFIX}{new.version[:12]}")
    git("checkout", "--quiet", "-b", branch, f"origin/{repo.default_branch}")
    with tempfile.TemporaryDirectory(prefix="pavedroad-index-") as scratch:
        old_commit = _commit_tree(
            git, old_tree, Path(scratch) / "old", f"template at {old.version}"
        )
        new_commit = _commit_tree(
            git, new_tree, Path(scratch) / "new", f"template at {new.version}", parent=old_commit
        )
    changed = [line for line in git("diff", "--name-only", old_commit, new_commit).splitlines()]
    git("cherry-pick", "--no-commit", new_commit, check=False)
    conflicts = sorted(set(git("diff", "--name-only", "--diff-filter=U").splitlines()))
    git("add", "--all")
    if not git("diff", "--cached", "--name-only").strip():
        process.log.log(None, "the template's changes are in the project already: no branch made")
        return {"branch": None, "conflicts": [], "changedFiles": changed, "commit": None}
    message = (
        f"Update to {old.template_ref} version {new.version[:12]}\n\n"
        f"From version {old.version} to {new.version}."
    )
    if conflicts:
        message += "\n\nConflicts to resolve (marked in the files):\n" + "\n".join(
            f"  {path}" for path in conflicts
        )
    git("commit", "--quiet", "--no-verify", "-m", message)
    commit = git("rev-parse", "HEAD").strip()
    git("push", "--quiet", "origin", f"HEAD:refs/heads/{branch}")
    for path in changed:
        process.log.log(None, f"template changed {path}")
    for path in conflicts:
        process.log.log(None, f"conflict in {path}: both the project and the template changed it")
    process.log.log(None, f"pushed {branch} ({commit[:12]})")
    return {"branch": branch, "conflicts": conflicts, "changedFiles": changed, "commit": commit}


def _free_branch(git: Any, wanted: str) -> str:
    existing = set(
        line.strip().removeprefix("origin/")
        for line in git("branch", "--remotes", "--format=%(refname:short)").splitlines()
    )
    if wanted not in existing:
        return wanted
    number = 2
    while f"{wanted}-{number}" in existing:
        number += 1
    return f"{wanted}-{number}"


def _commit_tree(
    git: Any, folder: Path, index: Path, message: str, parent: str | None = None
) -> str:
    index.parent.mkdir(parents=True, exist_ok=True)
    extra = {"GIT_INDEX_FILE": str(index)}
    git("--work-tree", str(folder), "add", "--all", "--force", ".", **extra)
    tree = git("write-tree", **extra).strip()
    args = ["commit-tree", tree, "-m", message]
    if parent:
        args += ["-p", parent]
    return git(*args).strip()  # type: ignore[no-any-return]
