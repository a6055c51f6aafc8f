"""Where each layout keeps each file type, for the example ids of Symbolicator's documentation."""

from __future__ import annotations

import pytest

from symvault.model.objects import FileType, ObjectId, ObjectType
from symvault.model.sources import Layout
from symvault.sources.layouts import breakpad_id, layout_paths

PE = ObjectId(
    code_id="5ab380779000",
    code_file="C:\\projects\\breakpad-tools\\windows\\Release\\crash.exe",
    debug_id="3249d99d-0c40-4931-8610-f4e4fb0b6936-1",
    debug_file="C:\\projects\\breakpad-tools\\windows\\Release\\crash.pdb",
    object_type=ObjectType.PE,
)
MACHO = ObjectId(
    code_file="/Users/travis/build/getsentry/breakpad-tools/macos/build/./crash",
    debug_id="67e9247c-814e-392b-a027-dbde6748fcbf",
    debug_file="crash",
    object_type=ObjectType.MACHO,
)
ELF = ObjectId(
    code_id="dfb85de42daffd09640c8fe377d572de3e168920",
    code_file="/lib/x86_64-linux-gnu/libm-2.23.so",
    debug_id="e45db8df-af2d-09fd-640c-8fe377d572de",
    debug_file="/lib/x86_64-linux-gnu/libm-2.23.so",
    object_type=ObjectType.ELF,
)
WASM = ObjectId(
    code_id="67e9247c814e392ba027dbde6748fcbf",
    debug_id="67e9247c-814e-392b-a027-dbde6748fcbf",
    debug_file="file://foo.invalid/demo.wasm",
    object_type=ObjectType.WASM,
)
ELF_ID = "dfb85de42daffd09640c8fe377d572de3e168920"
PDB_KEY = "3249D99D0C4049318610F4E4FB0B69361"
MACH_UUID = "67e9247c814e392ba027dbde6748fcbf"


def paths(
    layout: str, file_type: FileType, object_id: ObjectId, casing: str = "default"
) -> list[str]:
    return layout_paths(Layout(type=layout, casing=casing), file_type, object_id)  # type: ignore[arg-type]


NATIVE = [
    (FileType.ELF_CODE, ELF, [f"df/{ELF_ID[2:]}"]),
    (FileType.ELF_DEBUG, ELF, [f"df/{ELF_ID[2:]}.debug"]),
    (FileType.MACH_DEBUG, MACHO, ["67E9/247C/814E/392B/A027/DBDE6748FCBF"]),
    (FileType.MACH_CODE, MACHO, ["67E9/247C/814E/392B/A027/DBDE6748FCBF.app"]),
    (
        FileType.PDB,
        PE,
        [f"crash.pdb/{PDB_KEY}/crash.pdb", f"crash.pdb/{PDB_KEY}/crash.pd_"],
    ),
    (
        FileType.PE,
        PE,
        ["crash.exe/5AB380779000/crash.exe", "crash.exe/5AB380779000/crash.ex_"],
    ),
    (FileType.BREAKPAD, PE, [f"crash.pdb/{PDB_KEY}/crash.sym"]),
    (FileType.BREAKPAD, MACHO, ["crash/67E9247C814E392BA027DBDE6748FCBF0/crash.sym"]),
    (
        FileType.BREAKPAD,
        ELF,
        ["libm-2.23.so/E45DB8DFAF2D09FD640C8FE377D572DE0/libm-2.23.so.sym"],
    ),
    (FileType.SOURCE_BUNDLE, PE, [f"crash.pdb/{PDB_KEY}/crash.src.zip"]),
    (
        FileType.SOURCE_BUNDLE,
        MACHO,
        [
            "crash/67E9247C814E392BA027DBDE6748FCBF0/crash.src.zip",
            "67E9/247C/814E/392B/A027/DBDE6748FCBF.src.zip",
        ],
    ),
    (
        FileType.SOURCE_BUNDLE,
        ELF,
        [
            "libm-2.23.so/E45DB8DFAF2D09FD640C8FE377D572DE0/libm-2.23.so.src.zip",
            f"df/{ELF_ID[2:]}.src.zip",
        ],
    ),
    (FileType.WASM_CODE, WASM, ["67/e9247c814e392ba027dbde6748fcbf"]),
    (FileType.WASM_DEBUG, WASM, ["67/e9247c814e392ba027dbde6748fcbf.debug"]),
    (FileType.SOURCE_BUNDLE, WASM, ["67/e9247c814e392ba027dbde6748fcbf.src.zip"]),
    (FileType.BREAKPAD, WASM, []),
    (FileType.PROGUARD, ELF, []),
    (FileType.UUID_MAP, MACHO, []),
]


