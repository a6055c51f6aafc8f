"""The seed's cache rules, end to end through `Caches`, with controlled time.

Misses and errors are asked for again only when their time is up; failed
conversions after a restart (without downloading again); the best candidate
wins across sources; caches built from fallback files are upgraded; scopes keep
private sources apart; uploads are precomputed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from symvault.caches.derived import DerivedResult
from symvault.caches.service import Caches
from symvault.caching.entries import EntryStatus, read_trailer, write_trailer
from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import SourceConfig, StoreSourceConfig
from tests.integration.caches.conftest import (
    CrashModules,
    FixturePath,
    World,
    paths_of,
    source,
)
from tests.support.clock import wait_for
from tests.support.symbol_server import Reply, SymbolServer

MINUTE = 60.0
HOUR = 3600.0


def symcache(
    caches: Caches, *configs: SourceConfig, module: ObjectId, scope: str = "global"
) -> DerivedResult:
    return caches.symcaches.fetch(module, list(configs), scope)


def settle() -> None:
    """Gives a background refresh, had a lookup started one, time to reach the server.

    Only for checks that nothing happens: `Caches` keeps its background pool to itself.
    """
    time.sleep(0.2)


def unwind_only_breakpad(fixture_file: FixturePath) -> bytes:
    """The crash module's Breakpad file without functions or symbols: only unwind rules."""
    lines = fixture_file("crash_breakpad").read_text().splitlines()
    kept = [line for line in lines if line.split(" ", 1)[0] in ("MODULE", "INFO", "STACK")]
    return ("\n".join(kept) + "\n").encode()


def rewrite_as_outdated(path: Path, mtime: float) -> None:
    """Rewrites a symcache entry as if symbolic's format 1 had written it."""
    _status, _detail, info, _stat = read_trailer(path)
    with path.open("rb") as handle:
        payload = handle.read(info["_payload_size"])
    rewritten = path.with_name(path.name + ".old")
    rewritten.write_bytes(payload)
    info = {key: value for key, value in info.items() if key != "_payload_size"}
    write_trailer(rewritten, EntryStatus.OK, None, {**info, "format_version": 1})
    os.utime(rewritten, (mtime, mtime))
    rewritten.replace(path)


def symbols_format(path: Path) -> int:
    return int(read_trailer(path)[2]["format_version"])


