"""Shared fixtures: a throwaway PostgreSQL cluster, a database per test on SQLite and
PostgreSQL, Settings, the app, a TestClient and the catalog service.

The PostgreSQL cluster starts once per session, only when a test asks for it. Every test
gets its own database (``CREATE DATABASE t_<random>``, or a SQLite file in its tmp_path),
so tests never see each other's rows. Databases are copied from templates migrated once
per session (``CREATE DATABASE ... TEMPLATE``, a file copy for SQLite); a module that
overrides the ``database_seed`` fixture with ``"demo"`` gets the demo organisation already
ingested. Without the PostgreSQL 15 binaries the PostgreSQL tests fail in CI (``CI=true``)
and are skipped, with the reason, elsewhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_BIN = Path(os.environ.get("PAVEDROAD_PG_BIN", "/usr/lib/postgresql/15/bin"))
REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = REPO_ROOT / "examples" / "demo"


def pytest_configure(config: pytest.Config) -> None:
    # Starlette's TestClient still runs on httpx; its deprecation notice is not ours to fix.
    config.addinivalue_line(
        "filterwarnings", "ignore:Using `httpx` with `starlette.testclient` is deprecated"
    )


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the throwaway PostgreSQL cluster ------------------------------------------------------


class PostgresCluster:
    """A PostgreSQL cluster in a temporary folder, listening on 127.0.0.1 only."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="pavedroad-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.user = "postgres"
        self._as_user: list[str] = []
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # initdb and postgres refuse to run as root: run them as an unprivileged user.
            runner = shutil.which("runuser") or shutil.which("su")
            account = _first_existing_user("postgres", "nobody")
            if runner is None or account is None:
                raise RuntimeError(
                    "running as root, but there is no runuser/su or no "
                    "unprivileged user (postgres, nobody) to run PostgreSQL as"
                )
            shutil.chown(self.root, user=account)
            os.chmod(self.root, 0o700)
            self._as_user = (
                [runner, "-u", account, "--"]
                if runner.endswith("runuser")
                else [runner, account, "-s", "/bin/sh", "-c"]
            )

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self._as_user and self._as_user[-1] == "-c":  # su needs one shell string
            import shlex

            command = [*self._as_user, shlex.join(command)]
        else:
            command = [*self._as_user, *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )

    def start(self) -> None:
        # A C collation keeps ordering byte-wise and the same on every machine.
        for locale in ("--locale=C.UTF-8", "--no-locale"):
            result = self._run(
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                self.user,
                "-A",
                "trust",
                "-E",
                "UTF8",
                locale,
                "--no-sync",
            )
            if result.returncode == 0:
                break
            shutil.rmtree(self.data, ignore_errors=True)
        else:
            raise RuntimeError(
                f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}"
            )
        last_error = ""
        for _attempt in range(5):
            self.port = free_port()
            options = " ".join(
                [
                    f"-p {self.port}",
                    "-c listen_addresses=127.0.0.1",
                    f"-c unix_socket_directories={self.root}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=300",
                    "-c shared_buffers=32MB",
                ]
            )
            result = self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-w",
                "-t",
                "60",
                "-o",
                options,
                "start",
            )
            if result.returncode == 0:
                return
            last_error = result.stdout + result.stderr + self._log_tail()
        raise RuntimeError(f"PostgreSQL did not start:\n{last_error}")

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        try:
            self._run(
                str(self.bin_dir / "pg_ctl"),
                "-D",
                str(self.data),
                "-m",
                "immediate",
                "-w",
                "stop",
                timeout=30,
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=self.user,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_database(self, template: str | None = None, name: str | None = None) -> str:
        name = name or f"t_{secrets.token_hex(6)}"
        copy = f' TEMPLATE "{template}"' if template else ""
        with self._admin() as connection:
            connection.execute(f'CREATE DATABASE "{name}"{copy}')
        return name

    def drop_database(self, name: str) -> None:
        with self._admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _first_existing_user(*names: str) -> str | None:
    import pwd

    for name in names:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One PostgreSQL 15 cluster for the whole session, stopped and deleted at the end."""
    if not (PG_BIN / "initdb").is_file() or not (PG_BIN / "pg_ctl").is_file():
        reason = (
            f"PostgreSQL 15 server binaries not found in {PG_BIN} "
            "(install postgresql-15, or set PAVEDROAD_PG_BIN)"
        )
        if in_ci():
            pytest.fail(reason + "; CI must run the PostgreSQL tests", pytrace=False)
        pytest.skip(reason)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        reason = "psycopg is not installed (pip install -e '.[test]')"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    cluster = PostgresCluster(PG_BIN)
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The URL of a fresh, empty database in the session cluster."""
    name = postgres_cluster.create_database()
    url = postgres_cluster.url(name)
    yield url
    _forget_database(url)
    postgres_cluster.drop_database(name)


# -- databases, settings, app ------------------------------------------------------------


def _forget_database(url: str) -> None:
    """Dispose the engines ``database_for`` cached for this URL."""
    from pavedroad.core import db

    for key, database in list(db._databases.items()):
        if key == url or database.url == db._normalise_url(url):
            database.dispose()
            db._databases.pop(key, None)


SEEDS = ("empty", "demo")


def _seed_database(url: str, seed: str, home: Path) -> None:
    """Migrate a database and load what the seed names, with no outside settings."""
    from pavedroad.app import create_app
    from pavedroad.settings import Settings

    if seed not in SEEDS:
        raise ValueError(f"unknown database seed {seed!r}; known: {', '.join(SEEDS)}")
    empty = home / "empty-pavedroad.yaml"
    home.mkdir(parents=True, exist_ok=True)
    empty.write_text("")
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("PAVEDROAD_"):
                patch.delenv(name)
        patch.setenv("PAVEDROAD_CONFIG", str(empty))
        app = create_app(Settings(home=home, database_url=url))
        try:
            if seed == "demo":
                _location, _entities = app.state.catalog.register_location(
                    "file", str(DEMO_DIR / "catalog-info.yaml")
                )
        finally:
            app.state.db.dispose()
            _forget_database(url)


class DatabaseTemplates:
    """Databases migrated (and seeded) once per session, copied for each test: every
    test still gets a database of its own, without paying for migrations each time."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._sqlite: dict[str, Path] = {}
        self._postgres: dict[str, str] = {}

    def sqlite_copy(self, seed: str, destination: Path) -> str:
        if seed not in self._sqlite:
            import sqlite3

            template = self.root / f"{seed}.db"
            _seed_database(f"sqlite:///{template}", seed, self.root / f"home-{seed}")
            with sqlite3.connect(template) as connection:  # fold the WAL into the file
                connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            connection.close()
            self._sqlite[seed] = template
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self._sqlite[seed], destination)
        return f"sqlite:///{destination}"

    def postgres_copy(self, cluster: PostgresCluster, seed: str) -> str:
        if seed not in self._postgres:
            name = cluster.create_database(name=f"template_{seed}")
            _seed_database(cluster.url(name), seed, self.root / f"home-pg-{seed}")
            self._postgres[seed] = name
        return cluster.create_database(template=self._postgres[seed])


@pytest.fixture(scope="session")
def database_templates(tmp_path_factory: pytest.TempPathFactory) -> DatabaseTemplates:
    return DatabaseTemplates(tmp_path_factory.mktemp("database-templates"))


@pytest.fixture
def database_seed() -> str:
    """What a test's database starts with: ``empty`` (migrated) or ``demo`` (the demo
    organisation ingested). Override this fixture in a module to change it."""
    return "empty"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_seed: str,
    database_templates: DatabaseTemplates,
) -> Iterator[str]:
    """A database of this test's own: a SQLite file in tmp_path, or a new PostgreSQL
    database (``t_<random>``) in the session cluster, starting as ``database_seed`` says."""
    if request.param == "postgres":
        cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
        name = database_templates.postgres_copy(cluster, database_seed)
        url = cluster.url(name)
        yield url
        _forget_database(url)
        cluster.drop_database(name)
        return
    url = database_templates.sqlite_copy(database_seed, tmp_path / "db" / "pavedroad.db")
    yield url
    _forget_database(url)


@pytest.fixture
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PAVEDROAD_* variable or pavedroad.yaml from the developer's machine leaks in."""
    for name in list(os.environ):
        if name.startswith("PAVEDROAD_") and name != "PAVEDROAD_CONFORMANCE_DIR":
            monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty-pavedroad.yaml"
    empty.write_text("")
    monkeypatch.setenv("PAVEDROAD_CONFIG", str(empty))
    return empty


