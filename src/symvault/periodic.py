"""Background jobs that run every so often in a server process.

One daemon thread runs all jobs in turn; a failing job is logged and retried
at its next interval. Jobs must be safe to run in several processes at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PeriodicJobs"]

logger = logging.getLogger(__name__)


@dataclass
class _Job:
    name: str
    interval: float
    run: Callable[[], object]
    due: float


class PeriodicJobs:
    """Runs registered jobs at their intervals until stopped."""

    def __init__(self) -> None:
        self._jobs: list[_Job] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(
        self, name: str, interval: float, run: Callable[[], object], *, delay: float = 0
    ) -> None:
        self._jobs.append(_Job(name, interval, run, time.monotonic() + delay))

    def start(self) -> None:
        if not self._jobs:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="periodic-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            for job in self._jobs:
                if job.due <= now and not self._stop.is_set():
                    try:
                        job.run()
                    except Exception:
                        logger.exception("periodic.job_failed job=%s", job.name)
                    job.due = time.monotonic() + job.interval
            next_due = min(job.due for job in self._jobs)
            self._stop.wait(max(next_due - time.monotonic(), 0.05))
