"""Reading untrusted zip archives without trusting anything in them.

Members are extracted one at a time into anonymous temporary files, never to
paths built from their names, and their actual inflated size is counted, not
the size their headers claim. Unsafe names, bombs (absolute size or ratio),
too many members and corrupt data are refused with a `BadRequest`.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from symvault.errors import BadRequest

__all__ = ["ExtractedMember", "ZipLimits", "extract_members"]

_BLOCK = 1024 * 1024
_RATIO_GRACE = 1024 * 1024  # small members may compress arbitrarily well
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ZipLimits:
    max_members: int
    max_member_size: int
    max_total_size: int
    max_ratio: int


@dataclass(frozen=True)
class ExtractedMember:
    name: str
    path: Path
    sha1: str
    size: int


def _check_name(name: str) -> str:
    normalized = name.replace("\\", "/")
    parts = normalized.split("/")
    if normalized.startswith("/") or _DRIVE.match(normalized) or ".." in parts or "\0" in name:
        raise BadRequest(f"Zip member {name[:200]!r} has an unsafe path")
    return normalized


def _is_regular_file(info: zipfile.ZipInfo) -> bool:
    if info.is_dir():
        return False
    # Many writers (Python's `writestr`, Windows tools) record permissions without a
    # file type, or no Unix mode at all: only an explicit other type is not a file.
    file_type = stat.S_IFMT(info.external_attr >> 16)
    return not file_type or file_type == stat.S_IFREG


def extract_members(path: Path, staging_dir: Path, limits: ZipLimits) -> Iterator[ExtractedMember]:
    """Yields the regular files of the zip at `path` one at a time.

    Each yielded file is removed when the generator resumes, unless the caller
    moved it away.
    """
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadRequest(f"The upload is not a valid zip file: {exc}") from exc
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_members:
            raise BadRequest(
                f"The zip file has {len(infos)} members (at most {limits.max_members} allowed)"
            )
        total = 0
        for info in infos:
            name = _check_name(info.filename)
            if not _is_regular_file(info) or info.flag_bits & 0x1:
                continue  # directories, symlinks and encrypted members are skipped
            member = _extract(
                archive, info, name, staging_dir, limits, limits.max_total_size - total
            )
            total += member.size
            try:
                yield member
            finally:
                member.path.unlink(missing_ok=True)


def _check_inflated_size(
    name: str, size: int, budget: int, ratio_limit: int, limits: ZipLimits
) -> None:
    if size > limits.max_member_size:
        raise BadRequest(f"Zip member {name[:200]!r} exceeds the maximum file size")
    if size > budget:
        raise BadRequest("The zip file inflates beyond the maximum upload size")
    if size > ratio_limit:
        raise BadRequest(
            f"Zip member {name[:200]!r} inflates more than {limits.max_ratio} times "
            "its compressed size; refusing it as a zip bomb"
        )


def _extract(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    staging_dir: Path,
    limits: ZipLimits,
    budget: int,
) -> ExtractedMember:
    fd, raw_path = tempfile.mkstemp(prefix="zip-", dir=staging_dir)
    target = Path(raw_path)
    digest = hashlib.sha1(usedforsecurity=False)
    size = 0
    ratio_limit = max(info.compress_size, 1) * limits.max_ratio + _RATIO_GRACE
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as source:
            while block := source.read(_BLOCK):
                size += len(block)
                _check_inflated_size(name, size, budget, ratio_limit, limits)
                digest.update(block)
                out.write(block)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        target.unlink(missing_ok=True)
        raise BadRequest(f"Zip member {name[:200]!r} is corrupt: {exc}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return ExtractedMember(name, target, digest.hexdigest(), size)
