"""Where a secret lives, and what its name may be.

A secret is scoped to an entity in an environment (``component:default/orders`` in
``staging``), to an entity in every environment, to an environment, or is global.
Names are like environment variable names: a letter, then up to 99 letters, digits,
``_``, ``.`` or ``-`` (``DATABASE_PASSWORD``, ``stripe.api-key``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pavedroad.catalog.refs import parse_ref
from pavedroad.catalog.validation import is_valid_object_name
from pavedroad.core.errors import InputError

NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
NAME_RULE = "a letter, then up to 99 letters, digits, '_', '.' or '-'"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        shown = name.encode("unicode_escape").decode()[:120]
        raise InputError(f"'{shown}' is not a valid secret name: use {NAME_RULE}")
    return name


@dataclass(frozen=True)
class SecretScope:
    entity_ref: str = ""  # "" when not scoped to an entity
    environment: str = ""  # "" when not scoped to an environment

    @classmethod
    def parse(cls, entity: str | None, environment: str | None) -> SecretScope:
        entity_ref = parse_ref(entity.strip(), "component").key if entity and entity.strip() else ""
        env = (environment or "").strip().lower()
        if env and not is_valid_object_name(env):
            shown = env.encode("unicode_escape").decode()[:80]
            raise InputError(f"'{shown}' is not a valid environment name")
        return cls(entity_ref, env)

    @property
    def environment_ref(self) -> str | None:
        return f"environment:default/{self.environment}" if self.environment else None

    @property
    def target(self) -> str | None:
        """The entity whose owners may use secrets of this scope (None: global, admins)."""
        return self.entity_ref or self.environment_ref

    @property
    def label(self) -> str:
        if self.entity_ref and self.environment:
            return f"{self.entity_ref} in {self.environment}"
        if self.entity_ref:
            return f"{self.entity_ref} (every environment)"
        if self.environment:
            return f"environment {self.environment}"
        return "global"
