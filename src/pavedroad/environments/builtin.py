"""The environments layer's built-in plugin: its permissions."""

from __future__ import annotations

from pavedroad.identity.policy import Scope, register_permission

DEPLOY = register_permission(
    "deployment.create",
    Scope.owner,
    "Deploy, promote or roll back a component (an owner of the component)",
)
APPROVE = register_permission(
    "deployment.approve",
    Scope.owner,
    "Approve or reject a deployment waiting for approval (an owner of the component, "
    "never the one who asked for it)",
)
RELEASE_CREATE = register_permission(
    "release.create", Scope.owner, "Make a release of a component from uploaded files"
)
ENVIRONMENT_MANAGE = register_permission(
    "environment.manage", Scope.admin, "Create and delete environments outside the catalog"
)
