"""The portal's Secrets tab: an entity's secrets (``/catalog/<ns>/<kind>/<name>/secrets``)
grouped by environment, or, on an Environment's page, that environment's own secrets;
a secret's versions; and forms to set, generate, reveal, rotate, roll back, delete and
restore.

The access checks are the API's (:func:`pavedroad.secrets.api.allow`); the page only
offers the actions the policy allows. A value is shown once, in the answer to the
confirmed reveal form (sent with ``Cache-Control: no-store``), and never goes into a
URL, a redirect, a log or an audit target. Every change posts to a route with a dotted
name (``secret.set``, ...), so the audit log records it; a reveal is recorded as
``secret.read`` by the store itself, before the value is read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from pavedroad.catalog.queries import MAX_LIMIT, CatalogReader, EntityQuery
from pavedroad.catalog.refs import EntityRef
from pavedroad.catalog.views import EntityTab, tab_entity
from pavedroad.core.errors import InputError, NotFoundError, ProblemError
from pavedroad.identity.policy import decide, owners_of
from pavedroad.identity.web import form_token, keep_form_token
from pavedroad.portal.templating import add_template_directory, render, templates
from pavedroad.secrets.api import actor_name, allow, read_event
from pavedroad.secrets.generate import ALPHABETS, Generator
from pavedroad.secrets.scopes import NAME_RULE, SecretScope
from pavedroad.secrets.service import MAX_VALUE_BYTES, SecretStore, Write

router = APIRouter(include_in_schema=False)

TEMPLATES = Path(__file__).parent / "templates"
add_template_directory(TEMPLATES)
PAGES = ("secrets/list.html", "secrets/versions.html")

NO_STORE = {"Cache-Control": "no-store"}
ENTITY_PATH = "/catalog/{namespace}/{kind}/{name}/secrets"
SECRET_PATH = ENTITY_PATH + "/{secret}"
DEFAULT_LENGTH = 32

# Notices after a redirect; the URL names one, the text is ours.
NOTICES = {
    "set": "Saved: the new value is the current version.",
    "generated": "Generated: a new random value is the current version.",
    "rotated": "Rotated: a newly generated value is the current version.",
    "deleted": "Deleted: it cannot be read until restored; its versions are kept.",
    "restored": "Restored: it can be read and changed again.",
    "rolled-back": "Rolled back: a new version holds the earlier value.",
}

TextField = Annotated[str, Form(max_length=200)]
# No length limit here: the store refuses values over 64 KiB with a 413 the page shows
# (the request body limit bounds what arrives at all).
ValueField = Annotated[str, Form()]


# -- what a page is about ---------------------------------------------------------------------


@dataclass(frozen=True)
class SecretsPlace(EntityTab):
    """Whose secrets a page shows: an entity's (in every environment), or, on an
    Environment's page, the environment's own (scoped to it, no entity)."""

    tab: str = "secrets"

    @property
    def for_environment(self) -> bool:
        return self.ref.kind.lower() == "environment"

    @property
    def target(self) -> str:
        """The entity whose owners may read and change these secrets."""
        return self.scope("").target or self.ref.key

    def scope(self, environment: str | None) -> SecretScope:
        if self.for_environment:
            return SecretScope.parse(None, self.ref.name)
        return SecretScope.parse(self.ref.key, environment)

    def secrets(self, store: SecretStore, include_deleted: bool = True) -> list[dict[str, Any]]:
        if self.for_environment:
            return store.find(
                entity="", environment=self.scope("").environment, include_deleted=include_deleted
            )
        return store.find(entity=self.ref.key, include_deleted=include_deleted)

    def secret_url(self, name: str, environment: str | None) -> str:
        query = f"?{urlencode({'environment': environment})}" if environment else ""
        return f"{self.url}/{name}{query}"


@dataclass(frozen=True)
class SecretView:
    """A secret's metadata as the tables show it (never its value)."""

    name: str
    environment: str | None
    version: int
    generated: bool
    rotate_every: str | None
    rotation_due_at: datetime | None
    rotation_overdue: bool
    updated_by: str
    updated_at: datetime | None
    deleted_at: datetime | None
    url: str

    @classmethod
    def of(cls, meta: dict[str, Any], place: SecretsPlace) -> SecretView:
        environment = None if place.for_environment else meta["environment"]
        return cls(
            name=meta["name"],
            environment=environment,
            version=meta["version"],
            generated=meta["generated"],
            rotate_every=meta["rotateEvery"],
            rotation_due_at=_when(meta["rotationDueAt"]),
            rotation_overdue=meta["rotationOverdue"],
            updated_by=meta["updatedBy"],
            updated_at=_when(meta["updatedAt"]),
            deleted_at=_when(meta["deletedAt"]),
            url=place.secret_url(meta["name"], environment),
        )


