"""Inbound webhooks under ``/api/v1/git/webhooks``: GitHub and GitLab push events become
the same push events (``GitPushed``) as pushes to hosted repositories.

An endpoint answers 404 until its shared secret is set (``git.github_webhook_secret``,
``git.gitlab_webhook_token``). A delivery over ``git.webhook_max_bytes`` is refused (413)
by its Content-Length or, without one, once that many bytes have arrived. The delivery is
authenticated, comparing in constant time, before anything in it is parsed: GitHub's
HMAC-SHA256 of the body, GitLab's token header. Redeliveries are recorded once.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from pavedroad.core.errors import InputError, NotFoundError, PayloadTooLargeError, ProblemError
from pavedroad.core.timeutil import utcnow
from pavedroad.git.service import GitService, Push

router = APIRouter(prefix="/api/v1/git/webhooks", tags=["git"])

GITLAB_PUSH_EVENTS = frozenset({"Push Hook", "Tag Push Hook"})
DELIVERY_MAX = 200  # the length of PushEventRow.delivery

Sha = Annotated[str, Field(pattern=r"^[0-9a-f]{40}([0-9a-f]{24})?$")]  # SHA-1 or SHA-256
Ref = Annotated[str, Field(min_length=1, max_length=400)]
RepositoryUrl = Annotated[str, Field(max_length=400, pattern=r"^https?://\S+$")]


class WebhookAuthenticationError(ProblemError):
    status = 401
    title = "Delivery not authenticated"
    type_slug = "webhook-not-authenticated"


# -- what the deliveries hold (everything else in them is ignored) -------------------------


class GitHubRepository(BaseModel):
    full_name: str
    clone_url: RepositoryUrl | None = None
    html_url: RepositoryUrl | None = None


class GitHubPusher(BaseModel):
    name: str


class RefUpdate(BaseModel):
    ref: Ref
    before: Sha
    after: Sha


class GitHubPush(RefUpdate):
    repository: GitHubRepository
    pusher: GitHubPusher


class GitLabProject(BaseModel):
    path_with_namespace: str
    git_http_url: RepositoryUrl


class GitLabPush(RefUpdate):
    project: GitLabProject
    user_username: str | None = None
    user_name: str | None = None


# -- the endpoints ----------------------------------------------------------------------------


@router.post("/github", name="git.webhook.github", summary="Receive a GitHub webhook delivery")
async def github_webhook(request: Request) -> Any:
    """``ping`` answers ``{"ok": true}``, ``push`` is recorded, other events are ignored."""
    request.state.actor_name = "webhook:github"
    settings = request.app.state.settings.git
    secret = _configured(settings.github_webhook_secret, "GitHub", "GITHUB_WEBHOOK_SECRET")
    _refuse_declared_oversize(request, settings.webhook_max_bytes)
    body = await read_body(request, settings.webhook_max_bytes)
    verify_github_signature(secret, body, request.headers.get("x-hub-signature-256"))
    event = request.headers.get("x-github-event", "")
    if event == "ping":
        return {"ok": True}
    if event != "push":
        return JSONResponse({"ignored": event[:100]}, status_code=202)
    payload = parse(GitHubPush, _github_document(request, body))
    repository = payload.repository.clone_url or payload.repository.html_url
    if repository is None:
        raise InputError("the push event names no repository.clone_url or repository.html_url")
    delivery = request.headers.get("x-github-delivery", "").strip() or _digest(body)
    push = _push("github", payload, repository, payload.pusher.name, delivery)
    return await _record(request, push)


@router.post("/gitlab", name="git.webhook.gitlab", summary="Receive a GitLab webhook delivery")
async def gitlab_webhook(request: Request) -> Any:
    """``Push Hook`` and ``Tag Push Hook`` are recorded, other events are ignored."""
    request.state.actor_name = "webhook:gitlab"
    settings = request.app.state.settings.git
    token = _configured(settings.gitlab_webhook_token, "GitLab", "GITLAB_WEBHOOK_TOKEN")
    _refuse_declared_oversize(request, settings.webhook_max_bytes)
    # GitLab's token is a header: a delivery without it is refused before its body is read.
    verify_gitlab_token(token, request.headers.get("x-gitlab-token"))
    body = await read_body(request, settings.webhook_max_bytes)
    event = request.headers.get("x-gitlab-event", "")
    if event not in GITLAB_PUSH_EVENTS:
        return JSONResponse({"ignored": event[:100]}, status_code=202)
    payload = parse(GitLabPush, body)
    delivery = (
        request.headers.get("idempotency-key", "").strip()  # the same on every retry
        or request.headers.get("x-gitlab-event-uuid", "").strip()
        or _digest(body)
    )
    pusher = payload.user_username or payload.user_name or "unknown"
    push = _push("gitlab", payload, payload.project.git_http_url, pusher, delivery)
    return await _record(request, push)


# -- the checks ------------------------------------------------------------------------------


def _configured(secret: SecretStr | None, provider: str, variable: str) -> bytes:
    value = secret.get_secret_value() if secret is not None else ""
    if not value:  # an empty secret would let anyone sign
        raise NotFoundError(
            f"the {provider} webhook is not configured: set PAVEDROAD_GIT__{variable} "
            "(see docs/git.md)"
        )
    return value.encode()


def _refuse_declared_oversize(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise InputError("the Content-Length header is not a number")
    if int(declared) > limit:
        raise _too_large(limit)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, read as it arrives and refused (413) once it passes ``limit`` bytes."""
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise _too_large(limit)
    return bytes(received)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"a webhook delivery may be at most {limit} bytes (git.webhook_max_bytes); "
        "subscribe the webhook to push events only"
    )


