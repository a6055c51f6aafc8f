"""What a crash report says about a loaded module, and the files that can describe it.

`ObjectId` identifies a module the way a stack trace does (debug id, code id,
file names); `FileType` names the kinds of files a symbol source may hold for
it, with Symbolicator's spellings.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["FileType", "ObjectId", "ObjectType", "file_type_of", "file_types_for"]


class ObjectType(StrEnum):
    ELF = "elf"
    MACHO = "macho"
    PE = "pe"
    PE_DOTNET = "pe_dotnet"
    WASM = "wasm"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str | None) -> ObjectType:
        """Unknown spellings mean "unknown": every file type is tried."""
        try:
            return cls((value or "unknown").lower())
        except ValueError:
            return cls.UNKNOWN


class FileType(StrEnum):
    PE = "pe"
    PDB = "pdb"
    PORTABLE_PDB = "portablepdb"
    MACH_DEBUG = "mach_debug"
    MACH_CODE = "mach_code"
    ELF_DEBUG = "elf_debug"
    ELF_CODE = "elf_code"
    WASM_DEBUG = "wasm_debug"
    WASM_CODE = "wasm_code"
    BREAKPAD = "breakpad"
    SOURCE_BUNDLE = "sourcebundle"
    UUID_MAP = "uuidmap"
    BC_SYMBOL_MAP = "bcsymbolmap"
    IL2CPP = "il2cpp"
    PROGUARD = "proguard"


_OWN_FILE_TYPES: dict[ObjectType, tuple[FileType, ...]] = {
    ObjectType.ELF: (FileType.ELF_DEBUG, FileType.ELF_CODE),
    ObjectType.MACHO: (FileType.MACH_DEBUG, FileType.MACH_CODE),
    ObjectType.PE: (FileType.PDB, FileType.PE),
}
# Any native module may also be described by these (Symbolicator's list), after its own types.
_SHARED_FILE_TYPES = (FileType.BREAKPAD, FileType.MACH_DEBUG, FileType.PDB, FileType.ELF_DEBUG)
_ALL_NATIVE = (
    FileType.PDB,
    FileType.PE,
    FileType.MACH_DEBUG,
    FileType.MACH_CODE,
    FileType.ELF_DEBUG,
    FileType.ELF_CODE,
    FileType.WASM_DEBUG,
    FileType.WASM_CODE,
    FileType.BREAKPAD,
)


def file_types_for(object_type: ObjectType) -> tuple[FileType, ...]:
    """The file types that may describe a module of this type, most useful first.

    The module's own debug and code files come first, then Breakpad files and
    other debug formats; all native types if the type is unknown.
    """
    if object_type is ObjectType.WASM:
        return (FileType.WASM_DEBUG, FileType.WASM_CODE)
    if object_type is ObjectType.PE_DOTNET:
        return (FileType.PORTABLE_PDB,)
    own = _OWN_FILE_TYPES.get(object_type)
    if own is None:
        return _ALL_NATIVE
    return own + tuple(file_type for file_type in _SHARED_FILE_TYPES if file_type not in own)


_SINGLE_FILE_TYPES = {
    "pdb": FileType.PDB,
    "pe": FileType.PE,
    "portablepdb": FileType.PORTABLE_PDB,
    "breakpad": FileType.BREAKPAD,
    "sourcebundle": FileType.SOURCE_BUNDLE,
    "uuidmap": FileType.UUID_MAP,
    "bcsymbolmap": FileType.BC_SYMBOL_MAP,
    "il2cpp": FileType.IL2CPP,
    "proguard": FileType.PROGUARD,
}
_SPLIT_FILE_TYPES = {
    "elf": (FileType.ELF_DEBUG, FileType.ELF_CODE),
    "macho": (FileType.MACH_DEBUG, FileType.MACH_CODE),
    "wasm": (FileType.WASM_DEBUG, FileType.WASM_CODE),
}


def file_type_of(file_format: str, kind: str | None) -> FileType | None:
    """The file type of a stored debug file, from its format and object kind."""
    single = _SINGLE_FILE_TYPES.get(file_format)
    if single is not None:
        return single
    split = _SPLIT_FILE_TYPES.get(file_format)
    if split is None:
        return None
    return split[0] if kind == "dbg" else split[1]


_PATH_SEPARATORS = re.compile(r"[\\/]")


@dataclass(frozen=True)
class ObjectId:
    """A module as a crash report identifies it; every field is optional."""

    debug_id: str | None = None
    code_id: str | None = None
    debug_file: str | None = None
    code_file: str | None = None
    debug_checksum: str | None = None
    object_type: ObjectType = ObjectType.UNKNOWN

    @property
    def debug_file_basename(self) -> str | None:
        return _basename(self.debug_file)

    @property
    def code_file_basename(self) -> str | None:
        return _basename(self.code_file)

    def cache_key(self, *, with_names: bool) -> str:
        """A stable, filesystem-safe key for this module.

        Sources that find files by identifier alone leave the file names out, so
        that every report of the module shares one cache entry.
        """
        parts = [self.debug_id or "", self.code_id or ""]
        if with_names:
            parts += [
                self.debug_file_basename or "",
                self.code_file_basename or "",
                self.object_type.value,
            ]
        readable = (self.debug_id or self.code_id or "noid").replace("/", "_")[:48]
        digest = hashlib.sha1("\0".join(parts).encode(), usedforsecurity=False).hexdigest()
        return f"{readable}_{digest[:16]}"


def _basename(path: str | None) -> str | None:
    if not path:
        return None
    name = _PATH_SEPARATORS.split(path)[-1]
    if name in ("", ".", ".."):
        return None
    return name
