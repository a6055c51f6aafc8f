"""The metadata database: engines, sessions, migrations.

Two engines share one URL: readers use plain transactions, writers use a
separate small pool. On SQLite a write transaction starts with
`BEGIN IMMEDIATE`, so concurrent writers wait for each other (up to the busy
timeout) instead of failing when a read lock cannot be upgraded. The same code
runs on PostgreSQL, where both engines are ordinary pools.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from symvault.store.tables import Base

__all__ = ["Database", "insert_ignore"]

_SQLITE_BUSY_TIMEOUT_MS = 30_000


class Database:
    """Opens sessions for reading and for writing."""

    def __init__(self, url: str, pool_size: int = 8, lock_dir: Path | None = None) -> None:
        self.url = url
        self._lock_dir = lock_dir
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self._reader = self._sqlite_engine(url, pool_size, immediate=False)
            self._writer = self._sqlite_engine(url, 1, immediate=True)
        else:
            self._reader = create_engine(url, pool_size=pool_size, pool_pre_ping=True)
            self._writer = create_engine(url, pool_size=max(2, pool_size // 2), pool_pre_ping=True)

    @staticmethod
    def _sqlite_engine(url: str, pool_size: int, *, immediate: bool) -> Engine:
        engine = create_engine(
            url,
            pool_size=pool_size,
            max_overflow=0 if immediate else pool_size,
            pool_timeout=120,
            connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000},
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
            # Take transaction control away from the sqlite3 module; "begin" below
            # emits BEGIN itself.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.close()

        begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql(begin)

        return engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries (its transaction ends when the block does)."""
        with Session(self._reader, expire_on_commit=False) as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session whose changes are committed at the end (rolled back on error)."""
        with Session(self._writer, expire_on_commit=False) as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Brings the schema to the newest revision (safe to call from several processes)."""
        # Alembic takes a third of a second to import: processes that do not migrate
        # (fetch processes, most commands) never load it.
        from alembic import command  # noqa: PLC0415
        from alembic.config import Config as AlembicConfig  # noqa: PLC0415

        with self._migration_lock(), self._writer.connect() as connection:
            alembic_config = AlembicConfig()
            location = resources.files("symvault.store") / "migrations"
            alembic_config.set_main_option("script_location", str(location))
            alembic_config.attributes["connection"] = connection
            command.upgrade(alembic_config, "head")

    @contextmanager
    def _migration_lock(self) -> Iterator[None]:
        if self._lock_dir is None:
            yield
            return
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        with (self._lock_dir / "migrate.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def dispose(self) -> None:
        self._reader.dispose()
        self._writer.dispose()


def insert_ignore(
    session: Session,
    model: type[Base],
    rows: Sequence[Mapping[str, Any]],
    conflict_columns: Sequence[str],
    update: Mapping[str, Any] | None = None,
) -> int:
    """Inserts rows, skipping (or, with `update`, updating) those that conflict.

    Returns the number of rows inserted or updated.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    table = cast(Table, model.__table__)
    if dialect == "sqlite":
        sqlite_stmt = sqlite.insert(table).values(list(rows))
        if update:
            stmt: Any = sqlite_stmt.on_conflict_do_update(
                index_elements=list(conflict_columns), set_=dict(update)
            )
        else:
            stmt = sqlite_stmt.on_conflict_do_nothing(index_elements=list(conflict_columns))
    elif dialect == "postgresql":
        pg_stmt = postgresql.insert(table).values(list(rows))
        if update:
            stmt = pg_stmt.on_conflict_do_update(
                index_elements=list(conflict_columns), set_=dict(update)
            )
        else:
            stmt = pg_stmt.on_conflict_do_nothing(index_elements=list(conflict_columns))
    else:
        raise NotImplementedError(f"database dialect {dialect!r} is not supported")
    result = session.execute(stmt)
    return int(getattr(result, "rowcount", 0) or 0)
