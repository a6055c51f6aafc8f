"""The C allocator's knobs, on this machine's glibc."""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import pytest

from symvault.allocator import limit_arenas, release_free_memory


def rss_anon_kib() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


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
