"""The metadata database: migrations, transactions, concurrent writers, UTC timestamps."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import StatementError

from symvault.store.database import Database, insert_ignore
from symvault.store.tables import Blob, Organization


def count(db: Database, model: type[Organization] | type[Blob]) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_migrate_creates_the_schema_and_is_idempotent(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/fresh.sqlite", lock_dir=tmp_path / "locks")
    try:
        db.migrate()
        db.migrate()
        with db.read() as session:
            tables = set(inspect(session.connection()).get_table_names())
        assert {
            "organizations",
            "projects",
            "api_tokens",
            "blobs",
            "blob_owners",
            "files",
            "debug_files",
            "assemble_tasks",
            "alembic_version",
        } <= tables
    finally:
        db.dispose()


def test_concurrent_migrations_of_one_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/shared.sqlite"
    databases = [Database(url, lock_dir=tmp_path / "locks") for _ in range(3)]
    errors: list[BaseException] = []

    def migrate(db: Database) -> None:
        try:
            db.migrate()
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=migrate, args=(db,)) for db in databases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert errors == []
        with databases[0].write() as session:
            session.add(Organization(slug="acme"))
        assert count(databases[1], Organization) == 1
    finally:
        for db in databases:
            db.dispose()


def test_write_commits_and_rolls_back_on_error(db: Database) -> None:
    with db.write() as session:
        session.add(Organization(slug="kept"))

    def add_then_fail() -> None:
        with db.write() as session:
            session.add(Organization(slug="discarded"))
            session.flush()
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        add_then_fail()
    with db.read() as session:
        assert list(session.scalars(select(Organization.slug))) == ["kept"]


def test_concurrent_writers_wait_for_each_other(db: Database) -> None:
    """Read-then-write transactions from many threads neither fail nor lose updates."""
    with db.write() as session:
        session.add(Blob(checksum="counter", size=0, uploaded_at=datetime.now(UTC)))
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def increment() -> None:
        try:
            start.wait()
            for _ in range(10):
                with db.write() as session:
                    blob = session.get(Blob, "counter")
                    assert blob is not None
                    blob.size += 1
        except BaseException as exc:  # noqa: BLE001 (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=increment) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.read() as session:
        assert session.get(Blob, "counter") is not None
        assert session.scalar(select(Blob.size).where(Blob.checksum == "counter")) == 80


def test_insert_ignore(db: Database) -> None:
    now = datetime.now(UTC)
    rows = [{"checksum": c, "size": 1, "uploaded_at": now} for c in ("a", "b")]
    with db.write() as session:
        assert insert_ignore(session, Blob, rows, ["checksum"]) == 2
    with db.write() as session:
        again = [*rows, {"checksum": "c", "size": 1, "uploaded_at": now}]
        assert insert_ignore(session, Blob, again, ["checksum"]) == 1
        assert insert_ignore(session, Blob, [], ["checksum"]) == 0
    later = now + timedelta(hours=1)
    with db.write() as session:
        updated = insert_ignore(
            session,
            Blob,
            [{"checksum": "a", "size": 1, "uploaded_at": later}],
            ["checksum"],
            update={"uploaded_at": later},
        )
        assert updated == 1
    with db.read() as session:
        assert session.scalar(select(Blob.uploaded_at).where(Blob.checksum == "a")) == later
        assert session.scalar(select(Blob.uploaded_at).where(Blob.checksum == "b")) == now
    assert count(db, Blob) == 3


def test_timestamps_come_back_aware_in_utc(db: Database) -> None:
    eastern = timezone(timedelta(hours=-5))
    moment = datetime(2024, 3, 10, 8, 30, 0, 250_000, tzinfo=eastern)
    with db.write() as session:
        session.add(Blob(checksum="x", size=1, uploaded_at=moment))
    with db.read() as session:
        stored = session.scalar(select(Blob.uploaded_at))
    assert stored == moment
    assert stored is not None
    assert stored.tzinfo == UTC
    assert stored.hour == 13


def test_naive_timestamps_are_refused(db: Database) -> None:
    with pytest.raises(StatementError, match="naive datetime"), db.write() as session:
        session.add(Blob(checksum="x", size=1, uploaded_at=datetime(2024, 1, 1)))  # noqa: DTZ001
    assert count(db, Blob) == 0


def test_defaults_fill_in_creation_times(db: Database) -> None:
    before = datetime.now(UTC)
    with db.write() as session:
        org = Organization(slug="acme")
        session.add(org)
    assert before <= org.created_at <= datetime.now(UTC)
