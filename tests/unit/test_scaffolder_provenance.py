"""The template provenance file (``.pavedroad/template.yaml``) and the
``backstage.io/source-template`` annotation a published project's catalog-info.yaml gets:
what is written, what reads back, and the files that are left alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from pavedroad.core.errors import InputError
from pavedroad.scaffolder.platform import TemplateOrigin
from pavedroad.scaffolder.provenance import (
    PROVENANCE_PATH,
    SOURCE_TEMPLATE_ANNOTATION,
    read_provenance,
    write_provenance,
)

ORIGIN = TemplateOrigin(
    template_ref="template:default/python-web-service",
    version="3f6c0de1b2a4c5d6e7f8091a2b3c4d5e6f708192",
    values={
        "name": "billing",
        "port": 8080,
        "owner": "group:default/checkout-team",
        "zipCode": "08",  # looks like a number to YAML 1.2: must stay a string
        "tags": ["python", "web"],
        "nested": {"enabled": True, "ratio": 0.5},
    },
)

COMPONENT = """\
# The service's catalog entry.
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: billing
  annotations:
    pavedroad.dev/pipeline: python-service@1
spec:
  type: service
  lifecycle: experimental
  owner: checkout-team
"""


def _documents(path: Path) -> list[object]:
    return list(yaml.safe_load_all(path.read_text()))


def test_the_provenance_file_is_readable_yaml_that_reads_back(tmp_path: Path) -> None:
    write_provenance(tmp_path, ORIGIN)

    text = (tmp_path / PROVENANCE_PATH).read_text()
    assert text.startswith("# Written by Pavedroad")
    assert "  template: template:default/python-web-service\n" in text
    assert "    zipCode: '08'\n" in text  # quoted, or YAML 1.2 readers see the number 8
    assert "{" not in text  # block style throughout: a human reads it
    assert yaml.safe_load(text) == {
        "apiVersion": "pavedroad.dev/v1alpha1",
        "kind": "TemplateProvenance",
        "spec": {
            "template": ORIGIN.template_ref,
            "version": ORIGIN.version,
            "values": ORIGIN.values,
        },
    }
    assert read_provenance(text) == ORIGIN
    assert read_provenance(text.encode()) == ORIGIN
    assert not (tmp_path / "catalog-info.yaml").exists()  # none is made up


def test_writing_again_replaces_the_provenance_file(tmp_path: Path) -> None:
    write_provenance(tmp_path, ORIGIN)
    newer = TemplateOrigin(ORIGIN.template_ref, "a" * 40, {"name": "billing-v2"})

    write_provenance(tmp_path, newer)

    assert read_provenance((tmp_path / PROVENANCE_PATH).read_bytes()) == newer
    assert sorted(p.name for p in (tmp_path / ".pavedroad").iterdir()) == ["template.yaml"]


def test_catalog_info_gets_the_source_template_annotation(tmp_path: Path) -> None:
    (tmp_path / "catalog-info.yaml").write_text(COMPONENT)

    write_provenance(tmp_path, ORIGIN)

    [entity] = _documents(tmp_path / "catalog-info.yaml")
    assert entity["metadata"]["annotations"] == {  # type: ignore[index]
        "pavedroad.dev/pipeline": "python-service@1",
        SOURCE_TEMPLATE_ANNOTATION: "template:default/python-web-service",
    }
    assert list(entity) == ["apiVersion", "kind", "metadata", "spec"]  # type: ignore[arg-type]


def test_only_the_first_document_is_annotated_and_the_others_are_kept(tmp_path: Path) -> None:
    (tmp_path / "catalog-info.yaml").write_text(
        COMPONENT.replace("  annotations:\n    pavedroad.dev/pipeline: python-service@1\n", "")
        + "---\n"
        + "apiVersion: backstage.io/v1alpha1\nkind: API\nmetadata:\n  name: billing-api\n"
        + "spec:\n  type: openapi\n  lifecycle: experimental\n  owner: checkout-team\n"
        + "  definition: 'openapi: 3.0.0'\n"
        + "---\n"
        + "apiVersion: backstage.io/v1alpha1\nkind: Location\nmetadata:\n  name: more\n"
        + "spec:\n  targets: ['./docs/*.yaml']\n  version: '1.10'\n"
    )

    write_provenance(tmp_path, ORIGIN)

    component, api, location = _documents(tmp_path / "catalog-info.yaml")
    assert component["metadata"]["annotations"] == {  # type: ignore[index]
        SOURCE_TEMPLATE_ANNOTATION: ORIGIN.template_ref
    }
    assert "annotations" not in api["metadata"]  # type: ignore[index]
    assert api["spec"]["definition"] == "openapi: 3.0.0"  # type: ignore[index]
    assert location["spec"] == {"targets": ["./docs/*.yaml"], "version": "1.10"}  # type: ignore[index]


def test_a_catalog_info_with_the_annotation_is_untouched_byte_for_byte(tmp_path: Path) -> None:
    original = COMPONENT.replace(
        "    pavedroad.dev/pipeline: python-service@1\n",
        "    pavedroad.dev/pipeline: python-service@1\n"
        f"    {SOURCE_TEMPLATE_ANNOTATION}: template:default/something-else\n",
    ).encode()
    path = tmp_path / "catalog-info.yaml"
    path.write_bytes(original)
    os.utime(path, (1_000_000, 1_000_000))

    write_provenance(tmp_path, ORIGIN)

    assert path.read_bytes() == original  # the comment too: it was not re-dumped
    assert path.stat().st_mtime == 1_000_000
    assert (tmp_path / PROVENANCE_PATH).is_file()


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("kind: Component\nmetadata: {name: [unclosed\n", id="broken-yaml"),
        pytest.param("a: 1\na: 2\n", id="duplicate-keys"),
        pytest.param("- just\n- a list\n", id="not-a-mapping"),
        pytest.param("kind: Component\nmetadata: billing\n", id="metadata-not-a-mapping"),
        pytest.param("apiVersion: v1\nmetadata:\n  name: x\n", id="no-kind"),
        pytest.param(
            "kind: Component\nmetadata:\n  name: x\n  annotations: [a, b]\n", id="odd-annotations"
        ),
        pytest.param(COMPONENT + "---\nkind: [broken\n", id="a-later-document-broken"),
        pytest.param("", id="empty"),
        pytest.param("\xff\xfe not utf-8", id="not-utf-8"),
    ],
)
def test_a_catalog_info_that_is_not_an_entity_is_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "catalog-info.yaml"
    original = text.encode("latin-1") if "\xff" in text else text.encode()
    path.write_bytes(original)

    write_provenance(tmp_path, ORIGIN)

    assert path.read_bytes() == original
    assert read_provenance((tmp_path / PROVENANCE_PATH).read_text()) == ORIGIN


def test_nothing_is_written_through_symbolic_links(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "catalog-info.yaml").write_text(COMPONENT)
    (project / "catalog-info.yaml").symlink_to(outside / "catalog-info.yaml")
    (project / ".pavedroad").symlink_to(outside)

    with pytest.raises(InputError, match="symbolic link"):
        write_provenance(project, ORIGIN)

    assert sorted(p.name for p in outside.iterdir()) == ["catalog-info.yaml"]
    assert (outside / "catalog-info.yaml").read_text() == COMPONENT


def test_a_linked_catalog_info_is_not_rewritten(tmp_path: Path) -> None:
    project, outside = tmp_path / "project", tmp_path / "outside"
    project.mkdir()
    outside.mkdir()
    (outside / "catalog-info.yaml").write_text(COMPONENT)
    (project / "catalog-info.yaml").symlink_to(outside / "catalog-info.yaml")

    with pytest.raises(InputError, match="outside"):
        write_provenance(project, ORIGIN)
    assert (outside / "catalog-info.yaml").read_text() == COMPONENT


VALID = (
    "apiVersion: pavedroad.dev/v1alpha1\nkind: TemplateProvenance\nspec:\n"
    "  template: template:default/python-web-service\n  version: abc123\n"
    "  values:\n    name: billing\n"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a mapping"),
        ("- a\n- b\n", "must be a mapping"),
        (
            VALID.replace("pavedroad.dev/v1alpha1", "v1"),
            "apiVersion must be 'pavedroad.dev/v1alpha1'",
        ),
        (VALID.replace("kind: TemplateProvenance\n", ""), "kind must be 'TemplateProvenance'"),
        (
            "apiVersion: pavedroad.dev/v1alpha1\nkind: TemplateProvenance\n",
            "spec must be a mapping",
        ),
        (
            VALID.replace("  template: template:default/python-web-service\n", ""),
            "spec.template is missing",
        ),
        (
            VALID.replace("template:default/python-web-service", "[a]"),
            "spec.template must be a non-empty string",
        ),
        (
            VALID.replace("template:default/python-web-service", "'x:'"),
            "spec.template is not an entity reference",
        ),
        (VALID.replace("  version: abc123\n", ""), "spec.version is missing"),
        (
            VALID.replace("abc123", "1234"),
            "spec.version must be a non-empty string, not a number 1234 (quote it",
        ),
        (VALID.replace("abc123", "''"), "spec.version must be a non-empty string"),
        (VALID.replace("    name: billing\n", "    - billing\n"), "spec.values must be a mapping"),
        (VALID + "spec: {}\n", "duplicate key 'spec'"),
        (VALID + "---\n" + VALID, "expected one document"),
    ],
)
def test_reading_a_wrong_provenance_file_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InputError) as caught:
        read_provenance(text)
    assert message in caught.value.detail
    assert PROVENANCE_PATH in caught.value.detail


def test_values_may_be_left_out() -> None:
    text = VALID.replace("  values:\n    name: billing\n", "")
    assert read_provenance(text) == TemplateOrigin(
        "template:default/python-web-service", "abc123", {}
    )
