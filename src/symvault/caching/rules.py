"""When a cache entry has expired: the rules of the design, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from symvault.caching.entries import EntryStatus

__all__ = ["TOUCH_EVERY", "ExpiryRules"]

#: Last use is recorded in mtime, at most this often (seconds); also the interval
#: of upgrade attempts for caches derived from fallback files.
TOUCH_EVERY = 3600.0


@dataclass(frozen=True)
class ExpiryRules:
    """Lifetimes in seconds, per kind of entry."""

    max_unused_for: float
    retry_misses_after: float
    retry_malformed_after: float
    retry_errors_after: float

    def lifetime(self, status: EntryStatus) -> float:
        if status is EntryStatus.OK:
            return self.max_unused_for
        if status.is_miss:
            return self.retry_misses_after
        if status.is_failed_conversion:
            return self.retry_malformed_after
        return self.retry_errors_after

    def is_expired(
        self, status: EntryStatus, mtime: float, now: float, started_at: float | None
    ) -> bool:
        """True if an entry with `status`, last modified at `mtime`, must not be used.

        `started_at` is the start of the process asking; failed conversions from
        before it are ignored (pass None when no process restart applies, as in cleanup).
        """
        if now - mtime > self.lifetime(status):
            return True
        return status.is_failed_conversion and started_at is not None and mtime < started_at

    @property
    def longest(self) -> float:
        return max(
            self.max_unused_for,
            self.retry_misses_after,
            self.retry_malformed_after,
            self.retry_errors_after,
        )

    @property
    def shortest(self) -> float:
        return min(
            self.max_unused_for,
            self.retry_misses_after,
            self.retry_malformed_after,
            self.retry_errors_after,
        )
