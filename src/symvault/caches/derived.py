"""Caches derived from debug files, one entry per (source, module).

An entry is computed from the best file one source has for the module
(`search.search_source`) and says which file that was, whether it was the
preferred kind (rule 2) or a fallback (rule 3), and what happened with every
candidate. When no file is found, the entry is a placeholder (rule 4,
enforcement point 2: placeholders exist for derived caches only); when the
conversion fails, a failed-conversion placeholder (rule 5).

A lookup across several sources walks them in order and stops at the first
preferred result; otherwise the best fallback result wins (a symbol table
over anything else; ties go to the earlier source). Per-source entries mean
that a new upload to the store, or a file appearing on one server, only
refreshes that source's entry.

Fallback entries are refreshed in the background when their mtime is more
than `TOUCH_EVERY` old (rule 3, enforcement point 5), and so are entries in an
older format of symbolic's; entries in an older format of ours are served and
recomputed meanwhile. A refresh that fails keeps the entry it was to replace.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from symvault.caches.object_meta import ObjectInfo, ObjectMetas
from symvault.caches.objects import ObjectFiles, source_directory
from symvault.caches.search import Candidate, Purpose, quality, search_source
from symvault.caching.cacher import Cacher, CacheVersions, Clock, Computed
from symvault.caching.entries import CacheEntry, EntryStatus
from symvault.caching.keys import GLOBAL_SCOPE, CacheKey
from symvault.caching.rules import TOUCH_EVERY
from symvault.memo import Memo
from symvault.model.objects import FileType, ObjectId, ObjectType, file_types_for
from symvault.model.sources import SourceConfig
from symvault.sources.base import DownloadStatus, applicable_file_types
from symvault.sources.registry import SourceRegistry

__all__ = ["MEMO_SECONDS", "Conversion", "ConversionFailed", "DerivedCache", "DerivedResult"]

#: How long a lookup across sources is answered from memory before the disk is asked again.
MEMO_SECONDS = 5.0
#: Lookups remembered at most (a kilobyte or two each, with their candidates).
_MEMO_ENTRIES = 8192
#: Results of entries read (their candidate lists parsed), kept by entry identity.
_RESULT_ENTRIES = 2048


class ConversionFailed(Exception):
    """The file could not be converted; `status` is `malformed` or `unsupported`."""

    def __init__(self, status: EntryStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


class Conversion(Protocol):
    """What a derived cache kind supplies."""

    name: str
    versions: CacheVersions
    purpose: Purpose

    def convert(self, source_file: Path, info: ObjectInfo, target: Path) -> dict[str, Any]:
        """Writes the derived cache to `target`; returns extra info for the entry.

        Raises `ConversionFailed` if the file cannot be converted.
        """

    def is_outdated(self, entry: CacheEntry) -> bool:
        """True if the entry was written by an older converter and should be rebuilt."""


@dataclass(frozen=True)
class DerivedResult:
    """The outcome of a lookup: the entry used (if any) and what happened everywhere."""

    status: EntryStatus
    entry: CacheEntry | None
    source_id: str | None
    candidates: list[Candidate] = field(default_factory=list)
    object_info: ObjectInfo | None = None
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is EntryStatus.OK and self.entry is not None

    @property
    def fallback(self) -> bool:
        return bool(self.entry is not None and self.entry.info.get("fallback"))


#: Placeholders worth more than "not found" when no source has the file: the most
#: specific failure is reported.
_FAILURE_ORDER = (
    EntryStatus.MALFORMED,
    EntryStatus.UNSUPPORTED,
    EntryStatus.TIMEOUT,
    EntryStatus.ERROR,
    EntryStatus.NO_PERMISSION,
    EntryStatus.NOT_FOUND,
)


def file_types_for_purpose(
    purpose: Purpose, config: SourceConfig, object_id: ObjectId
) -> tuple[FileType, ...]:
    if purpose is Purpose.SOURCES:
        return (FileType.SOURCE_BUNDLE,)
    # Entries of sources that find files by id do not depend on the module's type,
    # so every native file type is looked for there.
    object_type = ObjectType.UNKNOWN if _by_id(config) else object_id.object_type
    return file_types_for(object_type)


def _by_id(config: SourceConfig) -> bool:
    return config.type in ("store", "sentry")


def module_key(config: SourceConfig, object_id: ObjectId) -> str:
    """Sources that find files by id alone share one entry per id; layouts need the names."""
    if _by_id(config):
        if object_id.debug_id:
            return ObjectId(debug_id=object_id.debug_id).cache_key(with_names=False)
        if object_id.code_id:
            return ObjectId(code_id=object_id.code_id).cache_key(with_names=False)
    return object_id.cache_key(with_names=True)


def cache_scope(config: SourceConfig, scope: str) -> str:
    """Public sources and this server's store share entries across scopes."""
    return GLOBAL_SCOPE if config.is_public or config.type == "store" else scope


