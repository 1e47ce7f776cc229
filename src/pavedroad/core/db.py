"""Database access: one engine per Settings, sessions, and migrations at start.

SQLite (WAL, foreign keys on) is the embedded default; PostgreSQL is chosen by
``PAVEDROAD_DATABASE_URL``. Schema changes go through Alembic; ``migrate`` runs them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, MetaData, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from pavedroad.settings import Settings

T = TypeVar("T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Database:
    """The engine and session factory for one configured database."""

    def __init__(self, url: str) -> None:
        self.url = _normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        self.engine = _create_engine(self.url, writer=True)
        # SQLite writers take the write lock at BEGIN; readers must not, so that a long
        # ingestion never blocks the portal. Other databases need no such split.
        self.read_engine = _create_engine(self.url, writer=False) if self.is_sqlite else self.engine
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on any error."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """A session for reads only; it never takes SQLite's write lock."""
        session = self.read_sessions()
        try:
            yield session
        finally:
            session.close()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (idempotent)."""
        from alembic import command

        command.upgrade(alembic_config(self), "head")

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()


def _normalise_url(url: str) -> str:
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _create_engine(url: str, writer: bool) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin_immediate if writer else _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, manage transactions so BEGIN IMMEDIATE works.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA cache_size=-262144")  # 256 MiB: the catalog's indexes at 100k entities
    cursor.execute("PRAGMA temp_store=MEMORY")
    # Checkpoint less often than every 4 MiB of WAL: a large ingestion then copies each
    # page back to the database once per checkpoint rather than once per transaction.
    cursor.execute("PRAGMA wal_autocheckpoint=10000")
    cursor.execute("PRAGMA mmap_size=268435456")
    cursor.close()


def _sqlite_begin_immediate(connection: Any) -> None:
    # A deferred transaction that later writes can fail with SQLITE_BUSY without
    # waiting; taking the write lock up front makes concurrent writers queue instead.
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN")


IN_LIST_SIZE = 500  # values per IN (...) list: well under every database's parameter limit


def in_chunks(items: Sequence[T], size: int = IN_LIST_SIZE) -> list[Sequence[T]]:
    """``items`` cut into lists short enough for one ``IN (...)`` condition each."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def bulk_insert(session: Session, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert many rows with the driver's own ``executemany``.

    SQLAlchemy's per-row parameter processing costs more than SQLite's insert itself at
    catalog scale; the values here are plain strings, numbers and None, which need none.
    """
    if not rows:
        return
    columns = list(rows[0])
    connection = session.connection()
    marker = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    quoted = ", ".join(connection.dialect.identifier_preparer.quote(c) for c in columns)
    statement = f"INSERT INTO {table.name} ({quoted}) VALUES ({', '.join([marker] * len(columns))})"
    connection.exec_driver_sql(statement, [tuple(row[c] for c in columns) for row in rows])


def alembic_config(database: Database) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.set_main_option("sqlalchemy.url", database.url.replace("%", "%%"))
    config.attributes["engine"] = database.engine
    return config


_databases: dict[str, Database] = {}


def database_for(settings: Settings) -> Database:
    """The process-wide Database for these settings (one engine per URL)."""
    url = settings.resolved_database_url
    if url not in _databases:
        _databases[url] = Database(url)
    return _databases[url]
