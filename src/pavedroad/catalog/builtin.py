"""The built-in catalog plugin: Backstage's kinds, the platform kinds, placeholder
resolution, Backstage's relations and the ``file`` and ``url`` location readers.

It registers through the same hooks a pip-installed plugin uses.
"""

from __future__ import annotations

import glob
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from pavedroad.catalog.kinds import KindSchema, builtin_kinds, platform_kinds
from pavedroad.catalog.processing import (
    GLOB_CHARS,
    EntityProcessor,
    LocationReader,
    ProcessingContext,
    Relation,
)
from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core import outbound
from pavedroad.core.errors import InputError, NotFoundError, PayloadTooLargeError
from pavedroad.core.hookspecs import hookimpl
from pavedroad.core.paths import contained_path
from pavedroad.core.safeyaml import YamlLimits, load_document
from pavedroad.settings import Settings


@hookimpl
def pavedroad_catalog_kinds() -> list[KindSchema]:
    return [*builtin_kinds(), *platform_kinds()]


@hookimpl
def pavedroad_catalog_processors(settings: Settings) -> list[EntityProcessor]:
    return [PlaceholderProcessor(settings), BuiltinRelationsProcessor()]


@hookimpl
def pavedroad_catalog_readers(settings: Settings) -> list[LocationReader]:
    return [FileReader(settings), UrlReader(settings)]


class PlaceholderProcessor(EntityProcessor):
    """Resolves ``$text``, ``$json`` and ``$yaml`` relative to the entity's location."""

    name = "placeholders"
    KINDS = ("$text", "$json", "$yaml")

    def __init__(self, settings: Settings) -> None:
        self.limits = YamlLimits(**settings.yaml.model_dump())

    def preprocess(self, entity: dict[str, Any], context: ProcessingContext) -> dict[str, Any]:
        result = self._resolve(entity, context)
        return result if isinstance(result, dict) else entity

    def _resolve(self, value: Any, context: ProcessingContext) -> Any:
        """The value with placeholders replaced; containers are changed in place."""
        if isinstance(value, list):
            for index, item in enumerate(value):
                if isinstance(item, dict | list):
                    value[index] = self._resolve(item, context)
            return value
        if not isinstance(value, dict):
            return value
        placeholder_keys = [k for k in value if isinstance(k, str) and k.startswith("$")]
        if not placeholder_keys:
            for key, item in value.items():
                if isinstance(item, dict | list):
                    value[key] = self._resolve(item, context)
            return value
        key = placeholder_keys[0]
        target = value[key]
        # As Backstage does: anything that is not exactly one known placeholder with a
        # string value is left alone (JSON Schema's "$ref" is data, not a placeholder).
        if len(value) != 1 or key not in self.KINDS or not isinstance(target, str):
            return value
        content = context.read(target)
        source = f"{context.location_target} ({key} {target})"
        if key == "$text":
            return content.decode("utf-8", errors="replace")
        if key == "$json":
            try:
                return json.loads(content)
            except ValueError as exc:
                raise InputError(f"{source}: not valid JSON: {exc}") from None
        return load_document(content, source, self.limits)


# (spec field, outgoing relation, incoming relation, default kind) per kind, as
# Backstage's BuiltinKindsEntityProcessor emits them.
_RELATION_FIELDS: dict[str, list[tuple[str, str, str, str | None]]] = {
    "component": [
        ("owner", "ownedBy", "ownerOf", "Group"),
        ("subcomponentOf", "partOf", "hasPart", "Component"),
        ("providesApis", "providesApi", "apiProvidedBy", "API"),
        ("consumesApis", "consumesApi", "apiConsumedBy", "API"),
        ("dependsOn", "dependsOn", "dependencyOf", None),
        ("dependencyOf", "dependencyOf", "dependsOn", None),
        ("system", "partOf", "hasPart", "System"),
    ],
    "api": [
        ("owner", "ownedBy", "ownerOf", "Group"),
        ("system", "partOf", "hasPart", "System"),
    ],
    "resource": [
        ("owner", "ownedBy", "ownerOf", "Group"),
        ("dependsOn", "dependsOn", "dependencyOf", None),
        ("dependencyOf", "dependencyOf", "dependsOn", None),
        ("system", "partOf", "hasPart", "System"),
    ],
    "user": [("memberOf", "memberOf", "hasMember", "Group")],
    "group": [
        ("parent", "childOf", "parentOf", "Group"),
        ("children", "parentOf", "childOf", "Group"),
        ("members", "hasMember", "memberOf", "User"),
    ],
    "system": [
        ("owner", "ownedBy", "ownerOf", "Group"),
        ("domain", "partOf", "hasPart", "Domain"),
    ],
    "domain": [
        ("owner", "ownedBy", "ownerOf", "Group"),
        ("subdomainOf", "partOf", "hasPart", "Domain"),
    ],
    "template": [("owner", "ownedBy", "ownerOf", "Group")],
    "environment": [("owner", "ownedBy", "ownerOf", "Group")],
}