SettingsFactory = Callable[..., Any]


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path, isolated_env: Path) -> SettingsFactory:
    """Build Settings on this test's database; keyword arguments go to ``catalog``.

    Sign-in is off here (``auth.required`` false) so catalog tests call the API as
    anonymous users; the identity tests turn it back on, as it is by default."""
    from pavedroad.settings import AuthSettings, CatalogSettings, Settings

    def make(**catalog: Any) -> Settings:
        return Settings(
            home=tmp_path / "home",
            database_url=database_url,
            catalog=CatalogSettings(**catalog),
            auth=AuthSettings(required=False),
        )

    return make


@pytest.fixture
def settings(make_settings: SettingsFactory) -> Any:
    return make_settings()


@pytest.fixture
def make_app(isolated_env: Path) -> Iterator[Callable[..., Any]]:
    """Build apps with ``create_app(settings)``; their engines are disposed afterwards."""
    from pavedroad.app import create_app

    built: list[Any] = []

    def make(settings: Any, **kwargs: Any) -> Any:
        app = create_app(settings, **kwargs)
        built.append(app)
        return app

    yield make
    for app in built:
        _stop_service_instances(app)
        app.state.db.dispose()


def _stop_service_instances(app: Any) -> None:
    """Service instances outlive their platform by design: a test's must not."""
    runtime = app.state.deployments.runtime
    for instance in runtime.instances():
        runtime.stop([instance["id"]])


@pytest.fixture
def app(make_app: Callable[..., Any], settings: Any) -> Any:
    return make_app(settings)


@pytest.fixture
def client(app: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def catalog(app: Any) -> Any:
    """The app's CatalogService."""
    return app.state.catalog
