"""The cache rules and their enforcement, driven by controlled time.

Rules (seed 003): 1 downloaded files live until unused for `max_unused_for`;
2 derived caches likewise; 3 caches from fallback files get an upgrade attempt
at most hourly; 4 misses are remembered for `retry_misses_after`; 5 failed
conversions for `retry_malformed_after`, but not past a restart. Enforcement:
last use and last upgrade attempt in the mtime (touched at most hourly),
placeholders whose mtime is the time of the attempt.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from symvault.caching.cacher import CacheVersions, Computed
from symvault.caching.cleanup import KindPolicy, SpaceBudget, run_cleanup
from symvault.caching.entries import CacheEntry, EntryStatus, read_trailer
from symvault.caching.keys import GLOBAL_SCOPE, CacheKey
from symvault.caching.rules import TOUCH_EVERY
from symvault.metrics import Metrics
from tests.support.clock import ManualClock
from tests.unit.caching.conftest import (
    DAY,
    HOUR,
    MINUTE,
    RULES,
    MakeCacher,
    Producer,
    drain,
    metric,
)

KEY = CacheKey(GLOBAL_SCOPE, ("source-1", "module-1"))


def mtime_of(path: Path) -> float:
    return path.stat().st_mtime


def is_fallback_due(clock: ManualClock) -> Callable[[CacheEntry], bool]:
    """Rule 3 as derived caches state it: a fallback entry, last attempted over an hour ago."""

    def due(entry: CacheEntry) -> bool:
        return bool(entry.info.get("fallback")) and clock() - entry.mtime > TOUCH_EVERY

    return due


class TestGoodEntries:
    """Rules 1 and 2, enforcement point 1."""

    def test_computed_once_then_served(self, make_cacher: MakeCacher, metrics: Metrics) -> None:
        cacher = make_cacher()
        compute = Producer(payload=b"symcache")
        first = cacher.get(KEY, compute)
        second = cacher.get(KEY, compute)
        assert compute.calls == 1
        assert first.ok
        assert second.ok
        assert second.path == first.path == cacher.path_for(KEY)
        with second.path.open("rb") as handle:
            assert handle.read(second.payload_size) == b"symcache"
        assert metric(metrics, "cache_misses", "symcaches") == 1
        assert metric(metrics, "cache_hits", "symcaches") == 1
        assert metric(metrics, "cache_computations", "symcaches") == 1

    def test_use_is_recorded_in_mtime_at_most_hourly(
        self, make_cacher: MakeCacher, clock: ManualClock
    ) -> None:
        cacher = make_cacher()
        compute = Producer()
        written_at = clock()
        path = cacher.get(KEY, compute).path
        assert mtime_of(path) == written_at

        clock.advance(59 * MINUTE)
        assert cacher.get(KEY, compute).mtime == written_at
        assert mtime_of(path) == written_at, "touched again within the hour"

        used_at = clock.advance(2 * MINUTE)
        entry = cacher.get(KEY, compute)
        assert entry.mtime == written_at, "the entry reports its mtime as found"
        assert mtime_of(path) == used_at
        assert compute.calls == 1

    @pytest.mark.parametrize(("name", "raw"), [("objects", True), ("symcaches", False)])
    def test_kept_until_unused_for_max_unused_for(
        self, make_cacher: MakeCacher, clock: ManualClock, cache_root: Path, name: str, raw: bool
    ) -> None:
        cacher = make_cacher(name, raw=raw)
        policy = [KindPolicy(name, cacher.versions, RULES, raw)]
        compute = Producer()
        created = clock()
        path = cacher.get(KEY, compute).path

        # Used after 6 days: the week starts again from then.
        used = clock.advance(6 * DAY)
        cacher.get(KEY, compute)
        assert mtime_of(path) == used

        report = run_cleanup(cache_root, policy, SpaceBudget(), created + 7 * DAY + MINUTE)
        assert path.exists(), "removed a week after creation although used since"
        assert report.kinds[name].expired == 0
        report = run_cleanup(cache_root, policy, SpaceBudget(), used + 7 * DAY - MINUTE)
        assert path.exists()
        report = run_cleanup(cache_root, policy, SpaceBudget(), used + 7 * DAY + MINUTE)
        assert not path.exists()
        assert report.kinds[name].expired == 1
        assert compute.calls == 1

    def test_raw_entries_hold_the_file_as_computed(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher("objects", raw=True)
        entry = cacher.get(KEY, Producer(payload=b"\x7fELF..."))
        assert entry.path.read_bytes() == b"\x7fELF..."

    def test_raw_failures_are_not_stored(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher("objects", raw=True)
        compute = Producer(EntryStatus.NOT_FOUND, detail="HTTP 404")
        entry = cacher.get(KEY, compute)
        assert entry.status is EntryStatus.NOT_FOUND
        assert entry.detail == "HTTP 404"
        assert not cacher.path_for(KEY).exists()
        cacher.get(KEY, compute)
        assert compute.calls == 2


class TestUpgradeAttempts:
    """Rule 3 and enforcement point 5: the last attempt is the mtime."""

    def test_fallback_entry_refreshed_at_most_once_per_hour(
        self, make_cacher: MakeCacher, clock: ManualClock, background: ThreadPoolExecutor
    ) -> None:
        cacher = make_cacher()
        compute = Producer(info={"fallback": True})
        due = is_fallback_due(clock)
        cacher.get(KEY, compute, refresh_if=due)

        clock.advance(59 * MINUTE)
        cacher.get(KEY, compute, refresh_if=due)
        drain(background)
        assert compute.calls == 1, "an upgrade attempt within the hour"

        attempted = clock.advance(2 * MINUTE)
        entry = cacher.get(KEY, compute, refresh_if=due)
        assert entry.ok, "the fallback entry is served while the upgrade runs"
        drain(background)
        assert compute.calls == 2
        assert mtime_of(cacher.path_for(KEY)) == attempted

        clock.advance(30 * MINUTE)
        cacher.get(KEY, compute, refresh_if=due)
        drain(background)
        assert compute.calls == 2, "a second attempt 30 minutes after the first"

        clock.advance(31 * MINUTE)
        cacher.get(KEY, compute, refresh_if=due)
        drain(background)
        assert compute.calls == 3

    def test_successful_upgrade_replaces_the_entry(
        self, make_cacher: MakeCacher, clock: ManualClock, background: ThreadPoolExecutor
    ) -> None:
        cacher = make_cacher()
        due = is_fallback_due(clock)
        cacher.get(KEY, Producer(payload=b"symtab only", info={"fallback": True}), refresh_if=due)
        clock.advance(2 * HOUR)
        better = Producer(payload=b"debug info", info={"fallback": False})
        served = cacher.get(KEY, better, refresh_if=due)
        assert served.info["fallback"] is True
        drain(background)

        upgraded = cacher.get(KEY, better, refresh_if=due)
        assert upgraded.info["fallback"] is False
        with upgraded.path.open("rb") as handle:
            assert handle.read(upgraded.payload_size) == b"debug info"
        clock.advance(5 * HOUR)
        cacher.get(KEY, better, refresh_if=due)
        drain(background)
        assert better.calls == 1, "a preferred entry is not refreshed"

    @pytest.mark.parametrize(
        "status", [EntryStatus.ERROR, EntryStatus.TIMEOUT, EntryStatus.NOT_FOUND]
    )
    def test_failed_upgrade_attempt_keeps_the_entry(
        self,
        make_cacher: MakeCacher,
        clock: ManualClock,
        background: ThreadPoolExecutor,
        status: EntryStatus,
    ) -> None:
        cacher = make_cacher()
        due = is_fallback_due(clock)
        cacher.get(KEY, Producer(payload=b"symtab only", info={"fallback": True}), refresh_if=due)
        attempted = clock.advance(2 * HOUR)
        failing = Producer(status, detail="the symbol server is down")
        cacher.get(KEY, failing, refresh_if=due)
        drain(background)
        assert failing.calls == 1

        entry = cacher.get(KEY, failing, refresh_if=due)
        assert entry.ok, "an upgrade attempt that failed replaced a good entry"
        assert entry.info["fallback"] is True
        assert mtime_of(entry.path) == attempted, "the failed attempt is not recorded"
        clock.advance(30 * MINUTE)
        cacher.get(KEY, failing, refresh_if=due)
        drain(background)
        assert failing.calls == 1, "the next attempt came before the hour was up"

    def test_upgrade_that_raises_keeps_the_entry(
        self, make_cacher: MakeCacher, clock: ManualClock, background: ThreadPoolExecutor
    ) -> None:
        cacher = make_cacher()
        due = is_fallback_due(clock)
        cacher.get(KEY, Producer(info={"fallback": True}), refresh_if=due)
        clock.advance(2 * HOUR)
        calls = []

        def broken(target: Path) -> Computed:
            calls.append(target)
            raise RuntimeError("converter bug")

        cacher.get(KEY, broken, refresh_if=due)
        drain(background)
        assert len(calls) == 1
        assert cacher.get(KEY, broken, refresh_if=due).ok


class TestMisses:
    """Rule 4 and enforcement point 2: the placeholder's mtime is the attempt."""

    @pytest.mark.parametrize("status", [EntryStatus.NOT_FOUND, EntryStatus.NO_PERMISSION])
    def test_miss_remembered_for_retry_misses_after(
        self, make_cacher: MakeCacher, clock: ManualClock, status: EntryStatus
    ) -> None:
        cacher = make_cacher()
        compute = Producer(status, detail="nowhere")
        attempted = clock()
        entry = cacher.get(KEY, compute)
        assert entry.status is status

        placeholder = cacher.path_for(KEY)
        found, detail, _info, stat = read_trailer(placeholder)
        assert (found, detail) == (status, "nowhere")
        assert stat.st_mtime == attempted

        clock.advance(59 * MINUTE)
        assert cacher.get(KEY, compute).status is status
        assert compute.calls == 1
        assert mtime_of(placeholder) == attempted, "looking at a placeholder renewed it"

        retried = clock.advance(2 * MINUTE)
        cacher.get(KEY, compute)
        assert compute.calls == 2
        assert mtime_of(placeholder) == retried

    @pytest.mark.parametrize("status", [EntryStatus.ERROR, EntryStatus.TIMEOUT])
    def test_failed_fetch_retried_after_retry_errors_after(
        self, make_cacher: MakeCacher, clock: ManualClock, status: EntryStatus
    ) -> None:
        cacher = make_cacher()
        compute = Producer(status)
        cacher.get(KEY, compute)
        clock.advance(4 * MINUTE)
        cacher.get(KEY, compute)
        assert compute.calls == 1
        clock.advance(2 * MINUTE)
        cacher.get(KEY, compute)
        assert compute.calls == 2

    def test_miss_replaced_by_a_find(self, make_cacher: MakeCacher, clock: ManualClock) -> None:
        cacher = make_cacher()
        cacher.get(KEY, Producer(EntryStatus.NOT_FOUND))
        clock.advance(2 * HOUR)
        entry = cacher.get(KEY, Producer(payload=b"found"))
        assert entry.ok


