"""Uploaded chunks: verification, ownership per organization, availability and sweeping."""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from symvault.errors import ChunkRejected
from symvault.store.chunks import ChunkStore, chunk_key, verify_chunks
from symvault.store.database import Database
from symvault.store.filesystem import FilesystemStorage
from symvault.store.locks import FileLock
from symvault.store.multipart import ReceivedPart
from symvault.store.tables import utcnow
from tests.unit.conftest import ProjectFactory

HOUR = timedelta(hours=1)


@pytest.fixture
def lock(tmp_path: Path) -> FileLock:
    return FileLock(tmp_path / "locks" / "chunks.lock")


@pytest.fixture
def chunks(db: Database, storage: FilesystemStorage, lock: FileLock) -> ChunkStore:
    return ChunkStore(db, storage, lock)


@pytest.fixture
def orgs(make_project: ProjectFactory) -> tuple[int, int]:
    return make_project("acme", "app")[0], make_project("globex", "app")[0]


def received(storage: FilesystemStorage, data: bytes, name: str | None = None) -> ReceivedPart:
    """A chunk as the multipart receiver leaves it: a staged file plus its hash."""
    path = storage.staging_dir() / f"part-{uuid.uuid4().hex}"
    path.write_bytes(data)
    digest = hashlib.sha1(data).hexdigest()
    return ReceivedPart("file", digest if name is None else name, digest, len(data), path)


def save(chunks: ChunkStore, storage: FilesystemStorage, org: int, *datas: bytes) -> list[str]:
    parts = [received(storage, data) for data in datas]
    chunks.save(org, parts)
    return [part.sha1 for part in parts]


class TestVerify:
    def test_named_after_their_sha1(self, storage: FilesystemStorage) -> None:
        good = received(storage, b"chunk")
        upper = received(storage, b"chunk", hashlib.sha1(b"chunk").hexdigest().upper())
        verify_chunks([good, upper])

    def test_checksum_mismatch(self, storage: FilesystemStorage) -> None:
        wrong = received(storage, b"chunk", hashlib.sha1(b"other").hexdigest())
        with pytest.raises(ChunkRejected, match=r"^Checksum mismatch$"):
            verify_chunks([received(storage, b"fine"), wrong])

    @pytest.mark.parametrize("name", ["", "chunk.bin", "a" * 39, "../" + "a" * 40])
    def test_names_that_are_no_sha1(self, storage: FilesystemStorage, name: str) -> None:
        with pytest.raises(ChunkRejected, match="Invalid chunk name"):
            verify_chunks([received(storage, b"chunk", name)])


class TestSave:
    def test_chunks_are_stored_by_checksum(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        parts = [received(storage, os.urandom(100)) for _ in range(3)]
        chunks.save(orgs[0], parts)
        for part in parts:
            assert not part.path.exists()  # moved, not copied
            assert storage.exists(chunk_key(part.sha1))
            with chunks.open(part.sha1) as handle:
                assert hashlib.sha1(handle.read()).hexdigest() == part.sha1
        assert chunks.available(p.sha1 for p in parts) == {p.sha1: 100 for p in parts}

    def test_ownership_is_per_organization(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        acme, globex = orgs
        (shared,) = save(chunks, storage, acme, b"shared chunk")
        (own,) = save(chunks, storage, globex, b"globex only")
        never = hashlib.sha1(b"never uploaded").hexdigest()
        assert chunks.owned(acme, [shared, own, never]) == {shared}
        assert chunks.owned(globex, [shared, own, never]) == {own}
        # Uploading the same chunk again makes the second organization an owner too.
        save(chunks, storage, globex, b"shared chunk")
        assert chunks.owned(globex, [shared, own]) == {shared, own}
        assert chunks.available([shared, own, never]) == {shared: 12, own: 11}

    def test_duplicates_in_one_request(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        checksums = save(chunks, storage, orgs[0], b"same", b"same", b"other")
        assert checksums[0] == checksums[1]
        assert chunks.available(checksums) == {checksums[0]: 4, checksums[2]: 5}

    def test_many_checksums_at_once(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        # More checksums than one query takes; the stored ones spread over the batches.
        stored = save(chunks, storage, orgs[0], *(str(n).encode() for n in range(20)))
        unknown = [hashlib.sha1(f"unknown {n}".encode()).hexdigest() for n in range(1200)]
        assert chunks.owned(orgs[0], stored + unknown) == set(stored)
        assert set(chunks.available(unknown + stored)) == set(stored)

    def test_nothing_to_save(self, chunks: ChunkStore, orgs: tuple[int, int]) -> None:
        chunks.save(orgs[0], [])
        assert chunks.available([]) == {}
        assert chunks.owned(orgs[0], []) == set()


class TestSweep:
    def test_removes_only_chunks_older_than_the_retention(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        (old,) = save(chunks, storage, orgs[0], b"old chunk")
        time.sleep(0.002)
        between = utcnow()
        time.sleep(0.002)
        (new,) = save(chunks, storage, orgs[0], b"new chunk")

        assert chunks.sweep(HOUR) == 0  # nothing is an hour old yet
        assert chunks.sweep(HOUR, now=between + HOUR) == 1
        assert chunks.available([old, new]) == {new: 9}
        assert not storage.exists(chunk_key(old))
        assert storage.exists(chunk_key(new))
        # Ownership is remembered after the chunk expires.
        assert chunks.owned(orgs[0], [old, new]) == {old, new}

    def test_uploading_again_renews_a_chunk(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        (chunk,) = save(chunks, storage, orgs[0], b"chunk")
        time.sleep(0.002)
        between = utcnow()
        time.sleep(0.002)
        save(chunks, storage, orgs[1], b"chunk")
        assert chunks.sweep(HOUR, now=between + HOUR) == 0
        assert chunks.available([chunk]) == {chunk: 5}

    def test_sweeps_in_batches(
        self, chunks: ChunkStore, storage: FilesystemStorage, orgs: tuple[int, int]
    ) -> None:
        stored = save(chunks, storage, orgs[0], *(bytes([n]) for n in range(7)))
        assert chunks.sweep(HOUR, now=utcnow() + 2 * HOUR, batch=3) == 7
        assert chunks.available(stored) == {}
        assert not any(storage.exists(chunk_key(c)) for c in stored)

    def test_skips_while_someone_holds_the_lock(
        self,
        chunks: ChunkStore,
        storage: FilesystemStorage,
        lock: FileLock,
        orgs: tuple[int, int],
    ) -> None:
        (chunk,) = save(chunks, storage, orgs[0], b"being read")
        later = utcnow() + 2 * HOUR
        with chunks.reading():
            assert chunks.sweep(HOUR, now=later) == 0
        holding, release = threading.Event(), threading.Event()

        def hold_exclusively() -> None:
            with lock.exclusive() as held:
                assert held
                holding.set()
                release.wait(5)

        other = threading.Thread(target=hold_exclusively)
        other.start()
        try:
            assert holding.wait(5)
            assert chunks.sweep(HOUR, now=later) == 0
        finally:
            release.set()
            other.join()
        assert chunks.available([chunk]) == {chunk: 10}
        assert chunks.sweep(HOUR, now=later) == 1
