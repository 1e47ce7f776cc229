"""Generated values: random characters from an alphabet, or random bytes encoded."""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
from dataclasses import asdict, dataclass
from typing import Literal

from pavedroad.core.errors import InputError

ALPHABETS = {
    "alphanumeric": string.ascii_letters + string.digits,
    "letters": string.ascii_letters,
    "digits": string.digits,
    "hex": "0123456789abcdef",
    "symbols": string.ascii_letters + string.digits + "!#$%&()*+,-./:;<=>?@[]^_{|}~",
}
Encoding = Literal["hex", "base64", "base64url"]
_DURATION = re.compile(r"(\d+)([mhdw])")
_UNIT_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Generator:
    """``length`` characters from ``alphabet`` (a preset name or the characters
    themselves), or, with ``bytes`` set, that many random bytes in ``encoding``."""

    length: int = 32
    alphabet: str = "alphanumeric"
    bytes: int | None = None
    encoding: Encoding = "base64url"

    def __post_init__(self) -> None:
        if self.bytes is not None:
            if not 8 <= self.bytes <= 4096:
                raise InputError("a generated secret has 8 to 4096 random bytes")
            if self.encoding not in ("hex", "base64", "base64url"):
                raise InputError("encoding must be hex, base64 or base64url")
            return
        if not 8 <= self.length <= 4096:
            raise InputError("a generated secret has 8 to 4096 characters")
        if len(set(self.characters)) < 2:
            raise InputError(
                f"the alphabet needs at least two different characters, or one of "
                f"{', '.join(ALPHABETS)}"
            )

    @property
    def characters(self) -> str:
        return ALPHABETS.get(self.alphabet, self.alphabet)

    def value(self) -> str:
        if self.bytes is not None:
            raw = secrets.token_bytes(self.bytes)
            if self.encoding == "hex":
                return raw.hex()
            encode = base64.b64encode if self.encoding == "base64" else base64.urlsafe_b64encode
            return encode(raw).decode()
        chars = "".join(dict.fromkeys(self.characters))
        return "".join(secrets.choice(chars) for _ in range(self.length))

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Generator:
        return cls(**json.loads(text))


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``2w``, ``90m`` → seconds (at least one minute)."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match or int(match.group(1)) == 0:
        raise InputError(
            f"{text!r} is not a rotation period: use a number and m, h, d or w (e.g. 30d)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: int) -> str:
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"