@dataclass(frozen=True)
class SecretAccess:
    """What the viewer may do with the page's secrets, and why not."""

    may_read: bool
    may_write: bool
    owners: list[str]
    reason: str = ""


@dataclass(frozen=True)
class Revealed:
    name: str
    label: str
    version: int
    value: str


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _store(request: Request) -> SecretStore:
    return request.app.state.secrets  # type: ignore[no-any-return]


def _place(request: Request, namespace: str, kind: str, name: str) -> SecretsPlace | Response:
    """The page's entity, or the page saying it is not in the catalog."""
    found = tab_entity(request, namespace, kind, name)
    return found if isinstance(found, Response) else SecretsPlace(*found)


def _signed_out(request: Request) -> Response | None:
    """Secret names are for signed-in users (as in the API), even where anonymous
    visitors may read the catalog."""
    if request.state.actor is None and request.app.state.settings.auth.required:
        from pavedroad.portal.views import error_page

        return error_page(request, 401, "Not signed in", "Sign in to see secrets.")
    return None


def _access(request: Request, reader: CatalogReader, target: str) -> SecretAccess:
    owners = owners_of(reader, target)
    actor = request.state.actor
    if actor is None:  # only reaches a page while access control is off: anyone may
        return SecretAccess(True, True, owners)
    reading = decide(reader, actor, "secret.read", target)
    writing = decide(reader, actor, "secret.write", target)
    refused = reading if not reading.allowed else writing
    return SecretAccess(reading.allowed, writing.allowed, owners, refused.reason)


def _environments(reader: CatalogReader) -> list[str]:
    """The catalog's Environment names, for the forms' environment choice."""
    query = EntityQuery(
        filter={"kind": "environment"},
        limit=MAX_LIMIT,
        fields=["metadata.name"],
        order=[("metadata.name", "asc")],
    )
    names = [
        str((item.get("metadata") or {}).get("name", "")) for item in reader.query(query).items
    ]
    return [n.lower() for n in names if n]


def _groups(
    views: list[SecretView], place: SecretsPlace
) -> list[tuple[str, str, list[SecretView]]]:
    """(label, environment, secrets): every environment first, then by name."""
    if place.for_environment:
        return [(f"environment {place.ref.name}", "", views)] if views else []
    grouped: dict[str, list[SecretView]] = {}
    for view in views:
        grouped.setdefault(view.environment or "", []).append(view)
    return [
        (environment or "every environment", environment, grouped[environment])
        for environment in sorted(grouped)
    ]


def _response(request: Request, name: str, context: dict[str, Any], status_code: int) -> Response:
    context["csrf_token"] = form_token(request)  # a visitor while access control is off has none
    response = render(request, name, context, status_code)
    response.headers.update(NO_STORE)
    return keep_form_token(request, response)


def _list_page(
    request: Request,
    place: SecretsPlace,
    *,
    error: str | None = None,
    status_code: int = 200,
    form: dict[str, str] | None = None,
    revealed: Revealed | None = None,
) -> Response:
    store = _store(request)
    views = [SecretView.of(meta, place) for meta in place.secrets(store)]
    with request.app.state.catalog.reader() as reader:
        access = _access(request, reader, place.target)
        environments = [] if place.for_environment else _environments(reader)
    notice = None if error or revealed else NOTICES.get(request.query_params.get("notice", ""))
    context = {
        "title": f"Secrets of {place.title}",
        "place": place,
        "groups": _groups(views, place),
        "total": sum(1 for v in views if v.deleted_at is None),
        "access": access,
        "environments": environments,
        "alphabets": list(ALPHABETS),
        "default_length": DEFAULT_LENGTH,
        "max_value_kib": MAX_VALUE_BYTES // 1024,
        "name_rule": NAME_RULE,
        "error": error,
        "error_status": status_code if error else None,
        "form": form or {},
        "notice": notice,
        "revealed": revealed,
    }
    return _response(request, "secrets/list.html", context, status_code)


