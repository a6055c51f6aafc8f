"""Per-key locks between processes: one byte of one lock file per key.

A computation holds the lock of its key, so that another process sharing the
cache directory waits for it instead of computing the same entry. A lock file
per key would cost a file creation (and often a directory) on every first
computation, which on some disks takes as long as converting a small debug
file; instead each key locks one byte of the cache kind's single lock file, at
an offset derived from the key.

The locks are open file description locks (`F_OFD_SETLKW`, Linux): owned by
the descriptor, not the process, so threads exclude each other as processes
do, closing one descriptor releases only its own lock, and the kernel's
deadlock detection, which reasons about processes, never refuses a wait of
one thread because of another. Two keys at the same offset (a chance of one
in 2**62) merely wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import struct
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KeyLocks"]

# struct flock on 64-bit Linux: l_type, l_whence, l_start, l_len, l_pid, padding.
_FLOCK = struct.Struct("@hhqqi4x")
_OFFSET_BITS = 62


def key_offset(key: str) -> int:
    """The byte of the lock file that stands for `key`."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - _OFFSET_BITS)


class KeyLocks:
    """Exclusive locks by key, across threads and processes, on one file."""

    def __init__(self, path: Path) -> None:
        # The file itself is made by the first hold: a cleanup run creates none.
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path

    @contextlib.contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Waits until no one else holds `key`'s lock, then holds it."""
        # A descriptor per hold: the lock belongs to it and goes with its close.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            request = _FLOCK.pack(fcntl.F_WRLCK, os.SEEK_SET, key_offset(key), 1, 0)
            fcntl.fcntl(fd, fcntl.F_OFD_SETLKW, request)
            yield
        finally:
            os.close(fd)
