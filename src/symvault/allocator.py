"""Keeping the C allocator's hold on memory small in a long-running server process.

symbolic's conversions allocate and free large buffers from many threads. glibc's
malloc gives each thread an arena of its own and returns freed memory to the
system only from the top of a heap, so a server that converts a large file now
and then keeps hundreds of megabytes it no longer uses. Two remedies, both no-ops
where the C library is not glibc: fewer arenas, set before the threads start, and
a periodic `malloc_trim`, which hands free pages in every arena back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

__all__ = ["limit_arenas", "release_free_memory"]

logger = logging.getLogger(__name__)

_M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h


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
    return library


def limit_arenas(arenas: int) -> bool:
    """Caps the number of malloc arenas (for threads started afterwards)."""
    library = _glibc()
    return library is not None and bool(library.mallopt(_M_ARENA_MAX, arenas))


def release_free_memory() -> bool:
    """Returns the allocator's free pages to the system; True if any were."""
    library = _glibc()
    return library is not None and bool(library.malloc_trim(0))
