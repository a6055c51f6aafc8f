"""`Caches`: every cache kind wired together, for symbolication and the command line."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from symvault.caches.cficaches import CficacheConversion
from symvault.caches.derived import DerivedCache
from symvault.caches.object_meta import OBJECT_META_VERSIONS, ObjectMetas
from symvault.caches.objects import OBJECTS_VERSIONS, ObjectFiles
from symvault.caches.sourcebundles import SourceBundleConversion
from symvault.caches.symcaches import SymcacheConversion
from symvault.caching.cacher import Cacher, CacheVersions, Clock
from symvault.caching.cleanup import (
    CleanupReport,
    KindPolicy,
    SpaceBudget,
    run_cleanup,
    run_cleanup_in_child,
)
from symvault.caching.keys import GLOBAL_SCOPE
from symvault.caching.rules import ExpiryRules
from symvault.config import CacheConfig, Config
from symvault.logs import log_event
from symvault.metrics import Metrics
from symvault.model.difs import DebugFile
from symvault.model.objects import ObjectId
from symvault.model.sources import StoreSourceConfig
from symvault.sources.addresses import AddressPolicy
from symvault.sources.http_client import HttpLimits
from symvault.sources.registry import SourceRegistry
from symvault.store.accounts import Accounts
from symvault.store.debug_files import DebugFiles
from symvault.store.storage import Storage

__all__ = ["Caches", "expiry_rules", "http_limits"]

logger = logging.getLogger(__name__)

_PRECOMPUTE_QUEUE = 1000
#: Downloads of candidate files that run at once besides those of the threads asking for
#: them (a module's candidates are asked for together).
_PARALLEL_DOWNLOADS = 16


def _lower_priority() -> None:
    """Lowers the scheduling priority of the calling thread (Linux threads are tasks)."""
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)


def expiry_rules(config: CacheConfig) -> ExpiryRules:
    return ExpiryRules(
        max_unused_for=config.max_unused_for.total_seconds(),
        retry_misses_after=config.retry_misses_after.total_seconds(),
        retry_malformed_after=config.retry_malformed_after.total_seconds(),
        retry_errors_after=config.retry_errors_after.total_seconds(),
    )


def http_limits(config: Config) -> HttpLimits:
    return HttpLimits(
        connect_timeout=config.connect_timeout.total_seconds(),
        streaming_timeout=config.streaming_timeout.total_seconds(),
        total_timeout=config.max_download_timeout.total_seconds(),
        max_size=config.max_download_size,
        retries=config.download_retries,
        host_failure_limit=config.host_failure_limit,
        host_block_time=config.host_block_time.total_seconds(),
    )


class Caches:
    """Downloaded files, their metadata, symcaches and CFI caches."""

    def __init__(
        self,
        config: Config,
        metrics: Metrics,
        accounts: Accounts,
        debug_files: DebugFiles,
        storage: Storage,
        clock: Clock = time.time,
    ) -> None:
        self.root: Path = config.cache_root
        self._config = config
        self._metrics = metrics
        self._accounts = accounts
        self._clock = clock
        self._background = ThreadPoolExecutor(max_workers=2, thread_name_prefix="cache-bg")
        # Precomputing after uploads is a head start, not a duty: one thread, at low
        # scheduling priority, and skipped when a burst of uploads has queued too much.
        self._precomputing = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="precompute", initializer=_lower_priority
        )
        self._precompute_queue = threading.BoundedSemaphore(_PRECOMPUTE_QUEUE)
        started_at = clock()
        downloaded = expiry_rules(config.caches.downloaded)
        derived = expiry_rules(config.caches.derived)

        def cacher(
            name: str, versions: CacheVersions, rules: ExpiryRules, raw: bool = False
        ) -> Cacher:
            return Cacher(
                name,
                self.root,
                versions,
                rules,
                metrics,
                self._background,
                raw=raw,
                clock=clock,
                started_at=started_at,
            )

        symcache_conversion = SymcacheConversion()
        cficache_conversion = CficacheConversion()
        bundle_conversion = SourceBundleConversion()
        self._cachers = [
            cacher("objects", OBJECTS_VERSIONS, downloaded, raw=True),
            cacher("object_meta", OBJECT_META_VERSIONS, derived),
            cacher(symcache_conversion.name, symcache_conversion.versions, derived),
            cacher(cficache_conversion.name, cficache_conversion.versions, derived),
            cacher(bundle_conversion.name, bundle_conversion.versions, derived),
        ]
        objects_cacher, meta_cacher, symcache_cacher, cficache_cacher, bundle_cacher = self._cachers
        self.sources = SourceRegistry(
            http_limits(config),
            AddressPolicy(config.connect_to_reserved_ips, config.reserved_ip_allowlist),
            accounts,
            debug_files,
            storage,
        )
        self._objects = ObjectFiles(
            objects_cacher, metrics, config.max_download_size, _PARALLEL_DOWNLOADS
        )
        objects = self._objects
        metas = ObjectMetas(meta_cacher)
        self.symcaches = DerivedCache(
            symcache_conversion, symcache_cacher, self.sources, objects, metas, clock
        )
        self.cficaches = DerivedCache(
            cficache_conversion, cficache_cacher, self.sources, objects, metas, clock
        )
        self.sourcebundles = DerivedCache(
            bundle_conversion, bundle_cacher, self.sources, objects, metas, clock
        )

    def warm_up(self) -> None:
        """Sets up at start what the first cold request would otherwise wait for."""
        self.sources.warm_up()

    @property
    def metrics(self) -> Metrics:
        return self._metrics

    def derived(self, name: str) -> DerivedCache:
        """The derived cache kind called `name` (its conversion's name)."""
        for cache in (self.symcaches, self.cficaches, self.sourcebundles):
            if cache.conversion.name == name:
                return cache
        raise KeyError(name)

    def precompute(self, record: DebugFile) -> None:
        """Builds the store's symcache and CFI cache of a newly uploaded file in the background."""
        if not self._precompute_queue.acquire(blocking=False):
            log_event(logger, "cache.precompute_skipped", debug_id=record.debug_id)
            return
        try:
            self._precomputing.submit(self._precompute_queued, record)
        except RuntimeError:
            self._precompute_queue.release()  # shutting down

    def _precompute_queued(self, record: DebugFile) -> None:
        try:
            self._precompute(record)
        finally:
            self._precompute_queue.release()

    def _precompute(self, record: DebugFile) -> None:
        project = self._accounts.project_by_id(record.project_id)
        if project is None:
            return
        source = StoreSourceConfig(
            type="store",
            id="store",
            organization=project.organization_slug,
            project=project.slug,
        )
        object_id = ObjectId(debug_id=record.debug_id, code_id=record.code_id)
        caches: tuple[DerivedCache, ...] = (self.symcaches, self.cficaches)
        if record.file_format == "sourcebundle":
            caches = (self.sourcebundles,)
        for cache in caches:
            try:
                result = cache.recompute(source, object_id, GLOBAL_SCOPE)
            except Exception:
                logger.exception("cache.precompute_failed debug_id=%s", record.debug_id)
                continue
            log_event(
                logger,
                "cache.precomputed",
                kind=cache.conversion.name,
                debug_id=record.debug_id,
                status=result.status.value,
            )

    def policies(self) -> list[KindPolicy]:
        return [
            KindPolicy(cacher.name, cacher.versions, cacher.rules, cacher.raw)
            for cacher in self._cachers
        ]

    def cleanup(self, *, dry_run: bool = False) -> CleanupReport:
        """Cleans the caches in this process (`symvault cleanup`)."""
        return run_cleanup(
            self.root,
            self.policies(),
            self._budget(),
            self._clock(),
            self._metrics,
            dry_run=dry_run,
        )

    def cleanup_in_child(self) -> CleanupReport | None:
        """Cleans the caches in a child process, unless another process is at it (servers)."""
        lock = self.root / "locks" / "cleanup.lock"
        return run_cleanup_in_child(
            self.root, self.policies(), self._budget(), self._clock(), self._metrics, lock
        )

    def _budget(self) -> SpaceBudget:
        return SpaceBudget(self._config.caches.max_size, self._config.caches.min_free_space)

    def close(self) -> None:
        self._precomputing.shutdown(wait=False, cancel_futures=True)
        self._background.shutdown(wait=False, cancel_futures=True)
        self._objects.close()
        self.sources.close()
