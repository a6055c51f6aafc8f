"""The cache engine on a real directory, with controlled time and its own background pool."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from symvault.caching.cacher import Cacher, CacheVersions, Computed
from symvault.caching.entries import EntryStatus
from symvault.caching.rules import ExpiryRules
from symvault.metrics import Metrics
from tests.support.clock import ManualClock

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0

#: The seed's lifetimes: 7 days unused, misses 1 hour, failed conversions 24 hours;
#: failed fetches 5 minutes (symvault's addition).
RULES = ExpiryRules(
    max_unused_for=7 * DAY,
    retry_misses_after=HOUR,
    retry_malformed_after=24 * HOUR,
    retry_errors_after=5 * MINUTE,
)

MakeCacher = Callable[..., Cacher]
V1 = CacheVersions(current=1)


class Producer:
    """A computation that counts its calls and writes `payload` (for `ok` results)."""

    def __init__(
        self,
        status: EntryStatus = EntryStatus.OK,
        payload: bytes = b"payload",
        info: dict[str, Any] | None = None,
        detail: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.status = status
        self.payload = payload
        self.info = info or {}
        self.detail = detail
        self.delay = delay
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, target: Path) -> Computed:
        with self._lock:
            self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        if self.status is EntryStatus.OK:
            target.write_bytes(self.payload)
        return Computed(self.status, self.detail, dict(self.info))


def metric(metrics: Metrics, name: str, kind: str) -> float:
    """The value of a per-kind counter (0 if never touched)."""
    value = metrics.registry.get_sample_value(f"symvault_{name}_total", {"kind": kind})
    return value or 0.0


def drain(pool: ThreadPoolExecutor) -> None:
    """Waits until everything submitted to the single-worker pool so far has run."""
    pool.submit(lambda: None).result(timeout=10)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    # One worker: `drain` relies on tasks running in the order they were submitted.
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-cache-bg")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def cache_root(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def make_cacher(
    cache_root: Path, clock: ManualClock, metrics: Metrics, background: ThreadPoolExecutor
) -> MakeCacher:
    def make(
        name: str = "symcaches",
        *,
        versions: CacheVersions = V1,
        raw: bool = False,
        store_negative: bool = True,
        started_at: float | None = None,
        rules: ExpiryRules = RULES,
    ) -> Cacher:
        return Cacher(
            name,
            cache_root,
            versions,
            rules,
            metrics,
            background,
            raw=raw,
            store_negative=store_negative,
            clock=clock,
            started_at=started_at,
        )

    return make
