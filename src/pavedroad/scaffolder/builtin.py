"""The scaffolder's built-in plugin: loading it registers the layer's permissions.
(Its actions are plugins of their own: :mod:`pavedroad.scaffolder.actions` and
:mod:`pavedroad.scaffolder.platform_actions`.)"""

from pavedroad.identity.policy import Scope, register_permission

TASK_CREATE = register_permission(
    "scaffolder.task.create",
    Scope.member,
    "Run a template (what its steps then create is checked step by step)",
)
TEMPLATE_UPDATE = register_permission(
    "scaffolder.project.update",
    Scope.owner,
    "Bring a project made from a template up to the template's newest version",
)
