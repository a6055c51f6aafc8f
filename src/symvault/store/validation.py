"""Checking that an uploaded object's debug data can actually be read.

Detection only reads headers, as `sentry-cli` does before uploading, so a file
whose DWARF, PDB streams or symbol tables are damaged would pass it and fail
later, when a crash needs it. Converting the object into a symcache reads all
of its function and line data; if that fails because the data is corrupt, the
upload is refused while the uploader can still fix it. Objects without debug
information or symbols have nothing to check; very large files are accepted
unchecked (see `upload.validate_max_size`).
"""

from __future__ import annotations

from pathlib import Path

import symbolic

from symvault.errors import DebugFileError
from symvault.model.difs import DifMeta

__all__ = ["NATIVE_FORMATS", "admit", "check_supported", "validate_object"]

#: Formats whose objects belong to one CPU architecture.
NATIVE_FORMATS = frozenset({"elf", "macho", "pe", "pdb", "breakpad", "wasm"})

# Symcache errors caused by the content of the file rather than by what it lacks.
_CORRUPTION_ERRORS: tuple[type[Exception], ...] = (
    symbolic.SymCacheErrorBadDebugFile,
    symbolic.SymCacheErrorBadFileHeader,
    symbolic.SymCacheErrorBadSegment,
    symbolic.ObjectError,
    symbolic.DwarfError,
)


def check_supported(meta: DifMeta) -> None:
    """Refuses native objects whose architecture symvault cannot work with."""
    if meta.file_format in NATIVE_FORMATS and meta.arch in ("unknown", ""):
        raise DebugFileError(
            "Unsupported debug information file: its CPU architecture is unknown, "
            "so stack traces of it could not be symbolicated"
        )


def validate_object(path: Path, meta: DifMeta) -> None:
    """Reads the object's function and line data; raises `DebugFileError` if it is corrupt."""
    if meta.file_format not in NATIVE_FORMATS or not meta.features & {"debug", "symtab"}:
        return
    try:
        archive = symbolic.Archive.open(str(path))
        obj = _find_object(archive, meta.debug_id)
        if obj is None:
            return
        obj.make_symcache()
    except _CORRUPTION_ERRORS as exc:
        message = str(exc).replace("\n", "; ")
        raise DebugFileError(f"Invalid debug information file: {message}") from exc
    except symbolic.SymbolicError:
        return  # missing or unsupported data is not corruption


def _find_object(archive: symbolic.Archive, debug_id: str) -> symbolic.Object | None:
    for obj in archive.iter_objects():
        if obj.debug_id[:36] == debug_id[:36]:
            return obj
    return None


def admit(path: Path, meta: DifMeta, size: int, validate_max_size: int) -> None:
    """All checks an object passes before it is stored."""
    check_supported(meta)
    if 0 < size <= validate_max_size:
        validate_object(path, meta)
