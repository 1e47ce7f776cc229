"""The hosted git layer's permissions (registered when the layer's plugin loads). Each
applies to the repository's owner: a Group (its members) or a User (that user)."""

from pavedroad.identity.policy import Scope, register_permission

REPO_CREATE = register_permission(
    "git.repo.create", Scope.owner, "Create a repository owned by a group or user"
)
REPO_PUSH = register_permission("git.repo.push", Scope.owner, "Push to a hosted repository")
REPO_DELETE = register_permission("git.repo.delete", Scope.owner, "Delete a hosted repository")