def secret_count(request: Request, ref: EntityRef) -> int | None:
    """How many secrets an entity page's Secrets tab holds (``None``: not for this viewer)."""
    if request.state.actor is None and request.app.state.settings.auth.required:
        return None
    place = SecretsPlace(ref, ref.name)
    return len(place.secrets(_store(request), include_deleted=False))


templates.env.globals["secret_count"] = secret_count


# -- the list ---------------------------------------------------------------------------------


@router.get(ENTITY_PATH)
def secrets_page(request: Request, namespace: str, kind: str, name: str) -> Response:
    if refused := _signed_out(request):
        return refused
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    return _list_page(request, place)


def _change(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: str,
    notice: str,
    change: Callable[[SecretStore, SecretScope, str], object],
    form: dict[str, str] | None = None,
) -> Response:
    """Check access to the secret's scope, make the change, and go back to the list
    with a notice; a refusal or error is shown on the list with its status."""
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    request.state.audit_target = f"{place.ref.key}/{secret[:100]}"
    try:
        scope = place.scope(environment)
        request.state.audit_target = f"{scope.label}/{secret}"[:2000]
        allow(request, scope, reading=False)
        change(_store(request), scope, actor_name(request))
    except ProblemError as exc:
        return _list_page(request, place, error=exc.detail, status_code=exc.status, form=form)
    return RedirectResponse(f"{place.url}?notice={notice}", status_code=303)


@router.post(ENTITY_PATH, name="secret.set")
def set_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: TextField = "",
    environment: TextField = "",
    value: ValueField = "",
    rotate_every: TextField = "",
) -> Response:
    # Browsers send a textarea's line breaks as CRLF; a pasted key or certificate has LF.
    plain = value.replace("\r\n", "\n")
    form = {"form": "set", "secret": secret, "environment": environment, "rotate": rotate_every}
    return _change(
        request,
        namespace,
        kind,
        name,
        secret.strip(),
        environment,
        "set",
        lambda store, scope, actor: store.set(
            scope, secret.strip(), plain, Write(actor), rotate_every.strip() or None
        ),
        form,
    )


@router.post(ENTITY_PATH + "/generate", name="secret.generate")
def generate_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: TextField = "",
    environment: TextField = "",
    length: TextField = str(DEFAULT_LENGTH),
    alphabet: TextField = "alphanumeric",
    rotate_every: TextField = "",
) -> Response:
    form = {
        "form": "generate",
        "secret": secret,
        "environment": environment,
        "length": length,
        "alphabet": alphabet,
        "rotate": rotate_every,
    }

    def generate(store: SecretStore, scope: SecretScope, actor: str) -> object:
        if alphabet not in ALPHABETS:
            raise InputError(f"choose an alphabet: {', '.join(ALPHABETS)}")
        generator = Generator(_number(length, "the length"), alphabet)
        return store.generate(
            scope, secret.strip(), generator, Write(actor), rotate_every.strip() or None
        )

    return _change(
        request, namespace, kind, name, secret.strip(), environment, "generated", generate, form
    )


@router.post(SECRET_PATH + "/rotate", name="secret.rotate")
def rotate_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: TextField = "",
) -> Response:
    return _change(
        request,
        namespace,
        kind,
        name,
        secret,
        environment,
        "rotated",
        lambda store, scope, actor: store.rotate(scope, secret, actor),
    )


@router.post(SECRET_PATH + "/delete", name="secret.delete")
def delete_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: TextField = "",
) -> Response:
    return _change(
        request,
        namespace,
        kind,
        name,
        secret,
        environment,
        "deleted",
        lambda store, scope, _actor: store.delete(scope, secret),
    )


