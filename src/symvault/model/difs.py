"""What symvault knows about a debug information file (DIF).

`DifMeta` is what detection finds in a file; `DebugFile` is a stored record
of it in a project. File formats, content types and object kinds use the
spellings of Sentry's API, which `sentry-cli` parses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

__all__ = [
    "CONTENT_TYPES",
    "FEATURES",
    "FILE_FORMATS",
    "OBJECT_KINDS",
    "DebugFile",
    "DifMeta",
    "file_extension",
]

#: Content type recorded for each file format (Sentry's `KNOWN_DIF_FORMATS`).
CONTENT_TYPES: dict[str, str] = {
    "breakpad": "text/x-breakpad",
    "macho": "application/x-mach-binary",
    "elf": "application/x-elf-binary",
    "pe": "application/x-dosexec",
    "pdb": "application/x-ms-pdb",
    "portablepdb": "application/x-portable-pdb",
    "wasm": "application/wasm",
    "sourcebundle": "application/x-sentry-bundle+zip",
    "proguard": "text/x-proguard+plain",
    "bcsymbolmap": "application/x-bcsymbolmap",
    "uuidmap": "application/x-debugid-map",
    "il2cpp": "application/x-il2cpp-json",
}
FILE_FORMATS = frozenset(CONTENT_TYPES)

#: Object kinds as `sentry-cli` accepts them in `data.type`.
OBJECT_KINDS = frozenset({"none", "rel", "exe", "lib", "dump", "dbg", "src", "other"})

#: What a debug file can offer: symbolication data, unwind info, a symbol
#: table, embedded sources; ProGuard files offer a `mapping`.
FEATURES = frozenset({"debug", "unwind", "symtab", "sources", "mapping"})


@dataclass(frozen=True)
class DifMeta:
    """One object found in a file by detection."""

    file_format: str
    arch: str
    debug_id: str
    object_name: str
    code_id: str | None = None
    kind: str | None = None
    features: frozenset[str] = field(default_factory=frozenset)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.file_format]


@dataclass(frozen=True)
class DebugFile:
    """A debug file stored in a project."""

    id: int
    project_id: int
    checksum: str
    size: int
    debug_id: str
    code_id: str | None
    arch: str
    object_name: str
    file_format: str
    kind: str | None
    features: frozenset[str]
    created_at: datetime
    storage_key: str

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES.get(self.file_format, "application/octet-stream")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible snapshot (see `from_dict`)."""
        data = asdict(self)
        data["features"] = sorted(self.features)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DebugFile:
        return cls(
            **{
                **data,
                "features": frozenset(data["features"]),
                "created_at": datetime.fromisoformat(data["created_at"]),
            }
        )

    @property
    def download_name(self) -> str:
        extension = file_extension(self.file_format, self.kind)
        if self.object_name.lower().endswith(extension.lower()):
            return self.object_name
        return self.object_name + extension


def file_extension(file_format: str, kind: str | None) -> str:
    """The extension a downloaded file gets, as Sentry names them."""
    if file_format == "macho":
        return "" if kind == "exe" else ".dSYM"
    if file_format == "elf":
        return "" if kind == "exe" else ".debug"
    if file_format == "pe":
        return ".exe" if kind == "exe" else ".dll"
    return {
        "breakpad": ".sym",
        "proguard": ".txt",
        "pdb": ".pdb",
        "portablepdb": ".pdb",
        "sourcebundle": ".src.zip",
        "wasm": ".wasm",
        "bcsymbolmap": ".bcsymbolmap",
        "uuidmap": ".plist",
        "il2cpp": ".json",
    }.get(file_format, "")
