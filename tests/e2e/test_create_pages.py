"""The Create pages in a real browser: the template list (search, tag filter), the
Python web service form as a wizard (Next checks each page through the API, a review,
Create), the task page's live log and steps, its output link to the new entity, whose
page then shows the template it was made from and offers an update; a wrong answer
shown on its field; a dry run's file tree; cancel and retry; the same form without
JavaScript (Review, then Create; the task page refreshes itself); a viewer refused;
a hostile template rendered as text.

The shared server (conftest) is built without ``background=True``, so nothing
consumes the job queue: :class:`Worker` runs a consumer in this process, and the
main test starts it only once the task page is open, so the page is seen to update
live. The server is shared by every e2e module, so each test uses names of its own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from playwright.sync_api import expect

from pavedroad.identity.policy import Role

pytestmark = pytest.mark.e2e

FORM = "/create/templates/default/python-web-service"
TASK_URL = re.compile(r"/create/tasks/[0-9a-f-]{36}")
OWNER_LABEL = "Checkout Team (checkout-team)"
RUN_TIMEOUT = 90_000  # ms: a task starts a process, renders, pushes and registers


class Worker:
    """A job-queue consumer in the test process, started and stopped at will."""

    def __init__(self, portal: Any) -> None:
        self.queue = portal.app.state.queue
        self.consumer: Any = None

    def start(self) -> None:
        if self.consumer is None:
            self.consumer = self.queue.consumer(2)
            self.consumer.start()

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.stop_and_wait(timeout=60)
            self.consumer = None


@pytest.fixture(scope="module")
def worker(portal: Any) -> Iterator[Worker]:
    running = Worker(portal)
    yield running
    running.stop()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _fill_first_page(page: Any, name: str, system: str | None = None) -> None:
    page.locator("#field-name").fill(name)
    page.locator("#field-description").fill(f"Tells the shelves about {name}.")
    page.locator("#field-owner").select_option(label=OWNER_LABEL)
    if system:  # optional: left unanswered otherwise
        page.locator("#field-system").fill(system)


def _fill_repository(page: Any, name: str) -> None:
    page.locator("#field-repoUrl-owner").select_option("checkout-team")
    page.locator("#field-repoUrl").fill(name)


def _wizard_to_review(page: Any, name: str) -> None:
    """Fill the form with JavaScript on, page by page, up to the review."""
    page.goto(FORM)
    _fill_first_page(page, name, system="system:default/storefront")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#field-repoUrl")).to_be_visible()
    _fill_repository(page, name)
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("review")).to_be_visible()


def _wait_until_done(page: Any, status: str = "completed") -> None:
    expect(page.get_by_test_id("task-title").get_by_test_id("task-status")).to_have_attribute(
        "data-status", status, timeout=RUN_TIMEOUT
    )


# -- the list -----------------------------------------------------------------------------------


def test_the_list_searches_and_filters_by_tag(page: Any) -> None:
    page.goto("/create")
    expect(page.locator(".sidebar a.active")).to_have_text("Create")
    cards = page.get_by_test_id("template-card")
    expect(cards).to_have_count(3)
    expect(cards.first).to_contain_text("platform-team")

    page.get_by_test_id("tag-filter").get_by_role("link", name=re.compile(r"^library")).click()
    expect(page).to_have_url(re.compile(r"/create\?tag=library$"))
    expect(cards).to_have_count(1)
    expect(cards).to_contain_text("Python library")
    expect(page.get_by_test_id("active-filters")).to_contain_text("Tag: library")

    page.get_by_label("Search templates").fill("mkdocs docs")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("no-match")).to_contain_text("No template matches")
    page.get_by_role("link", name="Clear all").click()
    expect(cards).to_have_count(3)

    page.get_by_label("Search templates").fill("markdown")
    page.get_by_role("button", name="Search").click()
    expect(cards).to_have_count(1)
    expect(cards).to_contain_text("Documentation site")


def test_a_template_entity_links_to_its_form(page: Any) -> None:
    page.goto("/catalog/default/template/python-library")
    page.get_by_test_id("create-from-template").click()
    expect(page).to_have_url(re.compile(r"/create/templates/default/python-library$"))
    expect(page.get_by_test_id("template-title")).to_have_text("Python library")
    info = page.get_by_test_id("template-info")
    expect(info).to_contain_text("library")
    expect(info.get_by_test_id("template-versions")).to_contain_text("1")


# -- creating through the wizard -----------------------------------------------------------


def test_create_a_web_service_and_watch_it_run(page: Any, portal: Any, worker: Worker) -> None:
    name = _unique("stock")
    worker.stop()  # the task waits until the page is open, so the page is seen to update
    page.goto("/create")
    page.get_by_test_id("tag-filter").get_by_role("link", name=re.compile(r"^service")).click()
    expect(page.get_by_test_id("template-card")).to_have_count(1)
    page.get_by_role("link", name="Python web service").click()
    expect(page).to_have_url(re.compile(FORM + "$"))

    # a wizard: one page at a time
    pages = page.get_by_test_id("form-page")
    expect(pages.nth(0)).to_be_visible()
    expect(pages.nth(1)).to_be_hidden()
    expect(page.locator("#field-port")).to_have_value("8080")  # the default
    _fill_first_page(page, name)
    page.get_by_role("button", name="Next").click()
    expect(pages.nth(0)).to_be_hidden()
    expect(pages.nth(1)).to_be_visible()
    page.get_by_role("button", name="Back").click()
    expect(page.locator("#field-name")).to_have_value(name)
    page.get_by_role("button", name="Next").click()
    _fill_repository(page, name)
    page.get_by_role("button", name="Next").click()

    review = page.get_by_test_id("review")
    expect(review).to_be_visible()
    expect(review).to_contain_text(name)
    expect(review).to_contain_text(OWNER_LABEL)
    expect(review).to_contain_text(f"checkout-team/{name} on pavedroad")
    expect(review.get_by_test_id("review-row").filter(has_text="Port")).to_contain_text("8080")
    page.get_by_role("button", name="Create", exact=True).click()

    expect(page).to_have_url(TASK_URL)
    status = page.get_by_test_id("task-title").get_by_test_id("task-status")
    expect(status).to_have_attribute("data-status", "open")
    steps = page.get_by_test_id("task-step")
    expect(steps).to_have_count(3)
    expect(steps.first).to_contain_text("Render the skeleton")
    page.evaluate("window.__samePage = true")

    worker.start()
    # lines and step statuses arrive over the event stream, without a reload
    page.wait_for_function(
        """() => window.__samePage === true
          && document.querySelectorAll('[data-log] .log-line').length > 0
          && [...document.querySelectorAll('[data-testid=step-status]')]
               .some(badge => badge.dataset.status === 'completed')""",
        timeout=RUN_TIMEOUT,
    )
    # the completion reloads the page, which shows the output
    expect(page.get_by_test_id("task-output")).to_be_visible(timeout=RUN_TIMEOUT)
    assert page.evaluate("window.__samePage") is None
    expect(status).to_have_attribute("data-status", "completed")
    for index in range(3):
        expect(steps.nth(index).get_by_test_id("step-status")).to_have_attribute(
            "data-status", "completed"
        )
    expect(page.get_by_test_id("task-log")).to_contain_text(
        f"created the repository checkout-team/{name}"
    )
    assert portal.app.state.git.repo("checkout-team", name) is not None

    page.get_by_role("link", name="Open in catalog").click()
    expect(page).to_have_url(re.compile(f"/catalog/default/component/{name}$"))
    expect(page.get_by_test_id("entity-title")).to_have_text(name)
    box = page.get_by_test_id("template-box")
    expect(box.get_by_test_id("made-from-template")).to_have_text("Python web service")
    expect(box.get_by_test_id("versions-behind")).to_have_text("up to date")

    # the recent tasks on /create
    page.goto("/create")
    recent = page.get_by_test_id("recent-task").first
    expect(recent).to_contain_text("Python web service")
    expect(recent.get_by_test_id("task-status")).to_have_text("completed")

    # an update from the entity page runs as a task of its own
    page.goto(f"/catalog/default/component/{name}")
    page.get_by_test_id("update-from-template").click()
    expect(page).to_have_url(re.compile(r"/create/tasks/[0-9a-f-]{36}\?notice=update-started"))
    expect(page.get_by_test_id("task-title")).to_contain_text("Python web service")
    _wait_until_done(page)
    expect(page.get_by_test_id("task-log")).to_contain_text("newest version already")


def test_a_wrong_answer_is_shown_on_its_field(page: Any) -> None:
    page.goto(FORM)
    _fill_first_page(page, "StockLevels")
    page.get_by_role("button", name="Next").click()

    name = page.locator("#field-name")
    error = page.locator("#field-name-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("must match the pattern")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(name).to_have_attribute("aria-describedby", re.compile(r"\bfield-name-error\b"))
    expect(name).to_be_focused()
    expect(page.locator("#field-description-error")).to_be_hidden()
    expect(page.locator("#field-description")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#field-repoUrl")).to_be_hidden()  # still on the first page

    name.fill("stock-levels-fixed")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#field-repoUrl")).to_be_visible()

    # a repository name without its owner is refused on the repository field
    page.locator("#field-repoUrl").fill("stock-levels-fixed")
    page.get_by_role("button", name="Next").click()
    expect(page.locator("#field-repoUrl-error")).to_have_text("choose the repository's owner")
    expect(page.get_by_test_id("review")).to_be_hidden()
    page.get_by_role("button", name="Back").click()
    expect(error).to_be_hidden()
    expect(name).not_to_have_attribute("aria-invalid", "true")


def test_a_dry_run_shows_the_files_it_would_write(page: Any, portal: Any, worker: Worker) -> None:
    worker.start()
    name = _unique("dry")
    _wizard_to_review(page, name)
    page.get_by_role("button", name="Dry run").click()
    expect(page).to_have_url(TASK_URL)
    _wait_until_done(page)

    tree = page.get_by_test_id("file-tree")
    expect(tree).to_contain_text("catalog-info.yaml")
    expect(tree).to_contain_text("pyproject.toml")
    expect(tree.get_by_test_id("tree-folder").filter(has_text="tests/")).to_have_count(1)
    readme = tree.locator('[data-path="README.md"] details')
    expect(readme.locator("pre")).to_be_hidden()
    readme.locator("summary").click()
    expect(readme.locator("pre")).to_contain_text(name)
    catalog_info = tree.locator('[data-path="catalog-info.yaml"] details')
    catalog_info.locator("summary").click()
    expect(catalog_info.locator("pre")).to_contain_text(
        re.compile(r"system: \W?system:default/storefront")
    )
    with pytest.raises(Exception, match="no repository"):
        portal.app.state.git.repo("checkout-team", name)


def test_cancel_a_queued_task_and_retry_it(page: Any, worker: Worker) -> None:
    worker.stop()
    _wizard_to_review(page, _unique("again"))
    page.get_by_role("button", name="Dry run").click()
    expect(page).to_have_url(TASK_URL)
    first = page.url
    page.get_by_test_id("cancel-task").click()
    expect(page.get_by_test_id("notice")).to_contain_text("Cancel requested")
    _wait_until_done(page, "cancelled")
    expect(page.get_by_test_id("cancel-task")).to_have_count(0)

    page.get_by_test_id("retry-task").click()
    expect(page.get_by_test_id("notice")).to_contain_text("runs the template again")
    assert page.url.split("?")[0] != first
    expect(page.get_by_test_id("task-info")).to_contain_text("an earlier task")
    worker.start()
    _wait_until_done(page)


# -- without JavaScript ----------------------------------------------------------------------


@contextmanager
def _no_script_page(browser: Any, portal: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=portal.url, java_script_enabled=False)
    context.set_default_timeout(10_000)
    context.add_cookies([portal.session_cookie()])
    try:
        yield context.new_page()
    finally:
        context.close()


def test_without_javascript_review_then_create(browser: Any, portal: Any, worker: Worker) -> None:
    worker.start()
    name = _unique("plain")
    with _no_script_page(browser, portal) as page:
        page.goto(FORM)
        expect(page.locator("#field-name")).to_be_visible()
        expect(page.locator("#field-repoUrl")).to_be_visible()  # every page at once
        _fill_first_page(page, "Not-Valid")
        _fill_repository(page, name)
        page.get_by_role("button", name="Review").click()

        summary = page.get_by_test_id("error-summary")
        expect(summary).to_contain_text("1 answer needs attention")
        expect(summary.get_by_role("link", name="Name")).to_have_attribute("href", "#field-name")
        expect(page.locator("#field-name")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#field-name-error")).to_contain_text("must match the pattern")
        expect(page.locator("#field-description")).to_have_value(
            f"Tells the shelves about {'Not-Valid'}."
        )
        expect(page.locator("#field-repoUrl")).to_have_value(name)

        page.locator("#field-name").fill(name)
        page.get_by_role("button", name="Review").click()
        review = page.get_by_test_id("review")
        expect(review).to_contain_text(name)
        expect(review).to_contain_text(f"checkout-team/{name} on pavedroad")
        page.get_by_role("button", name="Create").click()

        expect(page).to_have_url(TASK_URL)
        _wait_until_done(page)  # the page refreshes itself until the task ends
        link = page.get_by_role("link", name="Open in catalog")
        expect(link).to_have_attribute("href", f"/catalog/default/component/{name}")


# -- who may create, and untrusted templates -------------------------------------------------


def test_a_viewer_is_refused_clearly(page: Any, portal: Any) -> None:
    identity = portal.app.state.identity
    if not any(account["name"] == "liam" for account in identity.accounts()):
        identity.create_account("liam", Role.viewer)
    page.context.clear_cookies()
    page.context.add_cookies([portal.session_cookie("liam")])
    page.goto(FORM)
    expect(page.get_by_test_id("create-refusal")).to_contain_text("viewer")
    page.locator("#field-name").fill(_unique("viewer"))
    page.locator("#field-description").fill("Not allowed.")
    page.locator("#field-owner").select_option(label=OWNER_LABEL)
    page.get_by_role("button", name="Next").click()
    page.locator("#field-repoUrl-owner").fill("design-team")  # no owner to offer a viewer
    page.locator("#field-repoUrl").fill(_unique("viewer"))
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create", exact=True).click()
    error = page.get_by_test_id("create-error")
    expect(error).to_contain_text("403")
    expect(error).to_contain_text("liam is a viewer")
    expect(page.locator("#field-description")).to_have_value("Not allowed.")


HOSTILE_TEMPLATE = """
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata:
  name: hostile-template
  title: "<img src=x onerror=window.pwned=1>"
  description: "<script>window.pwned=2</script>"
  tags: [hostile-template-tag]
