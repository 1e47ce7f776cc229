"""Entity data is untrusted: it renders as text and never runs or links to scripts."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e

HOSTILE = """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: hostile-widget
  title: "<img src=x onerror=window.pwned=2>"
  description: "<script>window.pwned=1</script>"
  tags: [xss]
  links:
    - url: "javascript:alert(1)"
      title: Click me
    - url: https://example.com/safe
      title: Safe link
  annotations:
    example.com/note: "<b>bold</b>"
spec:
  type: service
  lifecycle: production
  owner: "group:payments-team"
"""

HOSTILE_API = """
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: hostile-api
spec:
  type: openapi
  lifecycle: production
  owner: group:payments-team
  definition: |
    openapi: 3.0.3
    info:
      title: "<script>window.pwned=3</script>"
      version: "1"
      description: "[click](javascript:alert(1)) <script>window.pwned=4</script>"
    paths:
      /x:
        get:
          summary: "<img src=x onerror=window.pwned=5>"
          responses:
            "200":
              description: ok
              content:
                application/json:
                  schema:
                    $ref: "#/components/schemas/Loop"
    components:
      schemas:
        Loop:
          type: object
          properties:
            next:
              $ref: "#/components/schemas/Loop"
"""


@pytest.fixture(scope="module")
def hostile(portal: Any) -> Any:
    portal.register_yaml("hostile.yaml", HOSTILE)
    portal.register_yaml("hostile-api.yaml", HOSTILE_API)
    return portal


def test_hostile_description_renders_as_text(page: Any, hostile: Any) -> None:
    page.goto("/catalog/default/component/hostile-widget")
    expect(page.get_by_test_id("description")).to_have_text("<script>window.pwned=1</script>")
    expect(page.get_by_test_id("entity-title")).to_have_text("<img src=x onerror=window.pwned=2>")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("script:not([src])").count() == 0


def test_javascript_links_are_not_clickable(page: Any, hostile: Any) -> None:
    page.goto("/catalog/default/component/hostile-widget")
    links = page.get_by_test_id("links")
    expect(links).to_contain_text("Click me")
    expect(links).to_contain_text("javascript:alert(1)")
    assert page.locator('a[href^="javascript:" i]').count() == 0
    expect(links.get_by_role("link", name="Safe link")).to_have_attribute(
        "href", "https://example.com/safe"
    )


def test_hostile_rows_in_the_catalog_table_are_text(page: Any, hostile: Any) -> None:
    page.goto("/catalog?tag=xss")
    expect(page.get_by_test_id("catalog-row")).to_have_count(1)
    expect(page.get_by_test_id("catalog-row")).to_contain_text("<script>window.pwned=1</script>")
    assert page.evaluate("typeof window.pwned") == "undefined"


def test_hostile_openapi_definition_is_text_and_recursion_is_capped(
    page: Any, hostile: Any
) -> None:
    page.goto("/catalog/default/api/hostile-api#definition")
    operations = page.get_by_test_id("api-operations")
    expect(operations).to_contain_text("<img src=x onerror=window.pwned=5>")
    expect(page.get_by_test_id("api-definition")).to_contain_text("<script>window.pwned=3</script>")
    expect(operations).to_contain_text("recursive")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator('a[href^="javascript:" i]').count() == 0


def test_pages_forbid_inline_scripts(page: Any, hostile: Any) -> None:
    response = page.goto("/catalog/default/component/hostile-widget")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "'unsafe-inline'" not in policy
