"""What a running template task knows about the platform around it.

Actions that only shape files (``fetch:*``, ``fs:*``) need none of this; the ones that
publish a repository or talk to the catalog (``publish:git``, ``catalog:*``) get it as
``ctx.platform``. The task runner builds one per task, in the process that runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pavedroad.catalog.service import CatalogService
    from pavedroad.core.db import Database
    from pavedroad.git.service import GitService
    from pavedroad.identity.policy import Actor
    from pavedroad.settings import Settings


@dataclass(frozen=True)
class TemplateOrigin:
    """Which template, at which version, made a project, and with which answers."""

    template_ref: str  # "template:default/python-web-service"
    version: str  # the commit (or content hash) of the template's source
    values: dict[str, Any]  # the answers, secret ones left out


@dataclass
class TaskPlatform:
    settings: Settings
    db: Database
    git: GitService
    catalog: CatalogService
    actor: Actor  # who started the task: every change is checked against their rights
    task_id: str
    origin: TemplateOrigin
    rendering: bool = False
    """Only rendering the template again (a template update, in a dry run): publish steps
    note their folder and check nothing about the repository, which exists by then."""
    published_paths: list[str] = field(default_factory=list)
    """Workspace folders ``publish:git`` published (or, in a dry run, would have):
    template updates render a template and take the tree from here."""
