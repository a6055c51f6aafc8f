"""Per-key locks on one file: threads and processes wait for the same key, never for others."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path
from typing import Any

import pytest

from symvault.caching.locks import KeyLocks, key_offset


class Holder:
    """A thread that takes `key`'s lock, says so, and lets go at once."""

    def __init__(self, locks: KeyLocks, key: str) -> None:
        self.entered = threading.Event()
        self._thread = threading.Thread(target=self._hold, args=(locks, key))
        self._thread.start()

    def _hold(self, locks: KeyLocks, key: str) -> None:
        with locks.hold(key):
            self.entered.set()

    def join(self) -> None:
        self._thread.join()


def test_a_second_holder_of_the_same_key_waits(tmp_path: Path) -> None:
    locks = KeyLocks(tmp_path / "locks" / "symcaches.lock")
    with locks.hold("global/source/module"):
        other = Holder(locks, "global/source/module")
        assert not other.entered.wait(0.2), "two threads held one key's lock at once"
    assert other.entered.wait(5)
    other.join()


def test_other_keys_do_not_wait(tmp_path: Path) -> None:
    locks = KeyLocks(tmp_path / "symcaches.lock")
    with locks.hold("global/source/module"):
        other = Holder(locks, "global/source/other-module")
        assert other.entered.wait(5), "a lock on one key blocked another key"
    other.join()


def test_releasing_one_key_keeps_the_others_held(tmp_path: Path) -> None:
    """A close releases its own lock only (process-owned POSIX locks would all go)."""
    locks = KeyLocks(tmp_path / "symcaches.lock")
    with locks.hold("first"):
        with locks.hold("second"):
            pass
        other = Holder(locks, "first")
        assert not other.entered.wait(0.2), "releasing `second` released `first` too"
    assert other.entered.wait(5)
    other.join()


def test_keys_map_to_distinct_offsets() -> None:
    offsets = {key_offset(f"scope/source/module-{index}") for index in range(10_000)}
    assert len(offsets) == 10_000
    assert all(0 <= offset < 2**62 for offset in offsets)


def test_no_file_is_created_per_key(tmp_path: Path) -> None:
    locks = KeyLocks(tmp_path / "locks" / "objects.lock")
    for index in range(50):
        with locks.hold(f"scope/source/{index:02x}/file"):
            pass
    assert [path.name for path in (tmp_path / "locks").iterdir()] == ["objects.lock"]


def _hold_in_child(path: str, key: str, held: Any, release: Any) -> None:
    with KeyLocks(Path(path)).hold(key):
        held.set()
        release.wait(30)


@pytest.mark.timeout(60)
def test_another_process_holding_the_key_makes_this_one_wait(tmp_path: Path) -> None:
    path = tmp_path / "symcaches.lock"
    locks = KeyLocks(path)
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(str(path), "the-key", held, release))
    child.start()
    try:
        assert held.wait(30)
        waiter = Holder(locks, "the-key")
        assert not waiter.entered.wait(0.3), "the key was held by the other process"
        with locks.hold("another-key"):
            pass  # other keys are free meanwhile
        release.set()
        assert waiter.entered.wait(10)
        waiter.join()
    finally:
        release.set()
        child.join(30)
    assert child.exitcode == 0
