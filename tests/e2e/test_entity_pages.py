"""Entity pages: overview, relation graph, API definitions, groups, users, 404s."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_entity_overview_and_owner_link(page: Any) -> None:
    page.goto("/catalog/default/component/payments-service")
    expect(page.get_by_test_id("entity-title")).to_have_text("Payments Service")
    about = page.get_by_test_id("about")
    expect(about).to_contain_text("Authorises, captures and refunds")
    expect(about).to_contain_text("commerce")  # the domain, through the system
    expect(page.get_by_test_id("links").get_by_role("link", name="Runbook")).to_have_attribute(
        "href", "https://docs.acme-retail.example/runbooks/payments-service"
    )
    page.get_by_test_id("owner-link").click()
    expect(page).to_have_url(re.compile(r"/catalog/default/group/payments-team$"))
    expect(page.get_by_test_id("entity-title")).to_have_text("Payments Team")


def test_relations_graph_draws_linked_nodes(page: Any) -> None:
    page.goto("/catalog/default/component/payments-service")
    graph = page.get_by_test_id("relations-graph")
    expect(graph).to_be_visible()
    nodes = graph.locator(".g-node")
    assert nodes.count() >= 6  # the entity, its owner, system, API and dependencies
    expect(graph.locator(".g-node.root")).to_contain_text("Payments Service")
    expect(graph.locator(".g-edge-label", has_text="dependsOn").first).to_be_visible()
    graph.locator('a:has(.g-node[data-ref="resource:default/payments-db"])').click()
    expect(page).to_have_url(re.compile(r"/catalog/default/resource/payments-db$"))


def test_related_objects_are_grouped_by_relation(page: Any) -> None:
    page.goto("/catalog/default/component/payments-service")
    related = page.get_by_test_id("related")
    depends = related.locator('[data-relation="dependsOn"]')
    expect(depends.get_by_role("link")).to_have_count(3)
    expect(related.locator('[data-relation="providesApi"]')).to_contain_text("Payments API")


def test_unresolved_relations_are_grey_and_not_linked(page: Any, portal: Any) -> None:
    portal.register_yaml(
        "dangling.yaml",
        """
apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: dangling-service
spec:
  type: service
  lifecycle: experimental
  owner: group:payments-team
  dependsOn: [component:ghost-service]
""",
    )
    page.goto("/catalog/default/component/dangling-service")
    ghost = page.get_by_test_id("relations-graph").locator(
        '.g-node[data-ref="component:default/ghost-service"]'
    )
    expect(ghost).to_have_class(re.compile("unresolved"))
    expect(ghost).to_contain_text("not in catalog")
    assert page.locator('a:has(.g-node[data-ref="component:default/ghost-service"])').count() == 0
    expect(page.locator(".g-edge.unresolved")).to_have_count(1)
    related = page.get_by_test_id("related").locator('[data-relation="dependsOn"]')
    expect(related).to_contain_text("ghost-service")
    expect(related.get_by_role("link")).to_have_count(0)


def test_entity_lookup_ignores_case(page: Any) -> None:
    response = page.goto("/catalog/DEFAULT/Component/Payments-Service")
    assert response.status == 200
    expect(page.get_by_test_id("entity-title")).to_have_text("Payments Service")


def test_api_page_renders_openapi_operations(page: Any) -> None:
    page.goto("/catalog/default/api/payments-api")
    page.get_by_role("link", name="Definition").click()
    operations = page.get_by_test_id("api-operations")
    expect(operations).to_be_visible()
    get_payment = operations.locator("details", has_text="/payments/{paymentId}").filter(
        has=page.locator(".method", has_text="GET")
    )
    expect(get_payment).to_have_count(1)
    expect(get_payment).to_contain_text("Get a payment")
    expect(get_payment.locator(".params")).to_contain_text("paymentId")
    # The response schema is followed through its $ref into components.
    expect(get_payment.locator(".responses")).to_contain_text("partially_refunded")
    expect(page.get_by_test_id("api-definition")).to_contain_text("api.acme-retail.example")


def test_non_openapi_definitions_show_as_text(page: Any) -> None:
    page.goto("/catalog/default/api/order-events#definition")
    expect(page.get_by_test_id("raw-definition")).to_contain_text("asyncapi: 2.6.0")


def test_tabs_work_without_javascript(browser: Any, portal: Any) -> None:
    context = browser.new_context(base_url=portal.url, java_script_enabled=False)
    context.add_cookies([portal.session_cookie()])
    try:
        page = context.new_page()
        page.goto("/catalog/default/api/payments-api")
        expect(page.get_by_test_id("about")).to_be_visible()
        expect(page.get_by_test_id("api-operations")).to_be_hidden()
        page.get_by_role("link", name="Definition").click()
        expect(page.get_by_test_id("api-operations")).to_be_visible()
        expect(page.get_by_test_id("about")).to_be_hidden()
        page.get_by_role("link", name="YAML").click()
        expect(page.get_by_test_id("raw-yaml")).to_contain_text("name: payments-api")
    finally:
        context.close()


def test_group_page_lists_members_children_and_owned_entities(page: Any) -> None:
    page.goto("/catalog/default/group/payments-team")
    members = page.get_by_test_id("members")
    expect(members.get_by_role("link", name="Frank Jansen")).to_be_visible()
    expect(members.locator(".person")).to_have_count(3)
    owned = page.get_by_test_id("owned")
    for name in ("Payments Service", "Payments API", "Payments database"):
        expect(owned.get_by_role("link", name=name)).to_be_visible()
    page.get_by_test_id("hierarchy").get_by_role("link", name="Engineering").click()
    expect(page.get_by_test_id("child-groups").get_by_role("link")).to_have_count(5)


def test_user_page_lists_groups_and_what_they_own_through_them(page: Any) -> None:
    page.goto("/catalog/default/user/alice")
    expect(page.get_by_test_id("entity-title")).to_have_text("Alice Nakamura")
    expect(page.get_by_test_id("user-groups").get_by_role("link")).to_contain_text("Platform Team")
    through = page.get_by_test_id("owned-through-group")
    expect(through).to_contain_text("Platform Team")
    expect(through.get_by_role("link", name="Service Chassis")).to_be_visible()


def test_status_tab_shows_processing_status(page: Any) -> None:
    page.goto("/catalog/default/component/payments-service#status")
    status = page.get_by_test_id("status")
    expect(status).to_be_visible()
    expect(status).to_contain_text("OK")
    expect(status).to_contain_text("payments.yaml")


def test_unknown_entity_gives_a_helpful_404(page: Any) -> None:
    response = page.goto("/catalog/default/component/payment-servic")
    assert response.status == 404
    not_found = page.get_by_test_id("not-found")
    expect(not_found).to_contain_text("No component named 'payment-servic'")
    expect(page.get_by_role("link", name="Payments Service")).to_be_visible()  # a suggestion
    response = page.goto("/no/such/page")
    assert response.status == 404
    expect(page.get_by_test_id("not-found")).to_contain_text("/no/such/page")


def test_unreadable_openapi_definition_falls_back_to_text(page: Any, portal: Any) -> None:
    portal.register_yaml(
        "broken-api.yaml",
        """
apiVersion: backstage.io/v1alpha1
kind: API
metadata:
  name: broken-api
spec:
  type: openapi
  lifecycle: production
  owner: group:payments-team
  definition: "openapi: [3.0\\n  paths: {"
""",
    )
    page.goto("/catalog/default/api/broken-api#definition")
    expect(page.get_by_test_id("definition-error")).to_contain_text("could not be read")
    expect(page.get_by_test_id("raw-definition")).to_contain_text("openapi: [3.0")
