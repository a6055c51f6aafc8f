"""The legacy one-request upload: a debug file, or a zip of them."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import pytest

from symvault.errors import BadRequest
from symvault.store.database import Database
from symvault.store.debug_files import DebugFiles
from symvault.store.filesystem import FilesystemStorage
from symvault.store.legacy_uploads import LegacyUploads
from symvault.store.zips import ZipLimits
from tests.conftest import fixture_path
from tests.unit.conftest import ProjectFactory, StageFile, sha1_of

LIMITS = ZipLimits(max_members=100, max_member_size=2**30, max_total_size=2**30, max_ratio=200)


@pytest.fixture
def debug_files(db: Database, storage: FilesystemStorage) -> DebugFiles:
    return DebugFiles(db, storage)


@pytest.fixture
def legacy(debug_files: DebugFiles, storage: FilesystemStorage) -> LegacyUploads:
    return LegacyUploads(debug_files, storage.staging_dir(), LIMITS, 512 * 1024**2)


@pytest.fixture
def project(make_project: ProjectFactory) -> int:
    return make_project("acme", "app")[1]


def ingest(legacy: LegacyUploads, project: int, path: Path, name: str) -> list[Any]:
    data = path.read_bytes()
    return legacy.ingest(lambda: project, path, name, sha1_of(data), len(data))


def refused_without_asking_for_the_project(legacy: LegacyUploads, path: Path, name: str) -> None:
    """Ingests an upload that must be refused before the project is looked up."""
    data = path.read_bytes()

    def project() -> int:
        raise AssertionError("a refused upload asked for its project")

    legacy.ingest(project, path, name, sha1_of(data), len(data))


def make_zip(path: Path, members: dict[str, Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, source in members.items():
            archive.writestr(name, source.read_bytes())
    return path


def test_single_file(
    fixtures: dict[str, Any], legacy: LegacyUploads, stage_file: StageFile, project: int
) -> None:
    (record,) = ingest(
        legacy, project, stage_file(fixture_path(fixtures, "crash_pdb")), "crash.pdb"
    )
    assert record.debug_id == fixtures["crash_pdb"]["debug_id"]
    assert record.checksum == fixtures["crash_pdb"]["sha1"]


def test_fat_macho_gives_a_record_per_architecture_sharing_contents(
    fixtures: dict[str, Any], legacy: LegacyUploads, stage_file: StageFile, project: int
) -> None:
    staged = stage_file(fixture_path(fixtures, "crash_macho_fat"))
    records = ingest(legacy, project, staged, "crash")
    assert sorted(r.arch for r in records) == ["arm64", "x86_64"]
    assert len({r.storage_key for r in records}) == 1
    assert {r.checksum for r in records} == {fixtures["crash_macho_fat"]["sha1"]}


def test_zip_of_debug_files_skips_other_members(
    fixtures: dict[str, Any],
    legacy: LegacyUploads,
    debug_files: DebugFiles,
    storage: FilesystemStorage,
    tmp_path: Path,
    project: int,
) -> None:
    upload = make_zip(
        tmp_path / "symbols.zip",
        {
            "elf/crash.debug": fixture_path(fixtures, "crash_elf_debug"),
            "README.txt": fixture_path(fixtures, "notes"),
            "windows/crash.pdb": fixture_path(fixtures, "crash_pdb"),
            "random.bin": fixture_path(fixtures, "garbage"),
        },
    )
    records = ingest(legacy, project, upload, "symbols.zip")
    assert sorted((r.object_name, r.file_format) for r in records) == [
        ("crash.debug", "elf"),
        ("crash.pdb", "pdb"),
    ]
    assert debug_files.count(project) == 2
    assert list(storage.staging_dir().iterdir()) == []
    # The same zip again adds nothing.
    assert ingest(legacy, project, upload, "symbols.zip") == []


def test_zip_without_debug_files(
    fixtures: dict[str, Any], legacy: LegacyUploads, tmp_path: Path, project: int
) -> None:
    upload = make_zip(tmp_path / "junk.zip", {"notes.txt": fixture_path(fixtures, "notes")})
    with pytest.raises(BadRequest, match="contains no debug information files"):
        refused_without_asking_for_the_project(legacy, upload, "junk.zip")


def test_corrupt_member_is_reported_by_name(
    fixtures: dict[str, Any], legacy: LegacyUploads, tmp_path: Path, project: int
) -> None:
    upload = make_zip(
        tmp_path / "bad.zip", {"corrupt.debug": fixture_path(fixtures, "corrupt_debug")}
    )
    with pytest.raises(BadRequest, match=r"^corrupt\.debug: .*corrupted dwarf debug data"):
        refused_without_asking_for_the_project(legacy, upload, "bad.zip")


def test_file_that_is_neither_a_debug_file_nor_a_zip(
    fixtures: dict[str, Any], legacy: LegacyUploads, stage_file: StageFile, project: int
) -> None:
    with pytest.raises(BadRequest, match="Unsupported debug information file"):
        refused_without_asking_for_the_project(
            legacy, stage_file(fixture_path(fixtures, "garbage")), "garbage.bin"
        )
