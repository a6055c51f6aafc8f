"""Source filters: file types, path patterns (case-insensitive globs, Windows paths)."""

from __future__ import annotations

import pytest

from symvault.model.objects import FileType, ObjectId, ObjectType
from symvault.model.sources import SourceConfig, parse_sources
from symvault.sources.base import applicable_file_types, source_applies

ALL = (FileType.PDB, FileType.PE, FileType.BREAKPAD, FileType.ELF_DEBUG)
KERNEL32 = ObjectId(
    code_file="C:\\Windows\\System32\\kernel32.dll",
    debug_file="wkernel32.pdb",
    debug_id="3249d99d-0c40-4931-8610-f4e4fb0b6936-1",
    object_type=ObjectType.PE,
)


def source(**filters: object) -> SourceConfig:
    return parse_sources(
        [{"type": "http", "id": "s", "url": "https://symbols.example/", "filters": filters}]
    )[0]


def test_no_filters_take_everything() -> None:
    config = source()
    assert applicable_file_types(config, KERNEL32, ALL) == list(ALL)


def test_filetypes_keep_the_order_asked_for() -> None:
    config = source(filetypes=["breakpad", "pdb"])
    assert applicable_file_types(config, KERNEL32, ALL) == [
        FileType.PDB,
        FileType.BREAKPAD,
    ]


def test_filetypes_that_do_not_apply_leave_nothing() -> None:
    config = source(filetypes=["mach_debug"])
    assert applicable_file_types(config, KERNEL32, ALL) == []


def test_unknown_filetypes_are_refused() -> None:
    with pytest.raises(ValueError, match="filetypes"):
        source(filetypes=["exe"])


@pytest.mark.parametrize(
    ("pattern", "applies"),
    [
        ("c:/windows/*", True),
        ("C:\\WINDOWS\\*", True),
        ("?:/windows/*", True),
        ("*/system32/kernel32.dll", True),
        ("**/KERNEL32.DLL", True),
        ("*kernel32*", True),
        ("wkernel32.pdb", True),
        ("d:/windows/**", False),
        ("c:/program files/*", False),
        ("kernel32.dll", False),
    ],
)
def test_path_patterns(pattern: str, applies: bool) -> None:
    config = source(path_patterns=[pattern])
    assert source_applies(config, KERNEL32) is applies
    expected = list(ALL) if applies else []
    assert applicable_file_types(config, KERNEL32, ALL) == expected


def test_any_pattern_may_match() -> None:
    config = source(path_patterns=["/usr/lib/*", "c:/windows/*"])
    assert source_applies(config, KERNEL32)


def test_patterns_exclude_modules_without_paths() -> None:
    config = source(path_patterns=["*"])
    assert not source_applies(config, ObjectId(debug_id=KERNEL32.debug_id))


def test_requires_checksum() -> None:
    config = source(requires_checksum=True)
    assert not source_applies(config, KERNEL32)
    with_checksum = ObjectId(code_file="a.dll", debug_checksum="SHA256:00")
    assert source_applies(config, with_checksum)
