"""Where a symbol server keeps the file of a given type for a module.

Each layout turns an `ObjectId` and a `FileType` into relative paths:

- `native`: GDB build-id paths for ELF (`df/b85de4...8920[.debug]`), LLDB UUID
  paths for Mach-O (`67E9/247C/814E/392B/A027/DBDE6748FCBF[.app]`), SymSrv
  paths for PE/PDB (`crash.pdb/<GUID><age>/crash.pdb`), Breakpad paths.
- `symstore`: Microsoft SymSrv, with Microsoft's SSQP keys for ELF and Mach-O
  (`name/elf-buildid-<id>/name`, `_.dwarf/mach-uuid-sym-<uuid>/_.dwarf`).
- `symstore_index2`: `symstore` under a folder named after the first two
  characters of the file name.
- `ssqp`: `symstore` keys with lowercase names.
- `debuginfod`: `<build id>/executable|debuginfo`.
- `unified`: `<id[:2]>/<id[2:]>/<executable|debuginfo|breakpad|sourcebundle|...>`.
- `breakpad`: `<debug_file>/<BREAKPAD ID>/<debug_file without .pdb>.sym`.

`casing` then lowercases or uppercases the whole path, and PE/PDB files are also
looked for compressed (`crash.pd_`, a CAB archive). These rules follow
Symbolicator's, so existing symbol servers work unchanged.
"""

from __future__ import annotations

import uuid

from symvault.model.objects import FileType, ObjectId, ObjectType
from symvault.model.sources import Layout

__all__ = ["breakpad_id", "layout_paths"]

_EXECUTABLE = frozenset({FileType.ELF_CODE, FileType.MACH_CODE, FileType.PE, FileType.WASM_CODE})
_DEBUGINFO = frozenset(
    {
        FileType.ELF_DEBUG,
        FileType.MACH_DEBUG,
        FileType.PDB,
        FileType.WASM_DEBUG,
        FileType.PORTABLE_PDB,
    }
)


def _uuid_of(debug_id: str | None) -> uuid.UUID | None:
    if not debug_id:
        return None
    try:
        return uuid.UUID(debug_id[:36])
    except ValueError:
        return None


def _age_of(debug_id: str) -> int:
    tail = debug_id[36:].lstrip("-")
    return int(tail, 16) if tail else 0


def breakpad_id(debug_id: str) -> str | None:
    """The Breakpad form: GUID in uppercase hex, then the age in lowercase hex."""
    parsed = _uuid_of(debug_id)
    if parsed is None:
        return None
    return f"{parsed.hex.upper()}{_age_of(debug_id):x}"


def _gdb_path(object_id: ObjectId) -> str | None:
    code_id = object_id.code_id
    if not code_id or len(code_id) < 2:
        return None
    return f"{code_id[:2]}/{code_id[2:]}"


def _mach_uuid(object_id: ObjectId) -> uuid.UUID | None:
    if object_id.code_id:
        try:
            return uuid.UUID(object_id.code_id)
        except ValueError:
            return None
    return _uuid_of(object_id.debug_id)


def _lldb_path(object_id: ObjectId) -> str | None:
    value = _mach_uuid(object_id)
    if value is None:
        return None
    text = value.hex.upper()
    return "/".join([text[0:4], text[4:8], text[8:12], text[12:16], text[16:20], text[20:]])


def _pdb_symstore_path(object_id: ObjectId, ssqp: bool) -> str | None:
    name = object_id.debug_file_basename
    parsed = _uuid_of(object_id.debug_id)
    if name is None or parsed is None or object_id.debug_id is None:
        return None
    # Portable PDBs replace the age with 0xFFFFFFFF (SSQP key conventions).
    dotnet = object_id.object_type is ObjectType.PE_DOTNET
    age = 0xFFFFFFFF if dotnet else _age_of(object_id.debug_id)
    if ssqp:
        name = name.lower()
        key = f"{parsed.hex}{age:X}"
    else:
        key = f"{parsed.hex.upper()}{age:x}"
    return f"{name}/{key}/{name}"