class TestFailedConversions:
    """Rule 5 and enforcement point 3."""

    @pytest.mark.parametrize("status", [EntryStatus.MALFORMED, EntryStatus.UNSUPPORTED])
    def test_remembered_for_retry_malformed_after(
        self, make_cacher: MakeCacher, clock: ManualClock, status: EntryStatus
    ) -> None:
        cacher = make_cacher()
        compute = Producer(status, detail="bad DWARF")
        attempted = clock()
        assert cacher.get(KEY, compute).status is status
        assert mtime_of(cacher.path_for(KEY)) == attempted
        clock.advance(23 * HOUR)
        assert cacher.get(KEY, compute).detail == "bad DWARF"
        assert compute.calls == 1
        clock.advance(2 * HOUR)
        cacher.get(KEY, compute)
        assert compute.calls == 2

    def test_ignored_after_a_restart(self, make_cacher: MakeCacher, clock: ManualClock) -> None:
        started = clock()
        before_restart = make_cacher(started_at=started)
        compute = Producer(EntryStatus.MALFORMED)
        clock.advance(10)
        before_restart.get(KEY, compute)

        clock.advance(MINUTE)
        same_process = make_cacher(started_at=started)
        same_process.get(KEY, compute)
        assert compute.calls == 1, "the same process retried a failed conversion"

        restarted = make_cacher(started_at=clock.advance(1))
        restarted.get(KEY, compute)
        assert compute.calls == 2, "a restart did not retry the failed conversion"
        restarted.get(KEY, compute)
        assert compute.calls == 2, "the placeholder written after the restart was ignored"

    def test_misses_survive_a_restart(self, make_cacher: MakeCacher, clock: ManualClock) -> None:
        compute = Producer(EntryStatus.NOT_FOUND)
        make_cacher(started_at=clock()).get(KEY, compute)
        clock.advance(MINUTE)
        make_cacher(started_at=clock()).get(KEY, compute)
        assert compute.calls == 1


