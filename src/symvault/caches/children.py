"""Derived cache entries computed by child processes (`symbolication.fetch_processes`).

A server process asks a child (`ChildPool`) to compute a module's entries, waits,
and then reads them from disk as any process sharing the cache would: the child
downloads, describes and converts with an interpreter lock of its own. What the
child's counters counted comes back with each answer and is added to the
server's, which exports them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from symvault.caches.service import Caches
from symvault.childpool import ChildDied, ChildPool, NoChildren, TaskFailed
from symvault.logs import log_event
from symvault.metrics import Counts, Metrics
from symvault.model.objects import ObjectId
from symvault.model.sources import SourceConfig

__all__ = ["ChildComputations", "compute_in_child"]

logger = logging.getLogger(__name__)


def compute_in_child(
    caches: Caches, kind: str, object_id: ObjectId, sources: Sequence[SourceConfig], scope: str
) -> Counts:
    """A child's task: computes the entries, returns the counts since its last answer."""
    caches.derived(kind).compute(object_id, sources, scope)
    return caches.metrics.take_counts()


class ChildComputations:
    """Has the pool's children compute entries on behalf of this process."""

    def __init__(self, pool: ChildPool, metrics: Metrics) -> None:
        self._pool = pool
        self._metrics = metrics

    def compute(
        self,
        kind: str,
        object_id: ObjectId,
        sources: Sequence[SourceConfig],
        scope: str,
        weight: int,
    ) -> bool:
        """True once a child has computed the entries; False if none could and this
        process should. Raises `ChildDied` if the task's child ended twice in a row
        (a file that crashes its converter should not crash this process next)."""
        args = (kind, object_id, list(sources), scope)
        for attempt in (1, 2):
            try:
                counts = self._pool.submit(compute_in_child, args, weight).result()
            except NoChildren:
                return False
            except ChildDied:
                if attempt == 2:
                    raise
                continue
            except TaskFailed as exc:
                log_event(logger, "cache.child_failed", logging.WARNING, kind=kind, error=str(exc))
                return False
            self._metrics.add_counts(counts)
            return True
        return False  # not reached: the second attempt returns or raises