class DerivedCache:
    """Lookups and computations of one derived cache kind."""

    def __init__(
        self,
        conversion: Conversion,
        cacher: Cacher,
        sources: SourceRegistry,
        objects: ObjectFiles,
        metas: ObjectMetas,
        clock: Clock = time.time,
    ) -> None:
        self.conversion = conversion
        self.cacher = cacher
        self._sources = sources
        self._objects = objects
        self._metas = metas
        self._clock = clock
        # Results by entry identity, so warm lookups skip re-reading candidate lists;
        # kept from an entry's second use on, so one-off modules take no room.
        self._results: Memo[tuple[Path, float, int, str], DerivedResult] = Memo(
            _RESULT_ENTRIES, repeats_only=True
        )
        # Whole lookups, for MEMO_SECONDS: a crash storm asks for the same modules
        # thousands of times a second, and each ask would otherwise stat every entry.
        self._memo: OrderedDict[tuple[object, ...], tuple[float, DerivedResult]] = OrderedDict()
        self._memo_lock = threading.Lock()

    def key(self, config: SourceConfig, object_id: ObjectId, scope: str) -> CacheKey:
        return CacheKey(
            cache_scope(config, scope), (source_directory(config), module_key(config, object_id))
        )

    def fetch(
        self,
        object_id: ObjectId,
        sources: Sequence[SourceConfig],
        scope: str,
        computed_elsewhere: bool = False,
    ) -> DerivedResult:
        """The derived cache of the best file across `sources` (computed if needed).

        `computed_elsewhere`: another process has just computed the entries
        (`compute`), so finding them is not counted as cache hits."""
        result = self._memoized(
            object_id,
            sources,
            scope,
            lambda: self._fetch(object_id, sources, scope, count_hits=not computed_elsewhere),
        )
        assert result is not None  # `_fetch` always has a result without `only`
        return result

    def fetch_existing(
        self, object_id: ObjectId, sources: Sequence[SourceConfig], scope: str
    ) -> DerivedResult | None:
        """`fetch` if it would compute nothing, else None."""
        return self._memoized(
            object_id, sources, scope, lambda: self._fetch(object_id, sources, scope, only=True)
        )

    def compute(
        self, object_id: ObjectId, sources: Sequence[SourceConfig], scope: str
    ) -> DerivedResult:
        """`fetch` without the memo: the entries of `sources` as far as the walk goes,
        computed where missing (for a process that computes on behalf of another)."""
        result = self._fetch(object_id, sources, scope)
        assert result is not None  # `_fetch` always has a result without `only`
        return result

    def _memoized(
        self,
        object_id: ObjectId,
        sources: Sequence[SourceConfig],
        scope: str,
        produce: Callable[[], DerivedResult | None],
    ) -> DerivedResult | None:
        memo_key = _memo_key(object_id, sources, scope)
        now = self._clock()
        with self._memo_lock:
            memo = self._memo.get(memo_key)
        if memo is not None and memo[0] > now:
            return memo[1]
        result = produce()
        if result is None:
            return None
        with self._memo_lock:
            self._memo[memo_key] = (now + MEMO_SECONDS, result)
            self._memo.move_to_end(memo_key)
            # Oldest first: what has expired goes, so the memo holds the last few
            # seconds' modules, not every module ever seen.
            while self._memo and (
                len(self._memo) > _MEMO_ENTRIES or next(iter(self._memo.values()))[0] <= now
            ):
                self._memo.popitem(last=False)
        return result

    def remembered(
        self, object_id: ObjectId, sources: Sequence[SourceConfig], scope: str
    ) -> DerivedResult | None:
        """What `fetch` would answer from memory alone (no file system), if anything.

        Cheap enough to call on the event loop or before handing work to a thread."""
        memo_key = _memo_key(object_id, sources, scope)
        with self._memo_lock:
            memo = self._memo.get(memo_key)
        return memo[1] if memo is not None and memo[0] > self._clock() else None

    def _fetch(
        self,
        object_id: ObjectId,
        sources: Sequence[SourceConfig],
        scope: str,
        count_hits: bool = True,
        only: bool = False,
    ) -> DerivedResult | None:
        """The walk across sources; with `only` (existing entries only), None where it
        would have computed an entry."""
        candidates: list[Candidate] = []
        fallback: DerivedResult | None = None
        failures: list[DerivedResult] = []
        for config in sources:
            wanted = file_types_for_purpose(self.conversion.purpose, config, object_id)
            file_types = applicable_file_types(config, object_id, wanted)
            if not file_types:
                continue
            result = self._from(config, object_id, scope, file_types, count_hits, only)
            if result is None:
                return None
            candidates.extend(result.candidates)
            if result.ok and not result.fallback:
                return _with_candidates(result, candidates)
            if not result.ok:
                failures.append(result)
            elif fallback is None or self._quality(result) > self._quality(fallback):
                # Among fallbacks a symbol table beats anything else; ties go to the earlier.
                fallback = result
        if fallback is not None:
            return _with_candidates(fallback, candidates)
        return _missing(failures, candidates)

    def _quality(self, result: DerivedResult) -> int:
        features = result.object_info.features if result.object_info else frozenset()
        return quality(features, self.conversion.purpose)

    def fetch_from(
        self,
        config: SourceConfig,
        object_id: ObjectId,
        scope: str,
        file_types: Sequence[FileType],
    ) -> DerivedResult:
        """The entry of one source, computed if there is none."""
        result = self._from(config, object_id, scope, file_types, count_hit=True, only=False)
        assert result is not None  # computed if missing
        return result

    def _from(
        self,
        config: SourceConfig,
        object_id: ObjectId,
        scope: str,
        file_types: Sequence[FileType],
        count_hit: bool,
        only: bool,
    ) -> DerivedResult | None:
        key = self.key(config, object_id, scope)

        def compute(target: Path) -> Computed:
            return self._compute(config, object_id, scope, file_types, target)

        if only:
            found = self.cacher.find(key, compute, self._needs_refresh, count_hit)
            return None if found is None else self._result(found, config.id)
        entry = self.cacher.get(key, compute, self._needs_refresh, count_hit)
        return self._result(entry, config.id)

    def _result(self, entry: CacheEntry, source_id: str) -> DerivedResult:
        identity = (entry.path, entry.mtime, entry.size, source_id)
        known = self._results.get(identity)
        if known is not None:
            return known
        result = _result(entry, source_id)
        self._results.put(identity, result)
        return result

    def recompute(self, config: SourceConfig, object_id: ObjectId, scope: str) -> DerivedResult:
        """Computes the source's entry again (after an upload changed what it holds)."""
        wanted = file_types_for_purpose(self.conversion.purpose, config, object_id)
        file_types = applicable_file_types(config, object_id, wanted)
        key = self.key(config, object_id, scope)
        entry = self.cacher.recompute(
            key, lambda target: self._compute(config, object_id, scope, file_types, target)
        )
        return _result(entry, config.id)

    def _needs_refresh(self, entry: CacheEntry) -> bool:
        # Rule 3: look for a better file at most once per TOUCH_EVERY (the mtime records
        # the attempt). Rebuilds of outdated formats keep the same pace: a failed attempt
        # leaves the entry as it was and must not be repeated on every lookup.
        if self._clock() - entry.mtime <= TOUCH_EVERY:
            return False
        return self.conversion.is_outdated(entry) or bool(entry.info.get("fallback"))

    def _compute(
        self,
        config: SourceConfig,
        object_id: ObjectId,
        scope: str,
        file_types: Sequence[FileType],
        target: Path,
    ) -> Computed:
        source = self._sources.get(config)
        search = search_source(
            source,
            object_id,
            file_types,
            self.conversion.purpose,
            cache_scope(config, scope),
            self._objects,
            self._metas,
        )
        info: dict[str, Any] = {"candidates": [c.to_json() for c in search.candidates]}
        found = search.found
        if found is None:
            return Computed(_status_of(search.candidates), _detail_of(search.candidates), info)
        info["object"] = {
            **found.info.to_json(),
            "location": found.remote.location,
            "file_type": found.remote.file_type.value,
        }
        info["fallback"] = not found.preferred
        try:
            info.update(self.conversion.convert(found.path, found.info, target))
        except ConversionFailed as exc:
            target.unlink(missing_ok=True)
            return Computed(exc.status, exc.detail, info)
        return Computed(EntryStatus.OK, info=info)


