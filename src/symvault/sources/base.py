"""The interface every source type implements, and what a download can end in."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Protocol

from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import SourceConfig

__all__ = [
    "CandidatesUnavailable",
    "DownloadOutcome",
    "DownloadStatus",
    "RemoteFile",
    "Source",
    "applicable_file_types",
    "source_applies",
]


class DownloadStatus(StrEnum):
    """How fetching one candidate ended (the `download.status` of a candidate)."""

    OK = "ok"
    NOT_FOUND = "notfound"
    NO_PERMISSION = "noperm"
    MALFORMED = "malformed"
    ERROR = "error"


@dataclass(frozen=True)
class DownloadOutcome:
    status: DownloadStatus
    details: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is DownloadStatus.OK


class CandidatesUnavailable(Exception):
    """A source could not say which files it has (its listing API failed)."""

    def __init__(self, location: str, outcome: DownloadOutcome) -> None:
        super().__init__(outcome.details)
        self.location = location
        self.outcome = outcome


@dataclass(frozen=True)
class RemoteFile:
    """One place where a source may hold a file for a module."""

    source_id: str
    file_type: FileType
    location: str
    """Where it is, for people: a URL, a path, `s3://bucket/key`, `store://org/project/id`."""
    cache_key: str
    """Unique within the source and safe as a relative file path."""


class Source(Protocol):
    """A place debug files are fetched from."""

    @property
    def config(self) -> SourceConfig: ...

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        """Where this source may hold files of `file_types` for the module, most likely first.

        May contact the source (a Sentry source asks its API); raises
        `CandidatesUnavailable` if that fails.
        """

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        """Writes the file (possibly compressed) to `destination`."""

    def local_path(self, remote: RemoteFile) -> Path | None:
        """A path already on this machine holding the file, if there is one (no copy needed)."""


def source_applies(source: SourceConfig, object_id: ObjectId) -> bool:
    """False if the source's filters exclude the module altogether."""
    filters = source.filters
    if filters.requires_checksum and not object_id.debug_checksum:
        return False
    return not filters.path_patterns or _matches_patterns(object_id, filters.path_patterns)


def applicable_file_types(
    source: SourceConfig, object_id: ObjectId, file_types: Sequence[FileType]
) -> list[FileType]:
    """The file types to look for in `source` after its filters, in the given order."""
    filters = source.filters
    if not source_applies(source, object_id):
        return []
    if filters.filetypes:
        return [file_type for file_type in file_types if file_type in filters.filetypes]
    return list(file_types)


def _matches_patterns(object_id: ObjectId, patterns: Sequence[str]) -> bool:
    paths = [
        path.replace("\\", "/").lower()
        for path in (object_id.code_file, object_id.debug_file)
        if path
    ]
    return any(
        fnmatch.fnmatchcase(path, pattern.replace("\\", "/").lower())
        for pattern in patterns
        for path in paths
    )
