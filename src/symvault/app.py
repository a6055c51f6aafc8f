"""The composition root: builds every service from the configuration.

Nothing else in symvault chooses concrete implementations (storage backend,
database) or holds process-wide state; the API receives a `Services` object.
"""

from __future__ import annotations

import functools
import gc
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from symvault.allocator import keep_free_memory, limit_arenas, release_free_memory
from symvault.caches.children import ChildComputations
from symvault.caches.service import Caches
from symvault.childpool import ChildPool
from symvault.config import Config
from symvault.metrics import Metrics
from symvault.periodic import PeriodicJobs
from symvault.store.accounts import Accounts
from symvault.store.assembly import Assembler
from symvault.store.chunks import ChunkStore
from symvault.store.database import Database
from symvault.store.debug_files import DebugFiles
from symvault.store.filesystem import FilesystemStorage
from symvault.store.legacy_uploads import LegacyUploads
from symvault.store.locks import FileLock
from symvault.store.storage import Storage
from symvault.store.zips import ZipLimits
from symvault.symbolication.mozilla import MozillaSymbolicator
from symvault.symbolication.requests import RequestRegistry
from symvault.symbolication.service import Symbolicator

__all__ = ["Services", "build_services", "fetch_child"]

logger = logging.getLogger(__name__)

_CHUNK_SWEEP_INTERVAL = 600.0
#: malloc arenas of a server process (glibc's default is eight per core).
_MALLOC_ARENAS = 4
#: Temporary upload files older than this were left by a process that died.
STALE_STAGING_SECONDS = 6 * 3600.0
_RELEASE_MEMORY_INTERVAL = 10.0


@dataclass
class Services:
    """Everything the API and the command line work with."""

    config: Config
    db: Database
    storage: Storage
    metrics: Metrics
    accounts: Accounts
    chunks: ChunkStore
    debug_files: DebugFiles
    assembler: Assembler
    legacy_uploads: LegacyUploads
    caches: Caches
    symbolicator: Symbolicator
    mozilla: MozillaSymbolicator
    symbolication_executor: ThreadPoolExecutor
    requests: RequestRegistry
    periodic: PeriodicJobs
    fetch_children: ChildPool | None = None

    def start(self) -> None:
        """Starts background work (assembly workers, periodic maintenance, fetch
        processes) and loads what requests would otherwise load on first use."""
        limit_arenas(_MALLOC_ARENAS)
        if self.fetch_children is not None:
            # In the background: until they are ready, this process fetches itself.
            self.fetch_children.start()
        self.symbolicator.warm_up()
        self.accounts.warm_up()
        self.caches.warm_up()
        self.assembler.start()
        self.periodic.start()

    def stop(self) -> None:
        self.periodic.stop()
        if self.fetch_children is not None:
            self.fetch_children.close()
        self.assembler.stop()
        self.symbolication_executor.shutdown(wait=False, cancel_futures=True)
        self.symbolicator.close()
        self.caches.close()
        self.db.dispose()


def build_services(config: Config, *, migrate: bool = True) -> Services:
    """Creates the data directory, opens the database and wires the services."""
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(config.database_url, config.database.pool_size, lock_dir=data_dir / "locks")
    if migrate:
        db.migrate()
    storage = FilesystemStorage(data_dir / "store")
    metrics = Metrics()
    chunks = ChunkStore(db, storage, FileLock(data_dir / "locks" / "chunks.lock"))
    debug_files = DebugFiles(db, storage)
    accounts = Accounts(db)
    caches = Caches(config, metrics, accounts, debug_files, storage)
    on_recorded = caches.precompute if config.caches.precompute_on_upload else None
    upload = config.upload
    assembler = Assembler(db, chunks, debug_files, storage, upload, metrics, on_recorded)
    legacy_uploads = LegacyUploads(
        debug_files,
        storage.staging_dir(),
        ZipLimits(
            max_members=upload.legacy_max_members,
            max_member_size=upload.max_file_size,
            max_total_size=upload.max_file_size,
            max_ratio=upload.legacy_max_ratio,
        ),
        upload.validate_max_size,
        on_recorded,
    )
    symbolication = config.symbolication
    fetch_children = None
    computations = None
    if symbolication.fetch_processes > 0:
        fetch_children = ChildPool(
            symbolication.fetch_processes,
            fetch_child,
            (config,),
            symbolication.fetch_threads,
            "fetch",
        )
        computations = ChildComputations(fetch_children, metrics)
        metrics.fetch_processes.set_function(lambda: fetch_children.running)
        metrics.fetch_processes_configured.set(fetch_children.size)
    symbolicator = Symbolicator(
        caches.symcaches,
        caches.sourcebundles,
        symbolication.fetch_threads,
        symbolication.inline_frames,
        computations,
    )
    requests = RequestRegistry(
        config.max_concurrent_requests,
        symbolication.request_retention.total_seconds(),
        symbolication.max_request_duration.total_seconds(),
        shared_dir=data_dir / "requests" if config.server.workers > 1 else None,
    )
    periodic = PeriodicJobs()
    periodic.add(
        "sweep-chunks",
        _CHUNK_SWEEP_INTERVAL,
        lambda: chunks.sweep(upload.chunk_retention),
        delay=60,
    )
    periodic.add(
        "sweep-staging",
        _CHUNK_SWEEP_INTERVAL,
        lambda: storage.sweep_staging(STALE_STAGING_SECONDS),
        delay=60,
    )
    if config.caches.cleanup_interval is not None:
        interval = config.caches.cleanup_interval.total_seconds()
        periodic.add("cache-cleanup", interval, caches.cleanup_in_child, delay=min(interval, 300))
    periodic.add("expire-requests", 30, requests.sweep_shared, delay=30)
    periodic.add(
        "release-memory",
        _RELEASE_MEMORY_INTERVAL,
        release_free_memory,
        delay=_RELEASE_MEMORY_INTERVAL,
    )
    return Services(
        config=config,
        db=db,
        storage=storage,
        metrics=metrics,
        accounts=accounts,
        chunks=chunks,
        debug_files=debug_files,
        assembler=assembler,
        legacy_uploads=legacy_uploads,
        caches=caches,
        symbolicator=symbolicator,
        mozilla=MozillaSymbolicator(caches.symcaches),
        symbolication_executor=ThreadPoolExecutor(
            symbolication.threads, thread_name_prefix="symbolicate"
        ),
        requests=requests,
        periodic=periodic,
        fetch_children=fetch_children,
    )


def fetch_child(config: Config) -> Caches:
    """What a fetch process (`symbolication.fetch_processes`) works with: the caches and
    what they read, without the server's background work (the server process runs
    cleanup and sweeps for all)."""
    reserve = config.symbolication.fetch_memory_reserve
    if not keep_free_memory(reserve):
        limit_arenas(_MALLOC_ARENAS)
    data_dir = config.data_dir
    db = Database(config.database_url, config.database.pool_size, lock_dir=data_dir / "locks")
    storage = FilesystemStorage(data_dir / "store")
    caches = Caches(config, Metrics(), Accounts(db), DebugFiles(db, storage), storage)
    periodic = PeriodicJobs()
    periodic.add(
        "release-memory",
        _RELEASE_MEMORY_INTERVAL,
        functools.partial(release_free_memory, reserve),
        delay=_RELEASE_MEMORY_INTERVAL,
    )
    periodic.start()
    caches.warm_up()
    gc.freeze()  # as in server processes: what exists now lives as long as the process
    return caches