class TestMisses:
    def test_a_miss_is_not_asked_for_again_until_retry_misses_after(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        caches = world.caches()
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.NOT_FOUND
        assert symbols.total_hits == len(crash.all_paths)

        world.next_lookup(10 * MINUTE)
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.NOT_FOUND
        world.next_lookup(40 * MINUTE)
        symcache(caches, source(symbols), module=crash.elf)
        assert symbols.total_hits == len(crash.all_paths), "a remembered miss was asked for again"

        world.next_lookup(10 * MINUTE)  # over an hour since the attempt
        symcache(caches, source(symbols), module=crash.elf)
        assert symbols.total_hits == 2 * len(crash.all_paths)

    def test_a_miss_survives_a_restart(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        symcache(world.caches(), source(symbols), module=crash.elf)
        world.next_lookup(MINUTE)
        symcache(world.caches(), source(symbols), module=crash.elf)
        assert symbols.total_hits == len(crash.all_paths)

    def test_a_file_that_appears_is_found_after_the_miss_expires(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        caches = world.caches()
        symcache(caches, source(symbols), module=crash.elf)
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        world.next_lookup(30 * MINUTE)
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.NOT_FOUND
        world.next_lookup(31 * MINUTE)
        assert symcache(caches, source(symbols), module=crash.elf).ok

    def test_errors_are_retried_sooner(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.status(502))
        caches = world.caches(download_retries=0)
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.ERROR
        world.next_lookup(3 * MINUTE)
        symcache(caches, source(symbols), module=crash.elf)
        assert symbols.hits_for(crash.debug_path) == 1
        world.next_lookup(2 * MINUTE)  # over retry_errors_after (5 minutes)
        symcache(caches, source(symbols), module=crash.elf)
        assert symbols.hits_for(crash.debug_path) == 2


class TestFailedConversions:
    def test_a_conversion_failure_is_remembered_until_a_restart(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        # Parses as an ELF with debug info, but its DWARF is damaged.
        symbols.put(crash.debug_path, fixture_file("corrupt_debug").read_bytes())
        caches = world.caches()
        result = symcache(caches, source(symbols), module=crash.elf)
        assert result.status is EntryStatus.MALFORMED
        assert result.detail is not None
        assert "bad debug file" in result.detail
        assert world.computations("symcaches") == 1

        world.next_lookup(12 * HOUR)
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.MALFORMED
        assert world.computations("symcaches") == 1

        # A restart (perhaps with a fixed converter) converts again, from the kept download.
        world.next_lookup(MINUTE)
        restarted = world.caches()
        assert (
            symcache(restarted, source(symbols), module=crash.elf).status is EntryStatus.MALFORMED
        )
        assert world.computations("symcaches") == 2
        assert symbols.hits_for(crash.debug_path) == 1, "the download was fetched again"

    def test_an_unparsable_download_is_parsed_again_after_a_restart_only(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.garbage())
        caches = world.caches()
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.MALFORMED
        world.next_lookup(HOUR)
        symcache(caches, source(symbols), module=crash.elf)
        assert world.computations("object_meta") == 1

        world.next_lookup(MINUTE)
        assert (
            symcache(world.caches(), source(symbols), module=crash.elf).status
            is EntryStatus.MALFORMED
        )
        assert world.computations("object_meta") == 2
        assert symbols.hits_for(crash.debug_path) == 1

    def test_failed_conversions_expire_after_retry_malformed_after(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("corrupt_debug").read_bytes())
        caches = world.caches()
        symcache(caches, source(symbols), module=crash.elf)
        world.next_lookup(23 * HOUR)
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.MALFORMED
        assert world.computations("symcaches") == 1
        world.next_lookup(2 * HOUR)
        # Converted again from the kept download (which is still damaged).
        assert symcache(caches, source(symbols), module=crash.elf).status is EntryStatus.MALFORMED
        assert world.computations("symcaches") == 2
        assert symbols.hits_for(crash.debug_path) == 1


class TestBestCandidate:
    """Debug info over a symbol table over anything else; ties go to the earlier source."""

    def test_debug_info_in_a_later_source_beats_a_symbol_table(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer() as first, SymbolServer() as second:
            first.put(crash.code_path, fixture_file("crash_elf").read_bytes())
            second.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
            result = symcache(
                world.caches(), source(first, "first"), source(second, "second"), module=crash.elf
            )
        assert result.ok
        assert result.source_id == "second"
        assert not result.fallback
        assert {c.source_id for c in result.candidates} == {"first", "second"}

    def test_ties_go_to_the_earlier_source(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer() as first, SymbolServer() as second:
            for server in (first, second):
                server.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
            result = symcache(
                world.caches(), source(first, "first"), source(second, "second"), module=crash.elf
            )
            assert second.total_hits == 0, "asked a later source after a preferred find"
        assert result.source_id == "first"

    def test_fallback_ties_go_to_the_earlier_source(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer() as first, SymbolServer() as second:
            for server in (first, second):
                server.put(crash.code_path, fixture_file("crash_elf").read_bytes())
            result = symcache(
                world.caches(), source(first, "first"), source(second, "second"), module=crash.elf
            )
        assert result.fallback
        assert result.source_id == "first"

    def test_a_symbol_table_in_a_later_source_beats_anything_else(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer() as first, SymbolServer() as second:
            first.put(crash.breakpad_path, unwind_only_breakpad(fixture_file))
            second.put(crash.code_path, fixture_file("crash_elf").read_bytes())
            result = symcache(
                world.caches(), source(first, "first"), source(second, "second"), module=crash.elf
            )
        assert result.ok
        assert result.source_id == "second"
        assert result.object_info is not None
        assert "symtab" in result.object_info.features

    def test_within_a_source_debug_info_beats_an_earlier_symbol_table(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.code_path, fixture_file("crash_elf").read_bytes())
        symbols.put(crash.breakpad_path, fixture_file("crash_breakpad").read_bytes())
        result = symcache(world.caches(), source(symbols), module=crash.elf)
        assert result.ok
        assert not result.fallback
        assert result.entry is not None
        assert result.entry.info["object"]["file_type"] == "breakpad"

    def test_unwinding_prefers_unwind_info(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        # The debug companion has no unwind info; the stripped executable has.
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        symbols.put(crash.code_path, fixture_file("crash_elf").read_bytes())
        caches = world.caches()
        cfi = caches.cficaches.fetch(crash.elf, [source(symbols)], "global")
        assert cfi.ok
        assert not cfi.fallback
        assert cfi.entry is not None
        assert cfi.entry.info["object"]["file_type"] == "elf_code"
        debug = symcache(caches, source(symbols), module=crash.elf).entry
        assert debug is not None
        assert debug.info["object"]["file_type"] == "elf_debug"

    def test_a_failure_does_not_hide_a_find_in_another_source(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer() as broken, SymbolServer() as good:
            broken.misbehave("*", Reply.status(500))
            good.put(crash.code_path, fixture_file("crash_elf").read_bytes())
            caches = world.caches(download_retries=0)
            result = symcache(
                caches, source(broken, "broken"), source(good, "good"), module=crash.elf
            )
        assert result.ok
        assert result.source_id == "good"
        assert any(c.source_id == "broken" and c.status.value == "error" for c in result.candidates)


class TestUpgrades:
    """Rule 3: a cache built from a fallback file gets an upgrade attempt at most hourly."""

    def test_fallback_entry_is_upgraded_when_the_debug_file_appears(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.code_path, fixture_file("crash_elf_stripped").read_bytes())
        caches = world.caches()
        first = symcache(caches, source(symbols), module=crash.elf)
        assert first.ok
        assert first.fallback
        assert first.entry is not None
        # Enforcement point 4: the entry says it came from a fallback file, and which.
        _status, _detail, info, stat = read_trailer(first.entry.path)
        assert info["fallback"] is True
        assert info["object"]["file_type"] == "elf_code"
        assert info["object"]["features"] == ["symtab", "unwind"]
        assert stat.st_mtime == world.clock()

        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        world.next_lookup(50 * MINUTE)
        assert symcache(caches, source(symbols), module=crash.elf).fallback
        settle()
        assert symbols.hits_for(crash.debug_path) == 1, "an upgrade attempt within the hour"

        world.next_lookup(10 * MINUTE)
        served = symcache(caches, source(symbols), module=crash.elf)
        assert served.ok
        assert served.fallback, "the fallback is served while the upgrade runs"
        entry = first.entry.path
        wait_for(lambda: read_trailer(entry)[2].get("fallback") is False, what="the upgrade")
        assert symbols.hits_for(crash.debug_path) == 2

        world.next_lookup()
        upgraded = symcache(caches, source(symbols), module=crash.elf)
        assert upgraded.ok
        assert not upgraded.fallback
        assert upgraded.entry is not None
        assert upgraded.entry.info["object"]["file_type"] == "elf_debug"

    def test_no_better_file_means_another_attempt_an_hour_later(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.code_path, fixture_file("crash_elf_stripped").read_bytes())
        caches = world.caches()
        entry = symcache(caches, source(symbols), module=crash.elf).entry
        assert entry is not None
        written = world.metric("symvault_cache_bytes_written_total", kind="symcaches")
        attempted = world.next_lookup(HOUR)
        symcache(caches, source(symbols), module=crash.elf)
        wait_for(
            lambda: world.metric("symvault_cache_bytes_written_total", kind="symcaches") > written,
            what="the upgrade attempt",
        )
        assert symbols.hits_for(crash.debug_path) == 2
        # Enforcement point 5: the attempt is the entry's mtime.
        assert entry.path.stat().st_mtime == attempted

        world.next_lookup(30 * MINUTE)
        symcache(caches, source(symbols), module=crash.elf)
        settle()
        assert symbols.hits_for(crash.debug_path) == 2

    def test_a_failed_upgrade_attempt_keeps_the_fallback(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.code_path, fixture_file("crash_elf_stripped").read_bytes())
        caches = world.caches(download_retries=0)
        assert symcache(caches, source(symbols), module=crash.elf).fallback
        errors = world.metric("symvault_cache_errors_total", kind="symcaches")

        # The download has expired meanwhile, and the server is down at the next attempt.
        shutil.rmtree(world.cache_dir / "objects")
        symbols.misbehave("*", Reply.status(500))
        world.next_lookup(HOUR)
        assert symcache(caches, source(symbols), module=crash.elf).ok
        wait_for(
            lambda: world.metric("symvault_cache_errors_total", kind="symcaches") > errors,
            what="the failed upgrade attempt",
        )
        world.next_lookup()
        after = symcache(caches, source(symbols), module=crash.elf)
        assert after.ok, "a failed upgrade attempt replaced a usable cache"
        assert after.fallback

    def test_an_outdated_format_is_rebuilt_and_a_failing_rebuild_retried_hourly(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        caches = world.caches(download_retries=0)
        entry = symcache(caches, source(symbols), module=crash.elf).entry
        assert entry is not None
        # As written by an older symbolic, two hours ago; the download has expired since.
        rewrite_as_outdated(entry.path, world.clock() - 2 * HOUR)
        shutil.rmtree(world.cache_dir / "objects")
        symbols.misbehave("*", Reply.status(503))
        errors = world.metric("symvault_cache_errors_total", kind="symcaches")

        world.next_lookup()
        assert symcache(caches, source(symbols), module=crash.elf).ok, (
            "the outdated entry is still served"
        )
        wait_for(
            lambda: world.metric("symvault_cache_errors_total", kind="symcaches") > errors,
            what="the rebuild",
        )
        attempts = symbols.hits_for(crash.debug_path)
        assert attempts == 2, "not the download and one rebuild attempt"
        for _ in range(3):
            world.next_lookup(5 * MINUTE)
            assert symcache(caches, source(symbols), module=crash.elf).ok
            settle()
        assert symbols.hits_for(crash.debug_path) == attempts, "a failing rebuild on every lookup"

        symbols.behave("*")
        world.next_lookup(HOUR)
        symcache(caches, source(symbols), module=crash.elf)
        wait_for(lambda: symbols_format(entry.path) > 1, what="the rebuild after an hour")
        assert symbols.hits_for(crash.debug_path) == attempts + 1

    def test_using_a_download_for_a_conversion_marks_it_used(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        """Rule 1: a download is used when a derived cache is computed from it."""
        symbols.put(crash.debug_path, fixture_file("crash_elf_full").read_bytes())
        caches = world.caches()
        symcache(caches, source(symbols), module=crash.elf)
        downloads = [p for p in (world.cache_dir / "objects").rglob("*") if p.is_file()]
        assert len(downloads) == 1
        downloaded_at = downloads[0].stat().st_mtime

        used_at = world.next_lookup(2 * HOUR)
        assert caches.cficaches.fetch(crash.elf, [source(symbols)], "global").ok
        assert downloads[0].stat().st_mtime == used_at > downloaded_at
        assert symbols.hits_for(crash.debug_path) == 1


class TestScopes:
    def test_private_sources_are_cached_per_scope(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        caches = world.caches()
        a = symcache(caches, source(symbols), scope="project-a", module=crash.elf)
        b = symcache(caches, source(symbols), scope="project-b", module=crash.elf)
        assert a.entry is not None
        assert b.entry is not None
        assert a.entry.path != b.entry.path
        assert "project-a" in a.entry.path.parts
        assert symbols.hits_for(crash.debug_path) == 2, "scope b was served scope a's download"

    def test_public_sources_are_shared(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        caches = world.caches()
        public = source(symbols, is_public=True)
        a = symcache(caches, public, scope="project-a", module=crash.elf)
        b = symcache(caches, public, scope="project-b", module=crash.elf)
        assert a.entry is not None
        assert b.entry is not None
        assert a.entry.path == b.entry.path
        assert "global" in a.entry.path.parts
        assert symbols.hits_for(crash.debug_path) == 1


class TestPrecompute:
    def test_an_upload_is_precomputed_so_lookups_compute_nothing(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        caches = world.caches()
        record = world.upload("acme", "app", fixture_file("crash_elf_full"))
        store = StoreSourceConfig(type="store", id="store", organization="acme", project="app")
        caches.precompute(record)
        module = ObjectId(debug_id=record.debug_id, code_id=record.code_id)
        for kind in (caches.symcaches, caches.cficaches):
            path = kind.cacher.path_for(kind.key(store, module, "global"))
            wait_for(path.exists, what=f"the precomputed {kind.conversion.name}")
        computed = world.computations("symcaches"), world.computations("cficaches")

        # A stack trace names the module with more than its ids.
        result = symcache(caches, store, module=crash.elf)
        assert result.ok
        assert not result.fallback
        assert caches.cficaches.fetch(crash.elf, [store], "global").ok
        assert (world.computations("symcaches"), world.computations("cficaches")) == computed
        assert world.metric("symvault_cache_hits_total", kind="symcaches") >= 1

    def test_a_new_upload_replaces_a_miss(
        self, world: World, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        caches = world.caches()
        store = StoreSourceConfig(type="store", id="store", organization="acme", project="app")
        world.accounts.create_token("acme", "app")
        assert symcache(caches, store, module=crash.elf).status is EntryStatus.NOT_FOUND
        record = world.upload("acme", "app", fixture_file("crash_elf_debug"))
        caches.precompute(record)
        path = caches.symcaches.cacher.path_for(caches.symcaches.key(store, crash.elf, "global"))
        wait_for(lambda: read_trailer(path)[0] is EntryStatus.OK, what="the precomputation")
        world.next_lookup()
        assert symcache(caches, store, module=crash.elf).ok


def test_store_files_are_read_in_place(
    world: World, fixture_file: FixturePath, crash: CrashModules
) -> None:
    caches = world.caches()
    world.upload("acme", "app", fixture_file("crash_elf_debug"))
    store = StoreSourceConfig(type="store", id="store", organization="acme", project="app")
    assert symcache(caches, store, module=crash.elf).ok
    downloads = [p for p in (world.cache_dir / "objects").rglob("*") if p.is_file()]
    assert downloads == [], "a stored file was copied into the download cache"
    assert (world.cache_dir / "symcaches").is_dir()


@pytest.mark.parametrize("layout", ["unified", "debuginfod", "symstore", "ssqp"])
def test_other_layouts(
    world: World, symbols: SymbolServer, fixture_file: FixturePath, layout: str, crash: CrashModules
) -> None:
    path = paths_of(FileType.ELF_DEBUG, crash.elf, layout=layout)[0]
    symbols.put(path, fixture_file("crash_elf_debug").read_bytes())
    result = symcache(world.caches(), source(symbols, layout={"type": layout}), module=crash.elf)
    assert result.ok
    assert symbols.hits_for(path) == 1
