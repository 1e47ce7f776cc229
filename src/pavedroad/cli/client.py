"""The CLI's HTTP client for a running Pavedroad server."""

from __future__ import annotations

from typing import Any

import httpx

from pavedroad.cli.output import fail
from pavedroad.settings import Settings


class ApiClient:
    def __init__(self, settings: Settings, server: str | None = None) -> None:
        self.base = (server or settings.public_url).rstrip("/")
        self.headers = {"authorization": f"Bearer {settings.token}"} if settings.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = httpx.request(
                method, self.base + path, timeout=120, headers=self.headers, **kwargs
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
            except ValueError:
                message = response.text or response.reason_phrase
            fail(f"{message} (HTTP {response.status_code})", 2 if response.status_code < 500 else 1)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
