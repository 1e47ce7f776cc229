"""The portal's shell: layout, navigation, static assets, the home page and the
HTML 404 page browsers get instead of problem+json."""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from pavedroad.catalog import portal_data
from pavedroad.catalog import views as catalog_views
from pavedroad.catalog.service import CatalogService
from pavedroad.git import views as git_views
from pavedroad.identity import views as identity_views
from pavedroad.pipelines import views as pipelines_views
from pavedroad.portal.templating import render, templates
from pavedroad.scaffolder import views as scaffolder_views
from pavedroad.secrets import views as secrets_views

STATIC_DIR = Path(__file__).parent / "static"
RECENT_LIMIT = 8
PRECOMPILED = (
    "portal/home.html",
    "portal/not_found.html",
    "portal/error.html",
    "portal/sign_in.html",
    "catalog/list.html",
    "catalog/entity.html",
    "catalog/locations.html",
    *identity_views.PAGES,
    *secrets_views.PAGES,
    *git_views.PAGES,
    *scaffolder_views.PAGES,
    *pipelines_views.PAGES,
)

# Paths whose errors stay machine-readable whatever the client accepts.
_API_PREFIXES = ("/api/", "/healthz", "/metrics", "/static/")


def mount_portal(app: FastAPI) -> None:
    """Add the portal's pages, its static files and its browser-facing 404 page."""
    app.include_router(catalog_views.router)
    app.include_router(identity_views.router)
    app.include_router(secrets_views.router)
    app.include_router(git_views.router)
    app.include_router(scaffolder_views.router)
    app.include_router(pipelines_views.router)
    # Imported here, after the other domains, so its menu entry follows Pipelines'.
    from pavedroad.environments import views as environments_views

    app.include_router(environments_views.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        return home_page(request, request.app.state.catalog)

    _install_html_not_found(app)
    # Compile the main pages now rather than in the first visitor's request.
    for name in (*PRECOMPILED, *environments_views.PAGES):
        templates.env.get_template(name)


def home_page(request: Request, service: CatalogService) -> Response:
    with service.reader() as reader:
        total = reader.count()
        kinds = reader.facets(["kind"])["kind"]
        recent = (
            reader.cached(
                ("portal", "recent"),
                lambda: portal_data.recent_entities(reader.session, RECENT_LIMIT),
            )
            if total
            else []
        )
        summary = reader.cached(("portal", "summary"), reader.processing_summary)
    kinds = sorted(kinds, key=lambda k: (-k["count"], str(k["value"]).lower()))
    return render(
        request,
        "portal/home.html",
        {"title": "Home", "total": total, "kinds": kinds, "recent": recent, "summary": summary},
    )


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    """A refusal or failure as a page, for browsers."""
    return render(
        request,
        "portal/error.html",
        {"title": title, "status": status, "message": message},
        status_code=status,
    )


def _install_html_not_found(app: FastAPI) -> None:
    """Browsers asking for a page that does not exist get a page, not JSON."""
    fallback = app.exception_handlers.get(StarletteHTTPException)

    async def not_found(request: Request, exc: Exception) -> Response:
        if (
            isinstance(exc, StarletteHTTPException)
            and exc.status_code == 404
            and request.method in ("GET", "HEAD")
            and _wants_html(request)
        ):
            return render(
                request,
                "portal/not_found.html",
                {
                    "title": "Not found",
                    "message": f"There is no page at {request.url.path}.",
                    "hint": "The link may be old, or the address mistyped.",
                },
                status_code=404,
            )
        if fallback is None:
            raise exc
        response = fallback(request, exc)
        return await response if inspect.isawaitable(response) else response

    app.add_exception_handler(StarletteHTTPException, not_found)


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(_API_PREFIXES) or path in ("/api", "/healthz", "/metrics"):
        return False
    return "text/html" in request.headers.get("accept", "")
