"""This server's own uploads of one project, read straight from the store.

Files are found in the metadata database by debug id (or code id) and read in
place from storage: nothing is copied for the filesystem storage.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from symvault.model.objects import FileType, ObjectId, file_type_of
from symvault.model.sources import StoreSourceConfig
from symvault.sources.base import DownloadOutcome, DownloadStatus, RemoteFile
from symvault.store.accounts import Accounts
from symvault.store.debug_files import DebugFiles
from symvault.store.storage import Storage

__all__ = ["StoreSource"]


class StoreSource:
    def __init__(
        self,
        config: StoreSourceConfig,
        accounts: Accounts,
        debug_files: DebugFiles,
        storage: Storage,
    ) -> None:
        self._config = config
        self._accounts = accounts
        self._debug_files = debug_files
        self._storage = storage

    @property
    def config(self) -> StoreSourceConfig:
        return self._config

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        project = self._accounts.find_project_by_slugs(
            self._config.organization, self._config.project
        )
        if project is None:
            return []
        records = self._debug_files.find_for_module(
            project.id, object_id.debug_id, object_id.code_id
        )
        order = {file_type: index for index, file_type in enumerate(file_types)}
        found = []
        for record in records:
            file_type = file_type_of(record.file_format, record.kind)
            if file_type is None or file_type not in order:
                continue
            location = f"store://{self._config.organization}/{self._config.project}/{record.id}"
            found.append(RemoteFile(self._config.id, file_type, location, f"{record.storage_key}"))
        # Newest first within each file type, file types in the order asked for.
        return sorted(found, key=lambda remote: order[remote.file_type])

    def local_path(self, remote: RemoteFile) -> Path | None:
        path = self._storage.local_path(remote.cache_key)
        return path if path is not None and path.is_file() else None

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        try:
            with self._storage.open(remote.cache_key) as source, destination.open("wb") as out:
                shutil.copyfileobj(source, out, 1024 * 1024)
        except FileNotFoundError:
            return DownloadOutcome(DownloadStatus.NOT_FOUND, "the stored file was deleted")
        except OSError as exc:
            return DownloadOutcome(DownloadStatus.ERROR, str(exc))
        return DownloadOutcome(DownloadStatus.OK)
