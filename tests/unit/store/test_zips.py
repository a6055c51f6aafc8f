"""Reading untrusted zips: safe names, skipped entries, bombs, limits and corrupt data."""

from __future__ import annotations

import hashlib
import os
import stat
import zipfile
from pathlib import Path

import pytest

from symvault.errors import BadRequest
from symvault.store.zips import ExtractedMember, ZipLimits, extract_members

MiB = 1024**2
LIMITS = ZipLimits(
    max_members=100, max_member_size=64 * MiB, max_total_size=128 * MiB, max_ratio=200
)


@pytest.fixture
def staging(tmp_path: Path) -> Path:
    path = tmp_path / "staging"
    path.mkdir()
    return path


def make_zip(
    path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED
) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def extract_all(path: Path, staging: Path, limits: ZipLimits = LIMITS) -> list[tuple[str, bytes]]:
    """Reads every member while it exists (it is removed once the next one is read)."""
    return [
        (member.name, member.path.read_bytes()) for member in extract_members(path, staging, limits)
    ]


def test_regular_members(tmp_path: Path, staging: Path) -> None:
    members = {
        "crash.debug": os.urandom(3000),
        "nested/dir/lib.so": b"\x7fELF" + bytes(5000),
        "windows\\style.pdb": b"pdb",
        "empty": b"",
    }
    path = make_zip(tmp_path / "upload.zip", members)
    seen: list[ExtractedMember] = []
    for member in extract_members(path, staging, LIMITS):
        data = member.path.read_bytes()
        assert member.size == len(data)
        assert member.sha1 == hashlib.sha1(data).hexdigest()
        assert member.path.parent == staging
        seen.append(member)
    assert [m.name for m in seen] == [
        "crash.debug",
        "nested/dir/lib.so",
        "windows/style.pdb",
        "empty",
    ]
    assert [m.sha1 for m in seen] == [hashlib.sha1(d).hexdigest() for d in members.values()]


def test_stored_members(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "stored.zip", {"a": b"alpha", "b": b"beta"}, zipfile.ZIP_STORED)
    assert extract_all(path, staging) == [("a", b"alpha"), ("b", b"beta")]


@pytest.mark.parametrize(
    "name",
    ["../x", "/abs", "/etc/passwd", "C:\\x", "c:x", "a/../../b", "..\\evil.dll", "a/.."],
)
def test_traversal_names_are_refused(tmp_path: Path, staging: Path, name: str) -> None:
    path = make_zip(tmp_path / "evil.zip", {"fine.txt": b"fine", name: b"evil"})
    with pytest.raises(BadRequest, match="has an unsafe path"):
        extract_all(path, staging)
    assert list(staging.iterdir()) == []
    assert not (tmp_path / "x").exists()


def test_symlinks_and_directories_are_skipped(tmp_path: Path, staging: Path) -> None:
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("dir/", b"")
        link = zipfile.ZipInfo("dir/link")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
        executable = zipfile.ZipInfo("dir/tool")
        executable.external_attr = (stat.S_IFREG | 0o755) << 16
        archive.writestr(executable, b"binary")
        fifo = zipfile.ZipInfo("dir/fifo")
        fifo.external_attr = (stat.S_IFIFO | 0o644) << 16
        archive.writestr(fifo, b"")
    assert extract_all(path, staging) == [("dir/tool", b"binary")]


@pytest.mark.parametrize(
    "unix_mode",
    [
        0,  # written on Windows: no Unix mode at all
        0o600,  # Python's `writestr`: permissions without a file type
        stat.S_IFREG | 0o644,  # Info-ZIP on Unix
    ],
)
def test_members_without_a_file_type_are_files(
    tmp_path: Path, staging: Path, unix_mode: int
) -> None:
    path = tmp_path / "modes.zip"
    with zipfile.ZipFile(path, "w") as archive:
        info = zipfile.ZipInfo("crash.pdb")
        info.external_attr = unix_mode << 16
        archive.writestr(info, b"contents")
    assert extract_all(path, staging) == [("crash.pdb", b"contents")]


def test_encrypted_members_are_skipped(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "secret.zip", {"secret": b"hidden data", "plain": b"visible"})
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        secret = archive.getinfo("secret")
    # Set the "encrypted" flag bit in the local header and in the central directory entry.
    raw[secret.header_offset + 6] |= 0x1
    central = raw.find(b"PK\x01\x02")
    assert raw[central + 46 : central + 52] == b"secret"
    raw[central + 8] |= 0x1
    path.write_bytes(bytes(raw))
    assert extract_all(path, staging) == [("plain", b"visible")]


