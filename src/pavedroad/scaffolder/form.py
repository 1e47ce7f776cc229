"""The Create form: a template's parameter pages as form fields, and form posts as answers.

:func:`page_views` turns the template's pages (:func:`pavedroad.scaffolder.template.fields`)
into what the form shows: one fieldset per page, every input named by its answer's path
(``name``, ``service.port``), pickers filled from the catalog, defaults and per-field
errors in place. :func:`read_answers` turns the posted strings back into typed answers by
each field's type, and :func:`review_rows` lists them for the review step (secret answers
shown as dots). The routes that use all this are in :mod:`pavedroad.scaffolder.views`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

from fastapi import Request

from pavedroad.catalog.queries import MAX_LIMIT, CatalogReader, EntityQuery, Predicate
from pavedroad.catalog.refs import EntityRef
from pavedroad.git.views import owner_choices
from pavedroad.portal.templating import ref_label
from pavedroad.scaffolder.template import Field, Page

MAX_PICKER_OPTIONS = MAX_LIMIT
DEFAULT_REPO_HOST = "pavedroad"
SECRET_MASK = "\u2022" * 4
LINEAGE_SEPARATOR = " \u203a "  # a nested field: "Service, then Port" as one label

# -- the form: reading answers -----------------------------------------------------------------


class FormInput:
    """The posted form's text fields (files are ignored), in order."""

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = list(pairs)

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.pairs if key == name), None)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.pairs if key == name]

    def carried(self) -> list[tuple[str, str]]:
        """The answers' fields, to carry through the review page."""
        return [(k, v) for k, v in self.pairs if k not in ("csrf_token", "action")]


_MISSING: Any = object()
_INTEGER = re.compile(r"[+-]?\d{1,30}")
REPO_OWNER_SUFFIX = ":owner"
REPO_NAME_SUFFIX = ":repo"


def field_kind(item: Field) -> str:
    """How a field's answer is read from the form (and by ``scaffolder.js``): ``text``,
    ``integer``, ``number``, ``boolean``, ``enum``, ``multi`` (checkboxes of an array's
    enum), ``lines`` (an array of scalars, one per line), ``json``, ``repo``, ``object``
    or ``hidden``."""
    if item.ui.get("widget") == "hidden":
        return "hidden"
    if item.ui.get("field") == "RepoUrlPicker":
        return "repo"
    if item.type == "object":
        return "object" if item.fields else "json"
    if item.type == "array":
        items = item.items
        if items is not None and items.enum:
            return "multi"
        if items is None or (items.type in (None, "string", "integer", "number", "boolean")):
            return "lines"
        return "json"
    if item.enum is not None:
        return "enum"
    if item.type in ("boolean", "integer", "number"):
        return item.type
    return "text"


def form_text(value: Any) -> str:
    """A typed value as a form field holds it (strings as they are, the rest as JSON)."""
    return value if isinstance(value, str) else json.dumps(value)


def _scalar(type_: str | None, text: str) -> Any:
    """``text`` as the type says, or the text itself when it is not one (the schema then
    says what is wrong)."""
    text = text.strip()
    if type_ == "integer" or type_ == "number":
        if _INTEGER.fullmatch(text):
            return int(text)
        try:
            number = float(text)
        except ValueError:
            return text
        if number != number or number in (float("inf"), float("-inf")):
            return text
        if type_ == "integer":
            return int(number) if number.is_integer() else text
        return number
    if type_ == "boolean" and text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _enum_value(item: Field, text: str) -> Any:
    for option in item.enum or ():
        if form_text(option) == text:
            return option
    return _scalar(item.type, text)


def repo_url(host: str, owner: str, name: str) -> str:
    return f"{host}?{urlencode({'owner': owner, 'repo': name})}"


def repo_host(item: Field) -> str:
    options = item.ui.get("options")
    hosts = options.get("allowedHosts") if isinstance(options, Mapping) else None
    if isinstance(hosts, list) and hosts and isinstance(hosts[0], str):
        return hosts[0]
    return DEFAULT_REPO_HOST


def _read_value(item: Field, kind: str, form: FormInput, problems: dict[str, list[str]]) -> Any:
    if kind == "boolean":
        return (form.get(item.path) or "").lower() in ("true", "on", "1", "yes")
    if kind == "multi":
        assert item.items is not None
        return [_enum_value(item.items, text) for text in form.getlist(item.path)]
    if kind == "repo":
        owner = (form.get(item.path + REPO_OWNER_SUFFIX) or "").strip()
        name = (form.get(item.path + REPO_NAME_SUFFIX) or "").strip()
        if not name:
            return _MISSING
        if not owner:
            problems.setdefault(item.path, []).append("choose the repository's owner")
        return repo_url(repo_host(item), owner, name)
    text = form.get(item.path)
    if text is None or not text.strip():
        return _MISSING
    text = text.replace("\r\n", "\n")
    if kind == "lines":
        item_type = item.items.type if item.items else None
        return [_scalar(item_type, line) for line in text.split("\n") if line.strip()]
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            problems.setdefault(item.path, []).append(f"is not valid JSON ({exc.msg})")
            return text
    if kind == "enum":
        return _enum_value(item, text)
    if kind in ("integer", "number", "hidden"):
        return _scalar(item.type, text)
    return text


