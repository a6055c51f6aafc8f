"""Run in a process of its own (`python -m tests.unit.allocator_probe SCENARIO DIR`):
what the allocator's reserve does to a fresh process, printed as JSON.

A process of its own because an arena's state depends on everything the process
allocated before, and the test process has allocated much.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import resource
import sys
import threading
from pathlib import Path

from symvault.allocator import keep_free_memory, limit_arenas, release_free_memory

MIB = 1024**2
_libc = ctypes.CDLL(ctypes.util.find_library("c"))
_libc.malloc.restype = ctypes.c_void_p
_libc.malloc.argtypes = [ctypes.c_size_t]
_libc.free.argtypes = [ctypes.c_void_p]
_libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def free_heap_bytes() -> int:
    """Free memory the allocator holds in its arenas (glibc 2.33 and later)."""
    _libc.mallinfo2.restype = _MallInfo2
    return int(_libc.mallinfo2().fordblks)


def rss_anon_kib() -> int:
    with Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    raise AssertionError("no RssAnon in /proc/self/status")


def faults_of_work(size: int, block: int = 256 * 1024) -> int:
    """Page faults of a new thread that allocates and touches `size` bytes in blocks of
    `block`, as a conversion does, then frees them."""
    faults: list[int] = []

    def work() -> None:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        blocks = [_libc.malloc(block) for _ in range(size // block)]
        for pointer in blocks:
            _libc.memset(pointer, 1, block)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before)
        for pointer in blocks:
            _libc.free(pointer)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return faults[0]


def churn(size: int, block: int = 64 * 1024) -> None:
    """Grows the heap by `size` bytes in touched blocks and frees them again."""
    blocks = [_libc.malloc(block) for _ in range(size // block)]
    for pointer in blocks:
        _libc.memset(pointer, 1, block)
    for pointer in blocks:
        _libc.free(pointer)


def scenario(name: str, directory: Path) -> dict[str, object]:
    if name == "fetch-child":
        from symvault.app import fetch_child  # noqa: PLC0415 - the process's first arena use
        from symvault.config import load_config  # noqa: PLC0415

        reserve = int(sys.argv[3])
        overrides = {"data_dir": str(directory), "symbolication.fetch_memory_reserve": reserve}
        fetch_child(load_config(None, overrides))
        return {"free": free_heap_bytes(), "faults": faults_of_work(24 * MIB)}
    before = rss_anon_kib() * 1024
    if name == "no-reserve":
        limit_arenas(1)
        return {"free": free_heap_bytes(), "faults": faults_of_work(24 * MIB)}
    reserved = keep_free_memory(32 * MIB)
    figures: dict[str, object] = {
        "reserved": reserved,
        "grown": rss_anon_kib() * 1024 - before,
        "free": free_heap_bytes(),
    }
    if name == "reserve":
        release_free_memory(32 * MIB)
        figures["free_after_release"] = free_heap_bytes()
        figures["faults"] = faults_of_work(24 * MIB)
        figures["free_after_work"] = free_heap_bytes()
    elif name == "above-reserve":
        churn(96 * MIB)
        figures["free_after_churn"] = free_heap_bytes()
        figures["grown_after_churn"] = rss_anon_kib() * 1024 - before
        figures["faults"] = faults_of_work(24 * MIB)
    return figures


if __name__ == "__main__":
    print(json.dumps(scenario(sys.argv[1], Path(sys.argv[2]))))
