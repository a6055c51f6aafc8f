"""An S3 (or S3-compatible) bucket of debug files arranged in one of the layouts."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from symvault.model.objects import FileType, ObjectId
from symvault.model.sources import S3SourceConfig
from symvault.sources.addresses import AddressPolicy, BlockedAddress
from symvault.sources.base import DownloadOutcome, DownloadStatus, RemoteFile
from symvault.sources.http_client import HttpLimits
from symvault.sources.layouts import layout_paths

__all__ = ["S3Source"]

_BLOCK = 1024 * 1024
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_NO_PERMISSION_CODES = frozenset(
    {"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)


class S3Source:
    def __init__(self, config: S3SourceConfig, limits: HttpLimits, policy: AddressPolicy) -> None:
        self._config = config
        self._limits = limits
        self._policy = policy
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def config(self) -> S3SourceConfig:
        return self._config

    def _key(self, relative: str) -> str:
        prefix = self._config.prefix.strip("/")
        return f"{prefix}/{relative}" if prefix else relative

    def candidates(self, object_id: ObjectId, file_types: Sequence[FileType]) -> list[RemoteFile]:
        return [
            RemoteFile(
                self._config.id,
                file_type,
                f"s3://{self._config.bucket}/{self._key(relative)}",
                relative,
            )
            for file_type in file_types
            for relative in layout_paths(self._config.layout, file_type, object_id)
        ]

    def local_path(self, remote: RemoteFile) -> Path | None:
        return None

    def _s3(self) -> Any:
        with self._lock:
            if self._client is None:
                region = self._config.region
                endpoint = None
                if isinstance(region, tuple):
                    region, endpoint = region
                    parts = urlsplit(endpoint)
                    default_port = 443 if parts.scheme == "https" else 80
                    self._policy.resolve(parts.hostname or "", parts.port or default_port)
                self._client = boto3.session.Session().client(
                    "s3",
                    region_name=region,
                    endpoint_url=endpoint,
                    aws_access_key_id=self._config.access_key,
                    aws_secret_access_key=self._config.secret_key,
                    config=BotoConfig(
                        connect_timeout=self._limits.connect_timeout,
                        read_timeout=self._limits.streaming_timeout,
                        retries={"max_attempts": self._limits.retries + 1, "mode": "standard"},
                    ),
                )
            return self._client

    def download(self, remote: RemoteFile, destination: Path) -> DownloadOutcome:
        try:
            response = self._s3().get_object(
                Bucket=self._config.bucket, Key=self._key(remote.cache_key)
            )
        except BlockedAddress as exc:
            return DownloadOutcome(DownloadStatus.ERROR, str(exc))
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND_CODES:
                return DownloadOutcome(DownloadStatus.NOT_FOUND)
            if code in _NO_PERMISSION_CODES:
                return DownloadOutcome(DownloadStatus.NO_PERMISSION, code)
            return DownloadOutcome(DownloadStatus.ERROR, f"S3 error {code}")
        except (BotoCoreError, OSError) as exc:
            return DownloadOutcome(DownloadStatus.ERROR, f"S3 unreachable: {exc}")
        size = int(response.get("ContentLength") or 0)
        if size > self._limits.max_size:
            response["Body"].close()
            return DownloadOutcome(
                DownloadStatus.ERROR, f"file is larger than the limit of {self._limits.max_size}"
            )
        written = 0
        try:
            with destination.open("wb") as out:
                for block in response["Body"].iter_chunks(_BLOCK):
                    written += len(block)
                    if written > self._limits.max_size:
                        return DownloadOutcome(
                            DownloadStatus.ERROR,
                            f"file is larger than the limit of {self._limits.max_size}",
                        )
                    out.write(block)
        except (BotoCoreError, OSError) as exc:
            return DownloadOutcome(DownloadStatus.ERROR, f"S3 download broke off: {exc}")
        finally:
            response["Body"].close()
        return DownloadOutcome(DownloadStatus.OK)