@pytest.mark.parametrize(("file_type", "object_id", "expected"), NATIVE)
def test_native(file_type: FileType, object_id: ObjectId, expected: list[str]) -> None:
    assert paths("native", file_type, object_id) == expected


SYMSTORE = [
    (FileType.PDB, PE, f"crash.pdb/{PDB_KEY}/crash.pdb"),
    (FileType.PE, PE, "crash.exe/5AB380779000/crash.exe"),
    (FileType.SOURCE_BUNDLE, PE, f"crash.pdb/{PDB_KEY}/crash.src.zip"),
    (FileType.MACH_CODE, MACHO, f"crash/mach-uuid-{MACH_UUID}/crash"),
    (FileType.MACH_DEBUG, MACHO, f"_.dwarf/mach-uuid-sym-{MACH_UUID}/_.dwarf"),
    (FileType.ELF_CODE, ELF, f"libm-2.23.so/elf-buildid-{ELF_ID}/libm-2.23.so"),
    (FileType.ELF_DEBUG, ELF, f"_.debug/elf-buildid-sym-{ELF_ID}/_.debug"),
]


@pytest.mark.parametrize(("file_type", "object_id", "expected"), SYMSTORE)
def test_symstore(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    assert paths("symstore", file_type, object_id)[0] == expected


@pytest.mark.parametrize(("file_type", "object_id", "expected"), SYMSTORE)
def test_symstore_index2(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    prefix = expected[:2]
    folder = prefix[0] if prefix.endswith(("/", ".")) else prefix
    assert paths("symstore_index2", file_type, object_id)[0] == f"{folder}/{expected}"


@pytest.mark.parametrize(
    ("file_type", "object_id", "expected"),
    [
        (FileType.PDB, PE, "cr/crash.pdb/3249D99D0C4049318610F4E4FB0B69361/crash.pdb"),
        (FileType.MACH_DEBUG, MACHO, f"_/_.dwarf/mach-uuid-sym-{MACH_UUID}/_.dwarf"),
        (FileType.ELF_DEBUG, ELF, f"_/_.debug/elf-buildid-sym-{ELF_ID}/_.debug"),
        (FileType.ELF_CODE, ELF, f"li/libm-2.23.so/elf-buildid-{ELF_ID}/libm-2.23.so"),
    ],
)
def test_symstore_index2_examples(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    assert paths("symstore_index2", file_type, object_id)[0] == expected


def test_symstore_has_no_breakpad_or_wasm() -> None:
    assert paths("symstore", FileType.BREAKPAD, PE) == []
    assert paths("symstore", FileType.WASM_CODE, WASM) == []
    assert paths("symstore", FileType.SOURCE_BUNDLE, ELF) == []


@pytest.mark.parametrize(
    ("file_type", "object_id", "expected"),
    [
        # SSQP: lower case names and GUID, the age in upper case hex.
        (FileType.PDB, PE, "crash.pdb/3249d99d0c4049318610f4e4fb0b69361/crash.pdb"),
        (FileType.PE, PE, "crash.exe/5ab380779000/crash.exe"),
        (FileType.ELF_CODE, ELF, f"libm-2.23.so/elf-buildid-{ELF_ID}/libm-2.23.so"),
        (FileType.MACH_CODE, MACHO, f"crash/mach-uuid-{MACH_UUID}/crash"),
        (FileType.MACH_DEBUG, MACHO, f"_.dwarf/mach-uuid-sym-{MACH_UUID}/_.dwarf"),
    ],
)
def test_ssqp(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    assert paths("ssqp", file_type, object_id)[0] == expected


def test_ssqp_lowercases_names_and_keeps_the_age_upper_case() -> None:
    module = ObjectId(
        debug_id="3249d99d-0c40-4931-8610-f4e4fb0b6936-ab",
        debug_file="Crash.PDB",
        code_id="5AB380779000",
        code_file="Crash.EXE",
        object_type=ObjectType.PE,
    )
    assert paths("ssqp", FileType.PDB, module)[0] == (
        "crash.pdb/3249d99d0c4049318610f4e4fb0b6936AB/crash.pdb"
    )
    assert paths("ssqp", FileType.PE, module)[0] == "crash.exe/5AB380779000/crash.exe"
    # Symstore writes the timestamp upper case and the image size lower case.
    module = ObjectId(code_id="5ab38077A000", code_file="crash.exe", object_type=ObjectType.PE)
    assert paths("symstore", FileType.PE, module)[0] == "crash.exe/5AB38077a000/crash.exe"


def test_portable_pdb_age_is_ffffffff() -> None:
    module = ObjectId(
        debug_id="3249d99d-0c40-4931-8610-f4e4fb0b6936-1",
        debug_file="app.pdb",
        object_type=ObjectType.PE_DOTNET,
    )
    assert paths("symstore", FileType.PORTABLE_PDB, module) == [
        "app.pdb/3249D99D0C4049318610F4E4FB0B6936ffffffff/app.pdb"
    ]
    assert paths("ssqp", FileType.PORTABLE_PDB, module) == [
        "app.pdb/3249d99d0c4049318610f4e4fb0b6936FFFFFFFF/app.pdb"
    ]


@pytest.mark.parametrize(
    ("file_type", "object_id", "expected"),
    [
        (FileType.ELF_CODE, ELF, f"{ELF_ID}/executable"),
        (FileType.ELF_DEBUG, ELF, f"{ELF_ID}/debuginfo"),
    ],
)
def test_debuginfod(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    assert paths("debuginfod", file_type, object_id) == [expected]


@pytest.mark.parametrize(
    ("file_type", "object_id"),
    [
        (FileType.PDB, PE),
        (FileType.PE, PE),
        (FileType.MACH_DEBUG, MACHO),
        (FileType.WASM_DEBUG, WASM),
        (FileType.BREAKPAD, ELF),
    ],
)
def test_debuginfod_serves_elf_only(file_type: FileType, object_id: ObjectId) -> None:
    assert paths("debuginfod", file_type, object_id) == []


UNIFIED = [
    (FileType.PDB, PE, "32/49d99d0c4049318610f4e4fb0b69361/debuginfo"),
    (FileType.PE, PE, "32/49d99d0c4049318610f4e4fb0b69361/executable"),
    (FileType.BREAKPAD, PE, "32/49d99d0c4049318610f4e4fb0b69361/breakpad"),
    (FileType.SOURCE_BUNDLE, PE, "32/49d99d0c4049318610f4e4fb0b69361/sourcebundle"),
    (FileType.MACH_CODE, MACHO, f"67/{MACH_UUID[2:]}/executable"),
    (FileType.MACH_DEBUG, MACHO, f"67/{MACH_UUID[2:]}/debuginfo"),
    (FileType.BREAKPAD, MACHO, f"67/{MACH_UUID[2:]}/breakpad"),
    (FileType.SOURCE_BUNDLE, MACHO, f"67/{MACH_UUID[2:]}/sourcebundle"),
    (FileType.WASM_DEBUG, WASM, f"67/{MACH_UUID[2:]}/debuginfo"),
    (FileType.WASM_CODE, WASM, f"67/{MACH_UUID[2:]}/executable"),
    (FileType.SOURCE_BUNDLE, WASM, f"67/{MACH_UUID[2:]}/sourcebundle"),
    (FileType.ELF_CODE, ELF, f"df/{ELF_ID[2:]}/executable"),
    (FileType.ELF_DEBUG, ELF, f"df/{ELF_ID[2:]}/debuginfo"),
    (FileType.BREAKPAD, ELF, f"df/{ELF_ID[2:]}/breakpad"),
    (FileType.SOURCE_BUNDLE, ELF, f"df/{ELF_ID[2:]}/sourcebundle"),
]


@pytest.mark.parametrize(("file_type", "object_id", "expected"), UNIFIED)
def test_unified(file_type: FileType, object_id: ObjectId, expected: str) -> None:
    found = paths("unified", file_type, object_id)
    if file_type in (FileType.PE, FileType.PDB):
        assert found == [expected, expected[:-1] + "_"]
    else:
        assert found == [expected]


def test_unified_elf_needs_a_code_id() -> None:
    module = ObjectId(debug_id=ELF.debug_id, object_type=ObjectType.ELF)
    assert paths("unified", FileType.ELF_DEBUG, module) == []


def test_breakpad_layout() -> None:
    assert paths("breakpad", FileType.BREAKPAD, PE) == [f"crash.pdb/{PDB_KEY}/crash.sym"]
    assert paths("breakpad", FileType.PDB, PE) == []


@pytest.mark.parametrize(
    ("debug_file", "expected"),
    [
        # Breakpad replaces a .pdb extension and appends .sym to anything else.
        ("crash.pdb", "crash.pdb/{id}/crash.sym"),
        ("crash", "crash/{id}/crash.sym"),
        ("libfoo.so", "libfoo.so/{id}/libfoo.so.sym"),
        ("crash.exe", "crash.exe/{id}/crash.exe.sym"),
        ("helper.dll", "helper.dll/{id}/helper.dll.sym"),
    ],
)
def test_breakpad_symbol_file_names(debug_file: str, expected: str) -> None:
    module = ObjectId(debug_id=PE.debug_id, debug_file=debug_file, object_type=ObjectType.PE)
    assert paths("native", FileType.BREAKPAD, module) == [expected.format(id=PDB_KEY)]


def test_breakpad_id() -> None:
    assert breakpad_id("3249d99d-0c40-4931-8610-f4e4fb0b6936-1") == PDB_KEY
    assert breakpad_id("67e9247c-814e-392b-a027-dbde6748fcbf") == (
        "67E9247C814E392BA027DBDE6748FCBF0"
    )
    assert breakpad_id("3249d99d-0c40-4931-8610-f4e4fb0b6936-1a") == (
        "3249D99D0C4049318610F4E4FB0B69361a"
    )
    assert breakpad_id("not a debug id") is None


@pytest.mark.parametrize(
    ("casing", "expected"),
    [
        ("default", f"crash.pdb/{PDB_KEY}/crash.pdb"),
        ("lowercase", f"crash.pdb/{PDB_KEY.lower()}/crash.pdb"),
        ("uppercase", f"CRASH.PDB/{PDB_KEY}/CRASH.PDB"),
    ],
)
def test_casing_applies_to_the_whole_path(casing: str, expected: str) -> None:
    assert paths("native", FileType.PDB, PE, casing) == [expected, expected[:-1] + "_"]


def test_casing_of_other_layouts() -> None:
    assert paths("native", FileType.MACH_DEBUG, MACHO, "lowercase") == [
        "67e9/247c/814e/392b/a027/dbde6748fcbf"
    ]
    assert paths("unified", FileType.ELF_CODE, ELF, "uppercase") == [
        f"DF/{ELF_ID[2:].upper()}/EXECUTABLE"
    ]
    assert paths("symstore", FileType.MACH_CODE, MACHO, "uppercase") == [
        f"CRASH/MACH-UUID-{MACH_UUID.upper()}/CRASH"
    ]


def test_compressed_variants_only_for_pe_and_pdb() -> None:
    for file_type, module in ((FileType.ELF_DEBUG, ELF), (FileType.BREAKPAD, PE)):
        assert all(not path.endswith("_") for path in paths("native", file_type, module))


@pytest.mark.parametrize(
    "module",
    [
        ObjectId(),
        ObjectId(code_id="d", object_type=ObjectType.ELF),
        ObjectId(debug_id="zz", debug_file="crash.pdb", object_type=ObjectType.PE),
        ObjectId(code_id="short", code_file="crash.exe", object_type=ObjectType.PE),
        ObjectId(debug_id=PE.debug_id, debug_file="..", object_type=ObjectType.PE),
        ObjectId(code_id="not-a-uuid", object_type=ObjectType.MACHO),
    ],
)
def test_missing_or_invalid_ids_give_no_paths(module: ObjectId) -> None:
    for layout in ("native", "symstore", "symstore_index2", "ssqp", "debuginfod", "unified"):
        for file_type in FileType:
            for path in paths(layout, file_type, module):
                assert "None" not in path
                assert not path.startswith("/")
                assert ".." not in path.split("/")
    assert paths("native", FileType.PDB, ObjectId(debug_file="crash.pdb")) == []
    assert paths("native", FileType.MACH_DEBUG, ObjectId(code_id="not-a-uuid")) == []


def test_mach_uuid_from_the_debug_id_when_there_is_no_code_id() -> None:
    assert paths("native", FileType.MACH_DEBUG, MACHO) == paths(
        "native",
        FileType.MACH_DEBUG,
        ObjectId(code_id=MACH_UUID, object_type=ObjectType.MACHO),
    )


def test_windows_paths_give_basenames() -> None:
    assert paths("symstore", FileType.PE, PE)[0].startswith("crash.exe/")
    posix = ObjectId(code_id="5ab380779000", code_file="/opt/app/crash.exe")
    assert paths("symstore", FileType.PE, posix)[0] == "crash.exe/5AB380779000/crash.exe"