def _read_into(
    item: Field, form: FormInput, holder: dict[str, Any], problems: dict[str, list[str]]
) -> None:
    kind = field_kind(item)
    if kind == "object":
        inner: dict[str, Any] = {}
        for child in item.fields:
            _read_into(child, form, inner, problems)
        if inner:
            holder[item.name] = inner
        return
    value = _read_value(item, kind, form, problems)
    if value is not _MISSING:
        holder[item.name] = value


def read_answers(
    pages: Sequence[Page], form: FormInput
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The typed answers a posted form gives, and the problems only the form can see
    (a repository without an owner, JSON that does not parse), by field path."""
    answers: dict[str, Any] = {}
    problems: dict[str, list[str]] = {}
    for page in pages:
        for item in page.fields:
            _read_into(item, form, answers, problems)
    return answers, problems


# -- the form: what it shows -------------------------------------------------------------------


@dataclass(frozen=True)
class Option:
    value: str  # what the form sends
    label: str
    json: str  # the typed value, for the script
    selected: bool = False


@dataclass
class FieldView:
    """One field of the form, ready to render (``widget`` picks the markup)."""

    item: Field
    kind: str
    widget: str
    id: str
    label: str
    value: str = ""
    checked: bool = False
    options: list[Option] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    children: list[FieldView] = field(default_factory=list)
    input_type: str = "text"
    repo_owner: str = ""
    repo_name: str = ""
    repo_host: str = DEFAULT_REPO_HOST

    @property
    def name(self) -> str:
        return self.item.path

    @property
    def hint(self) -> str | None:
        help_text = self.item.ui.get("help")
        return help_text if isinstance(help_text, str) else None

    @property
    def placeholder(self) -> str:
        text = self.item.ui.get("placeholder")
        return text if isinstance(text, str) else ""

    @property
    def autofocus(self) -> bool:
        return self.item.ui.get("autofocus") is True

    @property
    def readonly(self) -> bool:
        return self.item.ui.get("readonly") is True or self.item.ui.get("disabled") is True

    @property
    def rows(self) -> int:
        options = self.item.ui.get("options")
        rows = options.get("rows") if isinstance(options, Mapping) else None
        return rows if isinstance(rows, int) and 1 <= rows <= 40 else 4

    @property
    def described_by(self) -> str:
        ids = []
        if self.item.description:
            ids.append(f"{self.id}-description")
        if self.hint or self.widget == "lines":
            ids.append(f"{self.id}-hint")
        if self.errors:
            ids.append(f"{self.id}-error")
        return " ".join(ids)

    def schema(self, key: str) -> Any:
        value = self.item.schema.get(key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def max_length(self) -> int | None:
        value = self.item.schema.get("maxLength")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def item_kind(self) -> str:
        return (self.item.items.type if self.item.items else None) or "string"

    def walk(self) -> Iterable[FieldView]:
        yield self
        for child in self.children:
            yield from child.walk()


@dataclass
class PageView:
    index: int
    title: str
    description: str
    fields: list[FieldView]

    @property
    def has_errors(self) -> bool:
        return any(view.errors for top in self.fields for view in top.walk())


@dataclass(frozen=True)
class Choices:
    """What the pickers offer, read once per form."""

    reader: CatalogReader
    repo_owners: list[str]

    def entities(self, item: Field, default_kinds: Sequence[str]) -> list[Option]:
        options = item.ui.get("options")
        predicate = catalog_predicate(
            options if isinstance(options, Mapping) else {}, default_kinds
        )
        query = EntityQuery(
            filter=predicate,
            limit=MAX_PICKER_OPTIONS,
            fields=[
                "kind",
                "metadata.name",
                "metadata.namespace",
                "metadata.title",
                "spec.profile",
            ],
            order=[("metadata.name", "asc")],
        )
        found = []
        items = self.reader.query(query).items
        kinds = {str(entity.get("kind", "")).lower() for entity in items}
        for entity in items:
            ref = EntityRef.of(entity).key
            metadata = entity.get("metadata") or {}
            profile = (entity.get("spec") or {}).get("profile")
            display = profile.get("displayName") if isinstance(profile, Mapping) else None
            title = metadata.get("title") or display
            label = ref_label(ref, str(entity.get("kind") or "") if len(kinds) == 1 else None)
            found.append(Option(ref, f"{title} ({label})" if title else label, json.dumps(ref)))
        return found


def catalog_predicate(options: Mapping[str, Any], default_kinds: Sequence[str]) -> Predicate:
    """A picker's ``catalogFilter`` (an object, or a list of objects ORed; a list value
    ORs its values; ``{exists: true}`` asks for the field) as a catalog predicate;
    ``allowedKinds`` (older pickers) or the picker's default kinds without one."""
    given = options.get("catalogFilter")
    if given is None:
        kinds = options.get("allowedKinds") or list(default_kinds)
        given = {"kind": kinds} if kinds else None
    alternatives = given if isinstance(given, list) else [given]
    predicates: list[dict[str, Any]] = []
    for alternative in alternatives:
        if not isinstance(alternative, Mapping):
            continue
        conditions: list[dict[str, Any]] = []
        for key, value in alternative.items():
            if isinstance(value, Mapping) and value.get("exists") is True:
                conditions.append({str(key): {"$exists": True}})
            elif isinstance(value, list):
                conditions.append({str(key): {"$in": [str(v) for v in value]}})
            elif isinstance(value, (str, int, float)):
                conditions.append({str(key): str(value)})
        if conditions:
            predicates.append(conditions[0] if len(conditions) == 1 else {"$all": conditions})
    if not predicates:
        return None
    return predicates[0] if len(predicates) == 1 else {"$any": predicates}


