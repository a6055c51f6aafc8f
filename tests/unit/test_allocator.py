"""The C allocator's knobs, on this machine's glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from symvault.allocator import limit_arenas, release_free_memory
from tests.unit.allocator_probe import rss_anon_kib


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim"), reason="not glibc"
)
def test_freed_memory_goes_back_to_the_system() -> None:
    assert limit_arenas(4)
    # Many small blocks (not one large mapping, which free() returns by itself), then
    # all freed but the last: the heap cannot shrink from its top, only trimming helps.
    blocks = [bytearray(4000) for _ in range(40_000)]
    kept = blocks[-1]
    held = rss_anon_kib()
    del blocks
    assert release_free_memory()
    assert rss_anon_kib() < held - 100_000, "less than 100 MB of the 160 MB came back"
    assert kept


MIB = 1024**2


def probe(tmp_path: Path, *args: str) -> dict[str, Any]:
    """tests/unit/allocator_probe.py in a fresh process."""
    root = Path(__file__).parents[2]
    result = subprocess.run(
        [sys.executable, "-m", "tests.unit.allocator_probe", *args[:1], str(tmp_path), *args[1:]],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


glibc_only = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "mallinfo2"),
    reason="needs glibc 2.33 or later",
)


@glibc_only
class TestReserve:
    def test_a_reserve_is_free_memory_whose_pages_are_in_place(self, tmp_path: Path) -> None:
        figures = probe(tmp_path, "reserve")
        assert figures["reserved"] is True
        assert figures["grown"] >= 30 * MIB, "the reserve's pages were not touched"
        assert figures["free"] >= 32 * MIB
        assert figures["free_after_release"] >= 32 * MIB, "handing back took the reserve"

    def test_work_within_the_reserve_takes_no_new_pages(self, tmp_path: Path) -> None:
        with_reserve = probe(tmp_path, "reserve")
        without = probe(tmp_path, "no-reserve")
        # 24 MiB are 6,144 pages: without a reserve every one is new to the process.
        assert without["faults"] > 5_000
        assert with_reserve["faults"] < 500
        assert with_reserve["free_after_work"] >= 32 * MIB, "the work used up the reserve"

    def test_the_heap_shrinks_back_to_the_reserve(self, tmp_path: Path) -> None:
        figures = probe(tmp_path, "above-reserve")
        # 96 MiB were used and freed: the heap keeps the reserve and some slack.
        assert 32 * MIB <= figures["free_after_churn"] <= 50 * MIB
        assert figures["grown_after_churn"] < 56 * MIB, "the pages above the reserve stayed"
        assert figures["faults"] < 500, "the reserve went with them"

    def test_a_fetch_process_starts_with_its_reserve(self, tmp_path: Path) -> None:
        kept = probe(tmp_path, "fetch-child", str(40 * MIB))
        assert kept["free"] >= 40 * MIB
        assert kept["faults"] < 500

    def test_without_a_reserve_a_fetch_process_keeps_nothing(self, tmp_path: Path) -> None:
        figures = probe(tmp_path, "fetch-child", "0")
        assert figures["free"] < 16 * MIB
        assert figures["faults"] > 5_000
