"""Symcaches: function, file and line data of a debug file, for address lookups.

Built with symbolic's `make_symcache`, read by mapping the file
(`SymCache.open`), which ignores the entry trailer at the end.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import symbolic

from symvault.caches.derived import ConversionFailed
from symvault.caches.object_meta import ObjectInfo
from symvault.caches.search import Purpose
from symvault.caching.cacher import CacheVersions
from symvault.caching.entries import CacheEntry, EntryStatus
from symvault.memo import Memo

__all__ = [
    "SYMCACHE_VERSIONS",
    "Location",
    "Symcache",
    "SymcacheConversion",
    "SymcacheHandles",
    "select_object",
]

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


@dataclass(frozen=True)
class Location:
    """One function at an address (innermost inlinee first in a lookup)."""

    symbol: str
    language: str
    sym_addr: int
    path: str | None
    line: int


class Symcache:
    """A mapped symcache whose recent lookups are remembered.

    Crashes repeat: the same few return addresses come back in every report of a
    crash, and remembering them turns a lookup into a dictionary access. The
    memo is shared by all open symcaches, so that its size bounds the memory it
    takes whatever the number of modules.
    """

    def __init__(
        self, handle: Any, memo: Memo[tuple[int, int], tuple[Location, ...]], token: int
    ) -> None:
        self._handle = handle
        self.arch = str(handle.arch)
        self._memo = memo
        # Keys hold this number, not the symcache: a closed symcache is not kept
        # mapped by its lookups, whose entries just wait for the memo's next reset.
        self._token = token

    @property
    def identity(self) -> int:
        """A number no other symcache opened by this process has."""
        return self._token

    def lookup(self, address: int) -> tuple[Location, ...]:
        key = (self._token, address)
        known = self._memo.get(key)
        if known is not None:
            return known
        found = tuple(
            Location(
                symbol=location.symbol,
                language=location.lang or "unknown",
                sym_addr=location.sym_addr,
                path=location.full_path,
                line=location.line,
            )
            for location in self._handle.lookup(address)
        )
        self._memo.put(key, found)
        return found


class SymcacheHandles:
    """Mapped symcaches, kept open while they are used: mapping one takes longer than a lookup.

    A handle stays valid after its file is removed or replaced (the mapping keeps
    the old contents); a replaced entry has another identity and is mapped anew.
    """

    def __init__(self, capacity: int = 256, remembered_lookups: int = 16_384) -> None:
        self._capacity = capacity
        self._open: OrderedDict[tuple[Path, float, int], Symcache] = OrderedDict()
        self._lock = threading.Lock()
        # About a kilobyte an entry (the locations of an address, with their names);
        # kept from an address's second lookup on, so one-off addresses take no room.
        self._lookups: Memo[tuple[int, int], tuple[Location, ...]] = Memo(
            remembered_lookups, repeats_only=True
        )
        self._tokens = itertools.count()

    def get(self, entry: CacheEntry) -> Symcache:
        """The mapped symcache of an entry; raises OSError or `symbolic.SymbolicError`."""
        identity = (entry.path, entry.mtime, entry.size)
        with self._lock:
            handle = self._open.get(identity)
            if handle is not None:
                self._open.move_to_end(identity)
                return handle
        handle = Symcache(
            symbolic.SymCache.open(str(entry.path)), self._lookups, next(self._tokens)
        )
        with self._lock:
            self._open[identity] = handle
            if len(self._open) > self._capacity:
                self._open.popitem(last=False)
        return handle


def _message(exc: Exception) -> str:
    return str(exc).replace("\n", "; ")
