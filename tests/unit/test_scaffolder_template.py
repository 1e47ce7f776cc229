"""Backstage v1beta3 Template entities: parsing, problems with paths, the form, answers."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pavedroad.scaffolder.template import (
    TemplateSpec,
    TemplateSpecError,
    apply_defaults,
    fields,
    secret_fields,
    template_problems,
    validate_parameters,
)

# The shape of Backstage's own example template (plugins/scaffolder-backend sample-templates).
TEMPLATE: dict[str, Any] = {
    "apiVersion": "scaffolder.backstage.io/v1beta3",
    "kind": "Template",
    "metadata": {
        "name": "python-web-service",
        "title": "Python web service",
        "description": "A small HTTP service with tests and docs",
        "tags": ["python", "recommended"],
    },
    "spec": {
        "owner": "group:platform",
        "type": "service",
        "parameters": [
            {
                "title": "Fill in some steps",
                "required": ["name", "owner"],
                "properties": {
                    "name": {
                        "title": "Name",
                        "type": "string",
                        "description": "Unique name of the component",
                        "pattern": "^[a-z][a-z0-9-]*$",
                        "ui:autofocus": True,
                        "ui:help": "lower case, digits and dashes",
                    },
                    "owner": {
                        "title": "Owner",
                        "type": "string",
                        "ui:field": "OwnerPicker",
                        "ui:options": {"catalogFilter": {"kind": "Group"}},
                    },
                    "language": {
                        "title": "Language",
                        "type": "string",
                        "enum": ["python", "go"],
                        "enumNames": ["Python", "Go"],
                        "default": "python",
                    },
                    "replicas": {"title": "Replicas", "type": "integer", "default": 1},
                    "service": {
                        "title": "Service",
                        "type": "object",
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                            "path": {"type": "string", "default": "/"},
                        },
                    },
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}},
                    "system": {
                        "type": "string",
                        "ui:field": "EntityPicker",
                        "ui:options": {"catalogFilter": {"kind": "System"}},
                    },
                },
            },
            {
                "title": "Choose a location",
                "required": ["repoUrl"],
                "properties": {
                    "repoUrl": {
                        "title": "Repository Location",
                        "type": "string",
                        "ui:field": "RepoUrlPicker",
                        "ui:options": {"allowedHosts": ["localhost"]},
                    },
                    "token": {"type": "string", "ui:field": "Secret"},
                    "password": {"type": "string", "minLength": 8, "ui:widget": "password"},
                },
            },
        ],
        "steps": [
            {
                "id": "fetch",
                "name": "Fetch Base",
                "action": "fetch:template",
                "input": {
                    "url": "./skeleton",
                    "values": {
                        "name": "${{ parameters.name }}",
                        "owner": "${{ parameters.owner }}",
                    },
                },
            },
            {
                "id": "publish",
                "name": "Publish",
                "action": "publish:github",
                "input": {"repoUrl": "${{ parameters.repoUrl }}"},
            },
            {
                "id": "register",
                "name": "Register",
                "action": "catalog:register",
                "if": "${{ parameters.replicas > 0 }}",
                "input": {
                    "repoContentsUrl": "${{ steps['publish'].output.repoContentsUrl }}",
                    "catalogInfoPath": "/catalog-info.yaml",
                },
            },
        ],
        "output": {
            "links": [
                {"title": "Repository", "url": "${{ steps['publish'].output.remoteUrl }}"},
                {
                    "title": "Open in catalog",
                    "icon": "catalog",
                    "entityRef": "${{ steps['register'].output.entityRef }}",
                },
            ],
            "text": [{"title": "Next", "content": "Push your first change"}],
        },
    },
}

VALID = {
    "name": "orders",
    "owner": "group:team-a",
    "service": {"port": 8080},
    "repoUrl": "localhost?owner=team-a&repo=orders",
    "password": "long enough",
}


def _template(**spec_changes: Any) -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    template["spec"].update(spec_changes)
    return template


def test_parses_backstages_example_shape() -> None:
    spec = TemplateSpec.parse(TEMPLATE)
    assert spec.name == "python-web-service"
    assert spec.owner == "group:platform"
    assert spec.tags == ("python", "recommended")
    assert [page["title"] for page in spec.pages] == ["Fill in some steps", "Choose a location"]
    assert [(s.id, s.action) for s in spec.steps] == [
        ("fetch", "fetch:template"),
        ("publish", "publish:github"),
        ("register", "catalog:register"),
    ]
    assert spec.steps[2].if_ == "${{ parameters.replicas > 0 }}"
    assert spec.steps[0].input["values"]["name"] == "${{ parameters.name }}"
    assert spec.links[1].entity_ref == "${{ steps['register'].output.entityRef }}"
    assert spec.links[1].icon == "catalog"
    assert spec.text[0].content == "Push your first change"


def test_one_schema_instead_of_pages_is_one_page() -> None:
    page = TEMPLATE["spec"]["parameters"][1]
    spec = TemplateSpec.parse(_template(parameters=page))
    assert [p.title for p in fields(spec)] == ["Choose a location"]


def test_form_fields_keep_ui_hints() -> None:
    first, second = fields(TemplateSpec.parse(TEMPLATE))
    by_name = {f.name: f for f in first.fields}
    assert list(by_name) == [
        "name",
        "owner",
        "language",
        "replicas",
        "service",
        "tags",
        "system",
    ]
    name = by_name["name"]
    assert (name.type, name.title, name.required) == ("string", "Name", True)
    assert name.ui == {"autofocus": True, "help": "lower case, digits and dashes"}
    assert "ui:help" not in name.schema
    assert by_name["owner"].ui["field"] == "OwnerPicker"
    assert by_name["system"].ui["options"] == {"catalogFilter": {"kind": "System"}}
    language = by_name["language"]
    assert (language.enum, language.enum_names, language.default) == (
        ("python", "go"),
        ("Python", "Go"),
        "python",
    )
    service = by_name["service"]
    assert [(f.path, f.required) for f in service.fields] == [
        ("service.port", True),
        ("service.path", False),
    ]
    assert by_name["tags"].items is not None and by_name["tags"].items.type == "string"
    assert second.fields[0].ui["field"] == "RepoUrlPicker"


def test_secret_fields() -> None:
    assert secret_fields(TemplateSpec.parse(TEMPLATE)) == {"token", "password"}


def test_defaults_are_applied_on_every_page_and_in_nested_objects() -> None:
    answers = apply_defaults(TemplateSpec.parse(TEMPLATE), {**VALID, "replicas": 3})
    assert answers["language"] == "python"
    assert answers["replicas"] == 3
    assert answers["service"] == {"port": 8080, "path": "/"}


def test_valid_answers_have_no_problems() -> None:
    assert validate_parameters(TemplateSpec.parse(TEMPLATE), VALID) == {}


def test_per_field_problems_across_pages() -> None:
    answers = {
        "name": "Not Valid",
        "language": "rust",
        "replicas": "three",
        "service": {"port": 70000},
        "tags": ["ok", "far too long a tag"],
        "password": "short",
    }
    problems = validate_parameters(TemplateSpec.parse(TEMPLATE), answers)
    assert problems == {
        "name": ["must match the pattern ^[a-z][a-z0-9-]*$"],
        "owner": ["is required"],
        "language": ["must be one of: python, go"],
        "replicas": ["must be of type integer"],
        "service.port": ["must be at most 65535"],
        "tags[1]": ["must be at most 10 characters long"],
        "repoUrl": ["is required"],
        "password": ["must be at least 8 characters long"],
    }


def test_nested_required_and_messages_never_repeat_values() -> None:
    answers = {**VALID, "service": {}, "password": "hunter2"}
    problems = validate_parameters(TemplateSpec.parse(TEMPLATE), answers)
    assert problems["service.port"] == ["is required"]
    assert "hunter2" not in repr(problems)


def test_bad_templates_report_every_problem_with_its_path() -> None:
    template = _template(
        parameters=[{"properties": {"name": {"type": "strin"}}}, "not a page"],
        steps=[
            {"id": "publish", "action": "publish:git"},
            {"id": "fetch", "input": []},
            {"id": "publish", "action": "debug:log", "if": 3},
            {"action": "debug:log", "input": {"message": "${{ steps['later'].output.x }}"}},
            {"id": "later", "action": "no:such"},
        ],
        output={"links": [{"title": "nowhere"}], "text": [{"title": "no content"}]},
    )
    template["apiVersion"] = "backstage.io/v1alpha1"
    with pytest.raises(TemplateSpecError) as caught:
        TemplateSpec.parse(template, known_actions={"publish:git", "debug:log"})
    problems = caught.value.problems
    assert problems[0].startswith("apiVersion: expected 'scaffolder.backstage.io/v1beta3'")
    assert any(p.startswith("spec.parameters[0].properties.name.type: ") for p in problems)
    assert "spec.parameters[1]: must be an object" in problems
    assert "spec.steps[1].action: is required" in problems
    assert "spec.steps[1].input: must be an object" in problems
    assert "spec.steps[2].id: duplicate id 'publish'" in problems
    assert "spec.steps[2].if: must be a boolean or an expression" in problems
    assert "spec.steps[3]: refers to step 'later', which does not run before it" in problems
    assert "spec.steps[4].action: unknown action 'no:such'" in problems
    assert "spec.output.links[0]: needs a url or an entityRef" in problems
    assert "spec.output.text[0].content: is required" in problems
    assert caught.value.to_problem()["problems"] == problems


def test_output_referring_to_a_missing_step_is_a_problem() -> None:
    template = _template(
        output={"links": [{"url": "${{ steps.publsh.output.remoteUrl }}"}]},
    )
    assert template_problems(template) == [
        "spec.output: refers to step 'publsh', which does not exist"
    ]


def test_a_spec_that_is_not_an_object() -> None:
    assert template_problems(
        {"apiVersion": "scaffolder.backstage.io/v1beta3", "kind": "Template"}
    ) == ["spec: must be an object"]
