"""The home page and the catalog table: counts, facets, search and paging."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def kind_counts(api: Any) -> dict[str, int]:
    facets = api("/api/v1/catalog/facets?facet=kind")["facets"]["kind"]
    return {str(item["value"]).lower(): int(item["count"]) for item in facets}


def test_home_page_shows_counts_by_kind(page: Any, api: Any) -> None:
    expected = kind_counts(api)
    page.goto("/")
    expect(page.get_by_role("heading", name="Welcome to Pavedroad")).to_be_visible()
    for kind in ("component", "api", "group", "user"):
        expect(page.get_by_test_id(f"kind-count-{kind}")).to_have_text(str(expected[kind]))
    page.get_by_test_id("kind-counts").get_by_role("link", name=re.compile("API")).click()
    expect(page).to_have_url(re.compile(r"/catalog\?kind=api$"))
    expect(page.get_by_test_id("catalog-row")).to_have_count(expected["api"])


def test_home_page_lists_recent_changes_and_links_to_them(page: Any) -> None:
    page.goto("/")
    recent = page.get_by_test_id("recent").get_by_role("link")
    expect(recent.first).to_be_visible()
    title = recent.first.inner_text()
    recent.first.click()
    expect(page.get_by_test_id("entity-title")).to_have_text(title)


def test_catalog_lists_components_with_owner_links(page: Any) -> None:
    page.goto("/catalog")
    row = page.get_by_test_id("catalog-row").filter(
        has=page.get_by_test_id("entity-link").get_by_text("Payments Service", exact=True)
    )
    expect(row).to_have_count(1)
    expect(row.get_by_text("Component", exact=True)).to_be_visible()
    expect(row.get_by_role("link", name="payments-team")).to_have_attribute(
        "href", "/catalog/default/group/payments-team"
    )
    expect(row.get_by_text("production")).to_be_visible()


def test_filtering_by_kind_narrows_rows_and_updates_facet_counts(page: Any, api: Any) -> None:
    expected = kind_counts(api)
    page.goto("/catalog")
    kind_facet = page.locator('[data-facet="kind"]')
    expect(kind_facet.locator('[data-value="component"] .count')).to_have_text(
        str(expected["component"])
    )
    kind_facet.locator('[data-value="component"]').click()
    expect(page).to_have_url(re.compile(r"kind=Component"))
    rows = page.get_by_test_id("catalog-row")
    expect(rows).to_have_count(expected["component"])
    for kind_cell in rows.locator("td:nth-child(2)").all_inner_texts():
        assert kind_cell.strip().lower() == "component"
    expect(page.get_by_test_id("result-count")).to_contain_text(str(expected["component"]))
    # Other facets now count components only; the kind facet still offers the other kinds.
    types = page.locator('[data-facet="type"]')
    expect(types.locator('[data-value="service"] .count')).to_be_visible()
    expect(types.locator('[data-value="team"]')).to_have_count(0)
    expect(kind_facet.locator('[data-value="api"] .count')).to_have_text(str(expected["api"]))
    # The active filter shows as a chip that removes it.
    page.get_by_test_id("active-filters").get_by_role("link", name=re.compile("Kind")).click()
    expect(page).to_have_url(re.compile(r"/catalog$"))


def test_search_box_finds_payments(page: Any) -> None:
    page.goto("/catalog")
    box = page.get_by_test_id("catalog-search").get_by_role("searchbox")
    box.fill("payments")
    box.press("Enter")
    expect(page).to_have_url(re.compile(r"q=payments"))
    names = page.get_by_test_id("entity-link")
    expect(names.filter(has_text="Payments Service")).to_have_count(1)
    expect(names.filter(has_text="Payments API")).to_have_count(1)
    expect(names.filter(has_text="Cart Service")).to_have_count(0)


def test_global_search_keeps_the_query_in_the_catalog(page: Any) -> None:
    page.goto("/")
    page.get_by_test_id("global-search").fill("fraud")
    page.get_by_test_id("global-search").press("Enter")
    expect(page.get_by_test_id("entity-link").filter(has_text="Fraud Scoring")).to_have_count(1)
    expect(page.get_by_test_id("catalog-search").get_by_role("searchbox")).to_have_value("fraud")


def row_names(page: Any) -> list[str]:
    """Each row's own entity, by its link (a row's first; owners and systems link too,
    and a template and a pipeline template may share a title)."""
    return page.get_by_test_id("catalog-row").evaluate_all(  # type: ignore[no-any-return]
        "rows => rows.map(r => r.querySelector('[data-testid=entity-link]').getAttribute('href'))"
    )


def test_paging_next_and_previous(page: Any, api: Any) -> None:
    total = api("/api/v1/catalog/entities?limit=1")["totalItems"]
    assert total > 50, "the demo must fill more than one page"
    page.goto("/catalog")
    rows = page.get_by_test_id("catalog-row")
    expect(rows).to_have_count(50)
    first_page = row_names(page)
    expect(page.get_by_test_id("pager")).to_contain_text(f"1\u201350 of {total}")
    page.get_by_test_id("next-page").click()
    expect(rows).to_have_count(total - 50)
    expect(page.get_by_test_id("pager")).to_contain_text(f"51\u2013{total} of {total}")
    second_page = row_names(page)
    assert not set(first_page) & set(second_page)
    page.get_by_test_id("prev-page").click()
    expect(rows).to_have_count(50)
    assert row_names(page) == first_page


def test_unknown_filter_values_show_an_empty_result(page: Any) -> None:
    response = page.goto("/catalog?kind=no-such-kind&tag=nothing")
    assert response.status == 200
    expect(page.get_by_test_id("no-results")).to_contain_text("Nothing matches")
    expect(page.get_by_test_id("active-filters")).to_contain_text("no-such-kind")


def test_locations_page_lists_the_demo_location(page: Any) -> None:
    page.goto("/")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Locations").click()
    row = page.get_by_test_id("location-row").filter(has_text="demo/catalog-info.yaml")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("OK")
    row.get_by_role("link").click()
    expect(page.get_by_test_id("sources-table")).to_contain_text("payments.yaml")
