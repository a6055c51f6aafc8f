"""Speaks the chunk-upload and assemble protocol one request at a time.

`sentry-cli` hides the protocol behind one command; tests that check what the
server answers to each step (or to a client that breaks the rules) use this
instead: split a file into chunks named by SHA-1, upload them as multipart
`file_gzip` or `file` parts, send assemble requests and poll them.
"""

from __future__ import annotations

import gzip
import hashlib
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

__all__ = [
    "MULTIPART_TYPE",
    "Chunk",
    "ChunkClient",
    "SplitFile",
    "encode_multipart",
    "sha1_of",
    "split_bytes",
    "split_file",
]

BOUNDARY = "symvault-test-boundary-7f3a9c"
_READ_BLOCK = 1024 * 1024


def sha1_of(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@dataclass(frozen=True)
class Chunk:
    """One slice of a file: its SHA-1 and where its bytes are."""

    sha1: str
    source: Path | bytes
    offset: int
    size: int

    def read(self) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[self.offset : self.offset + self.size]
        with self.source.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read(self.size)


@dataclass(frozen=True)
class SplitFile:
    """A file as the client sees it: name, SHA-1 of the whole, chunks in order."""

    name: str
    sha1: str
    size: int
    chunks: tuple[Chunk, ...]

    @property
    def chunk_ids(self) -> list[str]:
        return [chunk.sha1 for chunk in self.chunks]

    def request(self, debug_id: str | None = None) -> dict[str, Any]:
        """This file's entry of an assemble body."""
        entry: dict[str, Any] = {"name": self.name, "chunks": self.chunk_ids}
        if debug_id is not None:
            entry["debug_id"] = debug_id
        return entry


def split_bytes(data: bytes, chunk_size: int, name: str) -> SplitFile:
    chunks = tuple(
        Chunk(
            sha1_of(data[start : start + chunk_size]),
            data,
            start,
            min(chunk_size, len(data) - start),
        )
        for start in range(0, len(data), chunk_size)
    )
    return SplitFile(name, sha1_of(data), len(data), chunks)


def split_file(path: Path, chunk_size: int, name: str | None = None) -> SplitFile:
    """Splits a file on disk without holding it in memory."""
    whole = hashlib.sha1()
    chunks = []
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(chunk_size):
            whole.update(block)
            chunks.append(Chunk(sha1_of(block), path, offset, len(block)))
            offset += len(block)
    return SplitFile(name or path.name, whole.hexdigest(), offset, tuple(chunks))


def encode_multipart(parts: Iterable[tuple[str, str, bytes]]) -> bytes:
    """A multipart/form-data body of `(field, filename, data)` parts with `BOUNDARY`."""
    body = bytearray()
    for field, filename, data in parts:
        body += (
            f"--{BOUNDARY}\r\n"
            f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        body += data
        body += b"\r\n"
    body += f"--{BOUNDARY}--\r\n".encode()
    return bytes(body)


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


class ChunkClient:
    """The protocol against one organization and project of a server."""

    def __init__(self, client: httpx.Client, org: str, project: str) -> None:
        self.http = client
        self.org = org
        self.project = project

    @property
    def options_path(self) -> str:
        return f"/api/0/organizations/{self.org}/chunk-upload/"

    @property
    def assemble_path(self) -> str:
        return f"/api/0/projects/{self.org}/{self.project}/files/difs/assemble/"

    def options(self) -> dict[str, Any]:
        response = self.http.get(self.options_path)
        assert response.status_code == 200, response.text
        options: dict[str, Any] = response.json()
        return options

    def split(self, path: Path, name: str | None = None) -> SplitFile:
        return split_file(path, self.options()["chunkSize"], name)

    # Chunk uploads

    def post_parts(self, parts: Sequence[tuple[str, str, bytes]]) -> httpx.Response:
        """One chunk-upload request with exactly these multipart parts."""
        return self.http.post(
            self.options_path,
            content=encode_multipart(parts),
            headers={"Content-Type": MULTIPART_TYPE},
        )

    def upload_chunks(self, chunks: Sequence[Chunk], *, compress: bool = True) -> httpx.Response:
        """One request carrying `chunks` (gzip-compressed `file_gzip` parts by default)."""
        if compress:
            parts = [("file_gzip", chunk.sha1, gzip.compress(chunk.read(), 1)) for chunk in chunks]
        else:
            parts = [("file", chunk.sha1, chunk.read()) for chunk in chunks]
        return self.post_parts(parts)

    def upload_file(self, split: SplitFile, *, compress: bool = True) -> None:
        """Uploads every chunk in batches that respect the server's limits."""
        options = self.options()
        for batch in _batches(split.chunks, options["chunksPerRequest"], options["maxRequestSize"]):
            response = self.upload_chunks(batch, compress=compress)
            assert response.status_code == 200, response.text

    # Assembling

    def assemble(self, body: Mapping[str, Any]) -> httpx.Response:
        return self.http.post(self.assemble_path, json=body)

    def assemble_one(self, split: SplitFile, debug_id: str | None = None) -> dict[str, Any]:
        """Sends one file's assemble request; returns its entry of the (200) answer."""
        response = self.assemble({split.sha1: split.request(debug_id)})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("application/json")
        answer = response.json()
        assert list(answer) == [split.sha1], answer
        entry: dict[str, Any] = answer[split.sha1]
        assert isinstance(entry.get("missingChunks"), list), entry
        return entry

    def poll(
        self, split: SplitFile, debug_id: str | None = None, timeout: float = 60
    ) -> tuple[dict[str, Any], list[str]]:
        """Polls until `ok` or `error`; returns the last entry and every state seen."""
        states = []
        deadline = time.monotonic() + timeout
        while True:
            entry = self.assemble_one(split, debug_id)
            states.append(entry["state"])
            if entry["state"] in ("ok", "error"):
                return entry, states
            assert entry["state"] == "assembling", entry
            assert time.monotonic() < deadline, f"still {entry['state']} after {timeout}s"
            time.sleep(0.1)

    def store(self, split: SplitFile, debug_id: str | None = None) -> dict[str, Any]:
        """The whole protocol: ask, upload what is missing, poll to the end."""
        first = self.assemble_one(split, debug_id)
        if first["state"] == "not_found" and first["missingChunks"]:
            missing = set(first["missingChunks"])
            self.upload_file(
                SplitFile(
                    split.name,
                    split.sha1,
                    split.size,
                    tuple(chunk for chunk in split.chunks if chunk.sha1 in missing),
                )
            )
        entry, _states = self.poll(split, debug_id)
        return entry


def _batches(chunks: Sequence[Chunk], per_request: int, max_bytes: int) -> Iterator[list[Chunk]]:
    """Groups chunks as sentry-cli does: by count, and by size with room for headers."""
    batch: list[Chunk] = []
    size = 0
    for chunk in chunks:
        if batch and (len(batch) >= per_request or size + chunk.size + 1024 > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(chunk)
        size += chunk.size + 1024
    if batch:
        yield batch