def _field_id(path: str) -> str:
    return "field-" + re.sub(r"[^A-Za-z0-9_-]", "-", path)


def _input_type(item: Field) -> str:
    return {"date": "date", "email": "email", "uri": "url", "date-time": "datetime-local"}.get(
        str(item.schema.get("format")), "text"
    )


def _field_view(item: Field, answers: Mapping[str, Any], choices: Choices) -> FieldView:
    """The field as the form shows it, holding ``answers``' value for it (never a secret)."""
    kind = field_kind(item)
    value = answers.get(item.name, _MISSING) if isinstance(answers, Mapping) else _MISSING
    view = FieldView(item, kind, kind, _field_id(item.path), item.title or item.name)
    if kind == "object":
        inner = value if isinstance(value, Mapping) else {}
        view.children = [_field_view(child, inner, choices) for child in item.fields]
    elif kind == "boolean":
        view.widget = "checkbox"
        view.checked = value is True
    elif kind in ("enum", "multi"):
        _choose_from_enum(view, value)
    elif kind == "repo":
        _choose_repository(view, value, choices.repo_owners)
    else:
        if value is not _MISSING and not item.secret:  # a secret is never written back
            view.value = _text_of(kind, value)
        _pick_text_widget(view, choices)
    return view


def _text_of(kind: str, value: Any) -> str:
    if kind == "lines" and isinstance(value, list):
        return "\n".join(form_text(line) for line in value)
    if kind == "json" and not isinstance(value, str):
        return json.dumps(value, indent=2)
    return form_text(value)


def _choose_from_enum(view: FieldView, value: Any) -> None:
    """A select (or radio buttons) for an enum; checkboxes for an array of an enum."""
    multi = view.kind == "multi"
    enum_field = view.item.items if multi else view.item
    assert enum_field is not None
    picked = value if multi and isinstance(value, list) else [value]
    picked_text = {form_text(v) for v in picked if v is not _MISSING}
    names = enum_field.enum_names or ()
    view.options = [
        Option(
            form_text(option),
            str(names[index]) if index < len(names) else form_text(option),
            json.dumps(option),
            form_text(option) in picked_text,
        )
        for index, option in enumerate(enum_field.enum or ())
    ]
    if multi:
        view.widget = "checkboxes"
    else:
        view.widget = "radio" if view.item.ui.get("widget") == "radio" else "select"


def _choose_repository(view: FieldView, value: Any, owners: list[str]) -> None:
    """A RepoUrlPicker: the owner (from ``allowedOwners``, else those the viewer may
    create repositories for) and the repository's name."""
    view.repo_host = repo_host(view.item)
    if isinstance(value, str) and "?" in value:
        query = parse_qs(value.partition("?")[2])
        view.repo_owner = (query.get("owner") or [""])[0]
        view.repo_name = (query.get("repo") or [""])[0]
    options = view.item.ui.get("options")
    allowed = options.get("allowedOwners") if isinstance(options, Mapping) else None
    if isinstance(allowed, list) and allowed:
        owners = [str(owner) for owner in allowed]
    if owners and view.repo_owner and view.repo_owner not in owners:
        owners = [*owners, view.repo_owner]  # as given: the server says if it may not be
    view.options = [
        Option(owner, owner, json.dumps(owner), owner == view.repo_owner) for owner in owners
    ]


