"""``pave catalog ...``: validate descriptor files locally; query and change the catalog
of a running server."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import typer

from pavedroad.cli.output import Format, emit, fail

catalog_app = typer.Typer(
    help="Validate descriptor files and work with the software catalog.", no_args_is_help=True
)

FORMAT = typer.Option(Format.table, "--output", "-o", help="table, json or yaml.")
JSON = typer.Option(False, "--json", help="Print JSON (same as -o json).")
YAML = typer.Option(False, "--yaml", help="Print YAML (same as -o yaml).")
SERVER = typer.Option(
    None,
    "--server",
    envvar="PAVEDROAD_URL",
    help="Server URL (default: the configured host and port).",
)


def _format(fmt: Format, as_json: bool, as_yaml: bool) -> Format:
    return Format.json if as_json else Format.yaml if as_yaml else fmt


def _client(server: str | None) -> Any:
    from pavedroad.cli.client import ApiClient
    from pavedroad.cli.main import load_settings

    return ApiClient(load_settings(), server)


@catalog_app.command("validate")
def validate(
    paths: list[Path] = typer.Argument(..., help="Descriptor files, folders or globs."),
    fmt: Format = FORMAT,
    as_json: bool = JSON,
    as_yaml: bool = YAML,
) -> None:
    """Check descriptor files as the catalog would (exit 1 when anything is invalid)."""
    from pavedroad.catalog.localcheck import check_files

    files = _expand(paths)
    if not files:
        fail("no files matched")
    results = check_files(files)
    fmt = _format(fmt, as_json, as_yaml)
    if fmt is not Format.table:
        emit([r.as_dict() for r in results], fmt)
    else:
        for result in results:
            for entity in result.entities:
                typer.echo(f"ok     {result.path}:{entity['line']}  {entity['ref']}")
            for error in result.errors:
                where = f"{result.path}:{error['line']}" if error.get("line") else str(result.path)
                typer.echo(f"error  {where}  {error['message']}")
        valid = sum(len(r.entities) for r in results)
        invalid = sum(len(r.errors) for r in results)
        typer.echo(f"{valid} valid, {invalid} invalid in {len(results)} file(s)")
    if any(r.errors for r in results):
        raise typer.Exit(1)


def _expand(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        text = str(path)
        if any(c in text for c in "*?["):
            files.extend(Path(p) for p in sorted(glob.glob(text, recursive=True)))
        elif path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")))
        else:
            files.append(path)
    return files


@catalog_app.command("register")
def register(
    target: str = typer.Argument(..., help="A URL, or a path to a file on the server."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be ingested."),
    server: str = SERVER,
    fmt: Format = FORMAT,
    as_json: bool = JSON,
    as_yaml: bool = YAML,
) -> None:
    """Register a location; its entities are ingested at once (exit 1 when some of its
    documents have errors, which are listed)."""
    is_url = target.startswith(("http://", "https://"))
    body = {
        "type": "url" if is_url else "file",
        "target": target if is_url else os.path.abspath(target),
    }
    result = _client(server).request(
        "POST",
        "/api/v1/catalog/locations",
        json=body,
        params={"dryRun": "true"} if dry_run else None,
    )
    fmt = _format(fmt, as_json, as_yaml)
    if fmt is not Format.table:
        emit(result, fmt)
        return
    location = result["location"]
    verb = "Would register" if dry_run else "Registered"
    typer.echo(
        f"{verb} {location['type']}:{location['target']}"
        + (f" (id {location['id']})" if location.get("id") else "")
    )
    typer.echo(f"  {len(result['entities'])} entities")
    for error in result.get("errors") or []:
        typer.echo(
            f"  error  {error['source']}{':' + str(error['line']) if error.get('line') else ''}"
            f"  {error['message']}"
        )
    if result.get("errors"):
        raise typer.Exit(1)  # registered, but some documents need fixing


@catalog_app.command("list")
def list_entities(
    kind: str = typer.Option(None, "--kind", "-k", help="Only this kind."),
    type_: str = typer.Option(None, "--type", "-t", help="Only this spec.type."),
    owner: str = typer.Option(None, "--owner", help="Only entities owned by this ref."),
    filter_: list[str] = typer.Option(None, "--filter", "-f", help="field=value (repeat to OR)."),
    search: str = typer.Option("", "--search", "-s", help="Full-text search."),
    limit: int = typer.Option(50, "--limit", "-n", min=1, max=1000),
    server: str = SERVER,
    fmt: Format = FORMAT,
    as_json: bool = JSON,
    as_yaml: bool = YAML,
) -> None:
    """List entities (filters AND together)."""
    conditions = [f"kind={kind}"] if kind else []
    conditions += [f"spec.type={type_}"] if type_ else []
    filters = list(filter_ or [])
    if conditions:
        filters = (
            [",".join([*conditions, f]) for f in filters] if filters else [",".join(conditions)]
        )
    params: dict[str, Any] = {"filter": filters, "q": search, "limit": limit}
    if owner:
        from pavedroad.catalog.refs import ref_key

        extra = f"relations.ownedby={ref_key(owner, 'Group')}"
        params["filter"] = [f"{f},{extra}" for f in filters] if filters else [extra]
    page = _client(server).request("GET", "/api/v1/catalog/entities", params=params)
    fmt = _format(fmt, as_json, as_yaml)
    rows = [
        [
            _ref_text(e),
            str((e.get("spec") or {}).get("type", "")),
            str((e.get("spec") or {}).get("owner", "")),
            str((e.get("spec") or {}).get("lifecycle", "")),
        ]
        for e in page["items"]
    ]
    emit(
        page["items"] if fmt is not Format.table else page,
        fmt,
        [("ref", ""), ("type", ""), ("owner", ""), ("lifecycle", "")],
        rows,
    )
    if fmt is Format.table and page["totalItems"] > len(rows):
        typer.echo(f"({len(rows)} of {page['totalItems']}; use --limit or filters)")


def _ref_text(entity: dict[str, Any]) -> str:
    metadata = entity["metadata"]
    return f"{entity['kind'].lower()}:{metadata.get('namespace', 'default')}/{metadata['name']}"


@catalog_app.command("get")
def get(
    ref: str = typer.Argument(..., help="[kind:][namespace/]name (kind defaults to component)."),
    server: str = SERVER,
    fmt: Format = typer.Option(Format.yaml, "--output", "-o"),
    as_json: bool = JSON,
    as_yaml: bool = YAML,
) -> None:
    """Show one entity with its relations (YAML by default)."""
    from pavedroad.catalog.refs import parse_ref

    parsed = parse_ref(ref, "component")
    entity = _client(server).request(
        "GET", f"/api/v1/catalog/entities/{parsed.kind}/{parsed.namespace}/{parsed.name}"
    )
    fmt = _format(fmt, as_json, as_yaml)
    emit(entity, Format.yaml if fmt is Format.table else fmt)


@catalog_app.command("refresh")
def refresh(
    ref: str = typer.Argument(None, help="Entity to refresh (its source is re-read)."),
    location: str = typer.Option(None, "--location", help="A location id instead."),
    server: str = SERVER,
) -> None:
    """Re-read an entity's source, or a whole location, now."""
    if not ref and not location:
        fail("give an entity ref or --location ID")
    body = {"entityRef": ref} if ref else {"locationId": location}
    if ref:
        from pavedroad.catalog.refs import ref_key

        body = {"entityRef": ref_key(ref, "component")}
    report = _client(server).request("POST", "/api/v1/catalog/refresh", json=body)
    typer.echo(
        f"refreshed {report['sources']} source(s): {report['written']} written, "
        f"{report['unchanged']} unchanged, {report['orphaned']} orphaned, "
        f"{report['errors']} error(s)"
    )


@catalog_app.command("locations")
def locations(
    server: str = SERVER, fmt: Format = FORMAT, as_json: bool = JSON, as_yaml: bool = YAML
) -> None:
    """List registered and configured locations with their status."""
    items = _client(server).request("GET", "/api/v1/catalog/locations")
    rows = [
        [
            i["id"],
            f"{i['type']}:{i['target']}",
            i["origin"],
            str(i["status"]["entities"]),
            str(len(i["status"]["errors"])),
        ]
        for i in items
    ]
    emit(
        items,
        _format(fmt, as_json, as_yaml),
        [("id", ""), ("target", ""), ("origin", ""), ("entities", ""), ("errors", "")],
        rows,
    )


@catalog_app.command("unregister")
def unregister(
    location_id: str = typer.Argument(..., help="Location id (see `pave catalog locations`)."),
    server: str = SERVER,
) -> None:
    """Remove a location and every entity it brought in."""
    _client(server).request("DELETE", f"/api/v1/catalog/locations/{location_id}")
    typer.echo(f"unregistered location {location_id}")
