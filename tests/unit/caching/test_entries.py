"""The framed entry format: payload, JSON trailer, length, magic."""

from __future__ import annotations

from pathlib import Path

import pytest

from symvault.caching.entries import MAGIC, EntryStatus, read_trailer, write_trailer


@pytest.mark.parametrize("payload_size", [0, 10, 8 * 1024, 1024 * 1024])
@pytest.mark.parametrize("info_size", [0, 100, 20_000])
def test_written_trailers_read_back(tmp_path: Path, payload_size: int, info_size: int) -> None:
    """Trailers smaller and larger than the first read from the file's end."""
    path = tmp_path / "entry"
    path.write_bytes(b"\x5a" * payload_size)
    info = {"candidates": "x" * info_size}
    stored = write_trailer(path, EntryStatus.OK, None, info)
    assert stored["_payload_size"] == payload_size

    status, detail, read_info, stat = read_trailer(path)
    assert (status, detail, read_info) == (EntryStatus.OK, None, stored)
    assert stat.st_size == path.stat().st_size
    assert path.read_bytes()[:payload_size] == b"\x5a" * payload_size


def test_placeholder_with_detail(tmp_path: Path) -> None:
    path = tmp_path / "entry"
    write_trailer(path, EntryStatus.MALFORMED, "bad DWARF", {})
    assert read_trailer(path)[:2] == (EntryStatus.MALFORMED, "bad DWARF")


@pytest.mark.parametrize(
    ("contents", "message"),
    [
        (b"", "too short"),
        (b"x" * 100, "no cache entry trailer"),
        (b"{}" + (10**6).to_bytes(4, "big") + MAGIC, "invalid trailer length"),
        (b"{}" + (3).to_bytes(4, "big") + MAGIC, "invalid trailer length"),
        (b"[]" + (2).to_bytes(4, "big") + MAGIC, "invalid trailer"),
        (b"{x" + (2).to_bytes(4, "big") + MAGIC, "Expecting property name"),
        (b'{"status":"gone"}' + (17).to_bytes(4, "big") + MAGIC, "'gone' is not a valid"),
    ],
)
def test_damaged_entries_are_refused(tmp_path: Path, contents: bytes, message: str) -> None:
    path = tmp_path / "entry"
    path.write_bytes(contents)
    with pytest.raises(ValueError, match=message):
        read_trailer(path)


def test_missing_entry(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_trailer(tmp_path / "absent")
