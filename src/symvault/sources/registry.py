"""Turning source definitions into `Source` objects, shared per definition."""

from __future__ import annotations

import threading

from symvault.model.sources import (
    FilesystemSourceConfig,
    HttpSourceConfig,
    S3SourceConfig,
    SentrySourceConfig,
    SourceConfig,
    StoreSourceConfig,
    source_fingerprint,
)
from symvault.sources.addresses import AddressPolicy
from symvault.sources.base import Source
from symvault.sources.filesystem import FilesystemSource
from symvault.sources.http import HttpSource
from symvault.sources.http_client import HttpClient, HttpLimits
from symvault.sources.sentry import SentrySource
from symvault.sources.store import StoreSource
from symvault.store.accounts import Accounts
from symvault.store.debug_files import DebugFiles
from symvault.store.storage import Storage

__all__ = ["SourceRegistry"]


class SourceRegistry:
    """Builds sources on first use and keeps them (S3 clients, HTTP pools are reused)."""

    def __init__(
        self,
        limits: HttpLimits,
        policy: AddressPolicy,
        accounts: Accounts,
        debug_files: DebugFiles,
        storage: Storage,
    ) -> None:
        self.limits = limits
        self._policy = policy
        self._http = HttpClient(limits, policy)
        self._accounts = accounts
        self._debug_files = debug_files
        self._storage = storage
        self._built: dict[tuple[str, str, str], Source] = {}
        self._lock = threading.Lock()

    def get(self, config: SourceConfig) -> Source:
        key = (config.type, config.id, source_fingerprint(config))
        with self._lock:
            source = self._built.get(key)
            if source is None:
                source = self._build(config)
                if len(self._built) > 10_000:
                    self._built.clear()
                self._built[key] = source
            return source

    def _build(self, config: SourceConfig) -> Source:
        if isinstance(config, FilesystemSourceConfig):
            return FilesystemSource(config)
        if isinstance(config, HttpSourceConfig):
            return HttpSource(config, self._http)
        if isinstance(config, S3SourceConfig):
            # boto3 takes a quarter of a second to import: only processes that use an
            # S3 source pay for it (every server and fetch process starts faster).
            from symvault.sources.s3 import S3Source  # noqa: PLC0415

            return S3Source(config, self.limits, self._policy)
        if isinstance(config, SentrySourceConfig):
            return SentrySource(config, self._http)
        if isinstance(config, StoreSourceConfig):
            return StoreSource(config, self._accounts, self._debug_files, self._storage)
        raise TypeError(f"unknown source type {type(config).__name__}")

    def warm_up(self) -> None:
        """Sets up at start what the first download would otherwise wait for."""
        self._http.warm_up()

    def close(self) -> None:
        self._http.close()
