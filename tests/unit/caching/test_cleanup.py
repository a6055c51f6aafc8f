"""Cleanup: expiry per status, unknown versions, dry runs, the space budget, stale files."""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from symvault.caching.cacher import Cacher, CacheVersions
from symvault.caching.cleanup import (
    CleanupReport,
    KindPolicy,
    KindReport,
    SpaceBudget,
    bytes_to_free,
    run_cleanup,
    run_cleanup_in_child,
)
from symvault.caching.entries import EntryStatus
from symvault.caching.keys import GLOBAL_SCOPE, CacheKey
from symvault.caching.rules import ExpiryRules
from symvault.metrics import Metrics
from tests.support.clock import ManualClock
from tests.unit.caching.conftest import DAY, HOUR, MINUTE, RULES, MakeCacher, Producer, metric

V1 = CacheVersions(current=1)
POLICIES = [
    KindPolicy("objects", V1, RULES, raw=True),
    KindPolicy("symcaches", V1, RULES, raw=False),
    KindPolicy("cficaches", V1, RULES, raw=False),
]


def key(name: str, scope: str = GLOBAL_SCOPE) -> CacheKey:
    return CacheKey(scope, ("source", name))


def files_under(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if path.is_file()}


def entry_files(root: Path) -> set[str]:
    """Entries as `kind/name`, leaving out temporary and lock files."""
    return {
        f"{path.relative_to(root).parts[0]}/{path.name}"
        for path in files_under(root)
        if path.relative_to(root).parts[0] not in ("tmp", "locks")
    }


def write(
    cacher: Cacher, clock: ManualClock, name: str, age: float, status: EntryStatus, size: int = 100
) -> Path:
    """An entry of `status` last written or used `age` seconds before the clock's time."""
    now = clock()
    clock.now = now - age
    try:
        entry = cacher.recompute(key(name), Producer(status, payload=b"x" * size))
    finally:
        clock.now = now
    return entry.path


