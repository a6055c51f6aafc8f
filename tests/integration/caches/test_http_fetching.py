"""Fetching through `Caches` from a real (misbehaving) HTTP symbol server.

Each misbehaviour must end in the right entry status, with the right
placeholder on disk, after the right number of requests.
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import symbolic

from symvault.caches.derived import DerivedResult
from symvault.caches.objects import OBJECTS_VERSIONS
from symvault.caches.service import Caches
from symvault.caching.entries import EntryStatus, read_trailer
from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import SourceConfig
from symvault.sources.base import DownloadStatus
from tests.integration.caches.conftest import (
    CrashModules,
    FixturePath,
    World,
    paths_of,
    source,
)
from tests.support.symbol_server import Reply, SymbolServer, make_cab


def symcache(caches: Caches, config: SourceConfig, module: ObjectId) -> DerivedResult:
    return caches.symcaches.fetch(module, [config], "global")


def entry_file(caches: Caches, config: SourceConfig, module: ObjectId) -> Path:
    """Where the module's symcache entry of this source is (also when it is a placeholder)."""
    return caches.symcaches.cacher.path_for(caches.symcaches.key(config, module, "global"))


def assert_placeholder(
    caches: Caches, config: SourceConfig, module: ObjectId, status: EntryStatus, attempted: float
) -> str | None:
    found, detail, _info, stat = read_trailer(entry_file(caches, config, module))
    assert found is status
    assert stat.st_mtime == attempted, "the placeholder's mtime is not the attempt"
    return detail


def function_address(fixture_file: FixturePath, name: str) -> int:
    """Where the crash program's Breakpad file says a function starts."""
    for line in fixture_file("crash_breakpad").read_text().splitlines():
        parts = line.split()
        if parts[:1] == ["FUNC"] and parts[-1] == name:
            return int(parts[1], 16)
    raise AssertionError(f"no function {name} in the Breakpad file")


