"""Detecting what an uploaded file is, on real debug files built from source."""

from __future__ import annotations

import json
import plistlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from symvault.errors import DebugFileError
from symvault.store.detection import detect_file
from tests.conftest import fixture_path

NATIVE = [
    "crash_elf",
    "crash_elf_debug",
    "crash_elf_stripped",
    "crash_elf_full",
    "shapes_elf",
    "shapes_elf_debug",
    "rust_elf",
    "rust_elf_debug",
    "crash_pe",
    "crash_pdb",
    "crash_macho_x86_64",
    "crash_dsym_x86_64",
    "crash_macho_arm64",
    "crash_dsym_arm64",
    "crash_breakpad",
    "crash_wasm",
    "corrupt_debug",  # its headers are fine; validation finds the damage
    "riscv_elf",  # detected; refused later for its architecture
]
UUID = "2d10a6e2-e0e1-3f2c-b25c-d0d0c2c0a1f1"
#: An object whose one value is nested past what the JSON parser can follow.
DEEPLY_NESTED = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"


@pytest.mark.parametrize("key", NATIVE)
def test_native_objects_match_the_manifest(fixtures: dict[str, Any], key: str) -> None:
    path = fixture_path(fixtures, key)
    entry = fixtures[key]
    (meta,) = detect_file(path, f"uploads/{path.name}")
    assert meta.file_format == entry["file_format"]
    assert meta.kind == entry["kind"]
    assert meta.arch == entry["arch"]
    assert meta.debug_id == entry["debug_id"]
    assert meta.code_id == entry["code_id"]
    assert meta.features == frozenset(entry["features"])


def test_object_name_is_the_basename(fixtures: dict[str, Any]) -> None:
    path = fixture_path(fixtures, "crash_elf_debug")
    (meta,) = detect_file(path, "build/out/crash.debug")
    assert meta.object_name == "crash.debug"
    (meta,) = detect_file(path, "C:\\build\\out\\crash.debug")
    assert meta.object_name == "crash.debug"


def test_breakpad_names_lose_sym(fixtures: dict[str, Any]) -> None:
    path = fixture_path(fixtures, "crash_breakpad")
    assert detect_file(path, "crash.sym")[0].object_name == "crash"
    assert detect_file(path, "symbols/crash.SYM")[0].object_name == "crash"
    assert detect_file(path, "crash.txt")[0].object_name == "crash.txt"
    # Only Breakpad files lose the extension.
    elf = fixture_path(fixtures, "crash_elf_debug")
    assert detect_file(elf, "crash.sym")[0].object_name == "crash.sym"


def test_fat_macho_gives_one_meta_per_architecture(fixtures: dict[str, Any]) -> None:
    entry = fixtures["crash_macho_fat"]
    metas = detect_file(fixture_path(fixtures, "crash_macho_fat"), "crash")
    assert [(m.arch, m.debug_id, m.code_id, m.kind, m.features) for m in metas] == [
        (o["arch"], o["debug_id"], o["code_id"], o["kind"], frozenset(o["features"]))
        for o in entry["objects"]
    ]


class TestClientDebugId:
    def test_age_of_the_same_uuid_overrides(self, fixtures: dict[str, Any]) -> None:
        path = fixture_path(fixtures, "crash_pdb")
        uuid = fixtures["crash_pdb"]["debug_id"][:36]
        (meta,) = detect_file(path, "crash.pdb", f"{uuid.upper()}-2A")
        assert meta.debug_id == f"{uuid}-2a"
        (meta,) = detect_file(path, "crash.pdb", uuid.replace("-", "") + "0")
        assert meta.debug_id == uuid

    @pytest.mark.parametrize(
        "client_id", [UUID, f"{UUID}-1", "not a debug id", "", None, "32aed0e3-daa4-c6e6"]
    )
    def test_anything_else_is_ignored(
        self, fixtures: dict[str, Any], client_id: str | None
    ) -> None:
        path = fixture_path(fixtures, "crash_pdb")
        (meta,) = detect_file(path, "crash.pdb", client_id)
        assert meta.debug_id == fixtures["crash_pdb"]["debug_id"]


class TestProguard:
    @pytest.mark.parametrize(
        "name",
        [
            f"proguard/{UUID}.txt",
            f"proguard/mapping-{UUID}.txt",
            f"/proguard/{UUID.upper()}.txt",
            f"app/build/proguard/mapping-{UUID}.txt",
        ],
    )
    def test_known_by_name(self, tmp_path: Path, name: str) -> None:
        path = tmp_path / "mapping.txt"
        path.write_text("com.example.Main -> a:\n    void main() -> a\n")
        (meta,) = detect_file(path, name)
        assert meta.file_format == "proguard"
        assert meta.debug_id == UUID
        assert meta.object_name == "proguard-mapping"
        assert meta.features == frozenset({"mapping"})

    @pytest.mark.parametrize(
        "name", [f"{UUID}.txt", f"proguard/{UUID}.map", "proguard/mapping-latest.txt"]
    )
    def test_other_names_are_not_proguard(self, tmp_path: Path, name: str) -> None:
        path = tmp_path / "mapping.txt"
        path.write_text("com.example.Main -> a:\n")
        with pytest.raises(DebugFileError, match="Unsupported debug information file"):
            detect_file(path, name)