spec:
  owner: group:platform-team
  type: "<b>service</b>"
  parameters:
    - title: "<script>window.pwned=3</script>"
      description: "<img src=x onerror=window.pwned=4>"
      properties:
        name:
          type: string
          title: "<img src=x onerror=window.pwned=5>"
          ui:help: "<script>window.pwned=6</script>"
          default: '"><script>window.pwned=7</script>'
        flavour:
          type: string
          enum: ["<b>a</b>", "b"]
          enumNames: ["<script>window.pwned=8</script>", "B"]
  steps:
    - id: log
      name: "<img src=x onerror=window.pwned=9>"
      action: debug:log
      input:
        message: "<script>window.pwned=10</script>"
"""


def test_a_hostile_template_renders_as_text(page: Any, portal: Any) -> None:
    portal.register_yaml("hostile-template.yaml", HOSTILE_TEMPLATE)
    page.goto("/create?tag=hostile-template-tag")
    card = page.get_by_test_id("template-card")
    expect(card).to_have_count(1)
    expect(card.get_by_test_id("template-link")).to_have_text("<img src=x onerror=window.pwned=1>")
    expect(card).to_contain_text("<script>window.pwned=2</script>")
    card.get_by_test_id("template-link").click()
    expect(page.get_by_test_id("form-page")).to_contain_text("<script>window.pwned=3</script>")
    expect(page.locator("#field-name")).to_have_value('"><script>window.pwned=7</script>')
    expect(page.locator("#field-flavour option").nth(1)).to_have_text(
        "<script>window.pwned=8</script>"
    )
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("review")).to_contain_text('"><script>window.pwned=7</script>')
    assert page.evaluate("typeof window.pwned") == "undefined"


SECRET_TEMPLATE = """
apiVersion: scaffolder.backstage.io/v1beta3
kind: Template
metadata:
  name: NAME
  title: Deploy key check
  description: Every kind of question, and a secret one.
  tags: [NAME]