def _pe_symstore_path(object_id: ObjectId, ssqp: bool) -> str | None:
    name = object_id.code_file_basename
    code_id = object_id.code_id
    if name is None or not code_id or len(code_id) < 9:
        return None
    if ssqp:
        return f"{name.lower()}/{code_id}/{name.lower()}"
    # Timestamps are written in upper case, image sizes in lower case.
    return f"{name}/{code_id[:8].upper()}{code_id[8:].lower()}/{name}"


def _breakpad_path(object_id: ObjectId) -> str | None:
    if object_id.object_type is ObjectType.WASM:
        return None
    name = object_id.debug_file_basename
    if name is None or object_id.debug_id is None:
        return None
    identifier = breakpad_id(object_id.debug_id)
    if identifier is None:
        return None
    # Breakpad's symbol supplier replaces a `.pdb` extension and keeps any other
    # (`crash.exe` -> `crash.exe.sym`), and so does Symbolicator.
    stem = name.removesuffix(".pdb")
    return f"{name}/{identifier}/{stem}.sym"


def _native_paths(file_type: FileType, object_id: ObjectId) -> list[str]:
    if file_type in (FileType.ELF_CODE, FileType.WASM_CODE):
        return _some(_gdb_path(object_id))
    if file_type in (FileType.ELF_DEBUG, FileType.WASM_DEBUG):
        gdb = _gdb_path(object_id)
        return [f"{gdb}.debug"] if gdb else []
    if file_type is FileType.MACH_CODE:
        lldb = _lldb_path(object_id)
        return [f"{lldb}.app"] if lldb else []
    if file_type is FileType.MACH_DEBUG:
        return _some(_lldb_path(object_id))
    if file_type in (FileType.PDB, FileType.PORTABLE_PDB):
        return _some(_pdb_symstore_path(object_id, ssqp=False))
    if file_type is FileType.PE:
        return _some(_pe_symstore_path(object_id, ssqp=False))
    if file_type is FileType.BREAKPAD:
        return _some(_breakpad_path(object_id))
    if file_type is FileType.SOURCE_BUNDLE:
        return _native_source_bundle_paths(object_id)
    return []


def _native_source_bundle_paths(object_id: ObjectId) -> list[str]:
    primary: str | None
    if object_id.object_type in (ObjectType.PE, ObjectType.PE_DOTNET):
        base = _pdb_symstore_path(object_id, ssqp=False)
        primary = base.rsplit(".", 1)[0] if base else None
    elif object_id.object_type is ObjectType.MACHO:
        primary = _lldb_path(object_id)
    elif object_id.object_type in (ObjectType.ELF, ObjectType.WASM):
        primary = _gdb_path(object_id)
    else:
        primary = None
    if primary is None:
        return []
    primary += ".src.zip"
    paths = []
    breakpad = _breakpad_path(object_id)
    if breakpad is not None:
        alternative = breakpad[: -len(".sym")] + ".src.zip"
        if alternative != primary:
            paths.append(alternative)
    paths.append(primary)
    return paths


def _symstore_path(file_type: FileType, object_id: ObjectId, ssqp: bool) -> str | None:
    code_id = object_id.code_id
    if file_type is FileType.ELF_CODE:
        name = object_id.code_file_basename
        if not code_id or name is None:
            return None
        name = name.lower() if ssqp else name
        return f"{name}/elf-buildid-{code_id}/{name}"
    if file_type is FileType.ELF_DEBUG:
        return f"_.debug/elf-buildid-sym-{code_id}/_.debug" if code_id else None
    if file_type is FileType.MACH_CODE:
        name = object_id.code_file_basename
        mach_uuid = _mach_uuid(object_id)
        if name is None or mach_uuid is None:
            return None
        name = name.lower() if ssqp else name
        return f"{name}/mach-uuid-{mach_uuid.hex}/{name}"
    if file_type is FileType.MACH_DEBUG:
        mach_uuid = _mach_uuid(object_id)
        return f"_.dwarf/mach-uuid-sym-{mach_uuid.hex}/_.dwarf" if mach_uuid else None
    if file_type in (FileType.PDB, FileType.PORTABLE_PDB):
        return _pdb_symstore_path(object_id, ssqp)
    if file_type is FileType.PE:
        return _pe_symstore_path(object_id, ssqp)
    if file_type is FileType.SOURCE_BUNDLE and object_id.object_type is ObjectType.PE:
        base = _symstore_path(FileType.PDB, object_id, ssqp)
        return base.rsplit(".", 1)[0] + ".src.zip" if base else None
    return None


