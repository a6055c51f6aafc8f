"""`Storage` on a local directory: objects are files, writes are renames."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
from io import BufferedIOBase
from pathlib import Path

__all__ = ["FilesystemStorage"]


class FilesystemStorage:
    """Stores each object as a file below `root`; `root/tmp` stages new ones."""

    def __init__(self, root: Path) -> None:
        self._root = root.resolve()
        self._tmp = self._root / "tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts) or "\\" in key:
            raise ValueError(f"invalid storage key {key!r}")
        return self._root.joinpath(*parts)

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            source.replace(target)
        except OSError as exc:
            if exc.errno != errno.EXDEV:  # the source is on another filesystem
                raise
            staged = self._tmp / f"{target.name}.{os.getpid()}.{id(source)}"
            shutil.copyfile(source, staged)
            staged.replace(target)
            source.unlink()

    def open(self, key: str) -> BufferedIOBase:
        return self._path(key).open("rb")

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> bool:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def staging_dir(self) -> Path:
        return self._tmp

    def sweep_staging(self, older_than: float) -> int:
        cutoff = time.time() - older_than
        removed = 0
        for path in self._tmp.iterdir():
            with contextlib.suppress(OSError):
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed
