"""Keeping uploaded chunks until they are assembled.

Upload requests are received by `symvault.store.multipart`. `ChunkStore`
keeps verified chunks content-addressed under `chunks/<sha1>`, records which
organization uploaded each one, and removes chunks whose last upload is older
than the retention time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from io import BufferedIOBase

from sqlalchemy import delete, select

from symvault.errors import ChunkRejected
from symvault.model.ids import is_sha1
from symvault.store.database import Database, insert_ignore
from symvault.store.locks import FileLock
from symvault.store.multipart import ReceivedPart
from symvault.store.storage import Storage
from symvault.store.tables import Blob, BlobOwner, utcnow

__all__ = ["CHUNK_FIELDS", "CHUNK_GZIP_FIELDS", "ChunkStore", "chunk_key", "verify_chunks"]

#: Form fields of chunk-upload requests: plain chunks and gzip-compressed ones.
CHUNK_FIELDS = ("file",)
CHUNK_GZIP_FIELDS = ("file_gzip",)


def chunk_key(checksum: str) -> str:
    return f"chunks/{checksum[:2]}/{checksum[2:]}"


def verify_chunks(parts: Sequence[ReceivedPart]) -> None:
    """Checks that each chunk part is named after the SHA-1 of its data."""
    for part in parts:
        if not is_sha1(part.filename.lower()):
            raise ChunkRejected(
                f"Invalid chunk name {part.filename[:60]!r}: it must be the SHA-1 of the chunk"
            )
        if part.sha1 != part.filename.lower():
            raise ChunkRejected("Checksum mismatch")


class ChunkStore:
    """Content-addressed chunks plus the record of which organization uploaded which."""

    def __init__(self, db: Database, storage: Storage, lock: FileLock) -> None:
        self._db = db
        self._storage = storage
        self._lock = lock

    def save(self, organization_id: int, chunks: Sequence[ReceivedPart]) -> None:
        """Stores verified chunks and records the organization as their owner."""
        if not chunks:
            return
        now = utcnow()
        sizes = {chunk.sha1: chunk.size for chunk in chunks}
        with self._lock.shared():
            for chunk in chunks:
                self._storage.put_file(chunk_key(chunk.sha1), chunk.path)
            with self._db.write() as session:
                insert_ignore(
                    session,
                    Blob,
                    [{"checksum": c, "size": s, "uploaded_at": now} for c, s in sizes.items()],
                    ["checksum"],
                    update={"uploaded_at": now},
                )
                insert_ignore(
                    session,
                    BlobOwner,
                    [{"organization_id": organization_id, "checksum": c} for c in sizes],
                    ["organization_id", "checksum"],
                )

    def owned(self, organization_id: int, checksums: Iterable[str]) -> set[str]:
        """The subset of `checksums` the organization has uploaded at some point."""
        wanted = set(checksums)
        found: set[str] = set()
        with self._db.read() as session:
            for batch in _batches(sorted(wanted)):
                found.update(
                    session.scalars(
                        select(BlobOwner.checksum).where(
                            BlobOwner.organization_id == organization_id,
                            BlobOwner.checksum.in_(batch),
                        )
                    )
                )
        return found

    def available(self, checksums: Iterable[str]) -> dict[str, int]:
        """Sizes of the chunks among `checksums` that are currently stored."""
        wanted = sorted(set(checksums))
        sizes: dict[str, int] = {}
        with self._db.read() as session:
            for batch in _batches(wanted):
                rows = session.execute(
                    select(Blob.checksum, Blob.size).where(Blob.checksum.in_(batch))
                )
                sizes.update(dict(rows.all()))
        return sizes

    def open(self, checksum: str) -> BufferedIOBase:
        return self._storage.open(chunk_key(checksum))

    def reading(self) -> contextlib.AbstractContextManager[None]:
        """Hold while reading chunks so that a sweep does not remove them meanwhile."""
        return self._lock.shared()

    def sweep(self, retention: timedelta, now: datetime | None = None, batch: int = 500) -> int:
        """Removes chunks last uploaded before `now - retention`; returns how many."""
        cutoff = (now or utcnow()) - retention
        removed = 0
        while True:
            with self._lock.exclusive(blocking=False) as held:
                if not held:
                    return removed
                with self._db.write() as session:
                    expired = list(
                        session.scalars(
                            select(Blob.checksum).where(Blob.uploaded_at < cutoff).limit(batch)
                        )
                    )
                    if expired:
                        session.execute(delete(Blob).where(Blob.checksum.in_(expired)))
                for checksum in expired:
                    self._storage.delete(chunk_key(checksum))
            removed += len(expired)
            if len(expired) < batch:
                return removed


def _batches(items: Sequence[str], size: int = 500) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
