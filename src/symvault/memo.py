"""`Memo`: remembered results in memory, a bounded number of them.

For values that are cheap to compute again but asked for over and over (the
same lookups come back in crash after crash). When full, a memo forgets
everything at once: cheaper than keeping recency order on every hit, and the
entries that matter come back at once. Its size is what bounds the memory it
holds, so sizes are chosen per use from what an entry costs.

A memo made with `repeats_only` keeps a value only the second time its key is
put. Under a stream of one-off keys (addresses no other crash shares) a plain
memo fills with entries nobody asks for again and keeps their memory until it
is full; a repeats-only memo holds only a hash per such key.
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

    def __init__(self, capacity: int, *, repeats_only: bool = False) -> None:
        if capacity < 1:
            raise ValueError("a memo holds at least one entry")
        self._capacity = capacity
        self._entries: dict[K, V] = {}
        self._repeats_only = repeats_only
        # Hashes of keys put once and not kept (repeats-only memos).
        self._seen: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        # A plain dict read is atomic: no lock on the hot path.
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if (
                self._repeats_only
                and key not in self._entries  # a key with an entry is a repeat
                and not self._seen_before(key)
            ):
                return
            if len(self._entries) >= self._capacity:
                self._entries.clear()
            self._entries[key] = value

    def _seen_before(self, key: K) -> bool:
        """Whether `key` was put before; remembers it if not (caller holds the lock)."""
        seen = self._seen
        hashed = hash(key)
        if hashed in seen:
            seen.discard(hashed)
            return True
        if len(seen) >= self._capacity:
            seen.clear()
        seen.add(hashed)
        return False
