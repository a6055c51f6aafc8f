"""Finding the best file for a module in one source.

Candidates are the source's files for the module, in the order the source
gives them. The best one offers what the purpose needs (debug info for
symbolication, unwind info for stack walking, sources for source context),
else a symbol table, else anything; among equals the first wins. Metadata of
candidates is read from `object_meta` when known, so a candidate is only
downloaded when its contents are unknown or it is the one chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from symvault.caches.object_meta import ObjectInfo, ObjectMeta, ObjectMetas
from symvault.caches.objects import FetchedObject, ObjectFiles
from symvault.caching.entries import EntryStatus
from symvault.model.objects import FileType, ObjectId
from symvault.sources.base import CandidatesUnavailable, DownloadStatus, RemoteFile, Source

__all__ = ["Candidate", "FoundObject", "Purpose", "SearchResult", "quality", "search_source"]


class Purpose(StrEnum):
    """What a file is wanted for, and so which feature makes it the best."""

    DEBUG = "debug"
    UNWIND = "unwind"
    SOURCES = "sources"


@dataclass(frozen=True)
class Candidate:
    """What happened with one place a file may be (Symbolicator's `dif_candidates`)."""

    source_id: str
    location: str
    status: DownloadStatus
    details: str | None = None
    features: frozenset[str] | None = None

    def to_json(self) -> dict[str, object]:
        download: dict[str, object] = {"status": self.status.value}
        if self.details:
            download["details"] = self.details
        if self.features is not None:
            download["features"] = {
                "has_debug_info": "debug" in self.features,
                "has_unwind_info": "unwind" in self.features,
                "has_symbols": "symtab" in self.features,
                "has_sources": "sources" in self.features,
            }
        return {"source": self.source_id, "location": self.location, "download": download}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Candidate:
        download = data.get("download")
        download = download if isinstance(download, dict) else {}
        features_json = download.get("features")
        features = None
        if isinstance(features_json, dict):
            names = {
                "has_debug_info": "debug",
                "has_unwind_info": "unwind",
                "has_symbols": "symtab",
                "has_sources": "sources",
            }
            features = frozenset(name for key, name in names.items() if features_json.get(key))
        details = download.get("details")
        return cls(
            source_id=str(data.get("source", "")),
            location=str(data.get("location", "")),
            status=DownloadStatus(str(download.get("status", "error"))),
            details=str(details) if details else None,
            features=features,
        )


@dataclass(frozen=True)
class FoundObject:
    remote: RemoteFile
    path: Path
    info: ObjectInfo
    quality: int

    @property
    def preferred(self) -> bool:
        return self.quality == 2


@dataclass
class SearchResult:
    found: FoundObject | None
    candidates: list[Candidate] = field(default_factory=list)


def quality(features: frozenset[str], purpose: Purpose) -> int:
    """2: has what the purpose needs; 1: a symbol table; 0: anything else."""
    if purpose.value in features:
        return 2
    if purpose is not Purpose.SOURCES and "symtab" in features:
        return 1
    return 0


def search_source(
    source: Source,
    object_id: ObjectId,
    file_types: Sequence[FileType],
    purpose: Purpose,
    scope: str,
    objects: ObjectFiles,
    metas: ObjectMetas,
) -> SearchResult:
    """Finds the best candidate file of `source` for the module."""
    result = SearchResult(found=None)
    best: tuple[int, RemoteFile, ObjectInfo, Path | None] | None = None
    try:
        remotes = source.candidates(object_id, file_types)
    except CandidatesUnavailable as exc:
        result.candidates.append(
            Candidate(source.config.id, exc.location, exc.outcome.status, exc.outcome.details)
        )
        return result
    for remote in remotes:
        meta = metas.peek(source.config, remote, scope)
        fetched: FetchedObject | None = None
        if meta is None:
            fetched = objects.fetch(source, remote, scope)
            if fetched.path is None:
                result.candidates.append(
                    Candidate(
                        source.config.id,
                        remote.location,
                        fetched.outcome.status,
                        fetched.outcome.details,
                    )
                )
                continue
            meta = metas.describe(source.config, remote, scope, fetched.path)
        info = _usable(meta, object_id, purpose)
        if info is None:
            result.candidates.append(_rejected(source, remote, meta))
            continue
        result.candidates.append(
            Candidate(source.config.id, remote.location, DownloadStatus.OK, features=info.features)
        )
        rank = quality(info.features, purpose)
        if best is None or rank > best[0]:
            best = (rank, remote, info, fetched.path if fetched else None)
        if rank == 2:
            break
    if best is None:
        return result
    rank, remote, info, path = best
    if path is None:
        fetched = objects.fetch(source, remote, scope)
        if fetched.path is None:
            # Known from its metadata, but the file cannot be fetched again right now.
            result.candidates.append(
                Candidate(
                    source.config.id,
                    remote.location,
                    fetched.outcome.status,
                    fetched.outcome.details,
                )
            )
            return result
        path = fetched.path
    result.found = FoundObject(remote, path, info, rank)
    return result


def _usable(meta: ObjectMeta, object_id: ObjectId, purpose: Purpose) -> ObjectInfo | None:
    if meta.status is not EntryStatus.OK:
        return None
    info = meta.matching(object_id)
    if info is None:
        return None
    if purpose is Purpose.SOURCES and "sources" not in info.features:
        return None
    return info


def _rejected(source: Source, remote: RemoteFile, meta: ObjectMeta) -> Candidate:
    if meta.status is not EntryStatus.OK:
        return Candidate(source.config.id, remote.location, DownloadStatus.MALFORMED, meta.detail)
    return Candidate(
        source.config.id,
        remote.location,
        DownloadStatus.NOT_FOUND,
        "the file does not contain the requested object",
    )
