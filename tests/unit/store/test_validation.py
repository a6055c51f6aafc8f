"""Checks an object passes before it is stored: a known architecture, readable debug data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from symvault.errors import DebugFileError
from symvault.model.difs import DifMeta
from symvault.store.detection import detect_file
from symvault.store.validation import admit, check_supported, validate_object
from tests.conftest import fixture_path

VALIDATE_ALL = 512 * 1024**2


def detected(fixtures: dict[str, Any], key: str) -> tuple[Path, DifMeta, int]:
    path = fixture_path(fixtures, key)
    (meta,) = detect_file(path, path.name)
    return path, meta, path.stat().st_size


@pytest.mark.parametrize(
    "key",
    [
        "crash_elf",
        "crash_elf_debug",
        "crash_elf_full",
        "rust_elf_debug",
        "crash_pe",
        "crash_pdb",
        "crash_dsym_x86_64",
        "crash_dsym_arm64",
        "crash_macho_arm64",
        "crash_breakpad",
        "crash_wasm",
    ],
)
def test_good_files_pass(fixtures: dict[str, Any], key: str) -> None:
    path, meta, size = detected(fixtures, key)
    admit(path, meta, size, VALIDATE_ALL)


def test_corrupt_debug_data_is_refused(fixtures: dict[str, Any]) -> None:
    path, meta, size = detected(fixtures, "corrupt_debug")
    with pytest.raises(DebugFileError, match="corrupted dwarf debug data") as caught:
        admit(path, meta, size, VALIDATE_ALL)
    message = str(caught.value)
    assert message.startswith("Invalid debug information file: ")
    assert "\n" not in message  # it becomes a one-line assemble detail


def test_unknown_architecture_is_refused(fixtures: dict[str, Any]) -> None:
    path, meta, size = detected(fixtures, "riscv_elf")
    with pytest.raises(DebugFileError, match="CPU architecture is unknown"):
        admit(path, meta, size, VALIDATE_ALL)
    with pytest.raises(DebugFileError, match=r"^Unsupported debug information file"):
        check_supported(meta)


def test_formats_without_an_architecture_are_not_checked_for_one() -> None:
    for file_format in ("proguard", "bcsymbolmap", "uuidmap", "il2cpp", "sourcebundle"):
        check_supported(DifMeta(file_format, "unknown", "x", "x"))


def test_files_with_neither_debug_nor_symtab_skip_the_check(fixtures: dict[str, Any]) -> None:
    path, meta, _ = detected(fixtures, "corrupt_debug")
    # The same damaged file, had it offered only unwind information, is not read.
    validate_object(path, replace(meta, features=frozenset({"unwind"})))
    validate_object(path, replace(meta, features=frozenset()))
    with pytest.raises(DebugFileError):
        validate_object(path, replace(meta, features=frozenset({"symtab"})))


def test_non_native_formats_skip_the_check(fixtures: dict[str, Any]) -> None:
    path, meta, _ = detected(fixtures, "corrupt_debug")
    validate_object(path, replace(meta, file_format="proguard", features=frozenset({"debug"})))


def test_large_files_and_a_zero_limit_skip_the_check(fixtures: dict[str, Any]) -> None:
    path, meta, size = detected(fixtures, "corrupt_debug")
    admit(path, meta, size, 0)  # 0 turns the check off
    admit(path, meta, size, size - 1)  # larger than the limit: accepted unchecked


def test_size_limit_is_inclusive(fixtures: dict[str, Any]) -> None:
    path, meta, size = detected(fixtures, "corrupt_debug")
    with pytest.raises(DebugFileError):
        admit(path, meta, size, size)


def test_the_architecture_check_applies_whatever_the_size(fixtures: dict[str, Any]) -> None:
    path, meta, size = detected(fixtures, "riscv_elf")
    with pytest.raises(DebugFileError, match="architecture is unknown"):
        admit(path, meta, size, 0)