spec:
  owner: group:platform-team
  type: tool
  parameters:
    - title: Basics
      required: [name, token]
      properties:
        name:
          type: string
          title: Name
          pattern: '^[a-z-]+$'
        token:
          type: string
          title: Deploy token
          ui:field: Secret
        tags:
          type: array
          title: Tags
          items: {type: string}
        size:
          type: string
          title: Size
          enum: [s, l]
          enumNames: [Small, Large]
          default: s
        verbose:
          type: boolean
          title: Verbose
    - title: Service
      properties:
        service:
          type: object
          title: Service
          properties:
            port:
              type: integer
              title: Port
              default: 8000
  steps:
    - id: say
      name: Say what was asked
      action: debug:log
      input:
        message: >-
          ${{ parameters.name }} ${{ parameters.size }} ${{ parameters.verbose }}
          ${{ parameters.tags | join('+') }} ${{ parameters.service.port }} ${{ secrets.token }}
  output:
    links:
      - title: Read the docs
        url: https://example.com/docs
      - title: Not a web link
        url: "javascript:alert(1)"
    text:
      - title: Next steps
        content: "**Rotate** the key for ${{ parameters.name }} <script>window.pwned=1</script>"
"""


def test_every_kind_of_question_and_a_secret_never_sent_back(
    browser: Any, portal: Any, worker: Worker
) -> None:
    name = _unique("keys")
    portal.register_yaml(f"{name}.yaml", SECRET_TEMPLATE.replace("NAME", name))
    worker.stop()
    with _no_script_page(browser, portal) as page:
        page.goto(f"/create/templates/default/{name}")
        expect(page.locator("#field-token")).to_have_attribute("type", "password")
        expect(page.locator("#field-service-port")).to_have_value("8000")
        expect(page.locator("#field-size")).to_have_value("s")
        page.locator("#field-name").fill("Not Valid")
        page.locator("#field-token").fill("tok-very-secret")
        page.locator("#field-tags").fill("red\ngreen\n")
        page.locator("#field-size").select_option(label="Large")
        page.get_by_label("Verbose").check()
        page.locator("#field-service-port").fill("8081")
        page.get_by_role("button", name="Review").click()

        # re-rendered with the error: every answer kept but the secret
        expect(page.locator("#field-name-error")).to_contain_text("must match the pattern")
        expect(page.locator("#field-token")).to_have_value("")
        assert "tok-very-secret" not in page.content()
        expect(page.locator("#field-tags")).to_have_value("red\ngreen")
        expect(page.locator("#field-size")).to_have_value("l")
        expect(page.get_by_label("Verbose")).to_be_checked()
        expect(page.locator("#field-service-port")).to_have_value("8081")

        page.locator("#field-name").fill("valid-name")
        page.locator("#field-token").fill("tok-very-secret")
        page.get_by_role("button", name="Review").click()
        review = page.get_by_test_id("review")
        expect(review.get_by_test_id("review-row").filter(has_text="Deploy token")).to_contain_text(
            "\u2022\u2022\u2022\u2022"
        )
        expect(review).not_to_contain_text("tok-very-secret")
        expect(review.get_by_test_id("review-row").filter(has_text="Size")).to_contain_text("Large")
        expect(review.get_by_test_id("review-row").filter(has_text="Tags")).to_contain_text(
            "red, green"
        )
        expect(review).to_contain_text("Service \u203a Port")
        page.get_by_role("button", name="Create").click()

        # cancelled before a worker took it: the retry asks for the secret again
        expect(page).to_have_url(TASK_URL)
        page.get_by_test_id("cancel-task").click()
        _wait_until_done(page, "cancelled")
        retry = page.get_by_test_id("retry")
        secret = retry.get_by_label("token")
        expect(secret).to_have_attribute("type", "password")
        secret.fill("tok-very-secret")
        page.get_by_test_id("retry-task").click()
        expect(page.get_by_test_id("notice")).to_contain_text("runs the template again")
        worker.start()
        _wait_until_done(page)
        log = page.get_by_test_id("task-log")
        expect(log).to_contain_text("[say] valid-name l true red+green 8081 ***")
        expect(log).not_to_contain_text("tok-very-secret")

        output = page.get_by_test_id("task-output")
        expect(output.get_by_role("link", name="Read the docs")).to_have_attribute(
            "href", "https://example.com/docs"
        )
        expect(output).to_contain_text("Not a web link")
        assert output.locator('a[href^="javascript:" i]').count() == 0
        text = output.get_by_test_id("output-text")
        expect(text.locator("strong")).to_have_text("Rotate")
        expect(text).to_contain_text("valid-name <script>window.pwned=1</script>")
        assert text.locator("script").count() == 0
