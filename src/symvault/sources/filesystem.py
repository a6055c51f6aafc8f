"""A directory of debug files arranged in one of the layouts."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import FilesystemSourceConfig
from symvault.sources.base import DownloadOutcome, DownloadStatus, RemoteFile
from symvault.sources.layouts import layout_paths

__all__ = ["FilesystemSource"]


class FilesystemSource:
    def __init__(self, config: FilesystemSourceConfig) -> None:
        self._config = config
        self._root = Path(config.path).resolve()

    @property
    def config(self) -> FilesystemSourceConfig:
        return self._config

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        found = []
        for file_type in file_types:
            for relative in layout_paths(self._config.layout, file_type, object_id):
                path = self._inside_root(relative)
                if path is not None:
                    found.append(RemoteFile(self._config.id, file_type, str(path), relative))
        return found

    def _inside_root(self, relative: str) -> Path | None:
        path = (self._root / relative).resolve()
        return path if path.is_relative_to(self._root) else None

    def local_path(self, remote: RemoteFile) -> Path | None:
        path = Path(remote.location)
        return path if path.is_file() else None

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        try:
            shutil.copyfile(remote.location, destination)
        except FileNotFoundError:
            return DownloadOutcome(DownloadStatus.NOT_FOUND)
        except PermissionError as exc:
            return DownloadOutcome(DownloadStatus.NO_PERMISSION, str(exc))
        except OSError as exc:
            return DownloadOutcome(DownloadStatus.ERROR, str(exc))
        return DownloadOutcome(DownloadStatus.OK)