def test_ratio_bomb_is_refused(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "bomb.zip", {"small": b"ok", "bomb": bytes(16 * MiB)})
    assert path.stat().st_size < 64 * 1024
    extracted = extract_members(path, staging, LIMITS)
    first = next(extracted)
    assert first.name == "small"
    with pytest.raises(BadRequest, match="inflates more than 200 times"):
        next(extracted)
    assert list(staging.iterdir()) == []


def test_compressible_member_within_the_ratio_grace_is_accepted(
    tmp_path: Path, staging: Path
) -> None:
    path = make_zip(tmp_path / "zeros.zip", {"zeros": bytes(MiB // 2)})
    assert extract_all(path, staging) == [("zeros", bytes(MiB // 2))]


def test_member_size_limit(tmp_path: Path, staging: Path) -> None:
    limits = ZipLimits(max_members=10, max_member_size=1000, max_total_size=MiB, max_ratio=200)
    assert extract_all(make_zip(tmp_path / "ok.zip", {"a": os.urandom(1000)}), staging, limits)
    path = make_zip(tmp_path / "big.zip", {"a": os.urandom(1001)})
    with pytest.raises(BadRequest, match="'a' exceeds the maximum file size"):
        extract_all(path, staging, limits)


def test_total_size_limit(tmp_path: Path, staging: Path) -> None:
    limits = ZipLimits(max_members=10, max_member_size=1000, max_total_size=1500, max_ratio=200)
    path = make_zip(tmp_path / "many.zip", {"a": os.urandom(800), "b": os.urandom(800)})
    extracted = extract_members(path, staging, limits)
    assert next(extracted).name == "a"
    with pytest.raises(BadRequest, match="inflates beyond the maximum upload size"):
        next(extracted)
    assert list(staging.iterdir()) == []


def test_too_many_members(tmp_path: Path, staging: Path) -> None:
    limits = ZipLimits(max_members=3, max_member_size=MiB, max_total_size=MiB, max_ratio=200)
    assert (
        len(
            extract_all(
                make_zip(tmp_path / "three.zip", dict.fromkeys("abc", b"x")), staging, limits
            )
        )
        == 3
    )
    path = make_zip(tmp_path / "four.zip", dict.fromkeys("abcd", b"x"))
    with pytest.raises(BadRequest, match="has 4 members"):
        extract_all(path, staging, limits)


def test_corrupt_stored_data_fails_its_crc(tmp_path: Path, staging: Path) -> None:
    data = b"A" * 1000
    path = make_zip(tmp_path / "crc.zip", {"member": data}, zipfile.ZIP_STORED)
    raw = path.read_bytes()
    path.write_bytes(raw.replace(data, b"A" * 500 + b"B" + b"A" * 499))
    with pytest.raises(BadRequest, match="'member' is corrupt"):
        extract_all(path, staging)
    assert list(staging.iterdir()) == []


def test_corrupt_deflate_stream(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "deflate.zip", {"member": os.urandom(4000) + bytes(4000)})
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("member")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename)
    raw[start : start + 64] = b"\xff" * 64
    path.write_bytes(bytes(raw))
    with pytest.raises(BadRequest, match="'member' is corrupt"):
        extract_all(path, staging)
    assert list(staging.iterdir()) == []


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04" + bytes(100)])
def test_not_a_zip(tmp_path: Path, staging: Path, content: bytes) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(content)
    with pytest.raises(BadRequest, match="not a valid zip file"):
        extract_all(path, staging)


def test_temp_files_go_when_the_generator_advances_or_closes(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "three.zip", {"a": b"1", "b": b"2", "c": b"3"})
    extracted = extract_members(path, staging, LIMITS)
    first = next(extracted)
    assert first.path.exists()
    second = next(extracted)
    assert not first.path.exists()
    assert list(staging.iterdir()) == [second.path]
    extracted.close()
    assert not second.path.exists()
    assert list(staging.iterdir()) == []


def test_a_member_moved_away_is_kept(tmp_path: Path, staging: Path) -> None:
    path = make_zip(tmp_path / "one.zip", {"a": b"keep"})
    kept = tmp_path / "kept"
    for member in extract_members(path, staging, LIMITS):
        member.path.replace(kept)
    assert kept.read_bytes() == b"keep"
    assert list(staging.iterdir()) == []
