"""Unpacking downloads that arrive compressed, recognized by content, never unbounded.

Symbol servers serve files gzip-, zstd- or zlib-compressed, as a zip holding
one file, or as Microsoft CAB archives (`crash.pd_`). `unpack` sniffs the first
bytes and inflates into a new file, stopping at `max_size` bytes so that a
bomb costs at most that much disk and a few buffers of memory. Multi-file zips
(source bundles) are left as they are. CAB archives are extracted with the
`cabextract` program, which handles all CAB compression methods.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import IO, Protocol

import zstandard

__all__ = ["UnpackError", "detect_compression", "unpack"]

_BLOCK = 1024 * 1024
# zlib streams with a 32 KiB window at the four compression levels encoders write; other
# header bytes that pass zlib's check are more likely text starting with "x".
_ZLIB_HEADERS = frozenset({b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda"})


class UnpackError(Exception):
    """The download is damaged, too large once unpacked, or cannot be unpacked here."""


def detect_compression(head: bytes) -> str | None:
    """The compression of a file by its first bytes, or None for plain files."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if head.startswith(b"MSCF"):
        return "cab"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head[:2] in _ZLIB_HEADERS:
        return "zlib"
    return None


def unpack(path: Path, max_size: int) -> Path:
    """Returns the unpacked file: `path` itself if it was not compressed, else a new file.

    The new file is created next to `path`; the caller removes both.
    """
    with path.open("rb") as handle:
        head = handle.read(8)
    kind = detect_compression(head)
    if kind is None:
        return path
    if kind == "zip":
        return _unzip_single(path, max_size)
    if kind == "cab":
        return _uncab(path, max_size)
    if kind == "zstd" and not _zstd_complete(path):
        raise UnpackError("damaged compressed data: the zstd stream ends early")
    openers: dict[str, Callable[[IO[bytes]], _Stream]] = {
        "gzip": lambda raw: gzip.GzipFile(fileobj=raw),
        "zstd": lambda raw: zstandard.ZstdDecompressor().stream_reader(raw),
        "zlib": _ZlibReader,
    }
    return _inflate(path, openers[kind], max_size)


class _Stream(Protocol):
    def read(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


def _target_for(path: Path) -> Path:
    with tempfile.NamedTemporaryFile(prefix="unpacked-", dir=path.parent, delete=False) as handle:
        return Path(handle.name)


def _copy_bounded(source: _Stream, out: IO[bytes], max_size: int) -> int:
    written = 0
    while block := source.read(_BLOCK):
        written += len(block)
        if written > max_size:
            raise UnpackError(f"unpacks to more than the limit of {max_size} bytes")
        out.write(block)
    return written


def _inflate(path: Path, opener: Callable[[IO[bytes]], _Stream], max_size: int) -> Path:
    target = _target_for(path)
    try:
        with path.open("rb") as raw, closing(opener(raw)) as source, target.open("wb") as out:
            _copy_bounded(source, out, max_size)
    except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
        target.unlink(missing_ok=True)
        raise UnpackError(f"damaged compressed data: {exc}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


class _ZlibReader:
    """A readable stream over zlib-compressed data (gzip and zstd have their own)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._inflater = zlib.decompressobj()
        self._pending = b""

    def close(self) -> None:
        return None

    def read(self, size: int, /) -> bytes:
        while not self._pending:
            if self._inflater.eof:
                return b""
            data = self._inflater.unconsumed_tail or self._raw.read(_BLOCK)
            if not data:
                raise EOFError("zlib stream ends early")
            self._pending = self._inflater.decompress(data, size)
        chunk, self._pending = self._pending[:size], self._pending[size:]
        return chunk


_ZSTD_MAGIC = 0xFD2FB528
_ZSTD_SKIPPABLE = 0x184D2A50
_ZSTD_DICT_ID_SIZES = (0, 1, 2, 4)
_ZSTD_CONTENT_SIZE_SIZES = (0, 2, 4, 8)


def _zstd_complete(path: Path) -> bool:
    """True if every zstd frame in the file is whole.

    zstandard's streaming reader ends quietly where a cut-short download ends, so
    frame and block headers are walked (not decompressed) to find the true end.
    """
    with path.open("rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        position = 0
        while 0 <= position < size:
            position = _zstd_frame_end(handle, position)
        return position == size


def _zstd_frame_end(handle: IO[bytes], start: int) -> int:
    """Where the frame at `start` ends (RFC 8878), or -1 if it is not a frame."""
    handle.seek(start)
    header = handle.read(8)
    if len(header) < 5:
        return -1
    magic = int.from_bytes(header[:4], "little")
    if magic & 0xFFFFFFF0 == _ZSTD_SKIPPABLE:
        return start + 8 + int.from_bytes(header[4:8], "little") if len(header) == 8 else -1
    if magic != _ZSTD_MAGIC:
        return -1
    descriptor = header[4]
    single_segment = bool(descriptor & 0x20)
    content_size = _ZSTD_CONTENT_SIZE_SIZES[descriptor >> 6] or int(single_segment)
    position = start + 5 + (not single_segment) + _ZSTD_DICT_ID_SIZES[descriptor & 3]
    position += content_size
    last = False
    while not last:
        handle.seek(position)
        block = handle.read(3)
        if len(block) < 3:
            return -1
        value = int.from_bytes(block, "little")
        last = bool(value & 1)
        rle = (value >> 1) & 3 == 1
        position += 3 + (1 if rle else value >> 3)
    return position + (4 if descriptor & 0x04 else 0)


def _unzip_single(path: Path, max_size: int) -> Path:
    try:
        with zipfile.ZipFile(path) as archive:
            members = [info for info in archive.infolist() if not info.is_dir()]
            if len(members) != 1:
                return path  # a source bundle or another archive that is the file itself
            return _inflate_member(path, archive, members[0], max_size)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise UnpackError(f"damaged zip archive: {exc}") from exc


def _inflate_member(
    path: Path, archive: zipfile.ZipFile, member: zipfile.ZipInfo, max_size: int
) -> Path:
    target = _target_for(path)
    try:
        with archive.open(member) as source, target.open("wb") as out:
            _copy_bounded(source, out, max_size)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _uncab(path: Path, max_size: int) -> Path:
    program = shutil.which("cabextract")
    if program is None:
        raise UnpackError("CAB archives need the cabextract program, which is not installed")
    target = _target_for(path)
    written = 0
    try:
        with target.open("wb") as out:
            # -p writes the members to stdout; the size limit is enforced as it streams.
            process = subprocess.Popen(  # noqa: S603 (fixed program, file argument)
                [program, "-q", "-p", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert process.stdout is not None
            try:
                written = _copy_bounded(process.stdout, out, max_size)
            except BaseException:
                process.kill()
                process.communicate()
                raise
            _, errors = process.communicate()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if process.returncode != 0 or written == 0:
        target.unlink(missing_ok=True)
        detail = errors.decode(errors="replace").strip().splitlines()
        raise UnpackError(f"damaged CAB archive: {detail[-1] if detail else 'no content'}")
    return target
