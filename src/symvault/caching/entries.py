"""The on-disk format of framed cache entries and what an entry says.

```
[payload][trailer: UTF-8 JSON][trailer length: u32 big endian][magic: b"SVCACHE\\x01"]
```

The trailer holds `status`, an optional `detail` and kind-specific `info`.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

__all__ = [
    "MAGIC",
    "CacheEntry",
    "EntryStatus",
    "read_trailer",
    "write_trailer",
]

MAGIC = b"SVCACHE\x01"
_TAIL = struct.Struct(">I")
_TAIL_SIZE = _TAIL.size + len(MAGIC)
_MAX_TRAILER = 4 * 1024 * 1024
#: Bytes read from an entry's end at first: the whole trailer, for most entries.
_FIRST_READ = 8 * 1024


class EntryStatus(StrEnum):
    OK = "ok"
    NOT_FOUND = "notfound"
    NO_PERMISSION = "noperm"
    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"
    ERROR = "error"
    TIMEOUT = "timeout"

    @property
    def is_miss(self) -> bool:
        return self in (EntryStatus.NOT_FOUND, EntryStatus.NO_PERMISSION)

    @property
    def is_failed_conversion(self) -> bool:
        return self in (EntryStatus.MALFORMED, EntryStatus.UNSUPPORTED)

    @property
    def is_failed_fetch(self) -> bool:
        return self in (EntryStatus.ERROR, EntryStatus.TIMEOUT)


@dataclass(frozen=True)
class CacheEntry:
    """An entry as found on disk."""

    path: Path
    status: EntryStatus
    mtime: float
    """When the entry was written or last marked as used, as found (before touching it)."""
    size: int
    detail: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    version: int = 0
    outdated: bool = False
    """Found under an older format version (served while the current one is built)."""

    @property
    def ok(self) -> bool:
        return self.status is EntryStatus.OK

    @property
    def payload_size(self) -> int:
        return int(self.info.get("_payload_size", self.size))


def write_trailer(
    path: Path, status: EntryStatus, detail: str | None, info: dict[str, Any]
) -> dict[str, Any]:
    """Appends the trailer to the payload already written at `path` (if any).

    Returns the info as stored, with the payload size added.
    """
    with path.open("ab") as handle:
        # Opened for appending, the file is positioned at the end of the payload.
        stored = {**info, "_payload_size": handle.tell()}
        document = {"status": status.value, "detail": detail, "info": stored}
        encoded = json.dumps(document, separators=(",", ":")).encode()
        handle.write(encoded + _TAIL.pack(len(encoded)) + MAGIC)
    return stored


def read_trailer(path: Path) -> tuple[EntryStatus, str | None, dict[str, Any], os.stat_result]:
    """Reads an entry's trailer; raises FileNotFoundError or ValueError (not an entry)."""
    # Positioned reads of the file's end: one system call for most trailers.
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        stat = os.fstat(fd)
        if stat.st_size < _TAIL_SIZE:
            raise ValueError("too short for a cache entry")
        block = os.pread(
            fd, min(stat.st_size, _FIRST_READ), stat.st_size - min(stat.st_size, _FIRST_READ)
        )
        tail = block[-_TAIL_SIZE:]
        if len(tail) != _TAIL_SIZE or tail[_TAIL.size :] != MAGIC:
            raise ValueError("no cache entry trailer")
        (length,) = _TAIL.unpack(tail[: _TAIL.size])
        if length > _MAX_TRAILER or length > stat.st_size - _TAIL_SIZE:
            raise ValueError("invalid trailer length")
        if length + _TAIL_SIZE <= len(block):
            encoded = block[len(block) - _TAIL_SIZE - length : len(block) - _TAIL_SIZE]
        else:
            encoded = os.pread(fd, length, stat.st_size - _TAIL_SIZE - length)
        if len(encoded) != length:
            raise ValueError("truncated cache entry trailer")
    finally:
        os.close(fd)
    document = json.loads(encoded)
    if not isinstance(document, dict):
        raise ValueError("invalid trailer")
    status = EntryStatus(str(document.get("status")))
    detail = document.get("detail")
    info = document.get("info") or {}
    if not isinstance(info, dict):
        raise ValueError("invalid trailer info")
    return status, detail if isinstance(detail, str) else None, info, stat
