"""Streaming multipart bodies to files: parts, gzip, limits and malformed input."""

from __future__ import annotations

import gzip
import hashlib
import os
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from symvault.errors import BadRequest, ChunkRejected
from symvault.store.multipart import MultipartLimits, MultipartReceiver, ReceivedPart

BOUNDARY = "----symvault-test-boundary-7d9"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
LIMITS = MultipartLimits(max_body=1024**2, max_parts=8, max_part_size=64 * 1024)
MiB = 1024**2


def part(field: str, data: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{field}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    return (
        (
            f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + b"\r\n"
    )


def body(*parts: bytes, close: bool = True) -> bytes:
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if close else b"")


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


def receiver(staging: Path, limits: MultipartLimits = LIMITS) -> MultipartReceiver:
    return MultipartReceiver(
        CONTENT_TYPE, limits, staging, fields=["file"], gzip_fields=["file_gzip"]
    )


def receive(
    staging: Path, pieces: Iterator[bytes] | list[bytes], limits: MultipartLimits = LIMITS
) -> list[ReceivedPart]:
    """Feeds `pieces`; on failure, checks that `discard` leaves nothing behind."""
    before = files_in(staging)
    receiving = receiver(staging, limits)
    try:
        return feed_all(receiving, pieces)
    except BadRequest:
        receiving.discard()
        assert files_in(staging) == before
        raise


def feed_all(
    receiving: MultipartReceiver,
    pieces: Iterator[bytes] | list[bytes],
    after_each: Callable[[], None] = lambda: None,
) -> list[ReceivedPart]:
    for piece in pieces:
        receiving.feed(piece)
        after_each()
    return receiving.finish()


def in_pieces(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def files_in(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


class TestParts:
    def test_plain_part(self, staging: Path) -> None:
        data = os.urandom(5000)
        (received,) = receive(staging, [body(part("file", data, sha1(data)))])
        assert received.field == "file"
        assert received.filename == sha1(data)
        assert received.sha1 == sha1(data)
        assert received.size == len(data)
        assert received.path.read_bytes() == data
        assert received.path.parent == staging

    def test_gzip_part_is_inflated(self, staging: Path) -> None:
        data = b"debug info " * 1000
        (received,) = receive(staging, [body(part("file_gzip", gzip.compress(data), "x"))])
        assert received.path.read_bytes() == data
        assert (received.sha1, received.size) == (sha1(data), len(data))

    def test_several_parts_in_order(self, staging: Path) -> None:
        chunks = [os.urandom(100), b"", b"\r\n--not-a-boundary\r\n", os.urandom(3000)]
        parts = [part("file", chunk, sha1(chunk)) for chunk in chunks]
        parts.insert(2, part("file_gzip", gzip.compress(b"zipped"), sha1(b"zipped")))
        received = receive(staging, [body(*parts)])
        assert [r.path.read_bytes() for r in received] == [*chunks[:2], b"zipped", *chunks[2:]]
        assert [r.field for r in received] == ["file", "file", "file_gzip", "file", "file"]
        assert len(set(files_in(staging))) == 5

    def test_other_fields_are_ignored(self, staging: Path) -> None:
        data = b"payload"
        received = receive(
            staging,
            [
                body(
                    part("comment", b"a text field"),
                    part("attachment", os.urandom(2000), "other.bin"),
                    part("file", data, sha1(data)),
                )
            ],
        )
        assert [(r.field, r.path.read_bytes()) for r in received] == [("file", data)]
        assert files_in(staging) == [received[0].path]

    def test_boundaries_split_across_feeds_at_every_offset(self, staging: Path) -> None:
        plain, zipped = b"first chunk data", b"second, compressed " * 5
        message = body(
            part("comment", b"ignored"),
            part("file", plain, sha1(plain)),
            part("file_gzip", gzip.compress(zipped), sha1(zipped)),
        )
        for offset in range(len(message) + 1):
            received = receive(staging, [message[:offset], message[offset:]])
            assert [(r.sha1, r.size) for r in received] == [
                (sha1(plain), len(plain)),
                (sha1(zipped), len(zipped)),
            ], f"split at {offset}"
            for r in received:
                r.path.unlink()
        # Byte by byte, too.
        received = receive(staging, in_pieces(message, 1))
        assert [r.path.read_bytes() for r in received] == [plain, zipped]

    def test_multi_member_gzip(self, staging: Path) -> None:
        members = [b"one " * 100, b"", b"three " * 50]
        data = b"".join(gzip.compress(member) for member in members)
        for size in (len(data), 7, 1):
            (received,) = receive(staging, in_pieces(body(part("file_gzip", data, "x")), size))
            assert received.path.read_bytes() == b"".join(members)


@pytest.fixture(scope="module")
def gzip_bomb() -> bytes:
    """64 KiB of gzip that inflates to 64 MiB of zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(MiB)
    return b"".join(compressor.compress(block) for _ in range(64)) + compressor.flush()


class TestRefused:
    def test_gzip_bomb_stops_at_the_limit_without_using_memory(
        self, staging: Path, gzip_bomb: bytes
    ) -> None:
        limit = MiB
        limits = MultipartLimits(max_body=10 * MiB, max_parts=1, max_part_size=limit)
        assert len(gzip_bomb) < 100 * 1024
        message = body(part("file_gzip", gzip_bomb, "bomb"))
        receiving = receiver(staging, limits)
        tracemalloc.start()
        started = time.monotonic()
        try:

            def check_files() -> None:
                assert all(path.stat().st_size <= limit for path in files_in(staging))

            with pytest.raises(BadRequest, match=f"larger than the limit of {limit} bytes"):
                feed_all(receiving, in_pieces(message, 16 * 1024), check_files)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert time.monotonic() - started < 2
        assert peak < 8 * MiB
        assert all(path.stat().st_size <= limit for path in files_in(staging))
        receiving.discard()
        assert files_in(staging) == []

    def test_plain_part_over_the_limit(self, staging: Path) -> None:
        limits = MultipartLimits(max_body=MiB, max_parts=4, max_part_size=1000)
        receive(staging, [body(part("file", bytes(1000), "ok"))], limits)
        with pytest.raises(BadRequest, match="larger than the limit of 1000 bytes"):
            receive(staging, [body(part("file", bytes(1001), "big"))], limits)

    def test_inflated_size_counts_not_the_compressed_one(self, staging: Path) -> None:
        limits = MultipartLimits(max_body=MiB, max_parts=4, max_part_size=1000)
        receive(staging, [body(part("file_gzip", gzip.compress(bytes(1000)), "ok"))], limits)
        with pytest.raises(BadRequest, match="larger than the limit"):
            receive(staging, [body(part("file_gzip", gzip.compress(bytes(1001)), "x"))], limits)

    def test_truncated_gzip(self, staging: Path) -> None:
        data = gzip.compress(os.urandom(2000))
        with pytest.raises(BadRequest, match="ends in the middle of its gzip data"):
            receive(staging, [body(part("file_gzip", data[:-10], "x"))])

    @pytest.mark.parametrize(
        "data",
        [b"this is not gzip", zlib.compress(b"zlib, not gzip"), gzip.compress(b"ok") + b"junk"],
    )
    def test_invalid_gzip(self, staging: Path, data: bytes) -> None:
        with pytest.raises(BadRequest, match="is not valid gzip data"):
            receive(staging, [body(part("file_gzip", data, "x"))])

    def test_body_over_max_body(self, staging: Path) -> None:
        limits = MultipartLimits(max_body=4096, max_parts=8, max_part_size=MiB)
        message = body(part("file", os.urandom(5000), "x"))
        receiving = receiver(staging, limits)
        with pytest.raises(BadRequest, match="maximum request size of 4096 bytes"):
            feed_all(receiving, in_pieces(message, 1000))
        receiving.discard()
        assert files_in(staging) == []

    def test_too_many_parts(self, staging: Path) -> None:
        limits = MultipartLimits(max_body=MiB, max_parts=2, max_part_size=MiB)
        ignored = [part("other", b"x", "other") for _ in range(5)]
        receive(staging, [body(*ignored, part("file", b"1", "a"), part("file", b"2", "b"))], limits)
        three = body(*(part("file", bytes([n]), str(n)) for n in range(3)))
        with pytest.raises(BadRequest, match="at most 2 are allowed"):
            receive(staging, [three], limits)

    def test_missing_closing_boundary(self, staging: Path) -> None:
        receiving = receiver(staging)
        receiving.feed(body(part("file", b"complete", "a"), part("file", b"cut", "b"), close=False))
        with pytest.raises(BadRequest, match="Malformed multipart body"):
            receiving.finish()
        receiving.discard()
        assert files_in(staging) == []

    def test_garbage_body(self, staging: Path) -> None:
        receiving = receiver(staging)
        with pytest.raises(BadRequest, match="Malformed multipart body"):
            feed_all(receiving, [b"definitely not multipart\r\n" * 10])
        receiving.discard()

    @pytest.mark.parametrize(
        "content_type",
        [None, "", "application/json", "multipart/form-data", "multipart/mixed; boundary=x"],
    )
    def test_content_type_needs_a_boundary(self, staging: Path, content_type: str | None) -> None:
        with pytest.raises(BadRequest, match="multipart/form-data body with a boundary"):
            MultipartReceiver(content_type, LIMITS, staging, fields=["file"])

    def test_error_class_is_configurable(self, staging: Path) -> None:
        limits = MultipartLimits(max_body=10, max_parts=1, max_part_size=1)
        receiving = MultipartReceiver(
            CONTENT_TYPE, limits, staging, fields=["file"], error=ChunkRejected
        )
        with pytest.raises(ChunkRejected):
            receiving.feed(body(part("file", b"xx", "x")))
        receiving.discard()


def test_discard_removes_received_and_partial_files(staging: Path) -> None:
    receiving = receiver(staging)
    two = gzip.compress(b"two")
    receiving.feed(body(part("file", b"one", "1"), part("file_gzip", two, "2"), close=False))
    receiving.feed(part("file", b"partial", "3")[:-5])
    assert len(files_in(staging)) == 3
    receiving.discard()
    assert files_in(staging) == []


def test_discard_leaves_files_that_were_moved_away(staging: Path, tmp_path: Path) -> None:
    receiving = receiver(staging)
    receiving.feed(body(part("file", b"keep me", "1"), part("file", b"drop me", "2")))
    kept, _dropped = receiving.finish()
    target = tmp_path / "kept"
    kept.path.replace(target)
    receiving.discard()
    assert files_in(staging) == []
    assert target.read_bytes() == b"keep me"
