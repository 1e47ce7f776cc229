"""``pave repo ...``: hosted repositories, through the API of a running server."""

from __future__ import annotations

from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

repo_app = typer.Typer(
    help="Create, list and delete hosted git repositories.", no_args_is_help=True
)
SERVER = typer.Option(None, "--server", envvar="PAVEDROAD_URL", help="Server URL.")


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


def _split(full_name: str) -> tuple[str, str]:
    owner, _, name = full_name.strip("/").removesuffix(".git").partition("/")
    if not owner or not name or "/" in name:
        fail(f"name the repository as OWNER/NAME (e.g. checkout-team/orders), not {full_name!r}")
    return owner, name


@repo_app.command("create")
def create(
    full_name: str = typer.Argument(..., help="OWNER/NAME: a group (or user) and a name."),
    description: str = typer.Option("", "--description", "-d"),
    server: str = SERVER,
) -> None:
    """Create an empty repository and print how to clone it."""
    owner, name = _split(full_name)
    repo = _client(server).request(
        "POST", "/api/v1/git/repos", json={"owner": owner, "name": name, "description": description}
    )
    typer.echo(f"created {repo['owner']}/{repo['name']}: git clone {repo['cloneUrl']}")


@repo_app.command("list")
def list_repos(
    owner: str = typer.Option(None, "--owner", help="Only this group's or user's."),
    as_json: bool = typer.Option(False, "--json"),
    server: str = SERVER,
) -> None:
    """Hosted repositories with their clone URLs."""
    params = {"owner": owner} if owner else {}
    items = _client(server).request("GET", "/api/v1/git/repos", params=params)["items"]
    rows = [[f"{r['owner']}/{r['name']}", r["cloneUrl"], r["description"]] for r in items]
    emit(
        items,
        Format.json if as_json else Format.table,
        [("repository", ""), ("clone url", ""), ("description", "")],
        rows,
    )


@repo_app.command("delete")
def delete(
    full_name: str = typer.Argument(..., help="OWNER/NAME"),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    server: str = SERVER,
) -> None:
    """Delete a repository and its history (there is no undo)."""
    owner, name = _split(full_name)
    if not yes and not typer.confirm(f"Delete {owner}/{name} and all its history?"):
        raise typer.Exit(1)
    _client(server).request("DELETE", f"/api/v1/git/repos/{owner}/{name}")
    typer.echo(f"deleted {owner}/{name}")