@router.post(SECRET_PATH + "/restore", name="secret.restore")
def restore_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: TextField = "",
) -> Response:
    return _change(
        request,
        namespace,
        kind,
        name,
        secret,
        environment,
        "restored",
        lambda store, scope, _actor: store.restore(scope, secret),
    )


# -- revealing a value -----------------------------------------------------------------------


# Not a dotted name: the store records the read (secret.read) itself, before the value
# leaves it; the audit middleware still records a refusal of this route.
@router.post(SECRET_PATH + "/reveal")
def reveal_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: TextField = "",
) -> Response:
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    request.state.audit_target = f"{place.ref.key}/{secret[:100]}"
    try:
        scope = place.scope(environment)
        request.state.audit_target = f"{scope.label}/{secret}"[:2000]
        allow(request, scope, reading=True)
        value, meta = _store(request).reveal(scope, secret, None, read_event(request))
    except ProblemError as exc:
        return _list_page(request, place, error=exc.detail, status_code=exc.status)
    revealed = Revealed(secret, scope.label, int(meta["version"]), value)
    return _list_page(request, place, revealed=revealed)


# -- a secret's versions ---------------------------------------------------------------------


def _versions_page(
    request: Request,
    place: SecretsPlace,
    secret: str,
    environment: str,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    store = _store(request)
    try:
        scope = place.scope(environment)
        meta = store.metadata(scope, secret)
        history = store.history(scope, secret)
    except (InputError, NotFoundError) as exc:
        return render(
            request,
            "portal/not_found.html",
            {
                "title": "Not found",
                "message": exc.detail,
                "back": (place.url, f"Secrets of {place.title}"),
            },
            status_code=404,
        )
    with request.app.state.catalog.reader() as reader:
        access = _access(request, reader, place.target)
    versions = [{**v, "created": _when(v["createdAt"])} for v in history]
    context = {
        "title": f"{secret} · Secrets of {place.title}",
        "place": place,
        "secret": SecretView.of(meta, place),
        "scope_label": scope.label,
        "environment": "" if place.for_environment else scope.environment,
        "versions": versions,
        "access": access,
        "error": error,
        "error_status": status_code if error else None,
        "notice": None if error else NOTICES.get(request.query_params.get("notice", "")),
    }
    return _response(request, "secrets/versions.html", context, status_code)


@router.get(SECRET_PATH)
def versions_page(
    request: Request, namespace: str, kind: str, name: str, secret: str, environment: str = ""
) -> Response:
    if refused := _signed_out(request):
        return refused
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    return _versions_page(request, place, secret, environment[:63])


@router.post(SECRET_PATH + "/rollback", name="secret.rollback")
def rollback_secret(
    request: Request,
    namespace: str,
    kind: str,
    name: str,
    secret: str,
    environment: TextField = "",
    version: TextField = "",
    expected_version: TextField = "",
) -> Response:
    """A new version with an older one's value; ``expected_version`` is the version the
    page showed as current, so a change made meanwhile is refused (409), not undone."""
    place = _place(request, namespace, kind, name)
    if isinstance(place, Response):
        return place
    request.state.audit_target = f"{place.ref.key}/{secret[:100]}"
    try:
        scope = place.scope(environment)
        request.state.audit_target = f"{scope.label}/{secret} to version {version[:12]}"[:2000]
        allow(request, scope, reading=False)
        write = Write(actor_name(request), _number(expected_version, "the expected version"))
        _store(request).rollback(scope, secret, _number(version, "the version"), write)
    except ProblemError as exc:
        return _versions_page(
            request, place, secret, environment, error=exc.detail, status_code=exc.status
        )
    back = place.secret_url(secret, None if place.for_environment else scope.environment)
    joiner = "&" if "?" in back else "?"
    return RedirectResponse(f"{back}{joiner}notice=rolled-back", status_code=303)


def _number(text: str, what: str) -> int:
    if not text.strip().isdigit() or len(text.strip()) > 9:
        raise InputError(f"{what} must be a whole number")
    return int(text.strip())