def _status_of(candidates: Sequence[Candidate]) -> EntryStatus:
    statuses = {candidate.status for candidate in candidates}
    if DownloadStatus.MALFORMED in statuses:
        return EntryStatus.MALFORMED
    if DownloadStatus.ERROR in statuses:
        errors = [c for c in candidates if c.status is DownloadStatus.ERROR]
        # Downloads report timeouts as errors whose details say "timed out".
        if all("timed out" in (c.details or "") for c in errors):
            return EntryStatus.TIMEOUT
        return EntryStatus.ERROR
    if DownloadStatus.NO_PERMISSION in statuses:
        return EntryStatus.NO_PERMISSION
    return EntryStatus.NOT_FOUND


def _detail_of(candidates: Sequence[Candidate]) -> str | None:
    details = [f"{c.location}: {c.details}" for c in candidates if c.details]
    return "; ".join(details[:5]) or None


def _result(entry: CacheEntry, source_id: str) -> DerivedResult:
    raw = entry.info.get("candidates")
    candidates = (
        [Candidate.from_json(item) for item in raw if isinstance(item, dict)]
        if isinstance(raw, list)
        else []
    )
    # Entries are shared by sources with the same definition but other ids.
    candidates = [
        Candidate(source_id, c.location, c.status, c.details, c.features) for c in candidates
    ]
    obj = entry.info.get("object")
    object_info = ObjectInfo.from_json(obj) if isinstance(obj, dict) else None
    return DerivedResult(entry.status, entry, source_id, candidates, object_info, entry.detail)


def _memo_key(
    object_id: ObjectId, sources: Sequence[SourceConfig], scope: str
) -> tuple[object, ...]:
    return (
        scope,
        object_id,
        tuple((config.id, config.type, config.fingerprint) for config in sources),
    )


def _with_candidates(result: DerivedResult, candidates: list[Candidate]) -> DerivedResult:
    return DerivedResult(
        result.status,
        result.entry,
        result.source_id,
        list(candidates),
        result.object_info,
        result.detail,
    )


def _missing(failures: list[DerivedResult], candidates: list[Candidate]) -> DerivedResult:
    for status in _FAILURE_ORDER:
        for failure in failures:
            if failure.status is status:
                # The placeholder entry is kept: it names the file a failed conversion used.
                return DerivedResult(
                    status,
                    failure.entry,
                    failure.source_id,
                    list(candidates),
                    failure.object_info,
                    failure.detail,
                )
    return DerivedResult(EntryStatus.NOT_FOUND, None, None, list(candidates))
