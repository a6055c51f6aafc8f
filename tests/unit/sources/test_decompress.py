"""Unpacking downloads: every format symbol servers use, bombs, damaged data."""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import zipfile
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard

from symvault.sources.decompress import UnpackError, detect_compression, unpack
from tests.conftest import fixture_path
from tests.support.symbol_server import make_cab

MiB = 1024 * 1024
#: Compressible but not trivially so, like a debug file.
CONTENT = b"".join(
    f"FUNC {index:x} 10 0 function_{index % 97}\n".encode() for index in range(20_000)
)


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor().compress(data)


def zstd_streamed(data: bytes) -> bytes:
    """zstd written by a stream compressor: no content size in the frame header."""
    out = io.BytesIO()
    with zstandard.ZstdCompressor().stream_writer(out, closefd=False) as writer:
        writer.write(data)
    return out.getvalue()


def zipped(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def zstd_checksummed(data: bytes) -> bytes:
    """With a content checksum, then a skippable frame (where some tools keep metadata)."""
    skippable = (0x184D2A5A).to_bytes(4, "little") + (3).to_bytes(4, "little") + b"abc"
    return zstandard.ZstdCompressor(write_checksum=True).compress(data) + skippable


PACKERS: dict[str, Any] = {
    "gzip": gzip.compress,
    "zstd": zstd,
    "zstd-streamed": zstd_streamed,
    "zstd-checksummed": zstd_checksummed,
    "zlib": zlib.compress,
    "zip": lambda data: zipped({"crash.debug": data}),
    "cab": lambda data: make_cab("crash.pdb", data),
}


@pytest.fixture
def download(tmp_path: Path) -> Any:
    def write(data: bytes) -> Path:
        path = tmp_path / "download"
        path.write_bytes(data)
        return path

    return write


@pytest.mark.parametrize("kind", PACKERS)
def test_unpacks(kind: str, download: Any, tmp_path: Path) -> None:
    path = download(PACKERS[kind](CONTENT))
    unpacked = unpack(path, max_size=10 * MiB)
    assert unpacked != path
    assert unpacked.parent == path.parent, "unpacked beside the download (same filesystem)"
    assert unpacked.read_bytes() == CONTENT


def test_unpacks_a_real_debug_file_from_a_cab(
    fixtures: dict[str, Any], download: Any, tmp_path: Path
) -> None:
    pdb = fixture_path(fixtures, "crash_pdb").read_bytes()
    unpacked = unpack(download(make_cab("crash.pdb", pdb)), max_size=10 * MiB)
    assert unpacked.read_bytes() == pdb


@pytest.mark.parametrize(
    "key", ["crash_elf", "crash_pdb", "crash_pe", "crash_breakpad", "crash_wasm", "garbage"]
)
def test_plain_files_are_left_as_they_are(
    key: str, fixtures: dict[str, Any], download: Any
) -> None:
    path = download(fixture_path(fixtures, key).read_bytes())
    assert unpack(path, max_size=10 * MiB) == path


def test_multi_file_zips_are_left_as_they_are(download: Any) -> None:
    bundle = zipped({"manifest.json": b"{}", "files/src/main.c": b"int main;"})
    path = download(bundle)
    assert unpack(path, max_size=10 * MiB) == path
    assert path.read_bytes() == bundle


def test_a_single_file_zip_with_directories_is_unpacked(download: Any) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("debug/", b"")
        archive.writestr("debug/crash.debug", CONTENT)
    assert unpack(download(out.getvalue()), max_size=10 * MiB).read_bytes() == CONTENT


@pytest.mark.parametrize("kind", PACKERS)
def test_bombs_are_stopped_at_max_size(kind: str, download: Any, tmp_path: Path) -> None:
    bomb = PACKERS[kind](bytes(8 * MiB))
    assert len(bomb) < MiB
    with pytest.raises(UnpackError, match="limit of 1048576 bytes"):
        unpack(download(bomb), max_size=MiB)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["download"], "left a partial file"


@pytest.mark.parametrize("kind", PACKERS)
def test_exactly_max_size_is_allowed(kind: str, download: Any) -> None:
    data = random.Random(1).randbytes(64 * 1024)
    assert unpack(download(PACKERS[kind](data)), max_size=len(data)).read_bytes() == data


@pytest.mark.parametrize("kind", PACKERS)
@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_data_is_an_unpack_error(
    kind: str, damage: str, download: Any, tmp_path: Path
) -> None:
    packed = bytearray(PACKERS[kind](CONTENT))
    if damage == "truncated":
        packed = packed[: len(packed) // 2]
    else:
        noise = random.Random(7).randbytes(len(packed) // 2)
        start = len(packed) // 4
        packed[start : start + len(noise)] = noise
    with pytest.raises(UnpackError):
        unpack(download(bytes(packed)), max_size=10 * MiB)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["download"], "left a partial file"


@pytest.mark.parametrize("kind", ["gzip", "zstd", "zlib"])
def test_headers_alone_are_damaged(kind: str, download: Any) -> None:
    header = PACKERS[kind](CONTENT)[:4]
    with pytest.raises(UnpackError):
        unpack(download(header), max_size=10 * MiB)


def test_trailing_garbage_after_zstd(download: Any) -> None:
    with pytest.raises(UnpackError):
        unpack(download(zstd(CONTENT) + b"trailing junk"), max_size=10 * MiB)


def test_concatenated_zstd_frames_are_all_read(download: Any) -> None:
    """zstd files may consist of several frames (`cat a.zst b.zst`, pzstd): all are the file."""
    path = download(zstd(b"first frame, ") + zstd_streamed(b"second frame"))
    assert unpack(path, max_size=MiB).read_bytes() == b"first frame, second frame"


def test_zstd_from_the_command_line_tool(download: Any, tmp_path: Path) -> None:
    program = shutil.which("zstd")
    if program is None:
        pytest.skip("the zstd program is not installed")
    source = tmp_path / "crash.sym"
    source.write_bytes(CONTENT)
    subprocess.run([program, "-q", "-19", "--check", str(source)], check=True)
    packed = tmp_path / "crash.sym.zst"
    assert unpack(packed, max_size=MiB).read_bytes() == CONTENT
    packed.write_bytes(packed.read_bytes()[:-1])
    with pytest.raises(UnpackError):
        unpack(packed, max_size=MiB)


def test_cab_needs_cabextract(
    download: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = download(make_cab("crash.pdb", b"pdb"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-programs-here"))
    with pytest.raises(UnpackError, match="cabextract"):
        unpack(path, max_size=MiB)


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x1f\x8b\x08\x00", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"MSCF\x00\x00", "cab"),
        (b"PK\x03\x04", "zip"),
        (b"\x78\x9c", "zlib"),
        (b"\x78\x01", "zlib"),
        (b"\x78\xda", "zlib"),
        (b"\x7fELF", None),
        (b"MZ\x90\x00", None),
        (b"MODULE Linux", None),
        (b"Microsoft C/C++ MSF 7.00", None),
        (b"\x00asm", None),
        (b"\xcf\xfa\xed\xfe", None),
        (b"", None),
        (b"x", None),
    ],
)
def test_detect_compression(head: bytes, expected: str | None) -> None:
    assert detect_compression(head) == expected


def test_unpacked_files_are_new_files(download: Any) -> None:
    path = download(gzip.compress(b"data"))
    first = unpack(path, max_size=MiB)
    second = unpack(path, max_size=MiB)
    assert first != second
    assert first.parent.samefile(second.parent)
