"""Which template made a project: ``.pavedroad/template.yaml`` in the project's files.

``publish:git`` writes it into every repository it publishes, so a template update
(Copier-style) knows what to render again and with which answers, and a human can read
where the project came from. The project's ``catalog-info.yaml`` gets the
``backstage.io/source-template`` annotation Backstage puts on what a template made.

The file looks like::

    apiVersion: pavedroad.dev/v1alpha1
    kind: TemplateProvenance
    spec:
      template: template:default/python-web-service
      version: 3f6c0de...
      values:
        name: billing
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from pavedroad.catalog.refs import parse_ref
from pavedroad.core import safeyaml
from pavedroad.core.errors import InputError
from pavedroad.core.paths import PathEscapeError, contained_path
from pavedroad.scaffolder.platform import TemplateOrigin

PROVENANCE_PATH = ".pavedroad/template.yaml"
CATALOG_INFO_PATH = "catalog-info.yaml"
SOURCE_TEMPLATE_ANNOTATION = "backstage.io/source-template"
API_VERSION = "pavedroad.dev/v1alpha1"
KIND = "TemplateProvenance"

_HEADER = (
    "# Written by Pavedroad when this project was made from a template; template updates\n"
    "# read it to know what to render again. Edit it only to change those answers.\n"
)


class _Dumper(yaml.SafeDumper):
    """A safe dumper that also quotes every string YAML 1.2 would read as something
    else (``08``, ``1e3``, ``0o17``): PyYAML only knows YAML 1.1's rules, while our
    loader and Backstage's read files with YAML 1.2's core schema."""


for _tag, _pattern, _first in safeyaml._CORE_SCHEMA:
    _Dumper.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))


def dump_yaml(data: Any, *, documents: bool = False) -> str:
    """Block-style YAML, keys in their given order, that reads back as the same data."""
    options: dict[str, Any] = {
        "Dumper": _Dumper,
        "sort_keys": False,
        "allow_unicode": True,
        "default_flow_style": False,
    }
    if documents:
        return yaml.dump_all(data, **options)
    return yaml.dump(data, **options)


# --- the provenance file -------------------------------------------------------------------


def provenance_document(origin: TemplateOrigin) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "spec": {
            "template": origin.template_ref,
            "version": origin.version,
            "values": dict(origin.values),
        },
    }


def provenance_text(origin: TemplateOrigin) -> str:
    """The provenance file's contents."""
    return _HEADER + dump_yaml(provenance_document(origin))


def read_provenance(text: str | bytes) -> TemplateOrigin:
    """The origin a provenance file records; :class:`InputError` says what is wrong."""
    data = safeyaml.load_document(text, PROVENANCE_PATH)
    if not isinstance(data, dict):
        raise InputError(f"{PROVENANCE_PATH} must be a mapping with apiVersion, kind and spec")
    for field, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if data.get(field) != expected:
            raise InputError(
                f"{PROVENANCE_PATH}: {field} must be {expected!r}, not {data.get(field)!r}"
            )
    spec = data.get("spec")
    if not isinstance(spec, dict):
        raise InputError(f"{PROVENANCE_PATH}: spec must be a mapping with template and version")
    template = _text_field(spec, "template")
    try:
        parse_ref(template, "template")
    except InputError as error:
        raise InputError(
            f"{PROVENANCE_PATH}: spec.template is not an entity reference: {error.detail}"
        ) from None
    values = spec.get("values", {})
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError(
            f"{PROVENANCE_PATH}: spec.values must be a mapping of the template's answers, "
            f"not {_kind(values)}"
        )
    return TemplateOrigin(template, _text_field(spec, "version"), values)


def _text_field(spec: dict[str, Any], name: str) -> str:
    value = spec.get(name)
    if value is None:
        raise InputError(f"{PROVENANCE_PATH}: spec.{name} is missing")
    if not isinstance(value, str) or not value.strip():
        raise InputError(
            f"{PROVENANCE_PATH}: spec.{name} must be a non-empty string, not {_kind(value)} "
            f"{value!r} (quote it if it looks like a number)"
        )
    return value


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else "null")


# --- the catalog-info.yaml annotation ---------------------------------------------------------


def with_source_template(data: bytes, template_ref: str) -> bytes | None:
    """``catalog-info.yaml`` with the source-template annotation added to its first
    document, or None when it is to be left as it is: it has the annotation already,
    or it is not YAML we can read, or its first document is not an entity."""
    try:
        documents = safeyaml.load_documents(data, CATALOG_INFO_PATH)
    except safeyaml.YamlError:
        return None
    if not documents or any(document.error for document in documents):
        return None
    first = documents[0].data
    metadata = first.get("metadata") if isinstance(first, dict) else None
    if not isinstance(first, dict) or "kind" not in first or not isinstance(metadata, dict):
        return None
    annotations = metadata.setdefault("annotations", {})
    if annotations is None:
        annotations = metadata["annotations"] = {}
    if not isinstance(annotations, dict) or SOURCE_TEMPLATE_ANNOTATION in annotations:
        return None
    annotations[SOURCE_TEMPLATE_ANNOTATION] = template_ref
    return dump_yaml([document.data for document in documents], documents=True).encode("utf-8")


# --- writing both into a folder ------------------------------------------------------------


def write_provenance(root: Path, origin: TemplateOrigin) -> None:
    """Write ``.pavedroad/template.yaml`` under ``root`` and annotate
    ``root/catalog-info.yaml`` (when it is an entity without the annotation).

    Neither is written through a symbolic link; each file is replaced whole.
    """
    _write_file(root, PROVENANCE_PATH, provenance_text(origin).encode("utf-8"))
    catalog_info = _inside(root, CATALOG_INFO_PATH)
    try:
        info = os.lstat(catalog_info)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        return  # a link or a folder: not ours to rewrite
    annotated = with_source_template(catalog_info.read_bytes(), origin.template_ref)
    if annotated is not None:
        _write_file(root, CATALOG_INFO_PATH, annotated, mode=stat.S_IMODE(info.st_mode))


def _inside(root: Path, relative: str) -> Path:
    try:
        contained_path(root, relative)
    except PathEscapeError:
        raise InputError(f"{relative} leads outside {root} through a symbolic link") from None
    return root / relative


def _write_file(root: Path, relative: str, data: bytes, mode: int = 0o644) -> None:
    target = _inside(root, relative)
    if target.is_symlink() or target.parent.is_symlink():
        raise InputError(f"{relative} is a symbolic link; it is not written through")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".pavedroad-write-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(temp_name, mode)
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
