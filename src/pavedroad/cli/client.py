"""The CLI's HTTP client for a running Pavedroad server."""

from __future__ import annotations

from typing import Any

import httpx

from pavedroad.cli.output import fail
from pavedroad.settings import Settings


class ApiClient:
    def __init__(self, settings: Settings, server: str | None = None) -> None:
        from pavedroad.cli import credentials

        stored = credentials.load(settings)
        self.base = (server or (stored.url if stored else settings.public_url)).rstrip("/")
        token = settings.token or (stored.token if stored and stored.url == self.base else None)
        self.headers = {"authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            headers = {**self.headers, **kwargs.pop("headers", {})}
            response = httpx.request(
                method, self.base + path, timeout=120, headers=headers, **kwargs
            )
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach the Pavedroad server at {self.base} ({exc.__class__.__name__}); "
                "start it with `pave up` or pass --server"
            )
        if response.status_code >= 400:
            try:
                body = response.json()
                message = (
                    body.get("detail") or body.get("error", {}).get("message") or response.text
                )
                errors = body.get("errors")
                if isinstance(errors, dict):  # per-field problems: one line each
                    message += "".join(
                        f"\n  {field or '(form)'}: {'; '.join(map(str, problems))}"
                        for field, problems in errors.items()
                    )
            except ValueError:
                message = response.text or response.reason_phrase
            fail(f"{message} (HTTP {response.status_code})", 2 if response.status_code < 500 else 1)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
