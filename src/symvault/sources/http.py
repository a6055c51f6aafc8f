"""An HTTP symbol server arranged in one of the layouts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import HttpSourceConfig
from symvault.sources.base import DownloadOutcome, RemoteFile
from symvault.sources.http_client import HttpClient
from symvault.sources.layouts import layout_paths

__all__ = ["HttpSource"]


class HttpSource:
    def __init__(self, config: HttpSourceConfig, client: HttpClient) -> None:
        self._config = config
        self._client = client

    @property
    def config(self) -> HttpSourceConfig:
        return self._config

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        return [
            RemoteFile(self._config.id, file_type, self._config.url + quote(relative), relative)
            for file_type in file_types
            for relative in layout_paths(self._config.layout, file_type, object_id)
        ]

    def local_path(self, remote: RemoteFile) -> Path | None:
        return None

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        return self._client.download(
            remote.location,
            destination,
            headers=self._config.headers,
            verify=not self._config.accept_invalid_certs,
        )
