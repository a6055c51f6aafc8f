"""The shared/exclusive file lock between readers of chunks and the sweeper."""

from __future__ import annotations

import threading
from pathlib import Path

from symvault.store.locks import FileLock


def test_readers_share_and_exclude_the_sweeper(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "locks" / "chunks.lock")
    with lock.shared(), lock.shared(), lock.exclusive(blocking=False) as held:
        assert not held
    with lock.exclusive(blocking=False) as held:
        assert held
        with lock.exclusive(blocking=False) as again:
            assert not again


def test_exclusive_holder_blocks_readers_until_released(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "chunks.lock")
    reading = threading.Event()

    def read() -> None:
        with lock.shared():
            reading.set()

    with lock.exclusive() as held:
        assert held
        reader = threading.Thread(target=read)
        reader.start()
        assert not reading.wait(0.1)
    assert reading.wait(5)
    reader.join()
