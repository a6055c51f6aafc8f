"""The metadata database schema (SQLAlchemy 2 declarative models).

Changes to these classes need an Alembic migration in `migrations/versions`.
The schema runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "ApiToken",
    "AssembleTask",
    "Base",
    "Blob",
    "BlobOwner",
    "DebugFileRow",
    "Organization",
    "Project",
    "StoredFile",
    "UTCDateTime",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC, returns them aware again."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=_NAMING)


class Organization(Base):
    __tablename__ = "organizations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (UniqueConstraint("organization_id", "slug"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    slug: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ApiToken(Base):
    """A bearer token; only the SHA-256 of the token is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"))
    project_id: Mapped[int | None] = mapped_column(ForeignKey("projects.id"), nullable=True)
    scopes: Mapped[str] = mapped_column(Text)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Blob(Base):
    """An uploaded chunk, stored once under `chunks/<sha1>` whoever uploads it."""

    __tablename__ = "blobs"

    checksum: Mapped[str] = mapped_column(String(40), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class BlobOwner(Base):
    """Proof that an organization uploaded a chunk; kept after the chunk expires."""

    __tablename__ = "blob_owners"

    organization_id: Mapped[int] = mapped_column(ForeignKey("organizations.id"), primary_key=True)
    checksum: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class StoredFile(Base):
    """The contents of an assembled file, shared by every record with that checksum.

    Each row has its own storage key, so a row deleted while another upload of
    the same content creates a new one never removes the new contents.
    """

    __tablename__ = "files"
    # Ids are never reused (SQLite would reuse the highest after a delete).
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checksum: Mapped[str] = mapped_column(String(40), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    storage_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class DebugFileRow(Base):
    """One debug file in a project (a `ProjectDebugFile` in Sentry's terms)."""

    __tablename__ = "debug_files"
    __table_args__ = (
        Index("ix_debug_files_project_debug_id", "project_id", "debug_id"),
        Index("ix_debug_files_project_code_id", "project_id", "code_id"),
        Index("ix_debug_files_project_checksum", "project_id", "checksum"),
        # Ids are never reused: clients download and delete by id.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id"), index=True)
    checksum: Mapped[str] = mapped_column(String(40))
    size: Mapped[int] = mapped_column(BigInteger)
    debug_id: Mapped[str] = mapped_column(String(64))
    code_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    arch: Mapped[str] = mapped_column(String(40))
    object_name: Mapped[str] = mapped_column(Text)
    file_format: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    features: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class AssembleTask(Base):
    """The persisted state of assembling one file into one project.

    Polls are answered from this row, so they are idempotent and survive
    restarts. `lease_until` is renewed while a worker assembles; once it has
    passed, the work is restarted.
    """

    __tablename__ = "assemble_tasks"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), primary_key=True)
    checksum: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    debug_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    chunks: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    result: Mapped[str | None] = mapped_column(Text, nullable=True)
    """For `ok`: a JSON snapshot of the record, answered even after a newer upload
    made the record redundant (and deleted it)."""
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
