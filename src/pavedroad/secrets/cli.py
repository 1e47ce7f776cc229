"""``pave secret ...``: secrets through the API of a running server, and the master key
commands that work on the database and key files where the server runs.

A value is read from standard input (one trailing newline dropped) or from a file
(``--file``, byte for byte); it is taken from the command line only with an explicit
``--value``, since command lines end up in shell histories and process lists.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

secret_app = typer.Typer(
    help="Set, read and rotate secrets of an entity, an environment, or global ones.",
    no_args_is_help=True,
)

ENTITY = typer.Option(
    None, "--entity", "-e", help="The entity ref the secret belongs to (e.g. orders-service)."
)
ENVIRONMENT = typer.Option(None, "--env", help="The environment it belongs to (e.g. staging).")
SERVER = typer.Option(None, "--server", envvar="PAVEDROAD_URL", help="Server URL.")
EXPECTED = typer.Option(
    None,
    "--expected-version",
    min=0,
    help="Refuse (409) unless the secret is at this version (0: it must not exist yet).",
)
ROTATE_EVERY = typer.Option(
    None, "--rotate-every", help="A rotation period such as 30d, 12h or 2w."
)


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


def _scope(entity: str | None, environment: str | None) -> dict[str, str]:
    return {
        key: value for key, value in (("entity", entity), ("environment", environment)) if value
    }


def _path(name: str, suffix: str = "") -> str:
    from urllib.parse import quote

    from pavedroad.secrets.scopes import check_name

    check_name(name)  # a clear error here rather than an odd URL
    return f"/api/v1/secrets/{quote(name, safe='')}{suffix}"


def _read_value(file: Path | None, value: str | None) -> str:
    if value is not None and file is not None:
        fail("give the value with --file or --value, not both")
    if value is not None:
        return value
    if file is not None:
        try:
            return file.read_bytes().decode()
        except OSError as exc:
            fail(f"cannot read {file}: {exc.strerror}")
        except UnicodeDecodeError:
            fail(f"{file} is not UTF-8 text; encode binary values (e.g. base64) first")
    if sys.stdin.isatty():
        return str(typer.prompt("Value", hide_input=True, confirmation_prompt=True))
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text


def _summary(meta: dict[str, Any]) -> str:
    where = meta["entity"] or "global"
    if meta["environment"]:
        where = f"{meta['entity'] or 'environment'} in {meta['environment']}"
    rotation = f", rotates every {meta['rotateEvery']}" if meta["rotateEvery"] else ""
    return f"{meta['name']} ({where}) is at version {meta['version']}{rotation}"


@secret_app.command("set")
def set_secret(
    name: str = typer.Argument(..., help="e.g. DATABASE_PASSWORD"),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    file: Path = typer.Option(None, "--file", "-f", help="Read the value from this file."),
    value: str = typer.Option(
        None, "--value", help="The value itself (it will show in your shell history)."
    ),
    expected_version: int = EXPECTED,
    rotate_every: str = ROTATE_EVERY,
    server: str = SERVER,
) -> None:
    """Set a value (from standard input, --file or --value); each set is a new version."""
    secret = _read_value(file, value)
    body: dict[str, Any] = {"value": secret, "expectedVersion": expected_version}
    if rotate_every:
        body["rotateEvery"] = rotate_every
    meta = _client(server).request(
        "PUT", _path(name), params=_scope(entity, environment), json=body
    )
    typer.echo(_summary(meta))


@secret_app.command("generate")
def generate_secret(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    length: int = typer.Option(32, "--length", min=8, max=4096, help="Characters."),
    alphabet: str = typer.Option(
        "alphanumeric",
        "--alphabet",
        help="alphanumeric, letters, digits, hex, symbols, or the characters to use.",
    ),
    random_bytes: int = typer.Option(
        None, "--bytes", min=8, max=4096, help="Random bytes instead of characters."
    ),
    encoding: str = typer.Option(
        "base64url", "--encoding", help="With --bytes: hex, base64, base64url."
    ),
    expected_version: int = EXPECTED,
    rotate_every: str = ROTATE_EVERY,
    server: str = SERVER,
) -> None:
    """Generate a random value (never printed; read it with `pave secret get`)."""
    body: dict[str, Any] = {
        "length": length,
        "alphabet": alphabet,
        "bytes": random_bytes,
        "encoding": encoding,
        "expectedVersion": expected_version,
    }
    if rotate_every:
        body["rotateEvery"] = rotate_every
    meta = _client(server).request(
        "POST", _path(name, "/generate"), params=_scope(entity, environment), json=body
    )
    typer.echo(_summary(meta))


@secret_app.command("get")
def get_secret(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    version: int = typer.Option(None, "--version", min=1, help="An earlier version."),
    server: str = SERVER,
) -> None:
    """Print the value (the read is recorded in the audit log)."""
    params: dict[str, Any] = _scope(entity, environment)
    if version:
        params["version"] = version
    answer = _client(server).request("GET", _path(name, "/value"), params=params)
    typer.echo(answer["value"])


@secret_app.command("list")
def list_secrets(
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    deleted: bool = typer.Option(False, "--deleted", help="Include deleted secrets."),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Secrets of an entity and/or environment: names and versions, never values."""
    params: dict[str, Any] = {**_scope(entity, environment), "includeDeleted": deleted}
    items = _client(server).request("GET", "/api/v1/secrets", params=params)["items"]
    rows = [
        [
            s["entity"] or "-",
            s["environment"] or "-",
            s["name"],
            str(s["version"]),
            s["rotateEvery"] or "-",
            "deleted" if s["deletedAt"] else ("rotation overdue" if s["rotationOverdue"] else ""),
        ]
        for s in items
    ]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("entity", ""), ("env", ""), ("name", ""), ("version", ""), ("rotates", ""), ("", "")],
        rows,
    )