class TestWrites:
    def test_no_partial_entry_is_ever_visible(self, make_cacher: MakeCacher) -> None:
        writer = make_cacher()
        # Another process: its own Cacher on the same directory.
        reader = make_cacher()
        half_written = threading.Event()
        finish = threading.Event()

        def slow(target: Path) -> Computed:
            with target.open("wb") as out:
                out.write(b"first half ")
                out.flush()
                half_written.set()
                assert finish.wait(10)
                out.write(b"second half")
            return Computed(EntryStatus.OK)

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(writer.get, KEY, slow)
            assert half_written.wait(10)
            assert not writer.path_for(KEY).exists()
            assert reader.peek(KEY) is None
            assert len(list((writer.root / "tmp").iterdir())) == 1
            finish.set()
            entry = pending.result(timeout=10)
        with entry.path.open("rb") as handle:
            assert handle.read(entry.payload_size) == b"first half second half"
        assert list((writer.root / "tmp").iterdir()) == []

    def test_crashed_computation_leaves_no_entry_and_no_temp_file(
        self, make_cacher: MakeCacher, metrics: Metrics
    ) -> None:
        cacher = make_cacher()
        calls = []

        def crash(target: Path) -> Computed:
            calls.append(target)
            target.write_bytes(b"partial output")
            raise RuntimeError("out of memory")

        with pytest.raises(RuntimeError, match="out of memory"):
            cacher.get(KEY, crash)
        assert not cacher.path_for(KEY).exists()
        assert list((cacher.root / "tmp").iterdir()) == []
        assert metric(metrics, "cache_errors", "symcaches") == 1

        # Internal errors are never cached: the next lookup tries again.
        with pytest.raises(RuntimeError):
            cacher.get(KEY, crash)
        assert len(calls) == 2
        assert cacher.get(KEY, Producer()).ok

    def test_placeholders_have_no_payload(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher()
        entry = cacher.get(KEY, Producer(EntryStatus.NOT_FOUND))
        assert entry.payload_size == 0
        assert entry.info["_payload_size"] == 0

    def test_entries_land_in_new_and_existing_directories(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher()
        first = CacheKey(GLOBAL_SCOPE, ("source-1", "module-1"))
        beside = CacheKey(GLOBAL_SCOPE, ("source-1", "module-2"))
        elsewhere = CacheKey("org-2", ("source-9", "module-1"))
        assert not cacher.kind_dir().exists()
        for key, payload in ((first, b"one"), (beside, b"two"), (elsewhere, b"three")):
            entry = cacher.get(key, Producer(payload=payload))
            assert entry.path == cacher.path_for(key)
            with entry.path.open("rb") as handle:
                assert handle.read(entry.payload_size) == payload
            assert entry.size == entry.path.stat().st_size
        assert cacher.path_for(first).parent == cacher.path_for(beside).parent
        assert list((cacher.root / "tmp").iterdir()) == []

    def test_raw_computation_without_a_file_is_an_error(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher("objects", raw=True)
        with pytest.raises(RuntimeError, match="produced no file"):
            cacher.get(KEY, lambda _target: Computed(EntryStatus.OK))
        assert not cacher.path_for(KEY).exists()
        assert list((cacher.root / "tmp").iterdir()) == []


class TestVanishedAndDamagedEntries:
    def test_entry_removed_after_a_lookup_is_recomputed(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher()
        compute = Producer()
        cacher.get(KEY, compute)  # the trailer is remembered by file identity
        cacher.path_for(KEY).unlink()
        entry = cacher.get(KEY, compute)
        assert entry.ok
        assert compute.calls == 2

    def test_entry_replaced_by_another_process_is_read_anew(
        self, make_cacher: MakeCacher, clock: ManualClock
    ) -> None:
        first = make_cacher()
        first.get(KEY, Producer(EntryStatus.NOT_FOUND))
        clock.advance(2 * HOUR)
        make_cacher().get(KEY, Producer(payload=b"found later"))
        clock.advance(MINUTE)
        assert first.get(KEY, Producer(EntryStatus.ERROR)).ok

    def test_vanishing_while_being_read_is_a_miss(self, make_cacher: MakeCacher) -> None:
        """An external actor removes entries while lookups run: lookups never fail."""
        cacher = make_cacher()
        compute = Producer()
        stop = threading.Event()
        path = cacher.path_for(KEY)

        def remove_repeatedly() -> None:
            while not stop.is_set():
                path.unlink(missing_ok=True)

        remover = threading.Thread(target=remove_repeatedly)
        remover.start()
        deadline = time.monotonic() + 5
        try:
            while compute.calls < 20 and time.monotonic() < deadline:
                assert cacher.get(KEY, compute).ok
        finally:
            stop.set()
            remover.join()
        assert compute.calls > 1, "the remover never got in the way: the test proves nothing"

    @pytest.mark.parametrize(
        "damage",
        [
            "truncated",
            "no_magic",
            "length_too_large",
            "not_json",
            "unknown_status",
            "info_not_a_mapping",
            "empty",
        ],
    )
    def test_damaged_trailer_is_removed_and_recomputed(
        self, make_cacher: MakeCacher, damage: str
    ) -> None:
        cacher = make_cacher()
        compute = Producer(payload=b"payload")
        path = cacher.get(KEY, compute).path
        damage_entry(path, damage)
        with pytest.raises(ValueError, match=r"."):
            read_trailer(path)

        fresh = make_cacher()  # no trailer remembered from the first read
        entry = fresh.get(KEY, compute)
        assert entry.ok
        assert compute.calls == 2
        assert read_trailer(path)[0] is EntryStatus.OK


def damage_entry(path: Path, damage: str) -> None:
    data = path.read_bytes()
    magic = data[-8:]
    length = int.from_bytes(data[-12:-8], "big")
    body = data[: -12 - length]
    if damage == "truncated":
        data = data[:-5]
    elif damage == "no_magic":
        data = data[:-8] + b"NOTMAGIC"
    elif damage == "length_too_large":
        data = data[:-12] + (len(data) * 2).to_bytes(4, "big") + magic
    elif damage == "not_json":
        trailer = b"{not json" + b" " * (length - 9)
        data = body + trailer + data[-12:]
    elif damage == "unknown_status":
        trailer = b'{"status":"exploded"}'
        data = body + trailer + len(trailer).to_bytes(4, "big") + magic
    elif damage == "info_not_a_mapping":
        trailer = b'{"status":"ok","info":[1,2]}'
        data = body + trailer + len(trailer).to_bytes(4, "big") + magic
    elif damage == "empty":
        data = b""
    # Keep the mtime moving, as a real rewrite would.
    path.write_bytes(data)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))


class TestScopes:
    def test_entries_of_one_scope_are_invisible_to_another(self, make_cacher: MakeCacher) -> None:
        cacher = make_cacher()
        compute = Producer()
        in_a = CacheKey("project-a", ("source", "module"))
        in_b = CacheKey("project-b", ("source", "module"))
        public = CacheKey(GLOBAL_SCOPE, ("source", "module"))
        paths = {cacher.get(key, compute).path for key in (in_a, in_b, public)}
        assert compute.calls == 3
        assert len(paths) == 3
        assert cacher.peek(in_a) is not None
        assert cacher.path_for(public).relative_to(cacher.kind_dir()).parts[1] == "global"

    @pytest.mark.parametrize(
        "scope", ["../../etc", "a/b", "", "x" * 200, "é", ".hidden", "project\n"]
    )
    def test_unusual_scopes_stay_inside_the_kind(self, make_cacher: MakeCacher, scope: str) -> None:
        cacher = make_cacher()
        path = cacher.path_for(CacheKey(scope, ("module",)))
        relative = path.relative_to(cacher.kind_dir() / "v1")
        assert relative.parts[0].startswith("h-")
        assert len(relative.parts) == 2
        other = cacher.path_for(CacheKey(scope + "x", ("module",)))
        assert other != path

    @pytest.mark.parametrize("segment", ["..", ".", "a/b", "", "x" * 129, "a\x00b", "-ok-but\n"])
    def test_unsafe_key_segments_are_refused(self, segment: str) -> None:
        with pytest.raises(ValueError, match="segment"):
            CacheKey(GLOBAL_SCOPE, ("source", segment))

    def test_a_key_needs_a_segment(self) -> None:
        with pytest.raises(ValueError, match="at least one"):
            CacheKey(GLOBAL_SCOPE, ())


class TestVersions:
    def test_outdated_entry_is_served_and_rebuilt_in_the_background(
        self, make_cacher: MakeCacher, background: ThreadPoolExecutor
    ) -> None:
        make_cacher(versions=CacheVersions(current=1)).get(KEY, Producer(payload=b"format 1"))
        cacher = make_cacher(versions=CacheVersions(current=2, fallbacks=(1,)))
        rebuild = Producer(payload=b"format 2")

        old = cacher.get(KEY, rebuild)
        assert old.ok
        assert old.outdated
        assert old.version == 1
        with old.path.open("rb") as handle:
            assert handle.read(old.payload_size) == b"format 1"

        drain(background)
        assert rebuild.calls == 1
        new = cacher.get(KEY, rebuild)
        assert not new.outdated
        assert new.version == 2
        assert new.path == cacher.path_for(KEY)
        assert new.path.parent.parent.parent.name == "v2"
        assert rebuild.calls == 1

    def test_old_placeholders_are_not_served(self, make_cacher: MakeCacher) -> None:
        make_cacher(versions=CacheVersions(current=1)).get(KEY, Producer(EntryStatus.NOT_FOUND))
        cacher = make_cacher(versions=CacheVersions(current=2, fallbacks=(1,)))
        compute = Producer(payload=b"found")
        assert cacher.get(KEY, compute).ok
        assert compute.calls == 1

    def test_versions_not_listed_are_ignored(self, make_cacher: MakeCacher) -> None:
        make_cacher(versions=CacheVersions(current=1)).get(KEY, Producer())
        cacher = make_cacher(versions=CacheVersions(current=3, fallbacks=(2,)))
        compute = Producer()
        entry = cacher.get(KEY, compute)
        assert compute.calls == 1
        assert entry.version == 3
        assert not entry.outdated

    def test_version_zero_can_be_a_fallback(
        self, make_cacher: MakeCacher, background: ThreadPoolExecutor
    ) -> None:
        make_cacher(versions=CacheVersions(current=0)).get(KEY, Producer(payload=b"v0"))
        cacher = make_cacher(versions=CacheVersions(current=1, fallbacks=(0,)))
        assert cacher.path_for(KEY, 0) != cacher.path_for(KEY, 1)
        compute = Producer(payload=b"v1", delay=0.05)
        entry = cacher.get(KEY, compute)
        assert entry.outdated
        assert entry.version == 0
        drain(background)
