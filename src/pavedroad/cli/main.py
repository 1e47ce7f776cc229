"""The ``pave`` command."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import typer

from pavedroad import __version__
from pavedroad.catalog.cli import catalog_app
from pavedroad.cli.output import fail
from pavedroad.environments import cli as environments_cli
from pavedroad.git.cli import repo_app
from pavedroad.identity.cli import can, login, logout, token_app, user_app, whoami
from pavedroad.pipelines.cli import pipeline_app
from pavedroad.scaffolder.cli import task_app, template_app
from pavedroad.secrets.cli import secret_app
from pavedroad.settings import Settings

app = typer.Typer(
    help="Pavedroad: the paved road from template to production.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog_app, name="catalog")
app.add_typer(user_app, name="user")
app.add_typer(token_app, name="token")
app.add_typer(secret_app, name="secret")
app.add_typer(repo_app, name="repo")
app.add_typer(template_app, name="template")
app.add_typer(task_app, name="task")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(
    secret_app, name="secrets", hidden=True
)  # `pave secrets rotate-master-key` reads well
app.add_typer(environments_cli.env_app, name="env")
app.add_typer(environments_cli.release_app, name="release")
for _command in ("deploy", "promote", "rollback", "approve", "ps", "logs"):
    app.command(_command)(getattr(environments_cli, _command))
app.command("can")(can)
app.command("login")(login)
app.command("logout")(logout)
app.command("whoami")(whoami)

DEMO_DIR = Path(__file__).resolve().parents[3] / "examples" / "demo"


def load_settings(**overrides: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic's ValidationError or a bad settings file
        fail(f"invalid settings: {exc}")


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"pave {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=_print_version,
        help="Print the version and exit.",
    ),
) -> None:
    """Pavedroad: the paved road from template to production."""


@app.command()
def up(
    demo: bool = typer.Option(False, "--demo", help="Load the demo organisation."),
    host: str = typer.Option(None, help="Interface to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 7070)."),
) -> None:
    """Run everything in one process: migrate, (load the demo), serve the portal and API,
    and process the catalog in the background. The first start creates the admin account
    and prints a one-time sign-in link (or uses PAVEDROAD_ADMIN_PASSWORD); --demo also
    prints the demo users' passwords."""
    settings = load_settings(host=host, port=port)
    _serve(settings, background=True, demo=demo, first_start=True)


@app.command()
def server(
    host: str = typer.Option(None, help="Interface to listen on."),
    port: int = typer.Option(None, help="Port to listen on."),
    background: bool = typer.Option(
        False,
        "--background/--no-background",
        help="Also run background processing in this process.",
    ),
) -> None:
    """Serve the API and portal only (scale-out: run `pave worker` for background work)."""
    _serve(load_settings(host=host, port=port), background=background, demo=False)


