"""Finding the best file for a module in one source.

Candidates are the source's files for the module, in the order the source
gives them. The best one offers what the purpose needs (debug info for
symbolication, unwind info for stack walking, sources for source context),
else a symbol table, else anything; among equals the first wins. Metadata of
candidates is read from `object_meta` when known, so a candidate is only
downloaded when its contents are unknown or it is the one chosen. Of the
unknown ones the first is fetched alone, the others together if it is not
enough (`_Fetches`).
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
    known = _worth_asking(
        remotes,
        [metas.peek(source.config, remote, scope) for remote in remotes],
        object_id,
        purpose,
    )
    fetches = _Fetches(source, [remote for remote, meta in known if meta is None], scope, objects)
    # Candidates are judged in order, so that the first of equals wins; those fetched
    # together with or after the first preferred one are only recorded (they were asked).
    judging = True
    for remote, known_meta in known:
        fetched: FetchedObject | None = None
        if known_meta is not None:
            if not judging:
                continue  # not asked for: not a candidate tried
            meta = known_meta
        else:
            fetched = fetches.get(remote, ask=judging)
            if fetched is None:
                continue  # not asked for
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
        if judging and (best is None or rank > best[0]):
            best = (rank, remote, info, fetched.path if fetched else None)
        judging = judging and rank < 2
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


class _Fetches:
    """The candidates whose contents are unknown, fetched as they are needed: the first
    (the most useful file type) alone, then all the others together.

    The first is what most modules are found in, and asking for the others too would
    add a request each to every lookup (and download an executable besides its debug
    companion). When it is not enough, the rest are asked for at once, as Symbolicator
    asks for all: a module whose file is its fifth candidate waits for two answers,
    not five one after another."""

    def __init__(
        self, source: Source, remotes: list[RemoteFile], scope: str, objects: ObjectFiles
    ) -> None:
        self._source = source
        self._remotes = remotes
        self._scope = scope
        self._objects = objects
        self._fetched: dict[RemoteFile, FetchedObject] = {}

    def get(self, remote: RemoteFile, ask: bool) -> FetchedObject | None:
        """The fetched candidate; None if it was not fetched and `ask` is false."""
        if remote not in self._fetched and ask:
            batch = self._remotes[len(self._fetched) :]
            if not self._fetched:
                batch = batch[:1]
            fetched = self._objects.fetch_all(self._source, batch, self._scope)
            self._fetched.update(zip(batch, fetched, strict=True))
        return self._fetched.get(remote)


def _worth_asking(
    remotes: Sequence[RemoteFile],
    known: Sequence[ObjectMeta | None],
    object_id: ObjectId,
    purpose: Purpose,
) -> list[tuple[RemoteFile, ObjectMeta | None]]:
    """The candidates with their known metadata, up to the first known to be preferred:
    past it nothing needs asking for."""
    pairs = list(zip(remotes, known, strict=True))
    for index, (_, meta) in enumerate(pairs):
        info = _usable(meta, object_id, purpose) if meta is not None else None
        if info is not None and quality(info.features, purpose) == 2:
            return pairs[: index + 1]
    return pairs


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
