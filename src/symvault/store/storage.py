"""The interface to where file contents live (blobs, assembled files).

Keys are relative, slash-separated paths such as `chunks/ab/abcdef...`.
Implementations: `FilesystemStorage` (the default). Only the composition
root chooses one.
"""

from __future__ import annotations

from io import BufferedIOBase
from pathlib import Path
from typing import Protocol

__all__ = ["Storage"]


class Storage(Protocol):
    """Content storage addressed by key."""

    def put_file(self, key: str, source: Path) -> None:
        """Stores the file at `source` under `key`, replacing any earlier content.

        `source` is consumed: it no longer exists afterwards. Readers never see
        a partially written object.
        """

    def open(self, key: str) -> BufferedIOBase:
        """Opens an object for reading; raises `FileNotFoundError` if it does not exist."""

    def exists(self, key: str) -> bool:
        """True if an object is stored under `key`."""

    def size(self, key: str) -> int:
        """Size in bytes; raises `FileNotFoundError` if it does not exist."""

    def delete(self, key: str) -> bool:
        """Removes an object; returns False if there was none."""

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the object, if the implementation has one."""

    def staging_dir(self) -> Path:
        """A directory for temporary files that `put_file` can consume cheaply."""

    def sweep_staging(self, older_than: float) -> int:
        """Removes temporary files older than `older_than` seconds (left by crashed
        processes); returns how many."""
