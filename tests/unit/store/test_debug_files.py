"""Debug file records: shared contents, Sentry's lookup and cleanup rules, listing."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from symvault.model.difs import DebugFile, DifMeta
from symvault.store.database import Database
from symvault.store.debug_files import DebugFileQuery, DebugFiles
from symvault.store.detection import detect_file
from symvault.store.filesystem import FilesystemStorage
from symvault.store.tables import StoredFile
from tests.conftest import fixture_path
from tests.unit.conftest import ProjectFactory, StageFile

DEBUG_ID = "dfb8e43a-f242-3d73-a453-aeb6a777ef75"
OTHER_ID = "0c5e3a1b-8f2d-4e6a-9b7c-1d2e3f4a5b6c"


@pytest.fixture
def debug_files(db: Database, storage: FilesystemStorage) -> DebugFiles:
    return DebugFiles(db, storage)


@pytest.fixture
def project(make_project: ProjectFactory) -> int:
    return make_project("acme", "app")[1]


def meta(
    features: Iterable[str] = (),
    debug_id: str = DEBUG_ID,
    file_format: str = "elf",
    object_name: str = "libapp.so",
) -> DifMeta:
    return DifMeta(
        file_format=file_format,
        arch="x86_64",
        debug_id=debug_id,
        object_name=object_name,
        kind="dbg",
        features=frozenset(features),
    )


class Uploads:
    """Creates records from fresh contents, as assembly does."""

    def __init__(self, debug_files: DebugFiles, storage: FilesystemStorage) -> None:
        self.debug_files = debug_files
        self.storage = storage

    def add(self, project_id: int, dif: DifMeta, data: bytes | None = None) -> DebugFile:
        data = os.urandom(64) if data is None else data
        path = self.storage.staging_dir() / hashlib.sha1(os.urandom(8)).hexdigest()
        path.write_bytes(data)
        record, created = self.debug_files.create(
            project_id, dif, hashlib.sha1(data).hexdigest(), len(data), path
        )
        assert created
        path.unlink(missing_ok=True)
        return record


@pytest.fixture
def uploads(debug_files: DebugFiles, storage: FilesystemStorage) -> Uploads:
    return Uploads(debug_files, storage)


def stored_files(db: Database) -> int:
    with db.read() as session:
        return int(session.scalar(select(func.count()).select_from(StoredFile)) or 0)


def stored_objects(storage: FilesystemStorage) -> list[Path]:
    root = storage.staging_dir().parent / "files"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def ids(records: Iterable[DebugFile]) -> list[int]:
    return [record.id for record in records]


class TestCreate:
    def test_temp_file_is_consumed_into_storage(
        self,
        fixtures: dict[str, Any],
        debug_files: DebugFiles,
        storage: FilesystemStorage,
        stage_file: StageFile,
        project: int,
    ) -> None:
        source = fixture_path(fixtures, "crash_elf_debug")
        entry = fixtures["crash_elf_debug"]
        (dif,) = detect_file(source, "crash.debug")
        staged = stage_file(source)
        record, created = debug_files.create(project, dif, entry["sha1"], entry["size"], staged)
        assert created
        assert not staged.exists()
        with storage.open(record.storage_key) as handle:
            assert handle.read() == source.read_bytes()
        assert record.project_id == project
        assert (record.checksum, record.size) == (entry["sha1"], entry["size"])
        assert (record.debug_id, record.code_id) == (entry["debug_id"], entry["code_id"])
        assert (record.arch, record.kind, record.file_format) == ("x86_64", "dbg", "elf")
        assert record.object_name == "crash.debug"
        assert record.features == frozenset(entry["features"])
        assert record.created_at.tzinfo is not None
        assert debug_files.get(project, record.id) == record

    def test_identical_contents_are_stored_once_across_projects(
        self,
        db: Database,
        storage: FilesystemStorage,
        uploads: Uploads,
        make_project: ProjectFactory,
    ) -> None:
        data = os.urandom(1000)
        projects = [
            make_project("acme", "one")[1],
            make_project("acme", "two")[1],
            make_project("other-org", "three")[1],
        ]
        records = [uploads.add(project, meta(["debug"]), data) for project in projects]
        assert len({record.id for record in records}) == 3
        assert len({record.storage_key for record in records}) == 1
        assert stored_files(db) == 1
        assert len(stored_objects(storage)) == 1

    def test_identical_record_is_returned_as_it_is(
        self, debug_files: DebugFiles, uploads: Uploads, storage: FilesystemStorage, project: int
    ) -> None:
        data = b"same contents"
        first = uploads.add(project, meta(["debug"]), data)
        path = storage.staging_dir() / "again"
        path.write_bytes(data)
        again, created = debug_files.create(
            project, meta(["debug"]), first.checksum, len(data), path
        )
        assert not created
        assert again == first
        assert debug_files.count(project) == 1

    def test_same_contents_under_another_debug_id_is_a_new_record(
        self, db: Database, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        data = b"a file with two debug ids (a PDB whose age was overridden)"
        first = uploads.add(project, meta(["debug"]), data)
        second = uploads.add(project, meta(["debug"], debug_id=f"{DEBUG_ID}-2"), data)
        assert first.id != second.id
        assert second.storage_key == first.storage_key
        assert stored_files(db) == 1
        assert debug_files.count(project) == 2

    def test_reusing_stored_contents(
        self, db: Database, uploads: Uploads, debug_files: DebugFiles, make_project: ProjectFactory
    ) -> None:
        first_project = make_project("acme", "one")[1]
        second_project = make_project("acme", "two")[1]
        original = uploads.add(first_project, meta(["symtab"]), b"contents")
        stored = debug_files.find_stored(original.checksum)
        assert stored is not None
        record, created = debug_files.create(
            second_project, meta(["symtab"]), stored.checksum, stored.size, stored
        )
        assert created
        assert record.storage_key == original.storage_key
        assert stored_files(db) == 1

    def test_lookups_are_per_project(
        self, uploads: Uploads, debug_files: DebugFiles, make_project: ProjectFactory
    ) -> None:
        mine = make_project("acme", "mine")[1]
        theirs = make_project("acme", "theirs")[1]
        record = uploads.add(mine, meta(["debug"]))
        assert debug_files.get(theirs, record.id) is None
        assert debug_files.find_by_checksum(theirs, record.checksum) is None
        assert debug_files.find_by_checksum(mine, record.checksum) == record
        assert debug_files.find_by_debug_ids(theirs, [DEBUG_ID]) == {}
        assert debug_files.delete(theirs, record.id) is False
        assert debug_files.get(mine, record.id) == record


class TestFindByDebugIds:
    def test_newest_with_all_requested_features(
        self, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        unwind = uploads.add(project, meta(["symtab", "unwind"]))
        debug = uploads.add(project, meta(["debug", "symtab"]))

        def find(*features: str) -> DebugFile | None:
            return debug_files.find_by_debug_ids(project, [DEBUG_ID], features).get(DEBUG_ID)

        assert find() == debug
        assert find("debug") == debug
        assert find("symtab") == debug
        assert find("unwind") == unwind
        assert find("symtab", "unwind") == unwind
        assert find("debug", "unwind") is None
        assert find("sources") is None

    def test_without_any_features_the_newest_wins(
        self, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        uploads.add(project, meta())
        newest = uploads.add(project, meta())
        for features in ((), ("debug",), ("unwind", "symtab")):
            found = debug_files.find_by_debug_ids(project, [DEBUG_ID], features)
            assert found == {DEBUG_ID: newest}

    def test_several_ids_at_once(
        self, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        first = uploads.add(project, meta(["debug"]))
        second = uploads.add(project, meta(["debug"], debug_id=OTHER_ID))
        missing = "11111111-2222-3333-4444-555555555555"
        found = debug_files.find_by_debug_ids(project, [DEBUG_ID, OTHER_ID, missing, DEBUG_ID])
        assert found == {DEBUG_ID: first, OTHER_ID: second}
        assert debug_files.find_by_debug_ids(project, []) == {}


class TestCleanRedundant:
    def test_older_files_whose_features_are_covered_go(
        self, uploads: Uploads, debug_files: DebugFiles, storage: FilesystemStorage, project: int
    ) -> None:
        debug_only = uploads.add(project, meta(["debug"]))
        unwind = uploads.add(project, meta(["unwind"]))
        symtab_only = uploads.add(project, meta(["symtab"]))
        newest = uploads.add(project, meta(["debug", "symtab"]))
        assert len(stored_objects(storage)) == 4
        assert debug_files.clean_redundant(project, DEBUG_ID) == 2
        assert debug_files.get(project, debug_only.id) is None
        assert debug_files.get(project, symtab_only.id) is None
        assert debug_files.get(project, unwind.id) == unwind
        assert debug_files.get(project, newest.id) == newest
        assert len(stored_objects(storage)) == 2
        assert debug_files.clean_redundant(project, DEBUG_ID) == 0

    def test_the_newest_is_kept_even_with_fewer_features(
        self, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        complete = uploads.add(project, meta(["debug", "symtab", "unwind"]))
        featureless = uploads.add(project, meta())
        assert debug_files.clean_redundant(project, DEBUG_ID) == 0
        assert debug_files.get(project, complete.id) == complete
        assert debug_files.get(project, featureless.id) == featureless

    def test_older_featureless_files_go(
        self, uploads: Uploads, debug_files: DebugFiles, project: int
    ) -> None:
        old = uploads.add(project, meta())
        uploads.add(project, meta())
        assert debug_files.clean_redundant(project, DEBUG_ID) == 1
        assert debug_files.get(project, old.id) is None

    @pytest.mark.parametrize("file_format", ["bcsymbolmap", "uuidmap", "il2cpp"])
    def test_only_the_newest_map_is_kept(
        self, uploads: Uploads, debug_files: DebugFiles, project: int, file_format: str
    ) -> None:
        older_maps = [uploads.add(project, meta(file_format=file_format)) for _ in range(2)]
        native = uploads.add(project, meta(["debug", "symtab"]))
        newest_map = uploads.add(project, meta(file_format=file_format))
        assert debug_files.clean_redundant(project, DEBUG_ID) == 2
        remaining = debug_files.find_by_debug_ids(project, [DEBUG_ID])
        assert remaining == {DEBUG_ID: native}
        assert debug_files.get(project, newest_map.id) == newest_map
        assert all(debug_files.get(project, m.id) is None for m in older_maps)

    @pytest.mark.parametrize("file_format", ["bcsymbolmap", "uuidmap", "il2cpp"])
    def test_maps_survive_newer_native_files(
        self, uploads: Uploads, debug_files: DebugFiles, project: int, file_format: str
    ) -> None:
        # A map carries no features, but a native file does not make it redundant.
        mapping = uploads.add(project, meta(file_format=file_format))
        uploads.add(project, meta(["debug", "symtab", "unwind"]))
        assert debug_files.clean_redundant(project, DEBUG_ID) == 0
        assert debug_files.get(project, mapping.id) == mapping

    def test_other_debug_ids_and_projects_are_untouched(
        self, uploads: Uploads, debug_files: DebugFiles, make_project: ProjectFactory
    ) -> None:
        project = make_project("acme", "app")[1]
        other_project = make_project("acme", "other")[1]
        other_id = uploads.add(project, meta(["debug"], debug_id=OTHER_ID))
        elsewhere = uploads.add(other_project, meta(["debug"]))
        uploads.add(project, meta(["debug", "symtab"]))
        assert debug_files.clean_redundant(project, DEBUG_ID) == 0
        assert debug_files.get(project, other_id.id) == other_id
        assert debug_files.get(other_project, elsewhere.id) == elsewhere


class TestDelete:
    def test_contents_go_with_their_last_record(
        self,
        db: Database,
        uploads: Uploads,
        debug_files: DebugFiles,
        storage: FilesystemStorage,
        make_project: ProjectFactory,
    ) -> None:
        one = make_project("acme", "one")[1]
        two = make_project("acme", "two")[1]
        data = os.urandom(500)
        first = uploads.add(one, meta(["debug"]), data)
        second = uploads.add(two, meta(["debug"]), data)

        assert debug_files.delete(one, first.id) is True
        assert debug_files.get(one, first.id) is None
        assert storage.exists(second.storage_key)
        assert stored_files(db) == 1

        assert debug_files.delete(two, second.id) is True
        assert not storage.exists(second.storage_key)
        assert stored_files(db) == 0
        assert stored_objects(storage) == []
        assert debug_files.find_stored(second.checksum) is None

        assert debug_files.delete(two, second.id) is False

    def test_contents_can_be_uploaded_again_after_deletion(
        self, uploads: Uploads, debug_files: DebugFiles, storage: FilesystemStorage, project: int
    ) -> None:
        data = b"uploaded, deleted, uploaded again"
        first = uploads.add(project, meta(["debug"]), data)
        debug_files.delete(project, first.id)
        again = uploads.add(project, meta(["debug"]), data)
        assert again.storage_key != first.storage_key
        with storage.open(again.storage_key) as handle:
            assert handle.read() == data


class TestListing:
    KEYS = (
        "crash_elf",
        "crash_elf_debug",
        "crash_pdb",
        "crash_pe",
        "crash_breakpad",
        "crash_dsym_arm64",
        "crash_wasm",
    )

    @pytest.fixture
    def listed(
        self,
        fixtures: dict[str, Any],
        debug_files: DebugFiles,
        stage_file: StageFile,
        project: int,
    ) -> dict[str, DebugFile]:
        records = {}
        for key in self.KEYS:
            source = fixture_path(fixtures, key)
            (dif,) = detect_file(source, source.name)
            entry = fixtures[key]
            records[key], _ = debug_files.create(
                project, dif, entry["sha1"], entry["size"], stage_file(source)
            )
        return records

    def keys(self, listed: dict[str, DebugFile], records: list[DebugFile]) -> list[str]:
        by_id = {record.id: key for key, record in listed.items()}
        return [by_id[record.id] for record in records]

    def search(
        self, debug_files: DebugFiles, project: int, listed: dict[str, DebugFile], **filters: Any
    ) -> list[str]:
        records, more = debug_files.list(project, DebugFileQuery(**filters), 0, 100)
        assert not more
        return self.keys(listed, records)

    def test_newest_first_in_pages(
        self, debug_files: DebugFiles, project: int, listed: dict[str, DebugFile]
    ) -> None:
        newest_first = list(reversed(self.KEYS))
        page, more = debug_files.list(project, DebugFileQuery(), 0, 3)
        assert (self.keys(listed, page), more) == (newest_first[:3], True)
        page, more = debug_files.list(project, DebugFileQuery(), 3, 3)
        assert (self.keys(listed, page), more) == (newest_first[3:6], True)
        page, more = debug_files.list(project, DebugFileQuery(), 6, 3)
        assert (self.keys(listed, page), more) == (newest_first[6:], False)
        page, more = debug_files.list(project, DebugFileQuery(), 0, 7)
        assert (len(page), more) == (7, False)

    def test_filters(
        self,
        fixtures: dict[str, Any],
        debug_files: DebugFiles,
        project: int,
        listed: dict[str, DebugFile],
    ) -> None:
        def search(**filters: Any) -> list[str]:
            return self.search(debug_files, project, listed, **filters)

        elf_id = fixtures["crash_elf"]["debug_id"]
        pdb_id = fixtures["crash_pdb"]["debug_id"]
        assert search(debug_id=elf_id) == ["crash_breakpad", "crash_elf_debug", "crash_elf"]
        assert search(debug_id=pdb_id) == ["crash_pe", "crash_pdb"]
        assert search(code_id=fixtures["crash_pe"]["code_id"]) == ["crash_pe"]
        assert search(file_formats=["pdb", "wasm"]) == ["crash_wasm", "crash_pdb"]
        assert search(file_formats=["elf"], debug_id=elf_id) == ["crash_elf_debug", "crash_elf"]
        assert search(debug_id="00000000-1111-2222-3333-444444444444") == []

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            # a debug id in any form
            (lambda f: f["crash_pdb"]["debug_id"].upper(), ["crash_pe", "crash_pdb"]),
            (lambda f: f["crash_pdb"]["debug_id"].replace("-", ""), ["crash_pe", "crash_pdb"]),
            # a code id (an ELF build id also parses as a debug id with an age)
            (
                lambda f: f["crash_elf"]["code_id"].upper(),
                ["crash_breakpad", "crash_elf_debug", "crash_elf"],
            ),
            (lambda f: f["crash_pe"]["code_id"], ["crash_pe"]),
            # text over names, architectures and ids, case-insensitively
            (lambda _: "CRASH.PDB", ["crash_pdb"]),
            (lambda _: ".debug", ["crash_elf_debug"]),
            (lambda _: "arm64", ["crash_dsym_arm64"]),
            (lambda _: "WASM", ["crash_wasm"]),
            (lambda f: f["crash_wasm"]["debug_id"][-12:], ["crash_wasm"]),
            (lambda _: "no such thing", []),
            (lambda _: "   ", None),
        ],
    )
    def test_query(
        self,
        debug_files: DebugFiles,
        project: int,
        listed: dict[str, DebugFile],
        fixtures: dict[str, Any],
        text: Callable[[dict[str, Any]], str],
        expected: list[str] | None,
    ) -> None:
        everything = list(reversed(self.KEYS))
        found = self.search(debug_files, project, listed, query=text(fixtures))
        assert found == (everything if expected is None else expected)

    def test_other_projects_are_not_listed(
        self, debug_files: DebugFiles, make_project: ProjectFactory, listed: dict[str, DebugFile]
    ) -> None:
        other = make_project("acme", "other")[1]
        assert debug_files.list(other, DebugFileQuery(), 0, 20) == ([], False)
        assert debug_files.count(other) == 0


def test_missing_checksums(uploads: Uploads, debug_files: DebugFiles, project: int) -> None:
    present = uploads.add(project, meta(["debug"]), b"present").checksum
    absent = hashlib.sha1(b"absent").hexdigest()
    other = hashlib.sha1(b"other").hexdigest()
    assert debug_files.missing_checksums(
        project, [present.upper(), absent, other, absent]
    ) == sorted([absent, other])
    assert debug_files.missing_checksums(project, [present]) == []
    assert debug_files.missing_checksums(project, []) == []


def test_newest_record_by_checksum(uploads: Uploads, debug_files: DebugFiles, project: int) -> None:
    data = b"two debug ids"
    uploads.add(project, meta(["debug"]), data)
    newer = uploads.add(project, replace(meta(["debug"]), debug_id=OTHER_ID), data)
    assert debug_files.find_by_checksum(project, newer.checksum) == newer
