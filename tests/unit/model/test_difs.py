"""Debug file records: content types, download names, JSON snapshots."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from symvault.model.difs import CONTENT_TYPES, FILE_FORMATS, DebugFile, DifMeta, file_extension

RECORD = DebugFile(
    id=7,
    project_id=3,
    checksum="b04d4f8d69438fe2e77b1b144bda42ed9f4d0392",
    size=13712,
    debug_id="32aed0e3-daa4-c6e6-777e-7fe80279b4d9",
    code_id="e3d0ae32a4dae6c6777e7fe80279b4d98e2beecf",
    arch="x86_64",
    object_name="crash.debug",
    file_format="elf",
    kind="dbg",
    features=frozenset({"debug", "symtab"}),
    created_at=datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC),
    storage_key="files/b0/b04d/abc",
)


def test_snapshot_round_trips_through_json() -> None:
    data = json.loads(json.dumps(RECORD.to_dict()))
    assert data["features"] == ["debug", "symtab"]
    assert DebugFile.from_dict(data) == RECORD


def test_every_format_has_a_content_type() -> None:
    for file_format in FILE_FORMATS:
        meta = DifMeta(file_format=file_format, arch="any", debug_id="x", object_name="x")
        assert meta.content_type == CONTENT_TYPES[file_format]
    assert replace(RECORD, file_format="mystery").content_type == "application/octet-stream"


@pytest.mark.parametrize(
    ("file_format", "kind", "object_name", "download_name"),
    [
        ("elf", "dbg", "crash", "crash.debug"),
        ("elf", "dbg", "crash.debug", "crash.debug"),  # not doubled
        ("elf", "exe", "crash", "crash"),
        ("macho", "dbg", "crash", "crash.dSYM"),
        ("macho", "exe", "crash", "crash"),
        ("pe", "exe", "crash.exe", "crash.exe"),
        ("pe", "lib", "crash", "crash.dll"),
        ("pdb", "dbg", "crash.PDB", "crash.PDB"),  # case-insensitive match
        ("breakpad", "dbg", "crash", "crash.sym"),
        ("proguard", None, "proguard-mapping", "proguard-mapping.txt"),
        ("sourcebundle", "src", "crash", "crash.src.zip"),
        ("wasm", "lib", "crash.wasm", "crash.wasm"),
        ("uuidmap", None, "ABC.plist", "ABC.plist"),
        ("il2cpp", None, "LineNumberMappings", "LineNumberMappings.json"),
    ],
)
def test_download_name(
    file_format: str, kind: str | None, object_name: str, download_name: str
) -> None:
    record = replace(RECORD, file_format=file_format, kind=kind, object_name=object_name)
    assert record.download_name == download_name


def test_unknown_format_has_no_extension() -> None:
    assert file_extension("mystery", None) == ""
