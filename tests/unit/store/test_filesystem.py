"""`FilesystemStorage`: objects are files, writes are renames, keys cannot escape the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from symvault.store.filesystem import FilesystemStorage


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


def staged(storage: FilesystemStorage, data: bytes, name: str = "upload") -> Path:
    path = storage.staging_dir() / name
    path.write_bytes(data)
    return path


def test_put_consumes_the_source(root: Path) -> None:
    storage = FilesystemStorage(root)
    source = staged(storage, b"contents")
    storage.put_file("files/ab/abc", source)
    assert not source.exists()
    assert storage.exists("files/ab/abc")
    assert storage.size("files/ab/abc") == 8
    with storage.open("files/ab/abc") as handle:
        assert handle.read() == b"contents"
    assert storage.local_path("files/ab/abc") == root.resolve() / "files" / "ab" / "abc"


def test_put_replaces_earlier_contents(root: Path) -> None:
    storage = FilesystemStorage(root)
    storage.put_file("key", staged(storage, b"first"))
    storage.put_file("key", staged(storage, b"second"))
    with storage.open("key") as handle:
        assert handle.read() == b"second"


def test_put_from_another_directory(root: Path, tmp_path: Path) -> None:
    storage = FilesystemStorage(root)
    source = tmp_path / "elsewhere"
    source.write_bytes(b"outside the staging dir")
    storage.put_file("key", source)
    assert not source.exists()
    assert storage.size("key") == 23


def test_missing_objects(root: Path) -> None:
    storage = FilesystemStorage(root)
    assert not storage.exists("absent")
    with pytest.raises(FileNotFoundError):
        storage.open("absent")
    with pytest.raises(FileNotFoundError):
        storage.size("absent")
    assert storage.delete("absent") is False


def test_delete(root: Path) -> None:
    storage = FilesystemStorage(root)
    storage.put_file("chunks/aa/bb", staged(storage, b"x"))
    assert storage.delete("chunks/aa/bb") is True
    assert not storage.exists("chunks/aa/bb")


@pytest.mark.parametrize(
    "key", ["", "/abs", "../escape", "a/../../b", "a//b", "a/./b", "a/", "a\\..\\b", "."]
)
def test_keys_cannot_escape_the_root(root: Path, key: str) -> None:
    storage = FilesystemStorage(root)
    for operation in (storage.exists, storage.open, storage.delete, storage.local_path):
        with pytest.raises(ValueError, match="invalid storage key"):
            operation(key)
    with pytest.raises(ValueError, match="invalid storage key"):
        storage.put_file(key, staged(storage, b"x"))


def test_staging_dir_is_inside_the_root(root: Path) -> None:
    storage = FilesystemStorage(root)
    assert storage.staging_dir().is_dir()
    assert storage.staging_dir().parent == root.resolve()
