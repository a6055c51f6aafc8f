"""The configuration tree: one YAML file, every key with a default.

`load_config` reads the file once at start-up; everything else receives the
typed `Config` (or the part of it that it needs) from the composition root.
Durations accept seconds (`90`), humantime strings (`"90s"`, `"1h"`, `"7d"`)
or Symbolicator-style mappings (`{hours: 1}`); sizes accept bytes (`1024`) or
strings with a binary unit (`"8MiB"`, `"2GiB"`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
)

from symvault.errors import ConfigError
from symvault.model.sources import SourceConfig
from symvault.model.validation import problems as validation_problems

__all__ = [
    "CacheConfig",
    "CachesConfig",
    "Config",
    "DatabaseConfig",
    "LoggingConfig",
    "ServerConfig",
    "SymbolicationConfig",
    "UploadConfig",
    "load_config",
]

_DURATION_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "w": 604800.0,
    "week": 604800.0,
    "weeks": 604800.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_duration(value: Any) -> timedelta:
    """Turns the accepted duration spellings into a `timedelta`; negative ones are refused."""
    try:
        duration = _duration(value)
    except (TypeError, OverflowError) as exc:
        # Pydantic reports only ValueErrors as validation errors.
        raise ValueError(f"cannot parse duration {value!r}: {exc}") from exc
    if duration < timedelta(0):
        raise ValueError(f"a duration cannot be negative: {value!r}")
    return duration


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError("a duration must be a number, a string like '1h' or a mapping")
    if isinstance(value, int | float):
        return timedelta(seconds=float(value))
    if isinstance(value, dict):
        allowed = {"weeks", "days", "hours", "minutes", "seconds", "milliseconds"}
        unknown = set(value) - allowed
        if unknown:
            raise ValueError(f"unknown duration unit(s): {', '.join(sorted(unknown))}")
        return timedelta(**{key: float(amount) for key, amount in value.items()})
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return timedelta(seconds=float(text))
        parts = _DURATION_PART.findall(text)
        if not parts or _DURATION_PART.sub("", text).strip():
            raise ValueError(f"cannot parse duration {value!r}")
        seconds = 0.0
        for amount, unit in parts:
            if unit not in _DURATION_UNITS:
                raise ValueError(f"unknown duration unit {unit!r} in {value!r}")
            seconds += float(amount) * _DURATION_UNITS[unit]
        return timedelta(seconds=seconds)
    raise ValueError("a duration must be a number, a string like '1h' or a mapping")


def parse_size(value: Any) -> int:
    """Turns `1024`, `"8MiB"`, `"2 GB"` into a byte count (units are binary)."""
    if isinstance(value, bool):
        raise ValueError("a size must be a number of bytes or a string like '8MiB'")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            amount, unit = match.groups()
            factor = _SIZE_UNITS[(unit or "")[:1].lower()]
            return int(float(amount) * factor)
    raise ValueError(f"cannot parse size {value!r}")


Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    PlainSerializer(lambda value: value.total_seconds(), return_type=float),
]
Size = Annotated[int, BeforeValidator(parse_size)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ServerConfig(_Section):
    """The HTTP listener."""

    bind: str = "127.0.0.1:3021"
    """`HOST:PORT` to listen on."""

    public_url: str | None = None
    """Absolute base URL clients reach this server at (used for the chunk-upload
    `url`). Defaults to the scheme and `Host` of each request."""

    max_json_body: Size = 55 * 1024**2
    """Largest JSON request body accepted (413 above it)."""

    workers: int = Field(default=1, ge=1, le=64)
    """Server processes sharing the port. Each runs its own background work; polls
    of symbolication requests find results across processes."""

    @field_validator("bind")
    @classmethod
    def _check_bind(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("bind must look like HOST:PORT")
        return value

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])


class DatabaseConfig(_Section):
    """Where metadata lives."""

    url: str | None = None
    """SQLAlchemy URL. Defaults to SQLite at `<data_dir>/symvault.db`; a
    `postgresql+psycopg://...` URL works the same way."""

    pool_size: int = Field(default=8, ge=1)
    """Connections kept open per server process."""


class UploadConfig(_Section):
    """The chunked upload and assemble protocol."""

    chunk_size: Size = Field(default=8 * 1024**2, gt=0)
    """Size of one chunk as told to clients; larger chunks are refused."""

    chunks_per_request: int = Field(default=64, ge=1)
    """Most chunks accepted in one upload request."""

    max_request_size: Size = Field(default=32 * 1024**2, gt=0)
    """Largest chunk-upload request body (before decompression)."""

    max_file_size: Size = Field(default=2 * 1024**3, gt=0)
    """Largest debug file that may be assembled (larger is allowed by raising this)."""

    concurrency: int = Field(default=8, ge=1, le=255)
    """Parallel chunk-upload requests a client should make."""

    max_wait: Duration = timedelta(minutes=10)
    """How long clients should wait for assembly when asked to."""

    assemble_workers: int = Field(default=2, ge=1)
    """Files assembled at the same time per server process."""

    assemble_lease: Duration = timedelta(seconds=15)
    """An assembly not renewed for this long is considered abandoned (its
    server died) and is restarted by the next poll."""

    error_retention: Duration = timedelta(minutes=5)
    """How long a failed assembly is reported before a new attempt is allowed."""

    chunk_retention: Duration = timedelta(hours=24)
    """Uploaded chunks are kept this long after their last upload."""

    validate_max_size: Size = Field(default=512 * 1024**2, ge=0)
    """Files up to this size have their debug data read in full when assembled, so
    that corrupt uploads are refused at once; 0 turns the check off."""

    legacy_max_members: int = Field(default=10_000, ge=1)
    """Most members a zip uploaded to the legacy endpoint may have."""

    legacy_max_ratio: int = Field(default=200, ge=1)
    """Largest compression ratio of a zip member before it counts as a bomb."""


class CacheConfig(_Section):
    """Lifetimes of one family of cache entries (see docs/caching.md)."""

    max_unused_for: Duration = timedelta(days=7)
    """A good entry not used for this long is removed by cleanup."""

    retry_misses_after: Duration = timedelta(hours=1)
    """A file found nowhere (or not accessible) is looked for again after this long."""

    retry_malformed_after: Duration = timedelta(hours=24)
    """A failed conversion is tried again after this long, or after a restart."""

    retry_errors_after: Duration = timedelta(minutes=5)
    """A fetch that failed (server error, timeout) is tried again after this long.
    Symbolicator folds these into `retry_misses_after`; symvault retries them sooner."""


class CachesConfig(_Section):
    """Symbolicator's `caches` section, plus a size budget."""

    downloaded: CacheConfig = CacheConfig()
    """Debug files downloaded from sources."""

    derived: CacheConfig = CacheConfig()
    """Symcaches, CFI caches and object metadata derived from debug files."""

    max_size: Size | None = None
    """Cleanup evicts least recently used entries (downloaded files first) while the
    cache is larger than this. No limit by default."""

    min_free_space: Size | None = None
    """Cleanup also evicts while the disk holding the cache has less free space."""

    cleanup_interval: Duration | None = timedelta(hours=1)
    """How often a server cleans the cache by itself; null leaves it to `symvault cleanup`."""

    precompute_on_upload: bool = True
    """Compute the symcache and CFI cache of a file as soon as it is uploaded."""


