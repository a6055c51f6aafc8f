"""CFI caches: stack unwinding rules of a debug file, for stack walking.

Built with symbolic's `make_cficache`; the payload is the Breakpad text form
symbolic writes, followed by the entry trailer (`read_cfi` returns the payload
alone).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import symbolic

from symvault.caches.derived import ConversionFailed
from symvault.caches.object_meta import ObjectInfo
from symvault.caches.search import Purpose
from symvault.caches.symcaches import select_object
from symvault.caching.cacher import CacheVersions
from symvault.caching.entries import CacheEntry, EntryStatus

__all__ = ["CFICACHE_VERSIONS", "CficacheConversion", "read_cfi"]

#: Versions of CFI cache entries, newest first, with the reason of each bump:
#: 1 - symbolic's CFI cache (Breakpad STACK records) followed by a symvault entry trailer.
CFICACHE_VERSIONS = CacheVersions(current=1)


class CficacheConversion:
    name = "cficaches"
    versions = CFICACHE_VERSIONS
    purpose = Purpose.UNWIND

    def convert(self, source_file: Path, info: ObjectInfo, target: Path) -> dict[str, Any]:
        try:
            cficache = select_object(source_file, info).make_cficache()
            with target.open("wb") as out:
                cficache.write_to(out)
        except symbolic.SymbolicError as exc:
            raise ConversionFailed(EntryStatus.MALFORMED, str(exc).replace("\n", "; ")) from exc
        return {"format_version": cficache.version}

    def is_outdated(self, entry: CacheEntry) -> bool:
        version = entry.info.get("format_version")
        return isinstance(version, int) and version < symbolic.CFICACHE_LATEST_VERSION


def read_cfi(entry: CacheEntry) -> bytes:
    """The unwind rules of an entry, without its trailer."""
    with entry.path.open("rb") as handle:
        return handle.read(entry.payload_size)
