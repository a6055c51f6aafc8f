"""`Cacher`: look up an entry, or compute it once, whoever else is asking.

See the package docstring for the rules this enforces.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from symvault.caching.entries import CacheEntry, EntryStatus, read_trailer, write_trailer
from symvault.caching.keys import CacheKey
from symvault.caching.locks import KeyLocks
from symvault.caching.rules import TOUCH_EVERY, ExpiryRules
from symvault.memo import Memo
from symvault.metrics import Metrics

__all__ = ["CacheVersions", "Cacher", "Clock", "ComputeFn", "Computed"]

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class CacheVersions:
    """The format version written now, and older ones still worth serving."""

    current: int
    fallbacks: tuple[int, ...] = ()


@dataclass(frozen=True)
class Computed:
    """What a computation produced; an `ok` one has written its payload to the given path."""

    status: EntryStatus
    detail: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


ComputeFn = Callable[[Path], Computed]
_Parsed = tuple[EntryStatus, str | None, dict[str, Any]]
_PARSED_ENTRIES = 4096


def _identity(stat: os.stat_result) -> tuple[int, int, int]:
    """What tells one version of a file from another, for the parsed-trailer memo."""
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)


class Cacher:
    """One cache kind's entries: lookups, coalesced computations, background refreshes."""

    def __init__(
        self,
        name: str,
        root: Path,
        versions: CacheVersions,
        rules: ExpiryRules,
        metrics: Metrics,
        background: Executor,
        *,
        raw: bool = False,
        store_negative: bool = True,
        clock: Clock = time.time,
        started_at: float | None = None,
    ) -> None:
        self.name = name
        self.root = root
        self.versions = versions
        self.rules = rules
        self.raw = raw
        self._store_negative = store_negative and not raw
        self._metrics = metrics
        self._background = background
        self._clock = clock
        self._started_at = clock() if started_at is None else started_at
        self._kind_prefix = str(root / name)
        self._tmp = root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        # Names of files being computed: unique in this process by the counter, and
        # among processes (and earlier ones with the same pid) by the random prefix.
        self._tmp_prefix = f"{self._tmp}/{name}-{os.getpid()}-{uuid.uuid4().hex[:12]}-"
        self._tmp_numbers = itertools.count()
        self._locks = KeyLocks(root / "locks" / f"{name}.lock")
        self._inflight: dict[CacheKey, Future[CacheEntry]] = {}
        # Parsed trailers by path, valid while the file's identity is unchanged: warm
        # lookups then cost one stat instead of a read and a JSON parse. Kept from an
        # entry's second read on: entries read once (a crash nobody else has) take no room.
        self._parsed: Memo[Path, tuple[tuple[int, int, int], _Parsed]] = Memo(
            _PARSED_ENTRIES, repeats_only=True
        )
        self._refreshing: set[CacheKey] = set()
        self._lock = threading.Lock()

    # Paths

    def kind_dir(self) -> Path:
        return self.root / self.name

    def path_for(self, key: CacheKey, version: int | None = None) -> Path:
        # Plain string formatting: this runs on every lookup, and pathlib joins are slow.
        if version is None:
            version = self.versions.current
        return Path(f"{self._kind_prefix}/v{version}/{key.relative_path}")

    # Lookups

    def peek(self, key: CacheKey) -> CacheEntry | None:
        """The usable current-version entry, if any (touching it if it is due)."""
        return self._load(key, self.versions.current)

    def get(
        self,
        key: CacheKey,
        compute: ComputeFn,
        refresh_if: Callable[[CacheEntry], bool] | None = None,
        count_hit: bool = True,
    ) -> CacheEntry:
        """The entry for `key`, computing it if there is none (see `find`)."""
        entry = self.find(key, compute, refresh_if, count_hit)
        if entry is not None:
            return entry
        self._metrics.cache_misses.labels(self.name).inc()
        return self._compute_once(key, compute, force=False)

    def find(
        self,
        key: CacheKey,
        compute: ComputeFn,
        refresh_if: Callable[[CacheEntry], bool] | None = None,
        count_hit: bool = True,
    ) -> CacheEntry | None:
        """The entry for `key` if there is one; `compute` only refreshes it.

        An entry for which `refresh_if` is true is returned and recomputed in the
        background; so is an entry found only under an older version. Without
        `count_hit`, finding the entry is not counted as a hit (another process has
        just counted the miss that computed it).
        """
        entry = self._load(key, self.versions.current)
        if entry is not None:
            if count_hit:
                self._metrics.cache_hits.labels(self.name).inc()
            if refresh_if is not None and entry.ok and refresh_if(entry):
                self.refresh_in_background(key, compute, keep_good=True)
            return entry
        for version in self.versions.fallbacks:
            old = self._load(key, version)
            if old is not None and old.ok:
                self._metrics.cache_hits.labels(self.name).inc()
                self.refresh_in_background(key, compute)
                return old
        return None

    def recompute(self, key: CacheKey, compute: ComputeFn) -> CacheEntry:
        """Computes the entry again, even if a usable one exists (shared with concurrent asks)."""
        return self._compute_once(key, compute, force=True)

    def refresh_in_background(
        self, key: CacheKey, compute: ComputeFn, *, keep_good: bool = False
    ) -> None:
        """Recomputes the entry on the background pool, at most once at a time per key.

        With `keep_good`, a recomputation that fails leaves a good entry in place: a
        failed upgrade attempt must not turn a usable entry into a placeholder.
        """
        with self._lock:
            if key in self._refreshing:
                return
            self._refreshing.add(key)

        def run() -> None:
            try:
                self._compute_once(key, compute, force=True, keep_good=keep_good)
            except Exception:
                logger.exception("cache.refresh_failed kind=%s key=%s", self.name, key)
            finally:
                with self._lock:
                    self._refreshing.discard(key)

        try:
            self._background.submit(run)
        except RuntimeError:  # the pool is shut down
            with self._lock:
                self._refreshing.discard(key)

    def _read(self, path: Path) -> tuple[_Parsed, os.stat_result]:
        """The entry's status, detail and info; raises OSError or ValueError."""
        stat = path.stat()
        if self.raw:
            return (EntryStatus.OK, None, {}), stat
        memo = self._parsed.get(path)
        if memo is not None and memo[0] == _identity(stat):
            return memo[1], stat
        status, detail, info, stat = read_trailer(path)
        parsed = (status, detail, info)
        self._parsed.put(path, (_identity(stat), parsed))
        return parsed, stat

    def _load(self, key: CacheKey, version: int) -> CacheEntry | None:
        path = self.path_for(key, version)
        try:
            (status, detail, info), stat = self._read(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except ValueError:
            logger.warning("cache.unreadable_entry path=%s", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        now = self._clock()
        # Good entries stay usable while they exist (cleanup enforces max_unused_for);
        # placeholders stop counting once their time is up.
        if status is not EntryStatus.OK and self.rules.is_expired(
            status, stat.st_mtime, now, self._started_at
        ):
            return None
        if status is EntryStatus.OK and now - stat.st_mtime > TOUCH_EVERY:
            with contextlib.suppress(OSError):
                os.utime(path, (now, now))
        return CacheEntry(
            path=path,
            status=status,
            mtime=stat.st_mtime,
            size=stat.st_size,
            detail=detail,
            info=info,
            version=version,
            outdated=version != self.versions.current,
        )

    # Computing

    def _compute_once(
        self, key: CacheKey, compute: ComputeFn, force: bool, keep_good: bool = False
    ) -> CacheEntry:
        while True:
            with self._lock:
                future = self._inflight.get(key)
                owner = future is None
                if future is None:
                    future = Future()
                    self._inflight[key] = future
            if owner:
                break
            if not force:
                return future.result()
            # A forced computation must see what changed since the one under way started
            # (an upload during a lookup): wait for it, then compute again.
            with contextlib.suppress(Exception):
                future.result()
        try:
            entry = self._compute_locked(key, compute, force, keep_good)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(entry)
            return entry
        finally:
            with self._lock:
                self._inflight.pop(key, None)

    def _compute_locked(
        self, key: CacheKey, compute: ComputeFn, force: bool, keep_good: bool
    ) -> CacheEntry:
        with self._locks.hold(str(key)):
            if not force:
                # Another process may have computed it while this one waited for the lock.
                existing = self._load(key, self.versions.current)
                if existing is not None:
                    return existing
            return self._compute(key, compute, keep_good)

    def _compute(self, key: CacheKey, compute: ComputeFn, keep_good: bool = False) -> CacheEntry:
        tmp = Path(f"{self._tmp_prefix}{next(self._tmp_numbers)}")
        target = self.path_for(key)
        moved = False
        try:
            self._metrics.cache_computations.labels(self.name).inc()
            try:
                computed = compute(tmp)
            except Exception:
                self._metrics.cache_errors.labels(self.name).inc()
                raise
            if computed.status is not EntryStatus.OK:
                self._metrics.cache_errors.labels(self.name).inc()
                existing = self._load(key, self.versions.current) if keep_good else None
                if existing is not None and existing.ok:
                    # Its mtime (touched when the refresh was decided) records the attempt.
                    return existing
                if not self._store_negative:
                    now = self._clock()
                    return CacheEntry(
                        target, computed.status, now, 0, computed.detail, computed.info
                    )
            if self.raw:
                info = dict(computed.info)
            else:
                info = write_trailer(tmp, computed.status, computed.detail, computed.info)
            try:
                size = tmp.stat().st_size
            except FileNotFoundError:
                raise RuntimeError(f"{self.name}: the computation produced no file") from None
            now = self._clock()
            os.utime(tmp, (now, now))
            _move(tmp, target)
            moved = True
        finally:
            if not moved:
                tmp.unlink(missing_ok=True)
        self._metrics.cache_bytes_written.labels(self.name).inc(size)
        return CacheEntry(
            target, computed.status, now, size, computed.detail, info, self.versions.current
        )


def _move(tmp: Path, target: Path) -> None:
    """Renames `tmp` to `target`, making `target`'s directory only if it is missing:
    most entries go into a directory that exists, and each extra call on the path of a
    cold request is a wait for the interpreter lock under load."""
    try:
        tmp.replace(target)
    except FileNotFoundError:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(target)
