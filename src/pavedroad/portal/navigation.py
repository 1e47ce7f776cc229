"""The portal's navigation: only what exists. Domains add their entry with
:func:`add_nav_item` when they mount their pages."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str
    href: str
    icon: str
    # Whether a request (path, query) belongs to this item; the longest prefix wins otherwise.
    matches: Callable[[str, Mapping[str, str]], bool] | None = field(default=None, compare=False)
    external: bool = False


def _kind_is(kind: str) -> Callable[[str, Mapping[str, str]], bool]:
    def matches(path: str, query: Mapping[str, str]) -> bool:
        return path == "/catalog" and query.get("kind", "").lower() == kind

    return matches


def _catalog(path: str, query: Mapping[str, str]) -> bool:
    return path.startswith("/catalog") and query.get("kind", "").lower() not in ("api", "group")


_ITEMS: list[NavItem] = [
    NavItem("home", "Home", "/", "home", lambda path, _q: path == "/"),
    NavItem("catalog", "Catalog", "/catalog", "catalog", _catalog),
    NavItem("apis", "APIs", "/catalog?kind=api", "api", _kind_is("api")),
    NavItem("groups", "Teams", "/catalog?kind=group", "team", _kind_is("group")),
    NavItem(
        "locations",
        "Locations",
        "/locations",
        "location",
        lambda path, _q: path.startswith("/locations"),
    ),
]

_FOOTER_ITEMS: list[NavItem] = [
    NavItem("api-docs", "API docs", "/api/docs", "docs", external=True),
]


def add_nav_item(item: NavItem, *, before: str | None = None) -> None:
    """Add a domain's entry to the side navigation (once)."""
    if any(existing.key == item.key for existing in _ITEMS):
        return
    keys = [existing.key for existing in _ITEMS]
    _ITEMS.insert(keys.index(before) if before in keys else len(_ITEMS), item)


def navigation() -> dict[str, list[NavItem]]:
    return {"main": list(_ITEMS), "footer": list(_FOOTER_ITEMS)}


def active_item(path: str, query: Mapping[str, str]) -> str | None:
    for item in _ITEMS:
        if item.matches is not None and item.matches(path, query):
            return item.key
    return None
