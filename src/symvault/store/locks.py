"""A shared/exclusive lock that holds across threads and processes on one host.

Each acquisition opens its own descriptor of the lock file, so `flock`
arbitrates between threads of one process as well as between processes.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """Readers take it shared, a sweeper takes it exclusive."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
        self._path = path

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._path.open("rb") as handle:
            fcntl.flock(handle, fcntl.LOCK_SH)
            yield

    @contextmanager
    def exclusive(self, *, blocking: bool = True) -> Iterator[bool]:
        """Yields True once held; with `blocking=False` yields False if it is taken."""
        with self._path.open("rb") as handle:
            flags = fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB
            try:
                fcntl.flock(handle, flags)
            except BlockingIOError:
                yield False
                return
            yield True