class TestBcSymbolMap:
    def write(self, tmp_path: Path, content: bytes) -> Path:
        path = tmp_path / f"{UUID.upper()}.bcsymbolmap"
        path.write_bytes(content)
        return path

    def test_needs_a_debug_id(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b"BCSymbolMap Version: 2.0\n_main\n_helper\n")
        with pytest.raises(DebugFileError, match="Missing debug_id for BCSymbolMap"):
            detect_file(path, path.name)
        (meta,) = detect_file(path, path.name, UUID.upper())
        assert (meta.file_format, meta.debug_id, meta.arch) == ("bcsymbolmap", UUID, "any")
        assert meta.object_name == path.name

    def test_invalid_content(self, tmp_path: Path) -> None:
        path = self.write(tmp_path, b"BCSymbolMap Version: 2.0\n\xff\xfe\x00broken")
        with pytest.raises(DebugFileError, match="Invalid BCSymbolMap"):
            detect_file(path, path.name, UUID)


class TestUuidMap:
    def write_plist(self, tmp_path: Path, name: str, original_uuid: str | None) -> Path:
        """A `<UUID>.plist` as Xcode writes into dSYM bundles for bitcode builds."""
        content: dict[str, str] = {
            "DBGArchitecture": "arm64",
            "DBGBuildSourcePath": "/Users/dev/project",
            "DBGSourcePath": "/Users/dev/project",
            "DBGSymbolRichExecutable": "/Users/dev/project/build/App",
            "DBGVersion": "3",
        }
        if original_uuid is not None:
            content["DBGOriginalUUID"] = original_uuid
        path = tmp_path / name
        with path.open("wb") as handle:
            plistlib.dump(content, handle)
        return path

    def test_named_after_its_debug_id(self, tmp_path: Path) -> None:
        name = f"{UUID.upper()}.plist"
        path = self.write_plist(tmp_path, name, "C8374B6D-6E96-34D8-AE38-EFAA5FEC424F")
        (meta,) = detect_file(path, f"App.dSYM/Contents/Resources/{name}")
        assert (meta.file_format, meta.debug_id, meta.object_name) == ("uuidmap", UUID, name)

    def test_client_debug_id_wins_over_the_name(self, tmp_path: Path) -> None:
        path = self.write_plist(tmp_path, "map.plist", "C8374B6D-6E96-34D8-AE38-EFAA5FEC424F")
        (meta,) = detect_file(path, "map.plist", UUID)
        assert meta.debug_id == UUID

    def test_without_a_debug_id(self, tmp_path: Path) -> None:
        path = self.write_plist(tmp_path, "map.plist", "C8374B6D-6E96-34D8-AE38-EFAA5FEC424F")
        with pytest.raises(DebugFileError, match="not named after a debug id"):
            detect_file(path, "map.plist")

    def test_plist_without_the_original_uuid(self, tmp_path: Path) -> None:
        path = self.write_plist(tmp_path, f"{UUID}.plist", None)
        with pytest.raises(DebugFileError, match="Invalid UuidMap"):
            detect_file(path, path.name)


class TestIl2cpp:
    def write(self, tmp_path: Path, content: str) -> Path:
        path = tmp_path / "LineNumberMappings.json"
        path.write_text(content)
        return path

    def test_needs_a_debug_id(self, tmp_path: Path) -> None:
        mapping = {"/src/Bulk_Generics_1.cpp": {"42": {"sourceFile": "Game.cs", "line": 7}}}
        path = self.write(tmp_path, json.dumps(mapping))
        with pytest.raises(DebugFileError, match="Missing debug_id for il2cpp"):
            detect_file(path, path.name)
        (meta,) = detect_file(path, path.name, UUID)
        assert (meta.file_format, meta.debug_id, meta.arch) == ("il2cpp", UUID, "any")

    @pytest.mark.parametrize(
        "content", ['{"unclosed": ', '{"a": 1} trailing', "{\xff}", DEEPLY_NESTED]
    )
    def test_invalid_json(self, tmp_path: Path, content: str) -> None:
        with pytest.raises(DebugFileError, match="Invalid il2cpp line mapping"):
            detect_file(self.write(tmp_path, content), "map.json", UUID)


class TestNotDebugFiles:
    @pytest.mark.parametrize(
        ("key", "message"),
        [
            ("garbage", "Unsupported debug information file: unsupported object file format"),
            ("notes", "Unsupported debug information file: unsupported object file format"),
            ("truncated", "Invalid debug information file: invalid ELF file"),
        ],
    )
    def test_fixtures(self, fixtures: dict[str, Any], key: str, message: str) -> None:
        path = fixture_path(fixtures, key)
        with pytest.raises(DebugFileError, match=f"^{message}"):
            detect_file(path, path.name)

    def test_empty_file(self, tmp_path: Path) -> None:
        path = tmp_path / "empty"
        path.write_bytes(b"")
        with pytest.raises(DebugFileError, match="Unsupported debug information file"):
            detect_file(path, "empty")

    def test_elf_cut_short(self, fixtures: dict[str, Any], tmp_path: Path) -> None:
        path = tmp_path / "cut.debug"
        shutil.copyfile(fixture_path(fixtures, "crash_elf_debug"), path)
        with path.open("r+b") as handle:
            handle.truncate(200)
        with pytest.raises(DebugFileError, match="Invalid debug information file"):
            detect_file(path, path.name)
