"""Controlled time for the cache engine (its `clock` parameter), and waiting for things."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["ManualClock", "wait_for"]


class ManualClock:
    """A wall clock that moves only when told to.

    Starts at the current time, rounded to whole seconds: file mtimes set from it
    then read back exactly, and files written outside the cache engine (temporary
    files, locks) still carry about the same time.
    """

    def __init__(self, start: float | None = None) -> None:
        self.now = float(int(time.time())) if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> float:
        with self._lock:
            self.now += seconds
            return self.now


def wait_for(condition: Callable[[], bool], timeout: float = 10.0, what: str = "it") -> None:
    """Polls `condition` until it is true; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