class BuiltinRelationsProcessor(EntityProcessor):
    """Emits the relations Backstage derives from the built-in kinds' spec fields."""

    name = "builtin-relations"

    def relations(self, entity: dict[str, Any], ref: EntityRef) -> Iterable[Relation]:
        spec = entity.get("spec") or {}
        self_key = ref.key
        for field, outgoing, incoming, default_kind in _RELATION_FIELDS.get(ref.kind.lower(), []):
            targets = spec.get(field)
            if targets is None:
                continue
            for target in targets if isinstance(targets, list) else [targets]:
                target_key = parse_ref(target, default_kind, ref.namespace).key
                yield Relation(self_key, outgoing, target_key)
                yield Relation(target_key, incoming, self_key)


class FileReader(LocationReader):
    """Reads files on the server's disk; targets are absolute paths."""

    type = "file"

    def __init__(self, settings: Settings) -> None:
        self.max_bytes = settings.yaml.max_bytes

    def read(self, target: str) -> bytes:
        if "\x00" in target:
            raise InputError("file path contains a NUL character")
        try:
            # O_NONBLOCK: opening a FIFO must not wait for a writer.
            with os.fdopen(os.open(target, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    raise InputError(f"{target} is not a regular file")
                # Read one byte past the cap: st_size is not to be trusted (/proc, /dev).
                content = handle.read(self.max_bytes + 1)
        except FileNotFoundError:
            raise NotFoundError(f"{target} does not exist") from None
        except IsADirectoryError:
            raise InputError(f"{target} is a directory, not a file") from None
        except PermissionError:
            raise InputError(f"{target} cannot be read (permission denied)") from None
        if len(content) > self.max_bytes:
            raise PayloadTooLargeError(f"{target} is over the limit of {self.max_bytes} bytes")
        return content

    def resolve(self, base_target: str, relative: str) -> str:
        if relative.startswith(("http://", "https://")):
            return relative
        return os.path.normpath(os.path.join(os.path.dirname(base_target), relative))

    def resolve_placeholder(self, base_target: str, relative: str) -> str:
        """Placeholders may only read files in the descriptor's folder or below it."""
        if relative.startswith(("http://", "https://")):
            return relative
        return str(contained_path(Path(base_target).parent, relative))

    def expand(self, target: str) -> list[str]:
        if not GLOB_CHARS & set(target):
            return [target]
        return sorted(glob.glob(target, recursive=True))


class UrlReader(LocationReader):
    """Reads http(s) URLs under the host allowlist, re-checked on every redirect."""

    type = "url"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def read(self, target: str) -> bytes:
        catalog = self.settings.catalog
        try:
            return outbound.fetch(
                target,
                allowed_hosts=catalog.allowed_hosts,
                allow_private_network=catalog.allow_private_network,
                max_bytes=self.settings.yaml.max_bytes,
            )
        except outbound.OutboundError as exc:
            if exc.extensions.get("not_found"):
                raise NotFoundError(exc.detail) from None
            raise

    def check_target(self, target: str) -> None:
        catalog = self.settings.catalog
        outbound.check_url(target, catalog.allowed_hosts, catalog.allow_private_network)

    def resolve(self, base_target: str, relative: str) -> str:
        return urljoin(base_target, relative)
