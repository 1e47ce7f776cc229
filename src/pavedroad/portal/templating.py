"""The portal's one template environment, its filters and the page response helper.

Every page renders through :func:`render`, so every page gets the same layout
context, autoescaping and security headers. Domains add their template folders with
:func:`add_template_directory`; template names are prefixed by domain
(``portal/base.html``, ``catalog/entity.html``) so folders never shadow each other.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from markdown_it import MarkdownIt
from markupsafe import Markup
from starlette.responses import Response

from pavedroad import __version__
from pavedroad.catalog.refs import EntityRef, parse_ref
from pavedroad.core.errors import InputError
from pavedroad.core.timeutil import as_utc, isoformat, utcnow
from pavedroad.portal.navigation import active_item, navigation

PORTAL_TEMPLATES = Path(__file__).parent / "templates"
CATALOG_TEMPLATES = Path(__file__).parent.parent / "catalog" / "templates"

SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto"})

# Pages show untrusted catalog data: nothing may run or load from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

_loaders: list[jinja2.BaseLoader] = [
    jinja2.FileSystemLoader(str(PORTAL_TEMPLATES)),
    jinja2.FileSystemLoader(str(CATALOG_TEMPLATES)),
]
_loader = jinja2.ChoiceLoader(_loaders)
_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def add_template_directory(path: Path) -> None:
    """Let a domain's templates be found by name (``<domain>/<page>.html``)."""
    if not any(getattr(loader, "searchpath", None) == [str(path)] for loader in _loaders):
        _loaders.append(jinja2.FileSystemLoader(str(path)))


# -- filters -----------------------------------------------------------------------------


def entity_path(kind: str, namespace: str, name: str) -> str:
    """The portal page of an entity: ``/catalog/<namespace>/<kind>/<name>``."""
    return "/catalog/{}/{}/{}".format(
        quote(namespace.lower() or "default", safe=""),
        quote(kind.lower(), safe=""),
        quote(name, safe=""),
    )


def entity_url(
    target: Any, default_kind: str | None = None, default_namespace: str = "default"
) -> str:
    """A link to an entity given its body, a :class:`EntityRef`, or a ref string."""
    if isinstance(target, dict) and "metadata" in target:
        ref = EntityRef.of(target)
    elif isinstance(target, EntityRef):
        ref = target
    else:
        try:
            ref = parse_ref(target, default_kind, default_namespace)
        except InputError:
            return ""
    return entity_path(ref.kind, ref.namespace, ref.name)


def ref_label(
    target: Any, default_kind: str | None = None, default_namespace: str = "default"
) -> str:
    """The shortest readable form of a ref: ``payments-team``, ``group:payments-team``."""
    try:
        ref = parse_ref(target, default_kind, default_namespace)
    except InputError:
        return str(target)
    return ref.display(default_kind, default_namespace)


def safe_url(url: Any) -> str | None:
    """The URL when it is safe to link to (http, https, mailto), else ``None``."""
    if not isinstance(url, str):
        return None
    text = url.strip()
    if any(ord(c) < 32 for c in text):
        return None
    scheme = urlsplit(text).scheme.lower()
    return text if scheme in SAFE_URL_SCHEMES else None


def markdown(text: Any) -> Markup:
    """CommonMark as HTML; raw HTML in the text is escaped, unsafe links are dropped."""
    if not isinstance(text, str) or not text.strip():
        return Markup("")
    return Markup(_markdown.render(text))


def time_ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = (utcnow() - as_utc(value)).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for size, unit in (
        (86400 * 365, "year"),
        (86400 * 30, "month"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
    ):
        if seconds >= size:
            amount = int(seconds // size)
            text = f"{amount} {unit}{'s' if amount != 1 else ''}"
            return f"in {text}" if future else f"{text} ago"
    return "in a moment" if future else "just now"


def number(value: int) -> str:
    return f"{value:,}"


def humanize_relation(relation_type: str) -> str:
    """``apiConsumedBy`` → ``API consumed by``."""
    words: list[str] = []
    current = ""
    for char in relation_type:
        if char.isupper() and current:
            words.append(current)
            current = char.lower()
        else:
            current += char
    words.append(current)
    words = ["API" if w.lower() == "api" else w for w in words]
    text = " ".join(words)
    return text[:1].upper() + text[1:]


def _build_templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=_loader,
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters.update(
        {
            "entity_url": entity_url,
            "ref_label": ref_label,
            "safe_url": safe_url,
            "markdown": markdown,
            "time_ago": time_ago,
            "isoformat": isoformat,
            "number": number,
            "humanize_relation": humanize_relation,
        }
    )
    environment.globals.update({"version": __version__, "entity_path": entity_path})
    return Jinja2Templates(env=environment)


templates = _build_templates()


def render(
    request: Request, name: str, context: dict[str, Any] | None = None, status_code: int = 200
) -> Response:
    """A portal page: the template with the layout's context and the security headers."""
    web_session = getattr(request.state, "web_session", None)
    page = {
        "current_user": getattr(request.state, "actor", None),
        "csrf_token": web_session.csrf_token if web_session else None,
        "navigation": navigation(),
        "active_nav": active_item(request.url.path, dict(request.query_params)),
        "search_query": request.query_params.get("q", "") if request.url.path == "/catalog" else "",
        **(context or {}),
    }
    return templates.TemplateResponse(
        request, name, page, status_code=status_code, headers=SECURITY_HEADERS
    )