def _pick_text_widget(view: FieldView, choices: Choices) -> None:
    item = view.item
    ui_field, widget = item.ui.get("field"), item.ui.get("widget")
    if item.secret:
        view.widget = "password"
    elif view.kind in ("lines", "json", "hidden"):
        view.widget = view.kind
    elif view.kind in ("integer", "number"):
        view.widget = "number"
    elif ui_field == "OwnerPicker":
        view.options = choices.entities(item, ("Group", "User"))
        view.widget = "owner" if view.options else "text"
    elif ui_field == "EntityPicker":
        view.options = choices.entities(item, ())
        view.widget = "entity"
    elif widget == "textarea":
        view.widget = "textarea"
    else:
        view.widget = "text"
        view.input_type = _input_type(item)


def page_views(
    request: Request, pages: Sequence[Page], answers: Mapping[str, Any]
) -> list[PageView]:
    with request.app.state.db.read_session() as session:
        choices = Choices(CatalogReader(session), owner_choices_names(request))
        return [
            PageView(
                index=index,
                title=page.title or f"Step {index + 1}",
                description=page.description or "",
                fields=[_field_view(item, answers, choices) for item in page.fields],
            )
            for index, page in enumerate(pages)
        ]


def owner_choices_names(request: Request) -> list[str]:
    """The owners a repository may be created for, by name (a RepoUrlPicker's owner)."""
    return [ref.split("/", 1)[1] for ref in owner_choices(request)]


@dataclass(frozen=True)
class Problem:
    label: str
    target: str  # the field's id
    message: str


def attach_errors(pages: list[PageView], errors: Mapping[str, list[str]]) -> list[Problem]:
    """Put each message next to its field; all of them, in form order, for the summary."""
    left = dict(errors)
    summary: list[Problem] = []
    for page in pages:
        for top in page.fields:
            for view in top.walk():
                for path in list(left):
                    if path == view.item.path or (
                        view.kind != "object" and path.startswith(view.item.path + "[")
                    ):
                        messages = left.pop(path)
                        view.errors.extend(messages)
                        summary += [Problem(view.label, view.id, m) for m in messages]
    first = pages[0].fields[0].id if pages and pages[0].fields else "template-form"
    for messages in left.values():
        summary += [Problem("The form", first, message) for message in messages]
    return summary


def form_defaults(pages: Sequence[Page]) -> dict[str, Any]:
    """Every field's default, nested objects' fields included (the form starts there)."""

    def defaults(items: Sequence[Field]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for item in items:
            if item.fields and item.default is None:
                inner = defaults(item.fields)
                if inner:
                    found[item.name] = inner
            elif item.default is not None:
                found[item.name] = item.default
        return found

    return defaults([item for page in pages for item in page.fields])


@dataclass(frozen=True)
class ReviewRow:
    label: str
    value: str
    secret: bool = False
    given: bool = True


def _display(view: FieldView) -> tuple[str, bool]:
    """An answer as the review shows it, and whether one was given."""
    if view.kind == "boolean":
        return ("Yes" if view.checked else "No"), True
    if view.kind in ("enum", "multi") or view.widget == "owner":
        picked = [o.label for o in view.options if o.selected or o.value == view.value]
        return ", ".join(picked), bool(picked)
    if view.kind == "repo":
        if not view.repo_name:
            return "", False
        return f"{view.repo_owner}/{view.repo_name} on {view.repo_host}", True
    if view.kind == "lines":
        lines = [line for line in view.value.split("\n") if line.strip()]
        return ", ".join(lines), bool(lines)
    return view.value, bool(view.value)


def review_rows(
    pages: list[PageView], answers: Mapping[str, Any]
) -> list[tuple[str, list[ReviewRow]]]:
    def given_secret(path: str) -> bool:
        holder: Any = answers
        for part in path.split("."):
            holder = holder.get(part, _MISSING) if isinstance(holder, Mapping) else _MISSING
        return holder is not _MISSING and holder != ""

    sections = []
    for page in pages:
        rows: list[ReviewRow] = []
        for top in page.fields:
            for view in top.walk():
                if view.kind == "object" or view.widget == "hidden":
                    continue
                label = (
                    LINEAGE_SEPARATOR.join(part.title or part.name for part in _lineage(top, view))
                    or view.label
                )
                if view.item.secret:
                    given = given_secret(view.item.path)
                    rows.append(ReviewRow(label, SECRET_MASK if given else "", True, given))
                else:
                    text, given = _display(view)
                    rows.append(ReviewRow(label, text, False, given))
        sections.append((page.title, rows))
    return sections


def _lineage(top: FieldView, target: FieldView) -> list[Field]:
    if top is target:
        return [top.item]
    for child in top.children:
        below = _lineage(child, target)
        if below:
            return [top.item, *below]
    return []
