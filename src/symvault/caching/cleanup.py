"""Removing what the rules say has expired, and keeping the cache within its budget.

Runs from `symvault cleanup`, and periodically inside servers. It does not
coordinate with lookups: it only ever unlinks files, which readers tolerate
(an open or mapped file stays readable; a vanished one is a miss).

1. Directories of unknown format versions are removed.
2. Every entry is checked against its kind's rules. Entries younger than the
   shortest lifetime are kept without reading them, entries older than the
   longest are removed without reading them; only those in between have their
   trailer read to learn their status.
3. Stale temporary files and unused lock files are removed.
4. If the cache is larger than `max_size`, or the disk has less free space
   than `min_free_space`, least recently used entries are evicted: raw
   (downloaded) kinds first, derived kinds only if that is not enough.
"""

from __future__ import annotations

import contextlib
import fcntl
import heapq
import multiprocessing
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from symvault.caching.cacher import CacheVersions
from symvault.caching.entries import read_trailer
from symvault.caching.rules import ExpiryRules
from symvault.metrics import Metrics

__all__ = [
    "CleanupReport",
    "KindPolicy",
    "KindReport",
    "SpaceBudget",
    "bytes_to_free",
    "record_cleanup",
    "run_cleanup",
    "run_cleanup_in_child",
]

_STALE_TMP = 3600.0
_STALE_LOCK = 86400.0


@dataclass(frozen=True)
class KindPolicy:
    name: str
    versions: CacheVersions
    rules: ExpiryRules
    raw: bool


@dataclass(frozen=True)
class SpaceBudget:
    max_size: int | None = None
    min_free_space: int | None = None


@dataclass
class KindReport:
    entries: int = 0
    bytes: int = 0
    expired: int = 0
    expired_bytes: int = 0
    evicted: int = 0
    evicted_bytes: int = 0


@dataclass
class CleanupReport:
    dry_run: bool
    kinds: dict[str, KindReport] = field(default_factory=dict)
    stale_files: int = 0

    @property
    def removed(self) -> int:
        return sum(report.expired + report.evicted for report in self.kinds.values())

    @property
    def removed_bytes(self) -> int:
        return sum(report.expired_bytes + report.evicted_bytes for report in self.kinds.values())

    def summary(self) -> str:
        lines = []
        for name, report in sorted(self.kinds.items()):
            lines.append(
                f"{name}: {report.entries} entries ({report.bytes} bytes) kept, "
                f"{report.expired} expired ({report.expired_bytes} bytes), "
                f"{report.evicted} evicted for space ({report.evicted_bytes} bytes)"
            )
        verb = "would remove" if self.dry_run else "removed"
        lines.append(f"{verb} {self.removed} entries, {self.removed_bytes} bytes")
        return "\n".join(lines)


@dataclass(order=True)
class _Survivor:
    mtime: float
    size: int = field(compare=False)
    path: Path = field(compare=False)
    kind: str = field(compare=False)


