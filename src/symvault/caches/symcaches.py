"""Symcaches: function, file and line data of a debug file, for address lookups.

Built with symbolic's `make_symcache`, read by mapping the file
(`SymCache.open`), which ignores the entry trailer at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import symbolic

from symvault.caches.derived import ConversionFailed
from symvault.caches.object_meta import ObjectInfo
from symvault.caches.search import Purpose
from symvault.caching.cacher import CacheVersions
from symvault.caching.entries import CacheEntry, EntryStatus

__all__ = ["SYMCACHE_VERSIONS", "SymcacheConversion", "open_symcache", "select_object"]

#: Versions of symcache entries, newest first, with the reason of each bump:
#: 1 - symbolic's symcache followed by a symvault entry trailer.
SYMCACHE_VERSIONS = CacheVersions(current=1)


def select_object(path: Path, info: ObjectInfo) -> Any:
    """The object of the file at `path` that `info` describes."""
    archive = symbolic.Archive.open(str(path))
    for obj in archive.iter_objects():
        if obj.debug_id == info.debug_id:
            return obj
    raise ConversionFailed(EntryStatus.MALFORMED, "the file no longer contains the object")


class SymcacheConversion:
    name = "symcaches"
    versions = SYMCACHE_VERSIONS
    purpose = Purpose.DEBUG

    def convert(self, source_file: Path, info: ObjectInfo, target: Path) -> dict[str, Any]:
        try:
            symcache = select_object(source_file, info).make_symcache()
            with target.open("wb") as out:
                symcache.dump_into(out)
        except symbolic.SymbolicError as exc:
            raise ConversionFailed(EntryStatus.MALFORMED, _message(exc)) from exc
        return {"format_version": symcache.version, "arch": symcache.arch}

    def is_outdated(self, entry: CacheEntry) -> bool:
        version = entry.info.get("format_version")
        return isinstance(version, int) and version < symbolic.SYMCACHE_LATEST_VERSION


def open_symcache(path: Path) -> Any:
    """Maps a symcache entry; raises OSError or `symbolic.SymbolicError`."""
    return symbolic.SymCache.open(str(path))


def _message(exc: Exception) -> str:
    return str(exc).replace("\n", "; ")
