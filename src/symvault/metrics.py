"""Declared metric names, exported at `/metrics` in the Prometheus text format.

All metrics live in one `Metrics` object per process (no module globals), so
tests and several apps in one process do not share counters.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["Counts", "Metrics"]

#: Counter increments: (metric name, label values by name, amount).
Counts = list[tuple[str, dict[str, str], float]]


class Metrics:
    """The registry and every metric symvault records."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "symvault_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "symvault_http_request_duration_seconds",
            "Time to answer HTTP requests, by route template.",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.chunks_uploaded = Counter(
            "symvault_chunks_uploaded",
            "Chunks received through the chunk-upload endpoint.",
            registry=self.registry,
        )
        self.chunk_bytes = Counter(
            "symvault_chunk_bytes",
            "Bytes of chunk data received (after decompression).",
            registry=self.registry,
        )
        self.assembled = Counter(
            "symvault_assembled_files",
            "Assembly jobs by outcome (ok, error).",
            ["outcome"],
            registry=self.registry,
        )

        kind = ["kind"]
        self.cache_hits = Counter(
            "symvault_cache_hits", "Cache lookups answered from disk.", kind, registry=self.registry
        )
        self.cache_misses = Counter(
            "symvault_cache_misses",
            "Cache lookups that had to compute the entry.",
            kind,
            registry=self.registry,
        )
        self.cache_computations = Counter(
            "symvault_cache_computations",
            "Entries computed (downloads, conversions).",
            kind,
            registry=self.registry,
        )
        self.cache_errors = Counter(
            "symvault_cache_errors",
            "Computations that ended in a placeholder or failed.",
            kind,
            registry=self.registry,
        )
        self.cache_evictions = Counter(
            "symvault_cache_evictions",
            "Entries removed by cleanup (expired or evicted for space).",
            kind,
            registry=self.registry,
        )
        self.cache_bytes_written = Counter(
            "symvault_cache_bytes_written",
            "Bytes written into the cache.",
            kind,
            registry=self.registry,
        )
        self.cache_bytes = Gauge(
            "symvault_cache_bytes",
            "Bytes on disk per cache kind, as measured by the last cleanup.",
            kind,
            registry=self.registry,
        )
        self.downloads = Counter(
            "symvault_source_downloads",
            "Downloads from sources by source type and outcome.",
            ["source_type", "outcome"],
            registry=self.registry,
        )

        self.fetch_processes = Gauge(
            "symvault_fetch_processes",
            "Fetch processes of this server process ready for work.",
            registry=self.registry,
        )
        self.fetch_processes_configured = Gauge(
            "symvault_fetch_processes_configured",
            "Fetch processes this server process is configured to run.",
            registry=self.registry,
        )
        self._counters = {
            next(iter(metric.describe())).name: metric
            for metric in vars(self).values()
            if isinstance(metric, Counter)
        }
        self._reported: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self._reported_lock = threading.Lock()

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def take_counts(self) -> Counts:
        """What the counters have counted since the last call (for a child process to
        hand its counts to its parent, which exports them)."""
        counts: Counts = []
        with self._reported_lock:
            for family in self.registry.collect():
                if family.type != "counter":
                    continue
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue
                    key = (family.name, tuple(sorted(sample.labels.items())))
                    amount = sample.value - self._reported.get(key, 0.0)
                    if amount:
                        self._reported[key] = sample.value
                        counts.append((family.name, dict(sample.labels), amount))
        return counts

    def add_counts(self, counts: Counts) -> None:
        """Adds counts taken in another process (`take_counts`) to these counters."""
        for name, labels, amount in counts:
            counter = self._counters.get(name)
            if counter is None or amount <= 0:
                continue
            (counter.labels(**labels) if labels else counter).inc(amount)