def _files(path: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Files at or below `path` with their status; files that vanish meanwhile are skipped.

    Lookups rename temporary files away and replace entries, other cleanups and
    operators remove files: any file listed may be gone by the time it is looked at.
    """
    try:
        entries = os.scandir(path)
    except FileNotFoundError:
        return
    except NotADirectoryError:
        # A stray file where a directory belongs (say, beside the version directories).
        with contextlib.suppress(FileNotFoundError):
            yield path, path.stat(follow_symlinks=False)
        return
    with entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                yield from _files(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                try:
                    stat = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                yield Path(entry.path), stat


def _remove(path: Path, dry_run: bool) -> None:
    if not dry_run:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _expired(policy: KindPolicy, path: Path, stat: os.stat_result, now: float) -> bool:
    age = now - stat.st_mtime
    rules = policy.rules
    if policy.raw:
        return age > rules.max_unused_for
    if age <= rules.shortest:
        return False
    if age > rules.longest:
        return True
    try:
        status, _detail, _info, _stat = read_trailer(path)
    except FileNotFoundError:
        return False
    except ValueError:
        return True  # not an entry: a leftover or a damaged file
    return rules.is_expired(status, stat.st_mtime, now, None)


def run_cleanup(
    root: Path,
    kinds: Sequence[KindPolicy],
    budget: SpaceBudget,
    now: float,
    metrics: Metrics | None = None,
    *,
    dry_run: bool = False,
) -> CleanupReport:
    """Cleans the cache rooted at `root`; with `dry_run` only reports what it would do."""
    report = CleanupReport(dry_run=dry_run)
    survivors: dict[str, list[_Survivor]] = {}
    for policy in kinds:
        kind_report = report.kinds.setdefault(policy.name, KindReport())
        kept = survivors.setdefault(policy.name, [])
        known = {f"v{policy.versions.current}"} | {f"v{v}" for v in policy.versions.fallbacks}
        kind_dir = root / policy.name
        if not kind_dir.is_dir():
            continue
        for version_dir in sorted(kind_dir.iterdir()):
            unknown_version = version_dir.name not in known
            for path, stat in _files(version_dir):
                size = stat.st_size
                if unknown_version or _expired(policy, path, stat, now):
                    _remove(path, dry_run)
                    kind_report.expired += 1
                    kind_report.expired_bytes += size
                else:
                    kept.append(_Survivor(stat.st_mtime, size, path, policy.name))
                    kind_report.entries += 1
                    kind_report.bytes += size
            if unknown_version and not dry_run:
                shutil.rmtree(version_dir, ignore_errors=True)
    report.stale_files = _remove_stale(root, now, dry_run)
    _enforce_budget(root, kinds, survivors, budget, report, dry_run)
    if metrics is not None:
        record_cleanup(metrics, report)
    return report


def record_cleanup(metrics: Metrics, report: CleanupReport) -> None:
    """Counts a cleanup's evictions and sets the kinds' sizes."""
    for name, kind_report in report.kinds.items():
        metrics.cache_evictions.labels(name).inc(kind_report.expired + kind_report.evicted)
        metrics.cache_bytes.labels(name).set(kind_report.bytes)


def run_cleanup_in_child(
    root: Path,
    kinds: Sequence[KindPolicy],
    budget: SpaceBudget,
    now: float,
    metrics: Metrics | None,
    lock_path: Path,
) -> CleanupReport | None:
    """`run_cleanup` in a child process, for servers; None if another process is at it.

    Walking a large cache is Python work that would hold the interpreter lock
    requests wait for, and leave the server process holding the memory it took.
    Every server process runs this job, one at a time (`lock_path`).
    """
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("ab") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as child:
            report = child.submit(run_cleanup, root, kinds, budget, now).result()
    if metrics is not None:
        record_cleanup(metrics, report)
    return report


def _remove_stale(root: Path, now: float, dry_run: bool) -> int:
    removed = 0
    for path, stat in _files(root / "tmp"):
        if now - stat.st_mtime > _STALE_TMP:
            _remove(path, dry_run)
            removed += 1
    locks = root / "locks"
    for path, stat in _files(locks):
        # Files directly in locks/ are the kinds' lock files, always in use; below it
        # are the per-entry lock files that earlier versions made.
        if path.parent == locks or now - stat.st_mtime <= _STALE_LOCK:
            continue
        # Opened for reading: a lock file removed meanwhile must not be created again.
        with contextlib.suppress(OSError), path.open("rb") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # in use right now
            _remove(path, dry_run)
            removed += 1
    return removed


def bytes_to_free(budget: SpaceBudget, total: int, free: int) -> int:
    """How much eviction must remove from a cache of `total` bytes on a disk with `free`."""
    excess = 0
    if budget.max_size is not None:
        excess = max(excess, total - budget.max_size)
    if budget.min_free_space is not None:
        excess = max(excess, budget.min_free_space - free)
    return excess


def _enforce_budget(
    root: Path,
    kinds: Sequence[KindPolicy],
    survivors: dict[str, list[_Survivor]],
    budget: SpaceBudget,
    report: CleanupReport,
    dry_run: bool,
) -> None:
    total = sum(kind.bytes for kind in report.kinds.values())
    free = shutil.disk_usage(root).free if root.exists() else 0
    if dry_run:
        free += report.removed_bytes  # what expiry would have freed by now
    excess = bytes_to_free(budget, total, free)
    if excess <= 0:
        return
    # Downloaded (raw) files go first; derived caches only if that is not enough.
    for group in (
        [policy.name for policy in kinds if policy.raw],
        [policy.name for policy in kinds if not policy.raw],
    ):
        candidates = list(heapq.merge(*(sorted(survivors[name]) for name in group)))
        for survivor in candidates:
            if excess <= 0:
                return
            _remove(survivor.path, dry_run)
            kind_report = report.kinds[survivor.kind]
            kind_report.evicted += 1
            kind_report.evicted_bytes += survivor.size
            kind_report.entries -= 1
            kind_report.bytes -= survivor.size
            excess -= survivor.size
