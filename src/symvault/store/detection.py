"""Finding out what a file is: which debug information it holds, for what.

Native objects (ELF, Mach-O, PE, PDB, portable PDB, Breakpad, WASM, source
bundles) are parsed with Sentry's `symbolic`. ProGuard mappings are known by
their upload name, BCSymbolMaps and UUID maps by their first bytes, and il2cpp
line mappings are JSON objects uploaded together with their module's debug id.
These rules follow Sentry's `detect_dif_from_path`.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

import symbolic
from symbolic.debuginfo import BcSymbolMap, UuidMapping

from symvault import jsontext
from symvault.errors import DebugFileError
from symvault.model.difs import FILE_FORMATS, OBJECT_KINDS, DifMeta
from symvault.model.ids import parse_debug_id

__all__ = ["MAX_IL2CPP_SIZE", "detect_file"]

_PROGUARD_NAME = re.compile(r"(?:^|/)proguard/(?:mapping-)?(.*?)\.txt$")
_NIL_DEBUG_ID = "00000000-0000-0000-0000-000000000000"
#: il2cpp line mappings are parsed in full to validate them; larger ones are refused.
MAX_IL2CPP_SIZE = 256 * 1024 * 1024


def detect_file(path: Path, name: str, debug_id: str | None = None) -> list[DifMeta]:
    """Returns the debug files in `path`, uploaded as `name` with an optional client debug id.

    Raises `DebugFileError` with a message for the uploader if the file is not
    a debug file symvault can store.
    """
    client_debug_id = _parse_client_debug_id(debug_id)
    basename = PurePosixPath(name.replace("\\", "/")).name or "unknown"

    proguard = _PROGUARD_NAME.search(name.replace("\\", "/"))
    if proguard is not None:
        proguard_id = _parse_client_debug_id(proguard.group(1))
        if proguard_id is not None:
            return [_proguard(proguard_id)]

    with path.open("rb") as handle:
        head = handle.read(64)
    if head.startswith(b"BCSymbolMap"):
        return [_bcsymbolmap(path, basename, client_debug_id)]
    if head.startswith(b"<?xml"):
        return [_uuidmap(path, basename, client_debug_id)]
    if head.lstrip().startswith(b"{"):
        return [_il2cpp(path, basename, client_debug_id)]
    return _objects(path, basename, client_debug_id)


def _parse_client_debug_id(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parse_debug_id(value)
    except ValueError:
        return None


def _proguard(debug_id: str) -> DifMeta:
    return DifMeta(
        file_format="proguard",
        arch="any",
        debug_id=debug_id,
        object_name="proguard-mapping",
        features=frozenset({"mapping"}),
    )


def _bcsymbolmap(path: Path, name: str, debug_id: str | None) -> DifMeta:
    if debug_id is None:
        raise DebugFileError("Missing debug_id for BCSymbolMap")
    try:
        BcSymbolMap.open(str(path))
    except symbolic.SymbolicError as exc:
        raise DebugFileError(f"Invalid BCSymbolMap: {exc}") from exc
    return DifMeta(file_format="bcsymbolmap", arch="any", debug_id=debug_id, object_name=name)


def _uuidmap(path: Path, name: str, debug_id: str | None) -> DifMeta:
    if debug_id is None:
        # Files from zips carry the debug id in their name, e.g. `<UUID>.plist`.
        debug_id = _parse_client_debug_id(PurePosixPath(name).stem)
        if debug_id is None:
            raise DebugFileError(f"Invalid UuidMap: {name!r} is not named after a debug id")
    try:
        UuidMapping.from_plist(debug_id, str(path))
    except symbolic.SymbolicError as exc:
        raise DebugFileError(f"Invalid UuidMap: {exc}") from exc
    return DifMeta(file_format="uuidmap", arch="any", debug_id=debug_id, object_name=name)


def _il2cpp(path: Path, name: str, debug_id: str | None) -> DifMeta:
    if debug_id is None:
        raise DebugFileError("Missing debug_id for il2cpp line mapping")
    if path.stat().st_size > MAX_IL2CPP_SIZE:
        raise DebugFileError("il2cpp line mapping is too large")
    try:
        mapping = jsontext.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise DebugFileError(f"Invalid il2cpp line mapping: {exc}") from exc
    if not isinstance(mapping, dict):
        raise DebugFileError("Invalid il2cpp line mapping: expected a JSON object")
    return DifMeta(file_format="il2cpp", arch="any", debug_id=debug_id, object_name=name)


def _objects(path: Path, name: str, client_debug_id: str | None) -> list[DifMeta]:
    try:
        archive = symbolic.Archive.open(str(path))
        objects = list(archive.iter_objects())
    except symbolic.ObjectErrorUnsupportedObject as exc:
        raise DebugFileError(f"Unsupported debug information file: {exc}") from exc
    except symbolic.SymbolicError as exc:
        message = str(exc)
        if "unsupported object file format" in message:
            raise DebugFileError(f"Unsupported debug information file: {message}") from exc
        raise DebugFileError(f"Invalid debug information file: {message}") from exc
    if not objects:
        raise DebugFileError("Invalid debug information file: it contains no objects")
    metas = []
    for obj in objects:
        try:
            metas.append(_object_meta(obj, name, client_debug_id))
        except symbolic.SymbolicError as exc:
            raise DebugFileError(f"Invalid debug information file: {exc}") from exc
    return metas


def _object_meta(obj: symbolic.Object, name: str, client_debug_id: str | None) -> DifMeta:
    object_id = obj.debug_id
    if not object_id or object_id == _NIL_DEBUG_ID:
        raise DebugFileError("Invalid debug information file: it has no debug identifier")
    debug_id = parse_debug_id(object_id)
    # A client may override the age part of the id (PDB ages), nothing else.
    if client_debug_id is not None and client_debug_id[:36] == debug_id[:36]:
        debug_id = client_debug_id
    file_format = obj.file_format
    if file_format not in FILE_FORMATS:
        raise DebugFileError(f"Unsupported debug information file: format {file_format!r}")
    if file_format == "breakpad" and name.lower().endswith(".sym"):
        name = name[:-4]
    kind = obj.kind if obj.kind in OBJECT_KINDS else "other"
    return DifMeta(
        file_format=file_format,
        arch=obj.arch,
        debug_id=debug_id,
        code_id=obj.code_id or None,
        object_name=name,
        kind=kind,
        features=frozenset(obj.features),
    )
