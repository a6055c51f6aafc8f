"""What a fetched debug file contains, remembered apart from the file itself.

Choosing the best of several candidate files needs their features (debug
info, unwind info, symbol table). These small entries outlive the downloaded
files, so a later choice needs no download. A file symbolic cannot parse gets a
`malformed` entry (a failed conversion: retried after `retry_malformed_after`
or a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import symbolic

from symvault.caches.objects import object_key
from symvault.caching.cacher import Cacher, CacheVersions, Computed
from symvault.caching.entries import CacheEntry, EntryStatus
from symvault.model.objects import ObjectId
from symvault.model.sources import SourceConfig
from symvault.sources.base import RemoteFile

__all__ = ["OBJECT_META_VERSIONS", "ObjectInfo", "ObjectMeta", "ObjectMetas"]

#: Versions of object metadata entries, newest first:
#: 1 - debug id, code id, arch, format, kind and features of every object in the file;
#: 2 - keyed like the downloaded files (objects version 2): one directory per source.
OBJECT_META_VERSIONS = CacheVersions(current=2)


@dataclass(frozen=True)
class ObjectInfo:
    debug_id: str
    code_id: str | None
    arch: str
    file_format: str
    kind: str
    features: frozenset[str]

    def to_json(self) -> dict[str, object]:
        return {
            "debug_id": self.debug_id,
            "code_id": self.code_id,
            "arch": self.arch,
            "file_format": self.file_format,
            "kind": self.kind,
            "features": sorted(self.features),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> ObjectInfo:
        features = data.get("features")
        code_id = data.get("code_id")
        return cls(
            debug_id=str(data.get("debug_id", "")),
            code_id=str(code_id) if code_id else None,
            arch=str(data.get("arch", "unknown")),
            file_format=str(data.get("file_format", "unknown")),
            kind=str(data.get("kind", "other")),
            features=frozenset(str(f) for f in features)
            if isinstance(features, list)
            else frozenset(),
        )


@dataclass(frozen=True)
class ObjectMeta:
    status: EntryStatus
    detail: str | None
    objects: tuple[ObjectInfo, ...]

    def matching(self, object_id: ObjectId) -> ObjectInfo | None:
        """The object in the file that the module is, if any."""
        if object_id.debug_id:
            wanted = object_id.debug_id[:36]
            return next((obj for obj in self.objects if obj.debug_id[:36] == wanted), None)
        if object_id.code_id:
            return next((obj for obj in self.objects if obj.code_id == object_id.code_id), None)
        return self.objects[0] if len(self.objects) == 1 else None

    @classmethod
    def from_entry(cls, entry: CacheEntry) -> ObjectMeta:
        raw = entry.info.get("objects")
        objects = tuple(ObjectInfo.from_json(item) for item in raw) if isinstance(raw, list) else ()
        return cls(entry.status, entry.detail, objects)


def read_objects(path: Path) -> tuple[ObjectInfo, ...]:
    """Parses every object in a file with symbolic; raises `symbolic.SymbolicError`."""
    archive = symbolic.Archive.open(str(path))
    return tuple(
        ObjectInfo(
            debug_id=obj.debug_id,
            code_id=obj.code_id or None,
            arch=obj.arch,
            file_format=obj.file_format,
            kind=obj.kind,
            features=frozenset(obj.features),
        )
        for obj in archive.iter_objects()
    )


class ObjectMetas:
    def __init__(self, cacher: Cacher) -> None:
        self._cacher = cacher

    def peek(self, config: SourceConfig, remote: RemoteFile, scope: str) -> ObjectMeta | None:
        entry = self._cacher.peek(object_key(config, remote, scope))
        return ObjectMeta.from_entry(entry) if entry is not None else None

    def describe(
        self, config: SourceConfig, remote: RemoteFile, scope: str, path: Path
    ) -> ObjectMeta:
        """The metadata of the file at `path`, computed once and cached."""

        def parse(target: Path) -> Computed:
            try:
                objects = read_objects(path)
            except symbolic.SymbolicError as exc:
                detail = str(exc).replace("\n", "; ")
                return Computed(EntryStatus.MALFORMED, detail)
            return Computed(EntryStatus.OK, info={"objects": [obj.to_json() for obj in objects]})

        entry = self._cacher.get(object_key(config, remote, scope), parse)
        return ObjectMeta.from_entry(entry)
