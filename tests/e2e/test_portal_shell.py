"""The portal's shell: navigation, empty states, static files, and what stays an API."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_navigation_shows_what_exists_and_marks_the_current_page(page: Any) -> None:
    page.goto("/")
    nav = page.get_by_role("navigation", name="Main")
    labels = [label.strip() for label in nav.get_by_role("link").all_inner_texts()]
    assert labels == [
        "Home",
        "Catalog",
        "APIs",
        "Teams",
        "Repositories",
        "Pipelines",
        "Environments",
        "Create",
        "Locations",
    ]
    nav.get_by_role("link", name="Teams").click()
    expect(nav.get_by_role("link", name="Teams")).to_have_attribute("aria-current", "page")
    expect(page.get_by_test_id("entity-link").filter(has_text="Payments Team")).to_have_count(1)
    expect(page.get_by_role("link", name="API docs").first).to_have_attribute("href", "/api/docs")


def test_catalog_apis_is_the_catalog_filtered_to_apis(page: Any) -> None:
    page.goto("/catalog/apis")
    expect(page).to_have_url(re.compile(r"/catalog\?kind=api$"))
    expect(page.get_by_role("heading", name="APIs", exact=True)).to_be_visible()


def test_empty_catalog_says_what_to_do_next(browser: Any, empty_portal: Any) -> None:
    context = browser.new_context(base_url=empty_portal.url)
    context.add_cookies([empty_portal.session_cookie()])
    try:
        page = context.new_page()
        page.goto("/")
        empty = page.get_by_test_id("empty-catalog")
        expect(empty).to_contain_text("pave catalog register PATH")
        expect(empty).to_contain_text("pave up --demo")
        page.goto("/catalog")
        expect(page.get_by_test_id("no-results")).to_contain_text("pave catalog register PATH")
    finally:
        context.close()


def test_api_errors_stay_problem_json(portal: Any) -> None:
    response = httpx.get(
        f"{portal.url}/api/v1/catalog/entities/component/default/nope",
        headers={"accept": "text/html", "authorization": f"Bearer {portal.token}"},
    )
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    cookie = portal.session_cookie()
    page = httpx.get(
        f"{portal.url}/no-such-page",
        headers={"accept": "text/html"},
        cookies={cookie["name"]: cookie["value"]},
    )
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_stale_cursor_falls_back_to_the_first_page(page: Any) -> None:
    response = page.goto("/catalog?cursor=not-a-cursor&start=50")
    assert response.status == 200
    expect(page.locator(".notice")).to_contain_text("first page")
    expect(page.get_by_test_id("pager")).to_contain_text("1\u2013")


def test_stylesheet_is_served_from_static(portal: Any) -> None:
    response = httpx.get(f"{portal.url}/static/portal.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")
