"""`Memo`: remembered results in memory, a bounded number of them.

For values that are cheap to compute again but asked for over and over (the
same lookups come back in crash after crash). When full, a memo forgets
everything at once: cheaper than keeping recency order on every hit, and the
entries that matter come back at once. Its size is what bounds the memory it
holds, so sizes are chosen per use from what an entry costs.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(Generic[K, V]):
    """A dictionary of at most `capacity` entries; safe to share between threads."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("a memo holds at least one entry")
        self._capacity = capacity
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        # A plain dict read is atomic: no lock on the hot path.
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if len(self._entries) >= self._capacity:
                self._entries.clear()
            self._entries[key] = value
