"""Concurrent asks for one entry share one computation, in a process and across processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from symvault.caching.cacher import Cacher, CacheVersions, Computed
from symvault.caching.entries import CacheEntry, EntryStatus
from symvault.caching.keys import GLOBAL_SCOPE, CacheKey
from symvault.metrics import Metrics
from tests.unit.caching.conftest import RULES, MakeCacher, Producer, metric

KEY = CacheKey(GLOBAL_SCOPE, ("source-1", "module-1"))


def ask_together(
    cacher: Cacher, compute: Any, threads: int = 20, key: CacheKey = KEY
) -> list[CacheEntry | BaseException]:
    """`threads` lookups of `key`, released at the same moment."""
    start = threading.Barrier(threads)

    def ask() -> CacheEntry | BaseException:
        start.wait()
        try:
            return cacher.get(key, compute)
        except Exception as exc:  # noqa: BLE001 (compared by the test)
            return exc

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda _: ask(), range(threads)))


def test_twenty_threads_cause_one_computation(make_cacher: MakeCacher, metrics: Metrics) -> None:
    cacher = make_cacher()
    compute = Producer(payload=b"shared", delay=0.2)
    results = ask_together(cacher, compute)
    assert compute.calls == 1
    entries = [result for result in results if isinstance(result, CacheEntry)]
    assert len(entries) == 20
    assert all(entry.ok and entry.path == cacher.path_for(KEY) for entry in entries)
    assert metric(metrics, "cache_computations", "symcaches") == 1


def test_twenty_threads_share_a_placeholder(make_cacher: MakeCacher) -> None:
    compute = Producer(EntryStatus.NOT_FOUND, delay=0.2)
    results = ask_together(make_cacher(), compute)
    assert compute.calls == 1
    assert {result.status for result in results if isinstance(result, CacheEntry)} == {
        EntryStatus.NOT_FOUND
    }


def test_waiters_share_an_internal_error_which_is_not_cached(make_cacher: MakeCacher) -> None:
    cacher = make_cacher()
    calls = []

    def crash(target: Path) -> Computed:
        calls.append(target)
        time.sleep(0.2)
        raise RuntimeError("converter crashed")

    results = ask_together(cacher, crash)
    assert len(calls) == 1
    assert all(isinstance(result, RuntimeError) for result in results)
    assert cacher.get(KEY, Producer()).ok


def test_different_keys_compute_independently(make_cacher: MakeCacher) -> None:
    cacher = make_cacher()
    release = threading.Event()
    started = threading.Semaphore(0)

    def blocked(target: Path) -> Computed:
        started.release()
        assert release.wait(10)
        target.write_bytes(b"x")
        return Computed(EntryStatus.OK)

    other = CacheKey(GLOBAL_SCOPE, ("source-1", "module-2"))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cacher.get, KEY, blocked)
        second = pool.submit(cacher.get, other, blocked)
        # Both computations run at once: neither waits for the other's key.
        assert started.acquire(timeout=5)
        assert started.acquire(timeout=5)
        release.set()
        assert first.result(timeout=5).ok
        assert second.result(timeout=5).ok


def test_recompute_is_shared_with_concurrent_lookups(make_cacher: MakeCacher) -> None:
    cacher = make_cacher()
    compute = Producer(payload=b"fresh", delay=0.2)
    with ThreadPoolExecutor(2) as pool:
        forced = pool.submit(cacher.recompute, KEY, compute)
        time.sleep(0.05)
        asked = pool.submit(cacher.get, KEY, compute)
        assert forced.result(timeout=5).ok
        assert asked.result(timeout=5).ok
    assert compute.calls == 1


# Across processes: each process has its own Cacher (and in-process coalescing);
# only the lock files in the shared directory make them wait for each other.


def _compute_in_child(root: str, markers: str, ready: Any, go: Any, results: Any) -> None:
    metrics = Metrics()
    with ThreadPoolExecutor(1) as background:
        cacher = Cacher(
            "symcaches", Path(root), CacheVersions(current=1), RULES, metrics, background
        )

        def compute(target: Path) -> Computed:
            Path(markers, str(os.getpid())).write_text("computed")
            time.sleep(0.5)
            target.write_bytes(b"computed once")
            return Computed(EntryStatus.OK)

        ready.put(os.getpid())
        go.wait(30)
        entry = cacher.get(KEY, compute)
        with entry.path.open("rb") as handle:
            results.put((entry.status.value, handle.read(entry.payload_size)))


@pytest.mark.timeout(60)
def test_two_processes_cause_one_computation(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    markers = tmp_path / "markers"
    markers.mkdir()
    ready = context.Queue()
    results = context.Queue()
    go = context.Event()
    children = [
        context.Process(
            target=_compute_in_child,
            args=(str(tmp_path / "cache"), str(markers), ready, go, results),
        )
        for _ in range(2)
    ]
    for child in children:
        child.start()
    try:
        for _ in children:
            ready.get(timeout=30)
        go.set()
        outcomes = [results.get(timeout=30) for _ in children]
    finally:
        for child in children:
            child.join(timeout=30)
    assert [child.exitcode for child in children] == [0, 0]
    assert outcomes == [("ok", b"computed once")] * 2
    assert len(list(markers.iterdir())) == 1, "both processes computed the entry"