class TestExpiry:
    def test_each_status_lives_its_own_lifetime(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        symcaches = make_cacher("symcaches")
        ok, miss, noperm = EntryStatus.OK, EntryStatus.NOT_FOUND, EntryStatus.NO_PERMISSION
        malformed, error = EntryStatus.MALFORMED, EntryStatus.ERROR
        write(objects, clock, "raw-young", 6 * DAY, ok)
        write(objects, clock, "raw-old", 8 * DAY, ok)
        write(symcaches, clock, "ok-young", 6 * DAY, ok)
        write(symcaches, clock, "ok-old", 8 * DAY, ok)
        write(symcaches, clock, "miss-young", 59 * MINUTE, miss)
        write(symcaches, clock, "miss-old", 61 * MINUTE, miss)
        write(symcaches, clock, "noperm-old", 61 * MINUTE, noperm)
        write(symcaches, clock, "malformed-young", 23 * HOUR, malformed)
        write(symcaches, clock, "malformed-old", 25 * HOUR, malformed)
        write(symcaches, clock, "error-young", 4 * MINUTE, error)
        write(symcaches, clock, "error-old", 6 * MINUTE, error)

        report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert entry_files(cache_root) == {
            "objects/raw-young",
            "symcaches/ok-young",
            "symcaches/miss-young",
            "symcaches/malformed-young",
            "symcaches/error-young",
        }
        assert (report.kinds["objects"].entries, report.kinds["objects"].expired) == (1, 1)
        assert (report.kinds["symcaches"].entries, report.kinds["symcaches"].expired) == (4, 5)
        assert report.kinds["objects"].expired_bytes == 100
        assert report.removed == 6

    def test_raw_entries_are_never_read(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        # A downloaded file that happens to end like a placeholder is still a file.
        path = write(objects, clock, "looks-like-a-miss", 2 * HOUR, EntryStatus.OK)
        miss = write(make_cacher("symcaches"), clock, "miss", 2 * HOUR, EntryStatus.NOT_FOUND)
        path.write_bytes(miss.read_bytes())
        os.utime(path, (clock() - 2 * HOUR, clock() - 2 * HOUR))
        run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert path.exists()

    def test_damaged_entries_are_removed(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        symcaches = make_cacher("symcaches")
        path = write(symcaches, clock, "damaged", 2 * HOUR, EntryStatus.OK)
        path.write_bytes(b"no trailer here")
        os.utime(path, (clock() - 2 * HOUR, clock() - 2 * HOUR))
        report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert not path.exists()
        assert report.kinds["symcaches"].expired == 1

    def test_unknown_version_directories_are_removed(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        current = make_cacher("symcaches")
        retired = make_cacher("symcaches", versions=CacheVersions(current=7))
        served = make_cacher("symcaches", versions=CacheVersions(current=3))
        write(current, clock, "kept", MINUTE, EntryStatus.OK)
        write(retired, clock, "young-but-unknown", MINUTE, EntryStatus.OK, size=10)
        write(retired, clock, "also-unknown", MINUTE, EntryStatus.NOT_FOUND)
        write(served, clock, "fallback-version", MINUTE, EntryStatus.OK)
        policies = [KindPolicy("symcaches", CacheVersions(current=1, fallbacks=(3,)), RULES, False)]

        report = run_cleanup(cache_root, policies, SpaceBudget(), clock())
        versions = sorted(path.name for path in (cache_root / "symcaches").iterdir())
        assert versions == ["v1", "v3"]
        assert report.kinds["symcaches"].expired == 2
        assert report.kinds["symcaches"].entries == 2

    def test_stray_files_in_a_kind_directory(self, cache_root: Path, clock: ManualClock) -> None:
        kind = cache_root / "symcaches"
        kind.mkdir(parents=True)
        (kind / "README").write_text("not a version directory")
        report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert not (kind / "README").exists()
        assert report.kinds["symcaches"].expired == 1

    def test_missing_cache_directory(self, tmp_path: Path, clock: ManualClock) -> None:
        report = run_cleanup(tmp_path / "nothing", POLICIES, SpaceBudget(max_size=1), clock())
        assert report.removed == 0

    def test_metrics(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path, metrics: Metrics
    ) -> None:
        symcaches = make_cacher("symcaches")
        write(symcaches, clock, "old", 8 * DAY, EntryStatus.OK)
        young = write(symcaches, clock, "young", MINUTE, EntryStatus.OK)
        run_cleanup(cache_root, POLICIES, SpaceBudget(), clock(), metrics)
        assert metric(metrics, "cache_evictions", "symcaches") == 1
        gauge = metrics.registry.get_sample_value("symvault_cache_bytes", {"kind": "symcaches"})
        assert gauge == young.stat().st_size


class TestInAChildProcess:
    def test_removes_the_same_and_counts_in_this_process(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        symcaches = make_cacher("symcaches")
        write(symcaches, clock, "ok-young", 6 * DAY, EntryStatus.OK)
        write(symcaches, clock, "ok-old", 8 * DAY, EntryStatus.OK)
        write(symcaches, clock, "miss-old", 61 * MINUTE, EntryStatus.NOT_FOUND)
        metrics = Metrics()
        lock = cache_root / "locks" / "cleanup.lock"
        report = run_cleanup_in_child(cache_root, POLICIES, SpaceBudget(), clock(), metrics, lock)
        assert report is not None
        assert entry_files(cache_root) == {"symcaches/ok-young"}
        assert report.kinds["symcaches"].expired == 2
        assert metric(metrics, "cache_evictions", kind="symcaches") == 2

    def test_one_process_at_a_time(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        old = write(make_cacher("symcaches"), clock, "ok-old", 8 * DAY, EntryStatus.OK)
        lock = cache_root / "locks" / "cleanup.lock"
        lock.parent.mkdir(parents=True, exist_ok=True)
        with lock.open("ab") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            assert (
                run_cleanup_in_child(cache_root, POLICIES, SpaceBudget(), clock(), None, lock)
                is None
            )
        assert old.exists()


class TestDryRun:
    def test_removes_nothing_and_reports_the_same(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        symcaches = make_cacher("symcaches")
        retired = make_cacher("cficaches", versions=CacheVersions(current=9))
        write(objects, clock, "raw-old", 8 * DAY, EntryStatus.OK, size=1000)
        for index in range(3):
            write(objects, clock, f"raw-{index}", index * HOUR, EntryStatus.OK, size=1000)
        write(symcaches, clock, "miss-old", 2 * HOUR, EntryStatus.NOT_FOUND)
        write(symcaches, clock, "ok", HOUR, EntryStatus.OK, size=500)
        write(retired, clock, "unknown", HOUR, EntryStatus.OK)
        stale = cache_root / "tmp" / "symcaches-crashed"
        stale.write_bytes(b"left by a crash")
        os.utime(stale, (clock() - 2 * HOUR, clock() - 2 * HOUR))
        budget = SpaceBudget(max_size=2500)
        before = {path: path.stat() for path in files_under(cache_root)}

        dry = run_cleanup(cache_root, POLICIES, budget, clock(), dry_run=True)
        after = {path: path.stat() for path in files_under(cache_root)}
        assert after.keys() == before.keys()
        assert all(after[path].st_mtime_ns == before[path].st_mtime_ns for path in before)
        assert (cache_root / "cficaches" / "v9").is_dir()

        real = run_cleanup(cache_root, POLICIES, budget, clock())
        assert dry.kinds == real.kinds
        assert dry.stale_files == real.stale_files == 1
        assert dry.removed == real.removed == 5
        # 3 x 1000 bytes of downloads and one derived entry against 2500: two downloads go.
        assert real.kinds["objects"].evicted == 2
        assert real.kinds["symcaches"].evicted == 0
        assert "would remove 5 entries" in dry.summary()
        assert "removed 5 entries" in real.summary()
        assert not stale.exists()


class TestSpaceBudget:
    def test_least_recently_used_downloads_go_first(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        symcaches = make_cacher("symcaches")
        # Derived caches older than every download: still kept while downloads remain.
        write(symcaches, clock, "derived-oldest", 5 * DAY, EntryStatus.OK, size=1000)
        write(symcaches, clock, "derived-newer", 4 * DAY, EntryStatus.OK, size=1000)
        write(objects, clock, "raw-1", 3 * DAY, EntryStatus.OK, size=1000)
        write(objects, clock, "raw-2", 2 * DAY, EntryStatus.OK, size=1000)
        write(objects, clock, "raw-3", 1 * DAY, EntryStatus.OK, size=1000)
        total = sum(path.stat().st_size for path in files_under(cache_root / "symcaches"))
        total += 3000

        report = run_cleanup(cache_root, POLICIES, SpaceBudget(max_size=total - 1500), clock())
        assert entry_files(cache_root) == {
            "objects/raw-3",
            "symcaches/derived-oldest",
            "symcaches/derived-newer",
        }
        assert report.kinds["objects"].evicted == 2
        assert report.kinds["objects"].evicted_bytes == 2000
        assert report.kinds["symcaches"].evicted == 0

        # Only when every download is gone do derived caches go, oldest first.
        report = run_cleanup(cache_root, POLICIES, SpaceBudget(max_size=1500), clock())
        assert entry_files(cache_root) == {"symcaches/derived-newer"}
        assert report.kinds["objects"].evicted == 1
        assert report.kinds["symcaches"].evicted == 1
        assert report.kinds["symcaches"].entries == 1

    def test_use_protects_an_entry(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        write(objects, clock, "raw-1", 3 * DAY, EntryStatus.OK, size=1000)
        write(objects, clock, "raw-2", 2 * DAY, EntryStatus.OK, size=1000)
        objects.get(key("raw-1"), Producer())  # used now: the least recently used is raw-2
        run_cleanup(cache_root, POLICIES, SpaceBudget(max_size=1000), clock())
        assert entry_files(cache_root) == {"objects/raw-1"}

    def test_min_free_space_evicts(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        objects = make_cacher("objects", raw=True)
        symcaches = make_cacher("symcaches")
        write(objects, clock, "raw", DAY, EntryStatus.OK, size=1000)
        write(symcaches, clock, "derived", DAY, EntryStatus.OK, size=1000)
        free = shutil.disk_usage(cache_root).free
        # Asking for far less than is free evicts nothing...
        run_cleanup(cache_root, POLICIES, SpaceBudget(min_free_space=free // 2), clock())
        assert len(entry_files(cache_root)) == 2
        # ...asking for more than the cache could ever free evicts everything.
        impossible = free + 10 * 1024**3
        report = run_cleanup(cache_root, POLICIES, SpaceBudget(min_free_space=impossible), clock())
        assert entry_files(cache_root) == set()
        assert report.kinds["objects"].evicted == 1
        assert report.kinds["symcaches"].evicted == 1

    @pytest.mark.parametrize(
        ("budget", "total", "free", "expected"),
        [
            (SpaceBudget(), 10_000, 0, 0),
            (SpaceBudget(max_size=8_000), 10_000, 10**9, 2_000),
            (SpaceBudget(max_size=12_000), 10_000, 10**9, 0),
            (SpaceBudget(min_free_space=5_000), 10_000, 3_000, 2_000),
            (SpaceBudget(min_free_space=5_000), 10_000, 7_000, 0),
            # Both limits: the one asking for more wins.
            (SpaceBudget(max_size=9_000, min_free_space=5_000), 10_000, 3_000, 2_000),
            (SpaceBudget(max_size=6_000, min_free_space=5_000), 10_000, 3_000, 4_000),
        ],
    )
    def test_bytes_to_free(self, budget: SpaceBudget, total: int, free: int, expected: int) -> None:
        assert bytes_to_free(budget, total, free) == expected

    def test_dry_run_counts_expired_bytes_as_free(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        """A dry run frees nothing, so it must count what expiry would free itself."""
        objects = make_cacher("objects", raw=True)
        write(objects, clock, "expired", 8 * DAY, EntryStatus.OK, size=64 * 1024**2)
        write(objects, clock, "kept", DAY, EntryStatus.OK, size=1000)
        free = shutil.disk_usage(cache_root).free
        # Satisfied once the expired 64 MiB are gone, with room to spare for noise.
        budget = SpaceBudget(min_free_space=free + 32 * 1024**2)
        dry = run_cleanup(cache_root, POLICIES, budget, clock(), dry_run=True)
        assert dry.kinds["objects"].expired == 1
        assert dry.kinds["objects"].evicted == 0


class TestStaleFiles:
    def test_old_temporary_files_go(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        make_cacher()
        old = cache_root / "tmp" / "symcaches-1-old"
        young = cache_root / "tmp" / "symcaches-1-young"
        for path, age in ((old, 2 * HOUR), (young, 10 * MINUTE)):
            path.write_bytes(b"partial")
            os.utime(path, (clock() - age, clock() - age))
        report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert not old.exists()
        assert young.exists()
        assert report.stale_files == 1

    def test_unused_old_entry_lock_files_go_but_held_ones_and_kind_locks_stay(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path
    ) -> None:
        make_cacher()
        locks = cache_root / "locks" / "symcaches" / "ab"
        locks.mkdir(parents=True)
        old, held, young = locks / "old.lock", locks / "held.lock", locks / "young.lock"
        kind_lock = cache_root / "locks" / "symcaches.lock"
        for path, age in ((old, 2 * DAY), (held, 2 * DAY), (young, HOUR), (kind_lock, 2 * DAY)):
            path.touch()
            os.utime(path, (clock() - age, clock() - age))
        with held.open("ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        assert not old.exists()
        assert held.exists()
        assert young.exists()
        assert kind_lock.exists(), "a kind's lock file, in use whenever it computes, was removed"
        assert report.stale_files == 1


class TestConcurrency:
    def test_files_vanishing_during_cleanup(self, cache_root: Path, clock: ManualClock) -> None:
        """Cleanup tolerates another actor (another cleanup, an operator) removing files."""
        directory = cache_root / "objects" / "v1" / "global" / "source"
        directory.mkdir(parents=True)
        paths = [directory / f"file-{index}" for index in range(5000)]
        for path in paths:
            path.write_bytes(b"x")
        old = clock() - 8 * DAY
        for path in paths:
            os.utime(path, (old, old))

        def remove_all() -> None:
            for path in reversed(paths):
                path.unlink(missing_ok=True)

        remover = threading.Thread(target=remove_all)
        remover.start()
        try:
            report = run_cleanup(cache_root, POLICIES, SpaceBudget(), clock())
        finally:
            remover.join()
        assert report.kinds["objects"].entries == 0
        assert list(directory.iterdir()) == []

    def test_lookups_never_fail_while_cleanup_runs(
        self, cache_root: Path, metrics: Metrics
    ) -> None:
        """Entries expire and vanish under running lookups; every lookup still succeeds."""
        # Real time, and lifetimes of 10 ms: entries expire while they are being used.
        fleeting = ExpiryRules(0.01, 0.01, 0.01, 0.01)
        policies = [
            KindPolicy("objects", V1, fleeting, raw=True),
            KindPolicy("symcaches", V1, fleeting, raw=False),
        ]
        with ThreadPoolExecutor(1) as background:
            cacher = Cacher("symcaches", cache_root, V1, fleeting, metrics, background)
            objects = Cacher("objects", cache_root, V1, fleeting, metrics, background, raw=True)
            compute = Producer(payload=b"p" * 4096)
            stop = threading.Event()
            failures: list[BaseException] = []
            cleanups = 0

            def look_up(worker: int) -> None:
                index = 0
                while not stop.is_set():
                    index += 1
                    try:
                        for kind in (cacher, objects):
                            entry = kind.get(key(f"module-{(worker + index) % 7}"), compute)
                            assert entry.ok, entry
                    except BaseException as exc:  # noqa: BLE001 (reported by the test)
                        failures.append(exc)
                        return

            workers = [threading.Thread(target=look_up, args=(n,)) for n in range(4)]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 1.0
            try:
                while time.monotonic() < deadline and not failures:
                    run_cleanup(cache_root, policies, SpaceBudget(max_size=8192), time.time())
                    cleanups += 1
            finally:
                stop.set()
                for worker in workers:
                    worker.join()
        assert failures == []
        assert cleanups > 1
        assert compute.calls > 14, "cleanup never removed an entry: the test proves nothing"


def test_summary_names_every_kind_and_the_totals() -> None:
    report = CleanupReport(dry_run=True)
    report.kinds["objects"] = KindReport(entries=2, bytes=20, expired=1, expired_bytes=10)
    report.kinds["symcaches"] = KindReport(entries=1, bytes=5, evicted=3, evicted_bytes=30)
    assert report.summary().splitlines() == [
        "objects: 2 entries (20 bytes) kept, 1 expired (10 bytes), 0 evicted for space (0 bytes)",
        "symcaches: 1 entries (5 bytes) kept, 0 expired (0 bytes), 3 evicted for space (30 bytes)",
        "would remove 4 entries, 40 bytes",
    ]
