"""Streaming `multipart/form-data` bodies to temporary files.

`MultipartReceiver` is fed the request body piece by piece (from a worker
thread) and writes each file part of interest to its own temporary file while
hashing it, inflating `gzip` parts on the way without ever producing more than
the part's limit (so a gzip bomb stops after `max_part_size + 1` bytes).
Memory use is a few buffers, whatever the body size.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from symvault.errors import BadRequest, ClientError

__all__ = ["MultipartLimits", "MultipartReceiver", "ReceivedPart"]

_INFLATE_STEP = 1024 * 1024
_WRITE_BUFFER = 1024 * 1024


@dataclass(frozen=True)
class MultipartLimits:
    max_body: int
    """Largest body, counted as received (before any inflation)."""
    max_parts: int
    """Most file parts of interest."""
    max_part_size: int
    """Largest file part after inflation."""
    max_total: int | None = None
    """Largest sum of all file parts after inflation."""


class _Total:
    """Inflated bytes of all parts of a body, against `max_total`."""

    def __init__(self, limit: int | None, error: type[ClientError]) -> None:
        self._limit = limit
        self._error = error
        self._bytes = 0

    def add(self, count: int) -> None:
        self._bytes += count
        if self._limit is not None and self._bytes > self._limit:
            raise self._error(
                f"Request is larger than the maximum request size of {self._limit} bytes"
            )


@dataclass(frozen=True)
class ReceivedPart:
    """A file part written to `path`; `sha1` and `size` describe the (inflated) data."""

    field: str
    filename: str
    sha1: str
    size: int
    path: Path


class _PartWriter:
    def __init__(
        self,
        field: str,
        filename: str,
        gzip: bool,
        limits: MultipartLimits,
        directory: Path,
        error: type[ClientError],
        total: _Total,
    ) -> None:
        self.field = field
        self.filename = filename
        self._total = total
        self._limit = limits.max_part_size
        self._error = error
        self._hash = hashlib.sha1(usedforsecurity=False)
        self._size = 0
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if gzip else None
        fd, path = tempfile.mkstemp(prefix="part-", dir=directory)
        self.path = Path(path)
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=_WRITE_BUFFER)

    @property
    def label(self) -> str:
        return f"Part {self.field!r} ({self.filename[:80]!r})"

    def write(self, data: bytes) -> None:
        if self._inflater is None:
            self._append(data)
            return
        while data:
            # Never inflate more than one byte past the limit, however well the data compresses.
            try:
                out = self._inflater.decompress(
                    data, min(_INFLATE_STEP, self._limit + 1 - self._size)
                )
            except zlib.error as exc:
                raise self._error(f"{self.label} is not valid gzip data") from exc
            self._append(out)
            if self._inflater.eof:
                # Another gzip member may follow the one that just ended.
                data = self._inflater.unused_data
                if data:
                    self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                data = self._inflater.unconsumed_tail

    def _append(self, data: bytes) -> None:
        if not data:
            return
        self._size += len(data)
        if self._size > self._limit:
            raise self._error(f"{self.label} is larger than the limit of {self._limit} bytes")
        self._total.add(len(data))
        self._hash.update(data)
        self._file.write(data)

    def close(self) -> ReceivedPart:
        if self._inflater is not None and not self._inflater.eof:
            raise self._error(f"{self.label} ends in the middle of its gzip data")
        self._file.close()
        return ReceivedPart(
            self.field, self.filename, self._hash.hexdigest(), self._size, self.path
        )

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self.path.unlink(missing_ok=True)


class MultipartReceiver:
    """Parses one multipart body fed to it piece by piece.

    Parts named in `fields` are written to files (`gzip_fields` are inflated);
    others are ignored. Feed it from one thread at a time, and call `discard`
    at the end to remove files nobody took over.
    """

    def __init__(
        self,
        content_type: str | None,
        limits: MultipartLimits,
        staging_dir: Path,
        fields: Collection[str],
        gzip_fields: Collection[str] = (),
        error: type[ClientError] = BadRequest,
    ) -> None:
        self._error = error
        mime, params = parse_options_header(content_type or "")
        boundary = params.get(b"boundary")
        if mime != b"multipart/form-data" or not boundary:
            raise error("Expected a multipart/form-data body with a boundary")
        self._limits = limits
        self._staging = staging_dir
        self._fields = frozenset(fields) | frozenset(gzip_fields)
        self._gzip_fields = frozenset(gzip_fields)
        self._received = 0
        self._total = _Total(limits.max_total, error)
        self._ended = False
        self._headers: dict[str, str] = {}
        self._header_field = b""
        self._header_value = b""
        self._part: _PartWriter | None = None
        self._parts: list[ReceivedPart] = []
        self._part_count = 0
        try:
            self._parser = MultipartParser(
                boundary,
                {
                    "on_part_begin": self._on_part_begin,
                    "on_header_field": self._on_header_field,
                    "on_header_value": self._on_header_value,
                    "on_header_end": self._on_header_end,
                    "on_headers_finished": self._on_headers_finished,
                    "on_part_data": self._on_part_data,
                    "on_part_end": self._on_part_end,
                    "on_end": self._on_end,
                },
            )
        except MultipartParseError as exc:
            raise error(f"Invalid multipart boundary: {exc}") from exc

    def feed(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limits.max_body:
            raise self._error(
                f"Request is larger than the maximum request size of {self._limits.max_body} bytes"
            )
        try:
            self._parser.write(data)
        except MultipartParseError as exc:
            raise self._error(f"Malformed multipart body: {exc}") from exc

    def finish(self) -> list[ReceivedPart]:
        """Checks that the body was complete; returns the received parts in order."""
        try:
            self._parser.finalize()
        except MultipartParseError as exc:
            raise self._error(f"Malformed multipart body: {exc}") from exc
        if not self._ended:
            raise self._error("Malformed multipart body: it ends before its closing boundary")
        return list(self._parts)

    def discard(self) -> None:
        """Removes temporary files that were not moved elsewhere."""
        if self._part is not None:
            self._part.abort()
            self._part = None
        for part in self._parts:
            part.path.unlink(missing_ok=True)

    # Parser callbacks; `data[start:end]` is the slice that belongs to the event.

    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("latin-1").strip()
        self._header_field = b""
        self._header_value = b""

    def _on_headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get("content-disposition", ""))
        field = params.get(b"name", b"").decode("latin-1")
        if field not in self._fields:
            return
        self._part_count += 1
        if self._part_count > self._limits.max_parts:
            raise self._error(
                f"Too many files in one request (at most {self._limits.max_parts} are allowed)"
            )
        filename = params.get(b"filename", b"").decode("utf-8", errors="replace")
        self._part = _PartWriter(
            field,
            filename,
            field in self._gzip_fields,
            self._limits,
            self._staging,
            self._error,
            self._total,
        )

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.write(data[start:end])

    def _on_part_end(self) -> None:
        if self._part is None:
            return
        part, self._part = self._part, None
        try:
            self._parts.append(part.close())
        except BaseException:
            part.abort()
            raise

    def _on_end(self) -> None:
        self._ended = True