def verify_github_signature(secret: bytes, body: bytes, header: str | None) -> None:
    """Refuse (401) unless ``header`` is ``sha256=`` and the HMAC-SHA256 of the body."""
    if not header:
        raise WebhookAuthenticationError(
            "the delivery has no X-Hub-Signature-256 header: give the webhook in GitHub "
            "the secret set as git.github_webhook_secret (SHA-1 signatures are not accepted)"
        )
    expected = b"sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    # Header values arrive decoded as latin-1: compared as bytes, any value is safe here.
    if not hmac.compare_digest(expected, header.encode("latin-1")):
        raise WebhookAuthenticationError(
            "X-Hub-Signature-256 does not match the body: the webhook's secret in GitHub "
            "differs from git.github_webhook_secret"
        )


def verify_gitlab_token(token: bytes, header: str | None) -> None:
    """Refuse (401) unless ``header`` is the configured token."""
    if not header:
        raise WebhookAuthenticationError(
            "the delivery has no X-Gitlab-Token header: give the webhook in GitLab the "
            "secret token set as git.gitlab_webhook_token"
        )
    if not hmac.compare_digest(token, header.encode("latin-1")):
        raise WebhookAuthenticationError("X-Gitlab-Token does not match git.gitlab_webhook_token")


# -- reading what was delivered ----------------------------------------------------------------

Payload = TypeVar("Payload", bound=BaseModel)


def _github_document(request: Request, body: bytes) -> bytes | str:
    """The JSON document: the body, or its ``payload`` field when GitHub was set to send
    ``application/x-www-form-urlencoded`` (its default content type)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return body
    try:
        fields = parse_qs(body.decode(), max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InputError("the form body is not UTF-8 form fields") from None
    if not fields.get("payload"):
        raise InputError("the form body has no payload field holding the event")
    return fields["payload"][0]


def parse(model: type[Payload], document: bytes | str) -> Payload:
    """The event read from its JSON document; a 400 that names what is wrong otherwise."""
    try:
        return model.model_validate_json(document)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        if any(error["type"] == "json_invalid" for error in errors):
            raise InputError(f"the body is not valid JSON: {errors[0]['msg']}") from None
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'the body'}: {error['msg']}"
            for error in errors[:5]
        )
        raise InputError(f"the push event is not one this endpoint reads: {problems}") from None


def _push(source: str, update: RefUpdate, repository: str, pusher: str, delivery: str) -> Push:
    key = f"{source}:{delivery}:{update.ref}"
    if len(key) > DELIVERY_MAX:  # still one key per delivery and ref, and it fits
        key = f"{source}:{_digest(key.encode())}"
    return Push(
        repository=repository,
        ref=update.ref,
        before=update.before,
        after=update.after,
        pusher=pusher[:400] or "unknown",
        source=source,
        delivery=key,
        at=utcnow(),
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _record(request: Request, push: Push) -> dict[str, int]:
    request.state.audit_target = f"{push.repository} {push.ref}"
    service: GitService = request.app.state.git
    return {"recorded": await run_in_threadpool(service.record, [push])}