class SymbolicationConfig(_Section):
    """Symbolication requests."""

    request_retention: Duration = timedelta(seconds=90)
    """How long the result of a finished request that answered `pending` can be polled."""

    max_request_duration: Duration = timedelta(minutes=15)
    """A request still running after this long ends with `timeout`."""

    threads: int = Field(default=1, ge=1, le=256)
    """Threads per server process for the CPU work of `/symbolicate` (look-ups,
    building responses). Downloads and conversions never hold them. One is fastest:
    more only contend for Python's interpreter lock; use `server.workers` for cores."""

    inline_frames: int = Field(default=128, ge=0, le=20_000)
    """Requests with at most this many frames start on the event loop: when their
    symcaches are in memory (a warm request), that is the whole request, and it costs
    less than a hand-off to a thread. Their downloads, conversions and file reads still
    run on threads. 0 sends every request to the threads."""

    fetch_threads: int = Field(default=16, ge=1, le=256)
    """Modules fetched in parallel (downloads, conversions) per server process, and
    per fetch process."""

    fetch_processes: int = Field(default=2, ge=0, le=64)
    """Child processes of each server process that download files and convert them
    into cache entries. They have interpreter locks of their own, so a large file's
    download and conversion do not wait for the small files of the same request, and a
    conversion that crashes ends a child, not the server. 0: the server process's own
    threads do that work."""

    fetch_memory_reserve: Size = Field(default=32 * 1024**2, ge=0, le=1024**3)
    """Free memory each fetch process keeps ready for its next conversions, its pages
    in place, instead of handing it back to the system (glibc only, at most 1 GiB):
    pages the kernel hands out anew cost a conversion a quarter of its time. The
    processes then use one malloc arena. 0: they hand all free memory back every 10
    seconds, as server processes do."""

    allow_filesystem_sources: bool = False
    """Let requests name `filesystem` sources (server paths). Sources from this file
    may always be filesystem sources."""