class TestFound:
    def test_debug_file_is_downloaded_converted_and_described(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.put(crash.debug_path, debug)
        caches = world.caches()
        config = source(symbols)

        result = symcache(caches, config, crash.elf)
        assert result.ok
        assert not result.fallback
        assert result.source_id == "symbols"
        assert symbols.hits_for(crash.debug_path) == 1
        assert symbols.total_hits == 1, "looked further after finding debug info"
        # Enforcement point 4: the entry says which file it came from.
        assert result.entry is not None
        obj = result.entry.info["object"]
        assert obj["file_type"] == "elf_debug"
        assert obj["location"] == symbols.url + crash.debug_path
        assert obj["features"] == ["debug", "symtab"]
        assert result.entry.info["fallback"] is False
        # The entry is a real symcache (its trailer is ignored by symbolic).
        address = function_address(fixture_file, "crash_leaf_store")
        handle = symbolic.SymCache.open(str(result.entry.path))
        assert [loc.symbol for loc in handle.lookup(address)][-1] == "crash_leaf_store"
        # The download itself is kept as it was served.
        objects = list((world.cache_dir / "objects" / f"v{OBJECTS_VERSIONS.current}").rglob("*"))
        assert [path.read_bytes() for path in objects if path.is_file()] == [debug]

    def test_served_from_a_directory_in_symstore_layout(
        self, world: World, tmp_path: Path, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        pdb_path = paths_of(FileType.PDB, crash.pe, layout="symstore")[0]
        stored = tmp_path / "symstore" / pdb_path
        stored.parent.mkdir(parents=True)
        stored.write_bytes(fixture_file("crash_pdb").read_bytes())
        with SymbolServer(root=tmp_path / "symstore") as server:
            config = source(server, layout={"type": "symstore"})
            result = symcache(world.caches(), config, crash.pe)
            assert result.ok
            assert server.hits_for(pdb_path) == 1

    def test_second_lookup_downloads_nothing(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        caches = world.caches()
        symcache(caches, source(symbols), crash.elf)
        world.next_lookup()
        assert symcache(caches, source(symbols), crash.elf).ok
        # The CFI cache is built from the same download: its contents are known already.
        cfi = caches.cficaches.fetch(crash.elf, [source(symbols)], "global")
        assert cfi.ok
        assert cfi.fallback, "a file without unwind info is not what unwinding prefers"
        assert symbols.hits_for(crash.debug_path) == 1
        assert world.computations("symcaches") == 1


class TestRefusals:
    @pytest.mark.parametrize("code", [401, 403])
    def test_unauthorized_is_no_permission(
        self, world: World, symbols: SymbolServer, code: int, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.status(code))
        caches = world.caches()
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.NO_PERMISSION
        assert symbols.hits_for(crash.debug_path) == 1, "a refusal was retried"
        candidate = next(c for c in result.candidates if c.location.endswith(crash.debug_path))
        assert candidate.status.value == "noperm"
        assert candidate.details == f"HTTP {code}"
        assert_placeholder(
            caches, source(symbols), crash.elf, EntryStatus.NO_PERMISSION, world.clock()
        )

    @pytest.mark.parametrize("code", [400, 404, 410, 451])
    def test_other_client_errors_are_not_found(
        self, world: World, symbols: SymbolServer, code: int, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.status(code))
        caches = world.caches()
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.NOT_FOUND
        assert symbols.hits_for(crash.debug_path) == 1
        assert all(symbols.hits_for(path) == 1 for path in crash.all_paths), (
            "not every place was asked"
        )
        assert_placeholder(caches, source(symbols), crash.elf, EntryStatus.NOT_FOUND, world.clock())

    def test_server_errors_are_retried_then_an_error(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.status(500))
        caches = world.caches(download_retries=2)
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.ERROR
        assert symbols.hits_for(crash.debug_path) == 3, "not one try and two retries"
        detail = assert_placeholder(
            caches, source(symbols), crash.elf, EntryStatus.ERROR, world.clock()
        )
        assert detail is not None
        assert "HTTP 500" in detail

    @pytest.mark.parametrize("after_bytes", [None, 100])
    def test_a_stall_is_a_timeout(
        self,
        world: World,
        symbols: SymbolServer,
        fixture_file: FixturePath,
        after_bytes: int | None,
        crash: CrashModules,
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(crash.debug_path, Reply.stall(5.0, debug, after_bytes=after_bytes))
        caches = world.caches(streaming_timeout=0.3, download_retries=1)
        started = time.monotonic()
        result = symcache(caches, source(symbols), crash.elf)
        assert time.monotonic() - started < 3, "the stall was waited out"
        assert result.status is EntryStatus.TIMEOUT
        assert symbols.hits_for(crash.debug_path) == 2, "a timeout is retried"
        detail = assert_placeholder(
            caches, source(symbols), crash.elf, EntryStatus.TIMEOUT, world.clock()
        )
        assert detail is not None
        if after_bytes is None:
            assert "timed out waiting for 127.0.0.1 to answer" in detail
        else:
            assert "timed out: the download stalled" in detail

    def test_a_download_that_never_ends_hits_the_total_timeout(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        """Each pause is shorter than `streaming_timeout`, the whole longer than
        `max_download_timeout`."""
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(crash.debug_path, Reply.stall(1.5, debug, after_bytes=100))
        caches = world.caches(streaming_timeout=5, max_download_timeout=0.5, download_retries=3)
        started = time.monotonic()
        result = symcache(caches, source(symbols), crash.elf)
        assert time.monotonic() - started < 4, "the total timeout was not applied"
        assert not result.ok
        detail = assert_placeholder(
            caches, source(symbols), crash.elf, result.status, world.clock()
        )
        assert detail is not None
        assert "took too long" in detail
        # No retry starts past the deadline.
        assert symbols.hits_for(crash.debug_path) == 1

    def test_a_server_that_does_not_accept_hits_the_connect_timeout(
        self, world: World, crash: CrashModules
    ) -> None:
        # A listening socket whose backlog is full: further connections are left waiting.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        waiting = []
        try:
            for _ in range(4):
                client = socket.socket()
                client.setblocking(False)
                client.connect_ex(("127.0.0.1", port))
                waiting.append(client)
            caches = world.caches(connect_timeout=0.3, download_retries=0)
            started = time.monotonic()
            result = symcache(caches, source(f"http://127.0.0.1:{port}/"), crash.elf)
            assert time.monotonic() - started < 5, "the connect timeout was not applied"
        finally:
            for client in waiting:
                client.close()
            listener.close()
        assert result.status is EntryStatus.TIMEOUT
        assert any(
            "timed out connecting to 127.0.0.1" in (candidate.details or "")
            for candidate in result.candidates
        ), result.candidates

    def test_garbage_is_malformed(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.garbage())
        caches = world.caches()
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.MALFORMED
        candidate = next(c for c in result.candidates if c.location.endswith(crash.debug_path))
        assert candidate.status.value == "malformed"
        assert candidate.details is not None
        assert "unsupported object file format" in candidate.details
        assert_placeholder(caches, source(symbols), crash.elf, EntryStatus.MALFORMED, world.clock())
        # What the file is (nothing usable) is remembered apart from the download.
        metas = [p for p in (world.cache_dir / "object_meta").rglob("*") if p.is_file()]
        assert [read_trailer(path)[0] for path in metas] == [EntryStatus.MALFORMED]

    def test_a_truncated_body_is_an_error(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(crash.debug_path, Reply.truncated(debug[:1000]))
        caches = world.caches(download_retries=1)
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.ERROR
        assert symbols.hits_for(crash.debug_path) == 2
        detail = assert_placeholder(
            caches, source(symbols), crash.elf, EntryStatus.ERROR, world.clock()
        )
        assert detail is not None
        assert "broke off" in detail
        assert list((world.cache_dir / "tmp").iterdir()) == []


class TestRedirects:
    def test_followed_on_the_same_server(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put("real/crash.debug", fixture_file("crash_elf_debug").read_bytes())
        symbols.misbehave(crash.debug_path, Reply.redirect("/real/crash.debug", 301))
        result = symcache(world.caches(), source(symbols), crash.elf)
        assert result.ok
        assert symbols.hits_for("real/crash.debug") == 1

    def test_to_a_refused_address_is_an_error_naming_the_refusal(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        with SymbolServer(host="127.0.0.2") as internal:
            internal.put("secret.debug", fixture_file("crash_elf_debug").read_bytes())
            symbols.misbehave(crash.debug_path, Reply.redirect(internal.url_for("secret.debug")))

            caches = world.caches()
            result = symcache(caches, source(symbols), crash.elf)
            assert result.status is EntryStatus.ERROR
            detail = assert_placeholder(
                caches, source(symbols), crash.elf, EntryStatus.ERROR, world.clock()
            )
            assert detail is not None
            assert "refusing to connect to 127.0.0.2" in detail
            assert internal.total_hits == 0
            assert symbols.hits_for(crash.debug_path) == 1, "a refusal was retried"

            # The same redirect is followed where reserved addresses are allowed.
            world.cache_dir = world.tmp_path / "other-cache"
            allowed = symcache(
                world.caches(connect_to_reserved_ips=True), source(symbols), crash.elf
            )
            assert allowed.ok
            assert internal.hits_for("secret.debug") == 1

    @pytest.mark.parametrize(
        ("location", "detail"),
        [
            ("file:///etc/passwd", "unsupported URL scheme"),
            ("http://169.254.169.254/latest/meta-data/", "refusing to connect"),
            ("http://[::1]:1/x", "refusing to connect"),
        ],
    )
    def test_to_places_downloads_must_not_go(
        self, world: World, symbols: SymbolServer, location: str, detail: str, crash: CrashModules
    ) -> None:
        symbols.misbehave(crash.debug_path, Reply.redirect(location))
        result = symcache(world.caches(), source(symbols), crash.elf)
        assert result.status is EntryStatus.ERROR
        assert result.detail is not None
        assert detail in result.detail

    def test_a_loop_ends(self, world: World, symbols: SymbolServer, crash: CrashModules) -> None:
        symbols.misbehave(crash.debug_path, Reply.redirect("/loop"))
        symbols.misbehave("loop", Reply.redirect("/" + crash.debug_path))
        result = symcache(world.caches(), source(symbols), crash.elf)
        assert result.status is EntryStatus.ERROR
        assert result.detail is not None
        assert "redirects" in result.detail
        assert symbols.hits_for(crash.debug_path) + symbols.hits_for("loop") == 6

    def test_credentials_stay_with_their_host(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        with SymbolServer() as storage:
            storage.put("signed/crash.debug", debug)
            symbols.misbehave(
                crash.debug_path, Reply.redirect(storage.url_for("signed/crash.debug"))
            )
            config = source(symbols, headers={"Authorization": "Bearer s3cr3t", "X-Tenant": "7"})
            assert symcache(world.caches(), config, crash.elf).ok
            first = symbols.requests_for(crash.debug_path)[0].headers
            assert first["Authorization"] == "Bearer s3cr3t"
            redirected = storage.requests_for("signed/crash.debug")[0].headers
            assert "Authorization" not in redirected, "the token was sent to another host"

    def test_credentials_follow_a_redirect_on_the_same_host(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put("moved/crash.debug", fixture_file("crash_elf_debug").read_bytes())
        symbols.misbehave(crash.debug_path, Reply.redirect("/moved/crash.debug"))
        config = source(symbols, headers={"Authorization": "Bearer s3cr3t"})
        assert symcache(world.caches(), config, crash.elf).ok
        moved = symbols.requests_for("moved/crash.debug")[0].headers
        assert moved["Authorization"] == "Bearer s3cr3t"


class TestFailingHosts:
    def test_a_host_that_keeps_failing_is_skipped_for_a_while(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        caches = world.caches(host_failure_limit=2, download_retries=1, host_block_time=1.0)
        symbols.misbehave(crash.debug_path, Reply.status(503))
        assert symcache(caches, source(symbols), crash.elf).status is EntryStatus.ERROR
        assert symbols.hits_for(crash.debug_path) == 2
        hits = symbols.total_hits

        # Another module on the same host: not asked for at all while the host is skipped.
        other = ObjectId(
            code_id="ab" * 20, debug_id=crash.elf.debug_id, object_type=crash.elf.object_type
        )
        skipped = symcache(caches, source(symbols), other)
        assert skipped.status is EntryStatus.ERROR
        assert skipped.detail is not None
        assert "skipped" in skipped.detail
        assert symbols.total_hits == hits

        # After host_block_time it is asked again (the error placeholder has expired too).
        time.sleep(1.1)
        symbols.behave(crash.debug_path)
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        world.next_lookup(6 * 60)
        assert symcache(caches, source(symbols), crash.elf).ok
        assert symbols.hits_for(crash.debug_path) == 3


class TestCompressedDownloads:
    @pytest.mark.parametrize(
        ("encoding", "labelled"), [("gzip", False), ("gzip", True), ("zstd", False)]
    )
    def test_unpacked(
        self,
        world: World,
        symbols: SymbolServer,
        fixture_file: FixturePath,
        encoding: str,
        labelled: bool,
        crash: CrashModules,
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(
            crash.debug_path, Reply.compressed(debug, encoding, content_encoding=labelled)
        )
        result = symcache(world.caches(), source(symbols), crash.elf)
        assert result.ok
        objects = [p for p in (world.cache_dir / "objects").rglob("*") if p.is_file()]
        assert [path.read_bytes() for path in objects] == [debug]

    def test_cab_compressed_pdb(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        pdb = fixture_file("crash_pdb").read_bytes()
        plain, compressed = paths_of(FileType.PDB, crash.pe)
        assert compressed.endswith("crash.pd_")
        symbols.put(compressed, make_cab("crash.pdb", pdb))
        result = symcache(world.caches(), source(symbols), crash.pe)
        assert result.ok
        assert not result.fallback
        assert result.entry is not None
        assert result.entry.info["object"]["location"].endswith("crash.pd_")
        assert symbols.hits_for(plain) == 1
        assert symbols.hits_for(compressed) == 1

    def test_gzip_bomb_is_malformed(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        bomb = gzip.compress(bytes(8 * 1024**2))
        symbols.put(crash.debug_path, bomb)
        result = symcache(world.caches(max_download_size=1024**2), source(symbols), crash.elf)
        assert result.status is EntryStatus.MALFORMED
        assert result.detail is not None
        assert "limit" in result.detail


class TestDownloadSize:
    @pytest.mark.parametrize("declared", [True, False])
    def test_larger_than_max_download_size(
        self,
        world: World,
        symbols: SymbolServer,
        fixture_file: FixturePath,
        declared: bool,
        crash: CrashModules,
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(crash.debug_path, Reply.file(debug) if declared else Reply.unsized(debug))
        caches = world.caches(max_download_size=len(debug) - 1)
        result = symcache(caches, source(symbols), crash.elf)
        assert result.status is EntryStatus.ERROR
        detail = assert_placeholder(
            caches, source(symbols), crash.elf, EntryStatus.ERROR, world.clock()
        )
        assert detail is not None
        assert f"larger than the limit of {len(debug) - 1} bytes" in detail
        assert symbols.hits_for(crash.debug_path) == 1, "an oversized file was retried"

    def test_exactly_max_download_size(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        debug = fixture_file("crash_elf_debug").read_bytes()
        symbols.misbehave(crash.debug_path, Reply.unsized(debug))
        assert symcache(world.caches(max_download_size=len(debug)), source(symbols), crash.elf).ok


class TestConcurrentRequests:
    def test_twenty_requests_one_download_one_conversion(
        self, world: World, symbols: SymbolServer, fixture_file: FixturePath, crash: CrashModules
    ) -> None:
        symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
        caches = world.caches()
        config = source(symbols)
        start = threading.Barrier(20)

        def ask(_: int) -> DerivedResult:
            start.wait()
            return symcache(caches, config, crash.elf)

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(ask, range(20)))
        assert all(result.ok for result in results)
        assert len({result.entry.path for result in results if result.entry}) == 1
        assert symbols.hits_for(crash.debug_path) == 1
        assert symbols.total_hits == 1
        assert world.computations("symcaches") == 1
        assert world.computations("objects") == 1
        assert world.computations("object_meta") == 1

    def test_twenty_requests_for_a_missing_module_ask_each_place_once(
        self, world: World, symbols: SymbolServer, crash: CrashModules
    ) -> None:
        caches = world.caches()
        start = threading.Barrier(20)

        def ask(_: int) -> DerivedResult:
            start.wait()
            return symcache(caches, source(symbols), crash.elf)

        with ThreadPoolExecutor(20) as pool:
            results = list(pool.map(ask, range(20)))
        assert {result.status for result in results} == {EntryStatus.NOT_FOUND}
        assert symbols.total_hits == len(crash.all_paths)
        assert world.computations("symcaches") == 1


def test_the_debug_file_is_asked_first_then_the_others_together(
    world: World, symbols: SymbolServer, crash: CrashModules
) -> None:
    result = symcache(world.caches(), source(symbols), crash.elf)
    assert result.status is EntryStatus.NOT_FOUND
    asked = [request.path for request in symbols.requests]
    assert asked[0] == crash.debug_path
    assert {crash.code_path, crash.breakpad_path} <= set(asked[1:])
    assert sorted(symbols.hits.values()) == [1] * len(asked), "a candidate asked twice"
    # Every place asked is reported, in the order of the candidates.
    assert [c.location for c in result.candidates][:3] == [
        symbols.url + path for path in (crash.debug_path, crash.code_path, crash.breakpad_path)
    ]


def test_the_candidates_after_the_first_are_asked_at_once(
    world: World, symbols: SymbolServer, crash: CrashModules, fixture_file: FixturePath
) -> None:
    # The executable and the Breakpad file each take a second to answer: asked one after
    # the other they would take two.
    symbols.misbehave(crash.code_path, Reply.stall(1.0, body=b""))
    breakpad = fixture_file("crash_breakpad").read_bytes()
    symbols.misbehave(crash.breakpad_path, Reply.stall(1.0, body=breakpad))
    caches = world.caches(streaming_timeout=5)
    started = time.perf_counter()
    result = symcache(caches, source(symbols), crash.elf)
    elapsed = time.perf_counter() - started
    assert result.ok
    assert result.object_info is not None
    assert result.object_info.file_format == "breakpad"
    assert elapsed < 1.8, f"took {elapsed:.2f} s: the candidates were asked one by one"
    statuses = {c.location: c.status for c in result.candidates}
    assert statuses[symbols.url + crash.debug_path] is DownloadStatus.NOT_FOUND
    assert statuses[symbols.url + crash.code_path] is DownloadStatus.MALFORMED
    assert statuses[symbols.url + crash.breakpad_path] is DownloadStatus.OK


def test_a_preferred_first_candidate_is_the_only_one_asked(
    world: World, symbols: SymbolServer, crash: CrashModules, fixture_file: FixturePath
) -> None:
    symbols.put(crash.debug_path, fixture_file("crash_elf_debug").read_bytes())
    symbols.put(crash.code_path, fixture_file("crash_elf").read_bytes())
    result = symcache(world.caches(), source(symbols), crash.elf)
    assert result.ok
    assert [request.path for request in symbols.requests] == [crash.debug_path]
    assert [c.location for c in result.candidates] == [symbols.url + crash.debug_path]
