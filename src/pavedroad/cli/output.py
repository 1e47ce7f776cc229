"""How the CLI prints: tables for people, JSON or YAML for scripts, one-line errors."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NoReturn

import typer


class Format(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def emit(
    data: Any,
    fmt: Format,
    columns: Sequence[tuple[str, str]] | None = None,
    rows: list[list[str]] | None = None,
) -> None:
    if fmt is Format.json:
        typer.echo(json.dumps(data, indent=2, default=str))
    elif fmt is Format.yaml:
        from pavedroad.core.safeyaml import dump

        typer.echo(dump(json.loads(json.dumps(data, default=str))).rstrip())
    elif columns is not None and rows is not None:
        table(columns, rows)
    else:
        typer.echo(json.dumps(data, indent=2, default=str))


def table(columns: Sequence[tuple[str, str]], rows: list[list[str]]) -> None:
    headers = [title for title, _ in columns]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=False)]
    line = "  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=False))
    typer.echo(line.rstrip())
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
    if not rows:
        typer.echo("(none)", err=sys.stderr.isatty())
