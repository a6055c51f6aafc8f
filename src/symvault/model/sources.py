"""Symbol source definitions, as Symbolicator accepts them in requests and in `config.yml`.

Unknown fields are ignored, so that source lists written for Symbolicator
(which may carry fields symvault does not use) are accepted unchanged.
"""

from __future__ import annotations

import hashlib
import json
from functools import cached_property
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from symvault.model.objects import FileType

__all__ = [
    "FilesystemSourceConfig",
    "HttpSourceConfig",
    "Layout",
    "S3SourceConfig",
    "SentrySourceConfig",
    "SourceConfig",
    "SourceFilters",
    "StoreSourceConfig",
    "parse_sources",
    "source_fingerprint",
]

LayoutType = Literal[
    "native", "symstore", "symstore_index2", "ssqp", "debuginfod", "unified", "breakpad"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Layout(_Model):
    """How files are arranged on a symbol server (see `sources/layouts.py`)."""

    type: LayoutType = "native"
    casing: Literal["default", "lowercase", "uppercase"] = "default"


class SourceFilters(_Model):
    filetypes: tuple[FileType, ...] = ()
    """Only these file types are looked up here (all if empty)."""
    path_patterns: tuple[str, ...] = ()
    """Globs matched case-insensitively against the code and debug file paths; the source
    is used only for modules matching one of them (all if empty)."""
    requires_checksum: bool = False
    """Only look up modules whose debug checksum is known (accepted for compatibility)."""


class _SourceBase(_Model):
    id: str = Field(min_length=1, max_length=200)

    @cached_property
    def fingerprint(self) -> str:
        """See `source_fingerprint`; computed once per definition."""
        material = self.model_dump(mode="json", exclude={"id", "is_public"})
        encoded = json.dumps(material, sort_keys=True).encode()
        return hashlib.sha256(encoded).hexdigest()[:16]

    filters: SourceFilters = SourceFilters()
    is_public: bool = False
    """Cache entries of public sources are shared by all scopes."""

    @field_validator("id")
    @classmethod
    def _printable_id(cls, value: str) -> str:
        if not value.isprintable():
            raise ValueError("source ids must be printable")
        return value


class FilesystemSourceConfig(_SourceBase):
    type: Literal["filesystem"]
    path: str = Field(min_length=1)
    layout: Layout = Layout()


class HttpSourceConfig(_SourceBase):
    type: Literal["http"]
    url: str = Field(min_length=1)
    headers: dict[str, str] = Field(default_factory=dict)
    layout: Layout = Layout()
    accept_invalid_certs: bool = False

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value if value.endswith("/") else value + "/"


class S3SourceConfig(_SourceBase):
    type: Literal["s3"]
    bucket: str = Field(min_length=1)
    prefix: str = ""
    region: str | tuple[str, str] = "us-east-1"
    """An AWS region, or `[name, endpoint_url]` for another S3-compatible service."""
    access_key: str | None = None
    secret_key: str | None = None
    layout: Layout = Layout()


class SentrySourceConfig(_SourceBase):
    type: Literal["sentry"]
    url: str = Field(min_length=1)
    """A `.../files/dsyms/` endpoint of Sentry or of another symvault."""
    token: str

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return value


class StoreSourceConfig(_SourceBase):
    """This server's own uploads of one project."""

    type: Literal["store"]
    organization: str = Field(min_length=1, max_length=64)
    project: str = Field(min_length=1, max_length=64)


SourceConfig = Annotated[
    FilesystemSourceConfig
    | HttpSourceConfig
    | S3SourceConfig
    | SentrySourceConfig
    | StoreSourceConfig,
    Field(discriminator="type"),
]

_SOURCES = TypeAdapter(list[SourceConfig])


def parse_sources(raw: object) -> list[SourceConfig]:
    """Validates a list of source definitions; raises pydantic's `ValidationError`."""
    return _SOURCES.validate_python(raw)


def source_fingerprint(source: SourceConfig) -> str:
    """A short hash of everything that determines what a source serves.

    Part of cache keys, so that redefining a source (another URL, bucket, layout
    or filter) never serves entries fetched under the old definition, while
    sources that differ only in their id share entries.
    """
    return source.fingerprint
