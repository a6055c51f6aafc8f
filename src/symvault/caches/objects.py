"""Debug files fetched from sources: downloaded into the `objects` cache, or read in place.

Files that a source already holds on this machine (the store, directories) are
used where they are. Others are downloaded, unpacked if compressed, and kept
as raw cache entries until they have not been used for
`caches.downloaded.max_unused_for` (rule 1; using a file to compute a derived
cache counts as use). Failed downloads are not remembered here: the derived
cache that needed the file keeps the placeholder (enforcement point 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from symvault.caching.cacher import Cacher, CacheVersions, Computed
from symvault.caching.entries import EntryStatus
from symvault.caching.keys import CacheKey
from symvault.metrics import Metrics
from symvault.model.sources import SourceConfig, source_fingerprint
from symvault.sources.base import DownloadOutcome, DownloadStatus, RemoteFile, Source
from symvault.sources.decompress import UnpackError, unpack

__all__ = ["OBJECTS_VERSIONS", "FetchedObject", "ObjectFiles", "object_key"]

#: Versions of downloaded-file entries, newest first:
#: 1 - files as downloaded and unpacked, in 256 directories per source;
#: 2 - in one directory per source: a new directory costs a creation on the first
#:     downloads of a scope, which on some disks takes as long as the download.
OBJECTS_VERSIONS = CacheVersions(current=2)

_DOWNLOAD_TO_ENTRY = {
    DownloadStatus.NOT_FOUND: EntryStatus.NOT_FOUND,
    DownloadStatus.NO_PERMISSION: EntryStatus.NO_PERMISSION,
    DownloadStatus.MALFORMED: EntryStatus.MALFORMED,
    DownloadStatus.ERROR: EntryStatus.ERROR,
}
_ENTRY_TO_DOWNLOAD = {
    EntryStatus.NOT_FOUND: DownloadStatus.NOT_FOUND,
    EntryStatus.NO_PERMISSION: DownloadStatus.NO_PERMISSION,
    EntryStatus.MALFORMED: DownloadStatus.MALFORMED,
    EntryStatus.UNSUPPORTED: DownloadStatus.MALFORMED,
}


@dataclass(frozen=True)
class FetchedObject:
    remote: RemoteFile
    outcome: DownloadOutcome
    path: Path | None = None


def source_directory(config: SourceConfig) -> str:
    """The cache directory of a source: its type and the fingerprint of its definition."""
    return f"{config.type}-{source_fingerprint(config)}"


def object_key(config: SourceConfig, remote: RemoteFile, scope: str) -> CacheKey:
    digest = hashlib.sha256(remote.cache_key.encode()).hexdigest()
    return CacheKey(scope, (source_directory(config), digest[:40]))


class ObjectFiles:
    """Fetches candidate files, through the download cache when they are remote."""

    def __init__(
        self, cacher: Cacher, metrics: Metrics, max_size: int, parallel_downloads: int = 1
    ) -> None:
        """`parallel_downloads`: how many downloads `fetch_all` runs at once, in all."""
        self._cacher = cacher
        self._metrics = metrics
        self._max_size = max_size
        self._pool = (
            ThreadPoolExecutor(parallel_downloads, thread_name_prefix="download")
            if parallel_downloads > 1
            else None
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def fetch(self, source: Source, remote: RemoteFile, scope: str) -> FetchedObject:
        local = source.local_path(remote)
        if local is not None:
            return FetchedObject(remote, DownloadOutcome(DownloadStatus.OK), local)

        def download(target: Path) -> Computed:
            return self._download(source, remote, target)

        entry = self._cacher.get(object_key(source.config, remote, scope), download)
        if entry.ok:
            return FetchedObject(remote, DownloadOutcome(DownloadStatus.OK), entry.path)
        status = _ENTRY_TO_DOWNLOAD.get(entry.status, DownloadStatus.ERROR)
        return FetchedObject(remote, DownloadOutcome(status, entry.detail))

    def fetch_all(
        self, source: Source, remotes: Sequence[RemoteFile], scope: str
    ) -> list[FetchedObject]:
        """`fetch` of every one of `remotes` at the same time; the results in their order.

        The calling thread fetches the first itself rather than wait idle."""
        if len(remotes) < 2 or self._pool is None:
            return [self.fetch(source, remote, scope) for remote in remotes]
        later = [self._pool.submit(self.fetch, source, remote, scope) for remote in remotes[1:]]
        first = self.fetch(source, remotes[0], scope)
        return [first, *(future.result() for future in later)]

    def _download(self, source: Source, remote: RemoteFile, target: Path) -> Computed:
        outcome = source.download(remote, target)
        self._metrics.downloads.labels(source.config.type, outcome.status.value).inc()
        if not outcome.ok:
            return Computed(_DOWNLOAD_TO_ENTRY[outcome.status], outcome.details)
        try:
            unpacked = unpack(target, self._max_size)
        except UnpackError as exc:
            return Computed(EntryStatus.MALFORMED, str(exc))
        if unpacked != target:
            unpacked.replace(target)
        return Computed(EntryStatus.OK)
