"""The legacy single-request upload: one debug file, or a zip of them.

Every object in every file becomes a record, as Sentry's
`create_files_from_dif_zip` does. A zip that is itself a debug file (a source
bundle) is stored as it is. Zip members that are not debug files are skipped.
"""

from __future__ import annotations

import dataclasses
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

from symvault.errors import BadRequest, DebugFileError
from symvault.model.difs import DebugFile, DifMeta
from symvault.store.debug_files import DebugFiles
from symvault.store.detection import detect_file
from symvault.store.validation import admit
from symvault.store.zips import ExtractedMember, ZipLimits, extract_members

__all__ = ["LegacyUploads"]


class LegacyUploads:
    """Turns one uploaded file into debug file records."""

    def __init__(
        self,
        debug_files: DebugFiles,
        staging_dir: Path,
        limits: ZipLimits,
        validate_max_size: int,
        on_recorded: Callable[[DebugFile], None] | None = None,
    ) -> None:
        self._debug_files = debug_files
        self._staging = staging_dir
        self._limits = limits
        self._validate_max_size = validate_max_size
        self._on_recorded = on_recorded

    def ingest(
        self, project: Callable[[], int], path: Path, name: str, sha1: str, size: int
    ) -> list[DebugFile]:
        """Records the debug files in the upload; returns the records that are new.

        `project` gives the project's id; it is called only once the upload has been
        checked, so that a refused upload does not create the project.
        """
        try:
            metas = detect_file(path, name)
        except DebugFileError as exc:
            if not zipfile.is_zipfile(path):
                raise BadRequest(str(exc)) from exc
            return self._ingest_zip(project, path)
        self._admit(metas, path, size, name)
        return self._record(project(), metas, path, sha1, size)

    def _ingest_zip(self, project: Callable[[], int], path: Path) -> list[DebugFile]:
        # Every member is checked before any is recorded: a refused zip leaves nothing.
        with tempfile.TemporaryDirectory(prefix="zip-accepted-", dir=self._staging) as kept:
            accepted: list[tuple[list[DifMeta], ExtractedMember]] = []
            for member in extract_members(path, self._staging, self._limits):
                try:
                    metas = detect_file(member.path, member.name)
                except DebugFileError:
                    continue
                self._admit(metas, member.path, member.size, member.name)
                target = Path(kept) / str(len(accepted))
                member.path.replace(target)
                accepted.append((metas, dataclasses.replace(member, path=target)))
            if not accepted:
                raise BadRequest("The zip file contains no debug information files")
            created: list[DebugFile] = []
            project_id = project()
            for metas, member in accepted:
                created.extend(
                    self._record(project_id, metas, member.path, member.sha1, member.size)
                )
        return created

    def _admit(self, metas: list[DifMeta], path: Path, size: int, name: str) -> None:
        for meta in metas:
            try:
                admit(path, meta, size, self._validate_max_size)
            except DebugFileError as exc:
                raise BadRequest(f"{name}: {exc}") from exc

    def _record(
        self, project_id: int, metas: list[DifMeta], path: Path, sha1: str, size: int
    ) -> list[DebugFile]:
        created = []
        for meta in metas:
            # The first object moves the file into storage; the others share it.
            record, is_new = self._debug_files.create(project_id, meta, sha1, size, path)
            if is_new:
                created.append(record)
                if self._on_recorded is not None:
                    self._on_recorded(record)
        for debug_id in {meta.debug_id for meta in metas}:
            self._debug_files.clean_redundant(project_id, debug_id)
        return created
