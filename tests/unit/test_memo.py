"""`Memo`: bounded, forgetting everything when full."""

from __future__ import annotations

import threading

import pytest

from symvault.memo import Memo


def test_remembers_until_full_then_starts_over() -> None:
    memo: Memo[str, int] = Memo(3)
    for number, key in enumerate("abc"):
        memo.put(key, number)
    assert [memo.get(key) for key in "abc"] == [0, 1, 2]
    memo.put("d", 3)
    assert len(memo) == 1
    assert memo.get("a") is None
    assert memo.get("d") == 3


def test_replacing_a_key_keeps_one_entry() -> None:
    memo: Memo[str, int] = Memo(2)
    memo.put("a", 1)
    memo.put("a", 2)
    assert (len(memo), memo.get("a")) == (1, 2)


def test_size_holds_under_concurrent_writers() -> None:
    memo: Memo[tuple[int, int], int] = Memo(100)

    def write(thread: int) -> None:
        for number in range(5000):
            memo.put((thread, number), number)

    threads = [threading.Thread(target=write, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= len(memo) <= 100


def test_needs_room_for_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Memo(0)


def test_repeats_only_keeps_a_key_put_the_second_time() -> None:
    memo: Memo[str, int] = Memo(4, repeats_only=True)
    memo.put("a", 1)
    assert (len(memo), memo.get("a")) == (0, None)
    memo.put("a", 1)
    assert (len(memo), memo.get("a")) == (1, 1)


def test_repeats_only_holds_no_values_for_one_off_keys() -> None:
    memo: Memo[int, bytes] = Memo(8, repeats_only=True)
    for key in range(1000):
        memo.put(key, b"x" * 100)
    assert len(memo) == 0
    assert len(memo._seen) <= 8


def test_repeats_only_forgets_seen_keys_when_their_room_is_full() -> None:
    memo: Memo[int, int] = Memo(2, repeats_only=True)
    memo.put(1, 1)
    memo.put(2, 2)
    memo.put(3, 3)  # the seen keys were full: 1 and 2 are forgotten
    memo.put(1, 1)
    assert memo.get(1) is None
    memo.put(3, 3)
    assert memo.get(3) == 3


def test_repeats_only_replaces_a_kept_value_at_once() -> None:
    memo: Memo[str, int] = Memo(4, repeats_only=True)
    memo.put("a", 1)
    memo.put("a", 1)
    memo.put("a", 2)
    assert memo.get("a") == 2
