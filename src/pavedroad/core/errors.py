"""The platform's error types and their one problem+json shape (RFC 9457).

Raise a :class:`ProblemError` subclass anywhere; the API turns it into
``application/problem+json`` and the CLI into one clear line with exit code 2.
"""

from __future__ import annotations

from typing import Any


class ProblemError(Exception):
    """An error the user caused or can act on; never a bug."""

    status: int = 400
    title: str = "Bad request"
    type_slug: str = "bad-request"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": f"https://pavedroad.dev/problems/{self.type_slug}",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return body


class InputError(ProblemError):
    status = 400
    title = "Invalid input"
    type_slug = "invalid-input"


class NotFoundError(ProblemError):
    status = 404
    title = "Not found"
    type_slug = "not-found"


class ConflictError(ProblemError):
    status = 409
    title = "Conflict"
    type_slug = "conflict"


class PayloadTooLargeError(ProblemError):
    status = 413
    title = "Payload too large"
    type_slug = "payload-too-large"


class ForbiddenError(ProblemError):
    status = 403
    title = "Forbidden"
    type_slug = "forbidden"


class TooManyRequestsError(ProblemError):
    status = 429
    title = "Too many requests"
    type_slug = "too-many-requests"
