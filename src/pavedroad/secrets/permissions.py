"""The secrets layer's permissions (registered when the layer's plugin loads)."""

from pavedroad.identity.policy import Scope, register_permission

SECRET_READ = register_permission(
    "secret.read", Scope.owner, "Read the value of a secret of an entity or environment"
)
SECRET_WRITE = register_permission(
    "secret.write",
    Scope.owner,
    "Set, generate, rotate, roll back, delete and restore secrets of an entity or environment",
)
GLOBAL_READ = register_permission(
    "secret.global.read", Scope.admin, "Read the value of a global secret"
)
GLOBAL_WRITE = register_permission("secret.global.write", Scope.admin, "Change global secrets")