@app.command()
def worker(once: bool = typer.Option(False, "--once", help="Run one round and exit.")) -> None:
    """Process background work (catalog refresh, queued jobs) against the shared database."""
    from pavedroad.app import build_services
    from pavedroad.core.background import BackgroundRunner
    from pavedroad.core.db import database_for

    settings = load_settings()
    _configure_logging(settings)
    settings.ensure_home()
    db = database_for(settings)
    db.migrate()
    services = build_services(settings, db)
    runner = BackgroundRunner(services.reconcilers())
    if once:
        runner.run_once()
        return
    labels = settings.pipelines.labels
    consumers = services.consumers()
    typer.echo(
        f"pave worker: processing background work for {_redact(settings.resolved_database_url)}"
        f" and jobs from {_redact(services.queue.url)} with {settings.workers} worker thread(s);"
        f" pipeline jobs labelled {', '.join(labels) or '(none)'} or unlabelled,"
        f" {settings.pipelines.workers} at a time; {settings.deployments.workers} deployment(s)"
        " at a time"
    )
    # SIGTERM (systemd, Kubernetes) stops the worker as Ctrl-C does: jobs get to finish
    signal.signal(signal.SIGTERM, _interrupt)
    runner.start()
    for consumer in consumers:
        consumer.start()
    for work in services.at_start():
        work()
    try:
        while runner._thread and runner._thread.is_alive():
            runner._thread.join(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        for consumer in consumers:
            consumer.stop_and_wait()
        runner.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from pavedroad.core.db import database_for

    settings = load_settings()
    settings.ensure_home()
    database_for(settings).migrate()
    typer.echo(f"database is up to date: {_redact(settings.resolved_database_url)}")


def _serve(settings: Settings, background: bool, demo: bool, first_start: bool = False) -> None:
    import uvicorn

    from pavedroad.app import create_app

    _configure_logging(settings)
    app = create_app(settings, background=background)
    demo_users = _load_demo(app.state.catalog) if demo else []
    typer.echo(f"Pavedroad {__version__} — home {settings.home}")
    typer.echo(f"  database  {_redact(settings.resolved_database_url)}")
    typer.echo(f"  portal    {settings.public_url}/")
    typer.echo(f"  API docs  {settings.public_url}/api/docs")
    if first_start:
        _first_start(app, settings, demo_users)
    # uvicorn's loggers propagate to the root logger, whose output is masked.
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", log_config=None)


def _first_start(app: object, settings: Settings, demo_users: list[str]) -> None:
    """Make sure someone can sign in, and say how."""
    from fastapi import FastAPI

    from pavedroad.identity.bootstrap import (
        DEMO_ACCOUNTS_FILE,
        ensure_demo_accounts,
        ensure_first_admin,
    )

    assert isinstance(app, FastAPI)
    if not settings.auth.required:
        typer.echo("  sign-in   off (auth.required is false): anyone here may do anything")
        return
    if demo_users:
        accounts = ensure_demo_accounts(app.state.identity, settings.home, demo_users)
        typer.echo("\nDemo accounts (sign in at the portal with any of these):")
        for account in accounts:
            typer.echo(f"  {account.name:<8} {account.role:<7} {account.password}")
        typer.echo(f"  (kept in {settings.home / DEMO_ACCOUNTS_FILE})")
    password = settings.admin_password.get_secret_value() if settings.admin_password else None
    link = ensure_first_admin(app.state.identity, app.state.sessions, settings.public_url, password)
    if link:
        typer.echo("\nNo admin has signed in yet. Open this one-time link to sign in as admin")
        typer.echo(f"(it works once, for 24 hours; then set a password in Settings):\n  {link}")


def _load_demo(catalog: object) -> list[str]:
    """Load the demo organisation; the names of its users."""
    from pavedroad.catalog.service import CatalogService

    assert isinstance(catalog, CatalogService)
    target = DEMO_DIR / "catalog-info.yaml"
    if not target.is_file():
        fail(f"the demo organisation is missing ({target}); run from a source checkout")
    location = catalog.ingester.ensure_location("file", str(target), origin="demo")
    catalog.ingester.request_refresh(location_id=location.id)
    report = catalog.ingester.run_until_idle(location_id=location.id)
    with catalog.reader() as reader:
        refs = reader.entity_refs_of_location(location.id)
    typer.echo(
        f"Demo organisation loaded: {len(refs)} entities from {report.sources} files"
        + (f", {report.errors} errors" if report.errors else "")
    )
    return sorted(ref.split("/", 1)[1] for ref in refs if ref.startswith("user:default/"))


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("huey").setLevel(logging.WARNING)  # one line per job is noise
    from pavedroad.secrets.masking import install_log_masking, process_masker

    install_log_masking(process_masker())  # no secret the process handles is ever logged


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def main() -> None:
    """Run the CLI; a problem the user can act on is one line on stderr and exit code 2."""
    from pavedroad.core.errors import ProblemError

    try:
        app()
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
