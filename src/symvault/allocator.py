"""Keeping the C allocator's hold on memory small in a long-running server process.

symbolic's conversions allocate and free large buffers from many threads. glibc's
malloc gives each thread an arena of its own and returns freed memory to the
system only from the top of a heap, so a server that converts a large file now
and then keeps hundreds of megabytes it no longer uses. Two remedies, both no-ops
where the C library is not glibc: fewer arenas, set before the threads start, and
a periodic `malloc_trim`, which hands free pages in every arena back.

Handing pages back has a price: the next conversion has to fault them in again,
and memory the kernel hands out for the first time costs more than the work done
with it here (a 4 MB debug file's conversion needs 30 MiB of new pages, a quarter
of its time). Processes that do nothing but conversions (fetch processes) therefore
keep a reserve (`keep_free_memory`): one arena, whose heap keeps that much free memory
at its top when it shrinks, and whose pages are touched at start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

__all__ = ["keep_free_memory", "limit_arenas", "release_free_memory"]

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: Blocks at least this large get mappings of their own, which free() unmaps: a large
#: conversion's largest buffers never stay (glibc's own threshold rises up to this).
_MMAP_THRESHOLD = 32 * 1024**2
#: How far the heap's free top may grow beyond the reserve before free() shrinks it.
_TRIM_SLACK = 16 * 1024**2
_TOUCH_BLOCK = 1024**2


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return None
    if not hasattr(library, "malloc_trim") or not hasattr(library, "mallopt"):
        return None  # not glibc (musl, for example)
    library.malloc.restype = ctypes.c_void_p
    library.malloc.argtypes = [ctypes.c_size_t]
    library.free.argtypes = [ctypes.c_void_p]
    library.memset.restype = ctypes.c_void_p
    library.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
    library.malloc_trim.argtypes = [ctypes.c_size_t]
    return library


def limit_arenas(arenas: int) -> bool:
    """Caps the number of malloc arenas (for threads started afterwards)."""
    library = _glibc()
    return library is not None and bool(library.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory(keep: int = 0) -> bool:
    """Returns the allocator's free pages to the system but `keep` bytes at the top of
    the main heap; True if any were returned."""
    library = _glibc()
    return library is not None and bool(library.malloc_trim(keep))


def keep_free_memory(size: int) -> bool:
    """Has this process keep `size` bytes of free memory whose pages are in place, for
    the next conversions: one arena (call it before starting threads), whose heap
    shrinks to `size` free bytes rather than to none, and whose pages are touched now.
    Hand the rest back with `release_free_memory(size)`. True if it took effect.

    Setting these turns glibc's adaptive thresholds off; `_MMAP_THRESHOLD` is where
    they would end up after the first large conversion."""
    library = _glibc()
    if library is None or size <= 0:
        return False
    settings = (
        (_M_ARENA_MAX, 1),
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
        (_M_TOP_PAD, size),
        (_M_TRIM_THRESHOLD, size + _TRIM_SLACK),
    )
    if not all(library.mallopt(parameter, value) for parameter, value in settings):
        return False
    blocks = []
    try:
        for _ in range(-(-size // _TOUCH_BLOCK)):
            block = library.malloc(_TOUCH_BLOCK)
            if not block:
                return False
            library.memset(block, 0, _TOUCH_BLOCK)
            blocks.append(block)
    finally:
        for block in blocks:
            library.free(block)
    return True
