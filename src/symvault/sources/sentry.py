"""Sentry's debug files API (`.../files/dsyms/`), of Sentry itself or of another symvault.

Files are found by asking the API (`?debug_id=...&code_id=...`) and downloaded
with `?id=N`, with the source's bearer token.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from symvault import jsontext
from symvault.logs import log_event
from symvault.model.objects import FileType, ObjectId, file_type_of
from symvault.model.sources import SentrySourceConfig
from symvault.sources.base import (
    CandidatesUnavailable,
    DownloadOutcome,
    DownloadStatus,
    RemoteFile,
)
from symvault.sources.http_client import HttpClient

__all__ = ["SentrySource"]

logger = logging.getLogger(__name__)


class SentrySource:
    def __init__(self, config: SentrySourceConfig, client: HttpClient) -> None:
        self._config = config
        self._client = client
        self._headers = {"Authorization": f"Bearer {config.token}"}

    @property
    def config(self) -> SentrySourceConfig:
        return self._config

    def _url(self, **params: str) -> str:
        separator = "&" if "?" in self._config.url else "?"
        return f"{self._config.url}{separator}{urlencode(params)}"

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        params = {}
        if object_id.debug_id:
            params["debug_id"] = object_id.debug_id
        if object_id.code_id:
            params["code_id"] = object_id.code_id
        if not params:
            return []
        listing_url = self._url(**params, per_page="100")
        response = self._client.fetch(listing_url, headers=self._headers)
        if response.status != "ok":
            log_event(
                logger,
                "sentry_source.list_failed",
                logging.WARNING,
                source=self._config.id,
                status=response.status.value,
                details=response.details,
            )
            if response.status is DownloadStatus.NOT_FOUND:
                return []
            raise CandidatesUnavailable(
                listing_url, DownloadOutcome(response.status, response.details)
            )
        try:
            listing = jsontext.loads(response.body)
        except ValueError:
            listing = None
        if not isinstance(listing, list):
            raise CandidatesUnavailable(
                listing_url,
                DownloadOutcome(DownloadStatus.ERROR, "the listing is not a JSON list"),
            )
        found = []
        wanted = set(file_types)
        for item in listing:
            if not isinstance(item, dict) or "id" not in item:
                continue
            data = item.get("data")
            kind = data.get("type") if isinstance(data, dict) else None
            file_type = file_type_of(str(item.get("symbolType", "")), kind)
            if file_type is None or file_type not in wanted:
                continue
            file_id = str(item["id"])
            found.append(
                RemoteFile(self._config.id, file_type, self._url(id=file_id), f"id-{file_id}")
            )
        order = {file_type: index for index, file_type in enumerate(file_types)}
        return sorted(found, key=lambda remote: order[remote.file_type])

    def local_path(self, remote: RemoteFile) -> Path | None:
        return None

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        return self._client.download(remote.location, destination, headers=self._headers)