def _symstore_index2_path(file_type: FileType, object_id: ObjectId) -> str | None:
    path = _symstore_path(file_type, object_id, ssqp=False)
    if path is None or len(path) < 2:
        return path
    prefix = path[:2]
    if prefix.endswith(("/", ".")):
        return f"{prefix[0]}/{path}"
    return f"{prefix}/{path}"


def _debuginfod_path(file_type: FileType, object_id: ObjectId) -> str | None:
    if not object_id.code_id:
        return None
    if file_type is FileType.ELF_CODE:
        return f"{object_id.code_id}/executable"
    if file_type is FileType.ELF_DEBUG:
        return f"{object_id.code_id}/debuginfo"
    return None


def _unified_id(file_type: FileType, object_id: ObjectId) -> str | None:
    if file_type in (FileType.SOURCE_BUNDLE, FileType.BREAKPAD, FileType.IL2CPP):
        stand_in = {
            ObjectType.ELF: FileType.ELF_CODE,
            ObjectType.MACHO: FileType.MACH_CODE,
            ObjectType.PE: FileType.PE,
            ObjectType.WASM: FileType.WASM_CODE,
            ObjectType.PE_DOTNET: FileType.PORTABLE_PDB,
        }.get(object_id.object_type)
        return _unified_id(stand_in, object_id) if stand_in else None
    if file_type in (FileType.PE, FileType.PDB, FileType.PORTABLE_PDB):
        # PE files are found by debug id: code ids alone are not unique enough.
        identifier = breakpad_id(object_id.debug_id) if object_id.debug_id else None
        return identifier.lower() if identifier else None
    if file_type in (FileType.ELF_CODE, FileType.ELF_DEBUG):
        return object_id.code_id or None
    if file_type is FileType.PROGUARD:
        return None
    if object_id.code_id:
        return object_id.code_id
    parsed = _uuid_of(object_id.debug_id)
    return parsed.hex if parsed else None


def _unified_path(file_type: FileType, object_id: ObjectId) -> str | None:
    if file_type in _EXECUTABLE:
        suffix = "executable"
    elif file_type in _DEBUGINFO:
        suffix = "debuginfo"
    else:
        suffix = file_type.value
    identifier = _unified_id(file_type, object_id)
    if not identifier or len(identifier) < 3:
        return None
    return f"{identifier[:2]}/{identifier[2:]}/{suffix}"


def _some(path: str | None) -> list[str]:
    return [path] if path else []


def layout_paths(layout: Layout, file_type: FileType, object_id: ObjectId) -> list[str]:
    """Relative paths at which a server with `layout` keeps the file, most likely first."""
    if layout.type == "native":
        paths = _native_paths(file_type, object_id)
    elif layout.type == "symstore":
        paths = _some(_symstore_path(file_type, object_id, ssqp=False))
    elif layout.type == "symstore_index2":
        paths = _some(_symstore_index2_path(file_type, object_id))
    elif layout.type == "ssqp":
        paths = _some(_symstore_path(file_type, object_id, ssqp=True))
    elif layout.type == "debuginfod":
        paths = _some(_debuginfod_path(file_type, object_id))
    elif layout.type == "unified":
        paths = _some(_unified_path(file_type, object_id))
    else:
        paths = _some(_breakpad_path(object_id)) if file_type is FileType.BREAKPAD else []

    if layout.casing == "lowercase":
        paths = [path.lower() for path in paths]
    elif layout.casing == "uppercase":
        paths = [path.upper() for path in paths]

    if file_type in (FileType.PE, FileType.PDB):
        # Symbol servers may hold these compressed, with the last character replaced by "_".
        paths = [variant for path in paths for variant in (path, path[:-1] + "_")]
    return paths
