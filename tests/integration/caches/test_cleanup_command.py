"""`symvault cleanup [--dry-run] [--repeat INTERVAL]`, run as a command against a prepared cache."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from symvault.caches.objects import OBJECTS_VERSIONS
from symvault.caches.service import expiry_rules
from symvault.caches.symcaches import SYMCACHE_VERSIONS
from symvault.caching.cacher import Cacher, CacheVersions, Computed
from symvault.caching.entries import EntryStatus
from symvault.caching.keys import GLOBAL_SCOPE, CacheKey
from symvault.config import CacheConfig
from symvault.metrics import Metrics
from tests.support.clock import ManualClock
from tests.support.server import ServerProcess

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
RULES = expiry_rules(CacheConfig())  # the defaults the command runs with


class PreparedCache:
    """Entries written as the server writes them, at times in the past."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "cache"
        self.clock = ManualClock()
        self.expired: list[Path] = []
        self.kept: list[Path] = []
        self._pool = ThreadPoolExecutor(1)

    def add(
        self,
        kind: str,
        name: str,
        age: float,
        status: EntryStatus = EntryStatus.OK,
        *,
        expired: bool,
        versions: CacheVersions = SYMCACHE_VERSIONS,
        size: int = 1000,
    ) -> None:
        now = time.time()
        self.clock.now = now - age
        cacher = Cacher(
            kind,
            self.root,
            versions,
            RULES,
            Metrics(),
            self._pool,
            raw=kind == "objects",
            clock=self.clock,
        )

        def compute(target: Path) -> Computed:
            if status is EntryStatus.OK:
                target.write_bytes(b"x" * size)
            return Computed(status)

        entry = cacher.recompute(CacheKey(GLOBAL_SCOPE, ("source", name)), compute)
        (self.expired if expired else self.kept).append(entry.path)

    @property
    def expired_bytes(self) -> int:
        return sum(path.stat().st_size for path in self.expired)

    def close(self) -> None:
        self._pool.shutdown()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def prepared(data_dir: Path) -> PreparedCache:
    cache = PreparedCache(data_dir)
    cache.add("objects", "download-old", 8 * DAY, expired=True, versions=OBJECTS_VERSIONS)
    cache.add("objects", "download-new", HOUR, expired=False, versions=OBJECTS_VERSIONS)
    cache.add("symcaches", "unused-for-a-week", 8 * DAY, expired=True)
    cache.add("symcaches", "recent", DAY, expired=False)
    cache.add("symcaches", "miss-old", 2 * HOUR, EntryStatus.NOT_FOUND, expired=True)
    cache.add("symcaches", "miss-new", 10 * MINUTE, EntryStatus.NOT_FOUND, expired=False)
    cache.add("symcaches", "malformed", 2 * HOUR, EntryStatus.MALFORMED, expired=False)
    cache.add("symcaches", "error-old", 10 * MINUTE, EntryStatus.ERROR, expired=True)
    cache.add(
        "cficaches", "retired-format", MINUTE, expired=True, versions=CacheVersions(current=99)
    )
    cache.close()
    return cache


def command(data_dir: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "symvault", "cleanup", "--data-dir", str(data_dir), *args]


def summary_lines(output: str) -> dict[str, str]:
    return {line.split(":", 1)[0]: line for line in output.splitlines() if ": " in line}


def test_dry_run_reports_and_removes_nothing(data_dir: Path, prepared: PreparedCache) -> None:
    before = sorted(path for path in prepared.root.rglob("*") if path.is_file())
    result = subprocess.run(
        command(data_dir, "--dry-run"), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    lines = summary_lines(result.stdout)
    assert lines["objects"].startswith("objects: 1 entries (1000 bytes) kept, 1 expired (1000 ")
    assert "symcaches: 3 entries" in lines["symcaches"]
    assert "3 expired" in lines["symcaches"]
    assert "1 expired" in lines["cficaches"]
    assert f"would remove 5 entries, {prepared.expired_bytes} bytes" in result.stdout
    assert "upload chunks" not in result.stdout, "a dry run swept upload chunks"
    after = sorted(path for path in prepared.root.rglob("*") if path.is_file())
    assert after == before


def test_repeat_removes_what_expired_then_keeps_running(
    data_dir: Path, prepared: PreparedCache
) -> None:
    expired_bytes = prepared.expired_bytes
    process = subprocess.Popen(
        command(data_dir, "--repeat", "0.2s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    runs: list[str] = []
    try:
        deadline = time.monotonic() + 60
        while len(runs) < 3 and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("removed") and "entries" in line:
                runs.append(line.strip())
    finally:
        process.send_signal(signal.SIGINT)
        _out, errors = process.communicate(timeout=30)
    assert runs[0] == f"removed 5 entries, {expired_bytes} bytes"
    assert runs[1:] == ["removed 0 entries, 0 bytes"] * 2, "later runs found more to remove"
    assert process.returncode == 130, errors
    assert [path for path in prepared.expired if path.exists()] == []
    assert all(path.exists() for path in prepared.kept)
    assert not (prepared.root / "cficaches" / "v99").exists()


def test_servers_clean_up_in_the_background(data_dir: Path, prepared: PreparedCache) -> None:
    """Each server runs the cleanup every `caches.cleanup_interval`, in a child process."""
    servers = [ServerProcess(data_dir, {"caches": {"cleanup_interval": "1s"}}) for _ in range(2)]
    for server in servers:
        server.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(path.exists() for path in prepared.expired):
            time.sleep(0.2)
        assert not [path for path in prepared.expired if path.exists()]
        assert all(path.exists() for path in prepared.kept)
        texts = []
        for server in servers:
            with server.client() as client:
                texts.append(client.get("/metrics").text)
        metrics = "\n".join(texts)
        assert 'symvault_cache_evictions_total{kind="symcaches"}' in metrics
        for server in servers:
            assert server.process is not None
            assert server.process.poll() is None
    finally:
        for server in servers:
            server.stop()