class LoggingConfig(_Section):
    """Log output."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    """Least severe level written."""

    format: Literal["text", "json"] = "text"
    """`text`: one `event key=value ...` line per event; `json`: one JSON object per line."""
    access_log: bool = False
    """Log every HTTP request."""


class Config(_Section):
    """The whole configuration tree."""

    data_dir: Path = Path("./symvault-data")
    """Root of everything stored on disk: uploads, database, caches."""

    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    upload: UploadConfig = UploadConfig()
    logging: LoggingConfig = LoggingConfig()

    cache_dir: Path | None = None
    """Root of the caches; defaults to `<data_dir>/cache`."""

    caches: CachesConfig = CachesConfig()
    symbolication: SymbolicationConfig = SymbolicationConfig()

    max_concurrent_requests: int = Field(default=200, ge=1)
    """Symbolication requests running at once per server process; more get 503."""

    sources: tuple[SourceConfig, ...] = ()
    """Symbol sources used when a request names none (Symbolicator's shape)."""

    connect_to_reserved_ips: bool = False
    """Let downloads connect to private, loopback and reserved addresses."""

    reserved_ip_allowlist: tuple[str, ...] = ()
    """Addresses or networks (CIDR) of internal symbol servers that downloads may reach
    even though `connect_to_reserved_ips` is off."""

    connect_timeout: Duration = timedelta(seconds=15)
    """Time allowed to connect to a source."""

    streaming_timeout: Duration = timedelta(seconds=250)
    """Longest wait for a source to start answering, or between parts of a download."""

    max_download_timeout: Duration = timedelta(seconds=315)
    """Time allowed for one download, retries included."""

    max_download_size: Size = Field(default=4 * 1024**3, gt=0)
    """Largest file downloaded from a source, also after decompression."""

    download_retries: int = Field(default=2, ge=0, le=10)
    """Retries of a download that failed with a server error or a timeout."""

    host_failure_limit: int = Field(default=5, ge=1)
    """After this many consecutive failures, a host is skipped for `host_block_time`."""

    host_block_time: Duration = timedelta(seconds=60)
    """How long a failing host is skipped."""

    @property
    def cache_root(self) -> Path:
        return (self.cache_dir or self.data_dir / "cache").resolve()

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_dir / 'symvault.db').resolve()}"


def load_config(path: Path | None, overrides: dict[str, Any] | None = None) -> Config:
    """Reads `path` (if given), applies command-line `overrides` and validates."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
        raw = loaded
    for dotted, value in (overrides or {}).items():
        _set_dotted(raw, dotted, value)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            validation_problems(exc, limit=None, root="<root>", mapping="a mapping")
        )
        raise ConfigError(f"invalid configuration: {problems}") from exc


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"config key {key!r} must be a mapping to set {dotted}")
        node = child
    node[leaf] = value
