"""JUnit XML test reports (as pytest's ``--junitxml`` writes them) read into test cases.

The report is written by the code under test, so it is read as untrusted input: its size
is capped, and a document declaring a DTD or entities (``<!DOCTYPE``, ``<!ENTITY``, the
way into entity-expansion bombs and external entities) is refused before it is parsed.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from pavedroad.core.errors import InputError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MAX_MESSAGE_CHARACTERS = 64 * 1024
OUTCOMES = ("passed", "failed", "error", "skipped")
_DECLARATION = re.compile(rb"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


class JUnitError(InputError):
    title = "Unreadable test report"
    type_slug = "junit-report"


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest test class

    suite: str
    classname: str
    name: str
    outcome: str  # passed, failed, error, skipped
    seconds: float
    message: str | None


def read_junit(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> list[TestCase]:
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JUnitError(f"the test report is larger than {max_bytes} bytes")
    return parse_junit(data)


def parse_junit(data: bytes) -> list[TestCase]:
    """The test cases of a report whose root is ``<testsuites>`` or ``<testsuite>``."""
    if _DECLARATION.search(data):
        raise JUnitError("the test report declares a DTD or entities, which are not accepted")
    try:
        root = ElementTree.fromstring(data)
    except ElementTree.ParseError as error:
        raise JUnitError(f"the test report is not valid XML: {error}") from None
    if root.tag == "testsuite":
        suites = [root]
    elif root.tag == "testsuites":
        suites = list(root.iter("testsuite"))
    else:
        raise JUnitError(f"the test report's root is <{root.tag[:40]}>, not <testsuites>")
    cases: list[TestCase] = []
    for suite in suites:
        suite_name = suite.get("name") or "tests"
        for case in suite.findall("testcase"):
            cases.append(_case(suite_name, case))
    return cases


def _case(suite: str, case: ElementTree.Element) -> TestCase:
    outcome, message = "passed", None
    for tag, meaning in (("error", "error"), ("failure", "failed"), ("skipped", "skipped")):
        found = case.find(tag)
        if found is not None:
            outcome = meaning
            parts = [found.get("message") or "", (found.text or "").strip()]
            message = "\n".join(part for part in parts if part)[:MAX_MESSAGE_CHARACTERS] or None
            break
    try:
        seconds = max(0.0, float(case.get("time") or 0))
    except ValueError:
        seconds = 0.0
    if seconds != seconds or seconds == float("inf"):
        seconds = 0.0
    return TestCase(
        suite=suite[:400],
        classname=(case.get("classname") or "")[:400],
        name=(case.get("name") or "")[:400],
        outcome=outcome,
        seconds=seconds,
        message=message,
    )
