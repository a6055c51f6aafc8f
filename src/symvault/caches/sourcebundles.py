"""Source bundles: the source files of a module, for source context around frames.

The entry is a copy of the bundle (a zip with a `manifest.json`), found by the
module's ids like any other debug file. Copying keeps it usable after the
downloaded file expires, and gives misses and damaged bundles their
placeholders. `SourceBundle` reads files out of an entry.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import Any

from symvault import jsontext
from symvault.caches.derived import ConversionFailed
from symvault.caches.object_meta import ObjectInfo
from symvault.caches.search import Purpose
from symvault.caching.cacher import CacheVersions
from symvault.caching.entries import CacheEntry, EntryStatus

__all__ = ["SOURCEBUNDLE_VERSIONS", "SourceBundle", "SourceBundleConversion"]

#: Versions of source bundle entries, newest first, with the reason of each bump:
#: 1 - the bundle as uploaded, followed by a symvault entry trailer.
SOURCEBUNDLE_VERSIONS = CacheVersions(current=1)

_MAX_SOURCE_FILE = 16 * 1024 * 1024


class SourceBundleConversion:
    name = "sourcebundles"
    versions = SOURCEBUNDLE_VERSIONS
    purpose = Purpose.SOURCES

    def convert(self, source_file: Path, info: ObjectInfo, target: Path) -> dict[str, Any]:
        if info.file_format != "sourcebundle":
            raise ConversionFailed(
                EntryStatus.UNSUPPORTED, "only source bundles provide source context here"
            )
        try:
            with zipfile.ZipFile(source_file) as archive:
                index = _index(archive)
        except jsontext.TooDeep as exc:
            detail = "damaged source bundle: its manifest is nested too deeply"
            raise ConversionFailed(EntryStatus.MALFORMED, detail) from exc
        except (zipfile.BadZipFile, ValueError, KeyError, OSError) as exc:
            raise ConversionFailed(EntryStatus.MALFORMED, f"damaged source bundle: {exc}") from exc
        shutil.copyfile(source_file, target)
        return {"files": len(index)}

    def is_outdated(self, entry: CacheEntry) -> bool:
        return False


def _index(archive: zipfile.ZipFile) -> dict[str, str]:
    """Source path -> zip member, from the bundle's manifest."""
    manifest = jsontext.loads(archive.read("manifest.json"))
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise ValueError("manifest.json has no files")
    index: dict[str, str] = {}
    for member, description in files.items():
        if not isinstance(description, dict):
            continue
        path = description.get("path")
        if isinstance(path, str) and description.get("type", "source") == "source":
            index[_normalize(path)] = member
    return index


def _normalize(path: str) -> str:
    return path.replace("\\", "/")


class SourceBundle:
    """Source files of one bundle entry, read on demand."""

    def __init__(self, entry: CacheEntry) -> None:
        self._path = entry.path
        with zipfile.ZipFile(self._path) as archive:
            self._index = _index(archive)
        self._texts: dict[str, list[str] | None] = {}

    def lines(self, abs_path: str) -> list[str] | None:
        """The lines of a source file, or None if the bundle does not have it."""
        key = _normalize(abs_path)
        if key in self._texts:
            return self._texts[key]
        member = self._index.get(key)
        text: list[str] | None = None
        if member is not None:
            try:
                with zipfile.ZipFile(self._path) as archive:
                    info = archive.getinfo(member)
                    if info.file_size <= _MAX_SOURCE_FILE:
                        decoded = archive.read(member).decode("utf-8", errors="replace")
                        # Lines end at "\n" only (a form feed is not a line break here).
                        text = [line.removesuffix("\r") for line in decoded.split("\n")]
                        if text and text[-1] == "":
                            text.pop()
            except (zipfile.BadZipFile, KeyError, OSError):
                text = None
        self._texts[key] = text
        return text