@secret_app.command("history")
def history(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """The kept versions of a secret: who made each and how (never values)."""
    items = _client(server).request(
        "GET", _path(name, "/versions"), params=_scope(entity, environment)
    )["items"]
    rows = [
        [str(v["version"]), v["origin"], v["createdBy"], v["createdAt"], "current" * v["current"]]
        for v in items
    ]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("version", ""), ("how", ""), ("by", ""), ("at", ""), ("", "")],
        rows,
    )


@secret_app.command("rollback")
def rollback(
    name: str = typer.Argument(...),
    version: int = typer.Argument(..., min=1, help="The version whose value comes back."),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    expected_version: int = EXPECTED,
    server: str = SERVER,
) -> None:
    """Make a new version holding an earlier version's value."""
    meta = _client(server).request(
        "POST",
        _path(name, "/rollback"),
        params=_scope(entity, environment),
        json={"version": version, "expectedVersion": expected_version},
    )
    typer.echo(f"rolled back to the value of version {version}: " + _summary(meta))


@secret_app.command("rotate")
def rotate(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    server: str = SERVER,
) -> None:
    """Generate a new value now (generated secrets only)."""
    meta = _client(server).request(
        "POST", _path(name, "/rotate"), params=_scope(entity, environment)
    )
    typer.echo("rotated: " + _summary(meta))


@secret_app.command("delete")
def delete(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    server: str = SERVER,
) -> None:
    """Delete a secret (it can be restored; its versions are kept)."""
    _client(server).request("DELETE", _path(name), params=_scope(entity, environment))
    typer.echo(f"deleted {name}; `pave secret restore {name}` brings it back")


@secret_app.command("restore")
def restore(
    name: str = typer.Argument(...),
    entity: str = ENTITY,
    environment: str = ENVIRONMENT,
    server: str = SERVER,
) -> None:
    """Undo a delete."""
    meta = _client(server).request(
        "POST", _path(name, "/restore"), params=_scope(entity, environment)
    )
    typer.echo("restored: " + _summary(meta))


@secret_app.command("rotate-master-key")
def rotate_master_key(
    new_key_stdin: bool = typer.Option(
        False, "--new-key-stdin", help="Read the new key from standard input (else: generated)."
    ),
) -> None:
    """Seal every secret's data key with a new master key (run where the server runs,
    with its settings). Servers keep working throughout."""
    from pavedroad.cli.main import load_settings
    from pavedroad.core.db import database_for
    from pavedroad.secrets.crypto import MasterKey
    from pavedroad.secrets.service import SecretStore

    settings = load_settings()
    settings.ensure_home()
    db = database_for(settings)
    db.migrate()
    store = SecretStore(db, settings)
    old = store.keys.current
    new = (
        MasterKey.parse(sys.stdin.readline(), "the new key on standard input")
        if new_key_stdin
        else MasterKey.generate()
    )
    count = store.rotate_master_key(new)
    typer.echo(f"re-sealed {count} data keys: master key {old.id} → {new.id}")
    if store.keys.from_environment:
        typer.echo(
            "The key comes from PAVEDROAD_MASTER_KEY: set it to the new key below on every "
            f"server, with the old one in PAVEDROAD_PREVIOUS_MASTER_KEYS until all have "
            f"restarted.\n{new.encoded()}"
        )
    else:
        typer.echo(
            f"{settings.home / 'master.key'} holds the new key; the old one is kept in "
            f"{settings.home / 'keys'}"
        )


@secret_app.command("new-master-key")
def new_master_key() -> None:
    """Print a new random master key (for PAVEDROAD_MASTER_KEY)."""
    from pavedroad.secrets.crypto import MasterKey

    typer.echo(MasterKey.generate().encoded())
