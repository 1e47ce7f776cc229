"""The CLI's stored sign-in: one server URL and token, in a file only its owner reads."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from pavedroad.settings import Settings

FILE_NAME = "credentials.json"


@dataclass
class Credentials:
    url: str
    token: str


def path(settings: Settings) -> Path:
    return settings.config_dir / FILE_NAME


def load(settings: Settings) -> Credentials | None:
    try:
        data = json.loads(path(settings).read_text())
        return Credentials(str(data["url"]), str(data["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save(settings: Settings, credentials: Credentials) -> Path:
    """Write the file with mode 0600 from the start (never readable by others)."""
    target = path(settings)
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = target.with_suffix(".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": credentials.url, "token": credentials.token}, handle)
    os.chmod(temporary, 0o600)
    temporary.replace(target)
    return target


def forget(settings: Settings) -> bool:
    try:
        path(settings).unlink()
    except FileNotFoundError:
        return False
    return True
