"""Real building blocks for unit tests: a migrated SQLite database, file storage, projects."""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from symvault.store.database import Database
from symvault.store.filesystem import FilesystemStorage
from symvault.store.tables import Organization, Project

#: Creates (or finds) `organization/project` and returns (organization id, project id).
ProjectFactory = Callable[[str, str], tuple[int, int]]
#: Copies a file into the storage's staging directory, as an upload would leave it.
StageFile = Callable[[Path], Path]


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path}/db.sqlite", lock_dir=tmp_path / "locks")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def storage(tmp_path: Path) -> FilesystemStorage:
    return FilesystemStorage(tmp_path / "storage")


@pytest.fixture
def make_project(db: Database) -> ProjectFactory:
    def make(organization: str, project: str) -> tuple[int, int]:
        with db.write() as session:
            org = session.scalars(
                select(Organization).where(Organization.slug == organization)
            ).one_or_none()
            if org is None:
                org = Organization(slug=organization)
                session.add(org)
                session.flush()
            row = Project(organization_id=org.id, slug=project)
            session.add(row)
            session.flush()
            return org.id, row.id

    return make


@pytest.fixture
def stage_file(storage: FilesystemStorage) -> StageFile:
    def stage(source: Path) -> Path:
        target = storage.staging_dir() / f"upload-{uuid.uuid4().hex}"
        shutil.copyfile(source, target)
        return target

    return stage
